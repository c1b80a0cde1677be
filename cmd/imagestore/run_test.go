package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// envOf returns a getenv reading from m.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func noEnv(string) string { return "" }

func TestParseConfigDefaults(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseConfig(nil, noEnv, &stderr)
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	if got, want := c.addr, "127.0.0.1:8000"; got != want {
		t.Errorf("addr: got %q, want %q", got, want)
	}
	if got, want := c.data, "./data"; got != want {
		t.Errorf("data: got %q, want %q", got, want)
	}
	if got, want := int64(c.maxUpload), int64(32<<20); got != want {
		t.Errorf("maxUpload: got %d, want %d", got, want)
	}
	if got, want := c.maxPixels, int64(100000000); got != want {
		t.Errorf("maxPixels: got %d, want %d", got, want)
	}
	if got, want := c.gzipLevel, 6; got != want {
		t.Errorf("gzipLevel: got %d, want %d", got, want)
	}
	if got, want := c.logFormat, "text"; got != want {
		t.Errorf("logFormat: got %q, want %q", got, want)
	}
	if got, want := c.logLevel, slog.LevelInfo; got != want {
		t.Errorf("logLevel: got %v, want %v", got, want)
	}
	if got, want := c.shutdownTimeout, 30*time.Second; got != want {
		t.Errorf("shutdownTimeout: got %v, want %v", got, want)
	}
	if got, want := int64(c.cacheSize), int64(64<<20); got != want {
		t.Errorf("cacheSize: got %d, want %d", got, want)
	}
	if c.debugAddr != "" {
		t.Errorf("debugAddr: got %q, want none (off)", c.debugAddr)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: got %q, want nothing", stderr.String())
	}
}

func TestParseConfigEnv(t *testing.T) {
	env := map[string]string{
		"IMAGESTORE_ADDR":             "0.0.0.0:9999",
		"IMAGESTORE_DATA":             "/srv/images",
		"IMAGESTORE_MAX_UPLOAD":       "10MiB",
		"IMAGESTORE_MAX_PIXELS":       "12345",
		"IMAGESTORE_GZIP_LEVEL":       "9",
		"IMAGESTORE_LOG_FORMAT":       "json",
		"IMAGESTORE_LOG_LEVEL":        "debug",
		"IMAGESTORE_SHUTDOWN_TIMEOUT": "5s",
		"IMAGESTORE_CACHE_SIZE":       "0",
		"IMAGESTORE_DEBUG_ADDR":       "127.0.0.1:6060",
	}
	c, err := parseConfig(nil, envOf(env), io.Discard)
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	if got, want := c.addr, "0.0.0.0:9999"; got != want {
		t.Errorf("addr: got %q, want %q", got, want)
	}
	if got, want := c.data, "/srv/images"; got != want {
		t.Errorf("data: got %q, want %q", got, want)
	}
	if got, want := int64(c.maxUpload), int64(10485760); got != want {
		t.Errorf("maxUpload: got %d, want %d", got, want)
	}
	if got, want := c.maxPixels, int64(12345); got != want {
		t.Errorf("maxPixels: got %d, want %d", got, want)
	}
	if got, want := c.gzipLevel, 9; got != want {
		t.Errorf("gzipLevel: got %d, want %d", got, want)
	}
	if got, want := c.logFormat, "json"; got != want {
		t.Errorf("logFormat: got %q, want %q", got, want)
	}
	if got, want := c.logLevel, slog.LevelDebug; got != want {
		t.Errorf("logLevel: got %v, want %v", got, want)
	}
	if got, want := c.shutdownTimeout, 5*time.Second; got != want {
		t.Errorf("shutdownTimeout: got %v, want %v", got, want)
	}
	if c.cacheSize != 0 {
		t.Errorf("cacheSize: got %d, want 0 (off)", c.cacheSize)
	}
	if got, want := c.debugAddr, "127.0.0.1:6060"; got != want {
		t.Errorf("debugAddr: got %q, want %q", got, want)
	}

	c, err = parseConfig(nil, envOf(map[string]string{"IMAGESTORE_MAX_UPLOAD": "5000"}), io.Discard)
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	if got, want := int64(c.maxUpload), int64(5000); got != want {
		t.Errorf("IMAGESTORE_MAX_UPLOAD=5000: got %d, want %d", got, want)
	}
}

// TestParseConfigFlagOverridesBadEnv: a variable that a flag overrides is
// not an error, however malformed.
// TestHelp: -h prints the usage and asks for a successful exit.
func TestHelp(t *testing.T) {
	var stderr bytes.Buffer
	_, err := parseConfig([]string{"-h"}, envOf(nil), &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("got %v, want flag.ErrHelp (exit 0)", err)
	}
	for _, want := range []string{"--addr", "IMAGESTORE_DATA", "--body-timeout", "--max-uploads"} {
		if !strings.Contains(stderr.String(), strings.TrimPrefix(want, "-")) {
			t.Errorf("usage does not mention %s:\n%s", want, stderr.String())
		}
	}
}

func TestParseConfigFlagOverridesBadEnv(t *testing.T) {
	env := map[string]string{"IMAGESTORE_MAX_UPLOAD": "ten", "IMAGESTORE_GZIP_LEVEL": "fast"}
	c, err := parseConfig([]string{"--max-upload", "5MiB", "--gzip-level", "2"}, envOf(env), io.Discard)
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	if c.maxUpload != 5<<20 || c.gzipLevel != 2 {
		t.Errorf("got max upload %d, gzip level %d; want %d, 2", c.maxUpload, c.gzipLevel, 5<<20)
	}
	if _, err := parseConfig([]string{"--max-upload", "5MiB"}, envOf(env), io.Discard); err == nil || !strings.Contains(err.Error(), "IMAGESTORE_GZIP_LEVEL") {
		t.Errorf("a bad variable without its flag: got %v, want an error naming it", err)
	}
}

func TestParseConfigFlagsOverrideEnv(t *testing.T) {
	env := map[string]string{
		"IMAGESTORE_ADDR":             "0.0.0.0:9999",
		"IMAGESTORE_DATA":             "/srv/images",
		"IMAGESTORE_MAX_UPLOAD":       "10MiB",
		"IMAGESTORE_MAX_PIXELS":       "12345",
		"IMAGESTORE_GZIP_LEVEL":       "9",
		"IMAGESTORE_LOG_FORMAT":       "json",
		"IMAGESTORE_LOG_LEVEL":        "debug",
		"IMAGESTORE_SHUTDOWN_TIMEOUT": "5s",
	}
	args := []string{
		"--addr", "127.0.0.1:7000",
		"--data", "/tmp/other",
		"--max-upload", "1KiB",
		"--max-pixels", "0",
		"--gzip-level", "1",
		"--log-format", "text",
		"--log-level", "error",
		"--shutdown-timeout", "250ms",
	}
	c, err := parseConfig(args, envOf(env), io.Discard)
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	if got, want := c.addr, "127.0.0.1:7000"; got != want {
		t.Errorf("addr: got %q, want %q", got, want)
	}
	if got, want := c.data, "/tmp/other"; got != want {
		t.Errorf("data: got %q, want %q", got, want)
	}
	if got, want := int64(c.maxUpload), int64(1024); got != want {
		t.Errorf("maxUpload: got %d, want %d", got, want)
	}
	if got, want := c.maxPixels, int64(0); got != want {
		t.Errorf("maxPixels: got %d, want %d", got, want)
	}
	if got, want := c.gzipLevel, 1; got != want {
		t.Errorf("gzipLevel: got %d, want %d", got, want)
	}
	if got, want := c.logFormat, "text"; got != want {
		t.Errorf("logFormat: got %q, want %q", got, want)
	}
	if got, want := c.logLevel, slog.LevelError; got != want {
		t.Errorf("logLevel: got %v, want %v", got, want)
	}
	if got, want := c.shutdownTimeout, 250*time.Millisecond; got != want {
		t.Errorf("shutdownTimeout: got %v, want %v", got, want)
	}

	// One flag among env settings overrides only its own.
	c, err = parseConfig([]string{"-max-upload=5000"}, envOf(env), io.Discard)
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	if got, want := int64(c.maxUpload), int64(5000); got != want {
		t.Errorf("maxUpload: got %d, want %d", got, want)
	}
	if got, want := c.addr, "0.0.0.0:9999"; got != want {
		t.Errorf("addr: got %q, want %q (from the environment)", got, want)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		errText string // what the error must mention ("" for errUsage)
	}{
		{"env size not a number", nil, map[string]string{"IMAGESTORE_MAX_UPLOAD": "ten"}, "IMAGESTORE_MAX_UPLOAD"},
		{"env size negative", nil, map[string]string{"IMAGESTORE_MAX_UPLOAD": "-5"}, "IMAGESTORE_MAX_UPLOAD"},
		{"env size zero", nil, map[string]string{"IMAGESTORE_MAX_UPLOAD": "0"}, "upload limit"},
		{"env size bad unit", nil, map[string]string{"IMAGESTORE_MAX_UPLOAD": "10XB"}, "IMAGESTORE_MAX_UPLOAD"},
		{"env size fraction", nil, map[string]string{"IMAGESTORE_MAX_UPLOAD": "1.5MiB"}, "IMAGESTORE_MAX_UPLOAD"},
		{"env size overflow", nil, map[string]string{"IMAGESTORE_MAX_UPLOAD": "9999999999999GiB"}, "IMAGESTORE_MAX_UPLOAD"},
		{"env pixels not a number", nil, map[string]string{"IMAGESTORE_MAX_PIXELS": "many"}, "IMAGESTORE_MAX_PIXELS"},
		{"env gzip not a number", nil, map[string]string{"IMAGESTORE_GZIP_LEVEL": "best"}, "IMAGESTORE_GZIP_LEVEL"},
		{"env bad duration", nil, map[string]string{"IMAGESTORE_SHUTDOWN_TIMEOUT": "soon"}, "shutdown timeout"},
		{"env negative duration", nil, map[string]string{"IMAGESTORE_SHUTDOWN_TIMEOUT": "-1s"}, "shutdown timeout"},
		{"env bad log format", nil, map[string]string{"IMAGESTORE_LOG_FORMAT": "xml"}, "log format"},
		{"env bad log level", nil, map[string]string{"IMAGESTORE_LOG_LEVEL": "loud"}, "log level"},
		{"env bad cache size", nil, map[string]string{"IMAGESTORE_CACHE_SIZE": "lots"}, "IMAGESTORE_CACHE_SIZE"},
		{"flag bad cache size", []string{"--cache-size", "-1MiB"}, nil, ""},
		{"flag size not a number", []string{"--max-upload", "ten"}, nil, ""},
		{"flag size negative", []string{"--max-upload", "-5"}, nil, ""},
		{"flag size zero", []string{"--max-upload", "0"}, nil, "upload limit"},
		{"flag pixels not a number", []string{"--max-pixels", "many"}, nil, ""},
		{"flag bad duration", []string{"--shutdown-timeout", "soon"}, nil, "shutdown timeout"},
		{"flag negative duration", []string{"--shutdown-timeout", "-3m"}, nil, "shutdown timeout"},
		{"flag bad log format", []string{"--log-format", "yaml"}, nil, "log format"},
		{"flag bad log level", []string{"--log-level", "chatty"}, nil, "log level"},
		{"unknown flag", []string{"--colour", "blue"}, nil, ""},
		{"flag without value", []string{"--addr"}, nil, ""},
		{"extra argument", []string{"--addr", "127.0.0.1:1", "extra"}, nil, "extra"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			_, err := parseConfig(tt.args, envOf(tt.env), &stderr)
			if err == nil {
				t.Fatalf("parseConfig(%q, %v): got no error, want one", tt.args, tt.env)
			}
			if tt.errText == "" {
				if !errors.Is(err, errUsage) {
					t.Errorf("got error %v, want errUsage", err)
				}
				if stderr.Len() == 0 {
					t.Errorf("stderr: got nothing, want the flag package's explanation")
				}
				return
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("got error %q, want it to mention %q", err, tt.errText)
			}
		})
	}
}

func TestByteSizeSet(t *testing.T) {
	good := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"5000", 5000},
		{"5000B", 5000},
		{"1KB", 1000},
		{"1KiB", 1024},
		{"10MiB", 10485760},
		{"10 MiB", 10485760},
		{"32MiB", 32 << 20},
		{"2MB", 2000000},
		{"1GiB", 1 << 30},
		{"3GB", 3000000000},
	}
	for _, tt := range good {
		var b byteSize
		if err := b.Set(tt.in); err != nil {
			t.Errorf("Set(%q): got error %v, want %d", tt.in, err, tt.want)
			continue
		}
		if got, want := int64(b), tt.want; got != want {
			t.Errorf("Set(%q): got %d, want %d", tt.in, got, want)
		}
		// String gives a value Set takes back, in the largest binary unit
		// that divides it.
		var back byteSize
		if err := back.Set(b.String()); err != nil || back != b {
			t.Errorf("Set(%q).String() = %q, which Set reads as %d, %v", tt.in, b.String(), back, err)
		}
	}
	for in, want := range map[byteSize]string{0: "0", 1000: "1000", 1024: "1KiB", 32 << 20: "32MiB", 1 << 30: "1GiB", 1536: "1536", 3000000000: "3000000000"} {
		if got := in.String(); got != want {
			t.Errorf("byteSize(%d).String() = %q, want %q", int64(in), got, want)
		}
	}
	for _, in := range []string{"", "ten", "-5", "-1KiB", "1.5MiB", "10XB", "MiB", "10 mib", "0x10", "9999999999999GiB", "99999999999999999999"} {
		b := byteSize(77)
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q): got %d, want an error", in, int64(b))
		}
	}
}

func TestRunUnknownSubcommand(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"serve", "serve"}, {"upgrade", "--addr", "127.0.0.1:0"}} {
		var stderr bytes.Buffer
		err := run(context.Background(), args, noEnv, io.Discard, &stderr)
		if err == nil {
			t.Errorf("run(%q): got no error, want one", args)
			continue
		}
		if !strings.Contains(err.Error(), "unknown subcommand") {
			t.Errorf("run(%q): got error %q, want it to mention an unknown subcommand", args, err)
		}
	}
}

// TestRunRejectsBadSettings checks that run fails, without serving, on
// settings parseConfig reads but the service refuses.
func TestRunRejectsBadSettings(t *testing.T) {
	for _, args := range [][]string{
		{"--gzip-level", "0"},
		{"--gzip-level", "10"},
		{"--max-pixels", "-1"},
		{"--log-format", "xml"},
	} {
		args = append(args, "--addr", "127.0.0.1:0", "--data", t.TempDir())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := run(ctx, args, noEnv, io.Discard, io.Discard)
		expired := ctx.Err() != nil
		cancel()
		if err == nil || expired {
			t.Errorf("run(%q): got %v (served until the deadline: %v), want an error at once", args, err, expired)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var listeningRe = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startRun runs the program in a goroutine and waits until it listens. It
// returns the address, the channel run's result arrives on and the cancel
// function that stops it.
func startRun(t *testing.T, data string, stderr *syncBuffer) (string, <-chan error, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--data", data}, noEnv, io.Discard, stderr)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if m := listeningRe.FindStringSubmatch(stderr.String()); m != nil {
			return m[1], done, cancel
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("run returned %v before listening; stderr:\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no \"listening\" in the log after 5s; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitRun(t *testing.T, done <-chan error, stderr *syncBuffer) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("run did not return within 5s of its context's end; stderr:\n%s", stderr.String())
		return nil
	}
}

func TestRunStartsAndStops(t *testing.T) {
	data := t.TempDir()
	stderr := &syncBuffer{}
	addr, done, cancel := startRun(t, data, stderr)
	defer cancel()

	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Errorf("GET /healthz: got status %d (%s), want %d", got, body, want)
	}
	resp, err = http.Get("http://" + addr + "/imageapi/generate-token/runner/")
	if err != nil {
		t.Fatalf("GET generate-token: %v", err)
	}
	resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusCreated; got != want {
		t.Errorf("GET generate-token: got status %d, want %d", got, want)
	}

	// A second server on the same folder must refuse to start.
	second := &syncBuffer{}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	err = run(ctx2, []string{"--addr", "127.0.0.1:0", "--data", data}, noEnv, io.Discard, second)
	expired := ctx2.Err() != nil
	cancel2()
	if err == nil || expired {
		t.Errorf("second run on the same folder: got %v (ran until its deadline: %v), want an error at once", err, expired)
	} else if !strings.Contains(err.Error(), "another imagestore process") {
		t.Errorf("second run on the same folder: got error %q, want it to mention %q", err, "another imagestore process")
	}

	cancel()
	if err := waitRun(t, done, stderr); err != nil {
		t.Errorf("run after cancel: got %v, want nil; stderr:\n%s", err, stderr.String())
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Errorf("GET /healthz after stop: got an answer, want the server gone")
	}

	// The folder is free again, and what was stored is still there.
	stderr2 := &syncBuffer{}
	addr, done, cancel = startRun(t, data, stderr2)
	defer cancel()
	resp, err = http.Get("http://" + addr + "/imageapi/retrieve-token/runner/")
	if err != nil {
		t.Fatalf("GET retrieve-token: %v", err)
	}
	resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Errorf("retrieve-token after a restart: got status %d, want %d", got, want)
	}
	cancel()
	if err := waitRun(t, done, stderr2); err != nil {
		t.Errorf("second run after cancel: got %v, want nil", err)
	}
}

// TestRunStopsFastLaneConnections checks that stopping the server closes a
// keep-alive connection that the fast lane holds between two downloads,
// at once rather than at the end of the idle timeout, and that the lane
// answered on it.
func TestRunStopsFastLaneConnections(t *testing.T) {
	stderr := &syncBuffer{}
	addr, done, cancel := startRun(t, t.TempDir(), stderr)
	defer cancel()
	var token, id string
	for i, step := range []struct{ method, path, ctype string }{
		{"GET", "/imageapi/generate-token/laner/", ""},
		{"POST", "/imageapi/token/%s/upload-image/", "multipart"},
	} {
		var body io.Reader
		var ctype string
		if step.ctype != "" {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			fw, _ := mw.CreateFormFile("file", "dot.png")
			img := image.NewGray(image.Rect(0, 0, 8, 8))
			png.Encode(fw, img)
			mw.Close()
			body, ctype = &buf, mw.FormDataContentType()
		}
		path := step.path
		if i == 1 {
			path = fmt.Sprintf(path, token)
		}
		req, _ := http.NewRequest(step.method, "http://"+addr+path, body)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]string
		json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		token, id = cmp.Or(v["token"], token), cmp.Or(v["File ID"], id)
	}
	if token == "" || id == "" {
		t.Fatalf("token %q, image %q", token, id)
	}

	get := fmt.Sprintf("http://%s/imageapi/token/%s/get-image/%s/", addr, token, id)
	for range 2 { // the second read fills the cache
		resp, err := http.Get(get)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// On a connection of its own, the third is the lane's, which keeps
	// the connection (net/http would close it at the stop).
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "GET /imageapi/token/%s/get-image/%s/ HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n", token, id)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("download: %d", resp.StatusCode)
	}
	mresp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if want := "imagestore_fast_lane_answers_total 1\n"; !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics lacks %q", want)
	}

	cancel()
	if err := waitRun(t, done, stderr); err != nil {
		t.Errorf("run after cancel: got %v, want nil", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the idle connection after the stop: read %d bytes, %v; want it closed (EOF)", n, err)
	}
}
