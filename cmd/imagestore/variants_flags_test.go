package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestVariantAndStripFlags: --variant-max-size and --strip-metadata, their
// variables, their defaults, and their refusals.
func TestVariantAndStripFlags(t *testing.T) {
	c, err := parseConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.variantMaxSize != 2048 || c.stripMetadata {
		t.Errorf("defaults: variant max size %d, strip metadata %v; want 2048, false", c.variantMaxSize, c.stripMetadata)
	}

	env := map[string]string{"IMAGESTORE_VARIANT_MAX_SIZE": "640", "IMAGESTORE_STRIP_METADATA": "true"}
	if c, err = parseConfig(nil, envOf(env), io.Discard); err != nil || c.variantMaxSize != 640 || !c.stripMetadata {
		t.Errorf("from the environment: %d, %v, %v; want 640, true", c.variantMaxSize, c.stripMetadata, err)
	}
	if c, err = parseConfig([]string{"--variant-max-size", "100", "--strip-metadata=false"}, envOf(env), io.Discard); err != nil || c.variantMaxSize != 100 || c.stripMetadata {
		t.Errorf("flags over the environment: %d, %v, %v; want 100, false", c.variantMaxSize, c.stripMetadata, err)
	}
	if c, err = parseConfig([]string{"--strip-metadata"}, noEnv, io.Discard); err != nil || !c.stripMetadata {
		t.Errorf("--strip-metadata alone: %v, %v; want true", c.stripMetadata, err)
	}
	// A bad variable that its flag overrides is no error.
	bad := map[string]string{"IMAGESTORE_VARIANT_MAX_SIZE": "big", "IMAGESTORE_STRIP_METADATA": "maybe"}
	if _, err = parseConfig([]string{"--variant-max-size", "10", "--strip-metadata"}, envOf(bad), io.Discard); err != nil {
		t.Errorf("bad variables overridden by flags: %v", err)
	}

	for _, tt := range []struct {
		args    []string
		env     map[string]string
		errText string // "" for errUsage
	}{
		{nil, map[string]string{"IMAGESTORE_VARIANT_MAX_SIZE": "big"}, "IMAGESTORE_VARIANT_MAX_SIZE"},
		{nil, map[string]string{"IMAGESTORE_VARIANT_MAX_SIZE": "0"}, "variant max size"},
		{nil, map[string]string{"IMAGESTORE_VARIANT_MAX_SIZE": "-1"}, "variant max size"},
		{nil, map[string]string{"IMAGESTORE_VARIANT_MAX_SIZE": "100000"}, "variant max size"},
		{nil, map[string]string{"IMAGESTORE_STRIP_METADATA": "maybe"}, "IMAGESTORE_STRIP_METADATA"},
		{[]string{"--variant-max-size", "0"}, nil, "variant max size"},
		{[]string{"--variant-max-size", "x"}, nil, ""},
		{[]string{"--strip-metadata=perhaps"}, nil, ""},
	} {
		var stderr bytes.Buffer
		_, err := parseConfig(tt.args, envOf(tt.env), &stderr)
		switch {
		case err == nil:
			t.Errorf("%q %v: no error", tt.args, tt.env)
		case tt.errText == "" && !errors.Is(err, errUsage):
			t.Errorf("%q %v: %v, want errUsage", tt.args, tt.env, err)
		case tt.errText != "" && !strings.Contains(err.Error(), tt.errText):
			t.Errorf("%q %v: %q, want it to mention %q", tt.args, tt.env, err, tt.errText)
		}
	}

	var usage bytes.Buffer
	if _, err := parseConfig([]string{"-h"}, noEnv, &usage); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	for _, want := range []string{"variant-max-size", "IMAGESTORE_VARIANT_MAX_SIZE", "strip-metadata", "IMAGESTORE_STRIP_METADATA"} {
		if !strings.Contains(usage.String(), want) {
			t.Errorf("the usage does not mention %s", want)
		}
	}
}

// TestVariantAndStripFlagsReachTheServer: the flags given to run are the
// server's: the limit in /api/v1/limits and on variants, the stripping on
// uploads.
func TestVariantAndStripFlagsReachTheServer(t *testing.T) {
	stderr := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--variant-max-size", "300", "--strip-metadata"}, noEnv, io.Discard, stderr)
	}()
	var addr string
	for deadline := time.Now().Add(5 * time.Second); addr == ""; time.Sleep(10 * time.Millisecond) {
		if m := listeningRe.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("not listening:\n%s", stderr.String())
		}
	}
	base := "http://" + addr
	do := func(method, path, token string, body []byte) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Accept-Encoding", "identity")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	status, body := do("GET", "/api/v1/limits", "", nil)
	var limits map[string]any
	json.Unmarshal(body, &limits)
	if status != 200 || limits["max_variant_size"] != float64(300) {
		t.Errorf("limits: %d %s, want max_variant_size 300", status, body)
	}
	_, body = do("POST", "/api/v1/users", "", []byte(`{"username":"flags"}`))
	var user map[string]string
	json.Unmarshal(body, &user)
	jpg, err := os.ReadFile(filepath.Join("..", "..", "imagetype", "testdata", "jpeg-baseline.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	app0End := 4 + int(binary.BigEndian.Uint16(jpg[4:]))
	comment := []byte{0xff, 0xfe, 0, 9, 's', 'e', 'c', 'r', 'e', 't', '!'}
	withComment := append(append(append([]byte{}, jpg[:app0End]...), comment...), jpg[app0End:]...)
	status, body = do("POST", "/api/v1/images?name=c.jpg", user["token"], withComment)
	var img map[string]any
	json.Unmarshal(body, &img)
	if status != 201 {
		t.Fatalf("upload: %d %s", status, body)
	}
	if _, got := do("GET", "/api/v1/images/"+img["id"].(string), user["token"], nil); !bytes.Equal(got, jpg) {
		t.Errorf("--strip-metadata: the comment was kept (%d bytes, want %d)", len(got), len(jpg))
	}
	if status, _ = do("GET", "/api/v1/images/"+img["id"].(string)+"?w=301", user["token"], nil); status != 400 {
		t.Errorf("w=301 over --variant-max-size 300: %d, want 400", status)
	}
	if status, _ = do("GET", "/api/v1/images/"+img["id"].(string)+"?w=300", user["token"], nil); status != 200 {
		t.Errorf("w=300: %d, want 200", status)
	}
	cancel()
	if err := waitRun(t, done, stderr); err != nil {
		t.Errorf("run: %v", err)
	}
}

// TestBoolFlags: each switch, its variable and its default; a flag
// overrides a bad variable.
func TestBoolFlags(t *testing.T) {
	for _, tt := range []struct {
		flag, env string
		def       bool
		get       func(config) bool
	}{
		{"gzip-all", "IMAGESTORE_GZIP_ALL", false, func(c config) bool { return c.gzipAll }},
		{"strip-metadata", "IMAGESTORE_STRIP_METADATA", false, func(c config) bool { return c.stripMetadata }},
		{"fast-lane", "IMAGESTORE_FAST_LANE", true, func(c config) bool { return c.fastLane }},
	} {
		t.Run(tt.flag, func(t *testing.T) {
			c, err := parseConfig(nil, noEnv, io.Discard)
			if err != nil || tt.get(c) != tt.def {
				t.Fatalf("default: %v, %v; want %v", tt.get(c), err, tt.def)
			}
			other := strconv.FormatBool(!tt.def)
			if c, err = parseConfig(nil, envOf(map[string]string{tt.env: other}), io.Discard); err != nil || tt.get(c) == tt.def {
				t.Errorf("%s=%s: %v, %v", tt.env, other, tt.get(c), err)
			}
			if c, err = parseConfig([]string{"--" + tt.flag + "=" + other}, noEnv, io.Discard); err != nil || tt.get(c) == tt.def {
				t.Errorf("--%s=%s: %v, %v", tt.flag, other, tt.get(c), err)
			}
			bad := envOf(map[string]string{tt.env: "sometimes"})
			if _, err := parseConfig(nil, bad, io.Discard); err == nil || !strings.Contains(err.Error(), tt.env) {
				t.Errorf("%s=sometimes: %v, want an error naming it", tt.env, err)
			}
			if c, err = parseConfig([]string{"--" + tt.flag + "=" + other}, bad, io.Discard); err != nil || tt.get(c) == tt.def {
				t.Errorf("--%s=%s over a bad variable: %v, %v", tt.flag, other, tt.get(c), err)
			}
		})
	}
}
