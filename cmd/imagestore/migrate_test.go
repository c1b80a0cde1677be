package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/filestore"
	"github.com/imagestore/imagestore/storage/s3store/miniotest"
)

// fillFolder creates users with images in a data folder, as a server
// would, and closes it. It returns the tokens and the images' bytes by
// token.
func fillFolder(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ctx := t.Context()
	fs, err := filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	svc, err := domain.New(fs, domain.DefaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	data := map[string][]byte{}
	for _, name := range []string{"alice", "bob"} {
		token, err := svc.GenerateToken(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		u, err := svc.Authenticate(ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		file := map[string]string{"alice": "png-rgb.png", "bob": "jpeg-baseline.jpg"}[name]
		b, err := os.ReadFile(filepath.Join("..", "..", "imagetype", "testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Upload(ctx, u, file, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		data[token] = b
	}
	return data
}

// checkFolder checks that each token authenticates in the data folder and
// its user's one image has the bytes given.
func checkFolder(t *testing.T, dir string, data map[string][]byte) {
	t.Helper()
	ctx := t.Context()
	fs, err := filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fs.Close()
	svc, err := domain.New(fs, domain.DefaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	for token, want := range data {
		u, err := svc.Authenticate(ctx, token)
		if err != nil {
			t.Fatalf("the destination: Authenticate: %v", err)
		}
		imgs, err := svc.List(ctx, u)
		if err != nil || len(imgs) != 1 {
			t.Fatalf("the destination: %s's images: %v, %v; want one", u.Name, imgs, err)
		}
		_, rc, err := svc.Open(ctx, u, imgs[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("the destination: %s's image: %d bytes (%v), want the %d uploaded", u.Name, len(got), err, len(want))
		}
	}
}

// summaryField returns the number after a summary line's label.
func summaryField(t *testing.T, out, label string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(label) + `:\s+(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q line in the summary:\n%s", label, out)
	}
	return m[1]
}

func TestMigrateCommand(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	data := fillFolder(t, from)
	// 2 users, 2 tokens, 2 lists and 2 images' bytes.
	const keys = "8"

	var stdout, stderr bytes.Buffer
	if err := runMigrate(t.Context(), []string{"--from", from, "--to", "file://" + to, "--workers", "2"}, noEnv, &stdout, &stderr); err != nil {
		t.Fatalf("runMigrate: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	out := stdout.String()
	for label, want := range map[string]string{"users": "2", "images": "2", "copied": keys, "already there": "0", "unreferenced blobs": "0", "failures": "0"} {
		if got := summaryField(t, out, label); got != want {
			t.Errorf("%s: got %s, want %s; summary:\n%s", label, got, want, out)
		}
	}
	if !strings.Contains(out, "2 verified") {
		t.Errorf("summary: want 2 images verified:\n%s", out)
	}
	// Not a terminal: plain lines, the last one at 100%.
	if progress := stderr.String(); strings.Contains(progress, "\r") || !strings.Contains(progress, "100%  "+keys+"/"+keys+" keys") {
		t.Errorf("progress on stderr: want plain lines ending at 100%%, got:\n%q", progress)
	}
	if !strings.Contains(stderr.String(), "migrating "+from+" to "+to) {
		t.Errorf("stderr: want the stores named, got:\n%s", &stderr)
	}
	checkFolder(t, to, data)

	// Again: everything is there already.
	stdout.Reset()
	if err := runMigrate(t.Context(), []string{"--from", from, "--to", to}, noEnv, &stdout, io.Discard); err != nil {
		t.Fatalf("second runMigrate: %v\n%s", err, &stdout)
	}
	out = stdout.String()
	if got := summaryField(t, out, "copied"); got != "0" {
		t.Errorf("second run: copied %s keys, want 0:\n%s", got, out)
	}
	if got := summaryField(t, out, "already there"); got != keys {
		t.Errorf("second run: %s keys already there, want %s:\n%s", got, keys, out)
	}
	checkFolder(t, to, data)
}

// TestMigrateCommandS3 migrates a data folder to a bucket of a real MinIO
// server, and back to another folder.
func TestMigrateCommandS3(t *testing.T) {
	if _, err := miniotest.Binary(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("S3 tests need MinIO: %v", err)
		}
		t.Skipf("skipping the S3 test: %v", err)
	}
	srv, err := miniotest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	bucket, err := srv.NewBucket(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The endpoint and region come through getenv; the credentials, as
	// the AWS tools read them, from the process's environment.
	env := map[string]string{}
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
		t.Setenv(k, v)
	}
	getenv := envOf(env)
	from, back := t.TempDir(), t.TempDir()
	data := fillFolder(t, from)
	bucketSpec := "s3://" + bucket + "/migrated"

	for i, args := range [][]string{
		{"--from", from, "--to", bucketSpec},
		{"--from", from, "--to", bucketSpec},
		{"--from", bucketSpec, "--to", back},
	} {
		var stdout, stderr bytes.Buffer
		if err := runMigrate(t.Context(), args, getenv, &stdout, &stderr); err != nil {
			t.Fatalf("runMigrate(%q): %v\n%s%s", args, err, &stdout, &stderr)
		}
		if strings.Contains(stdout.String()+stderr.String(), miniotest.SecretKey) {
			t.Errorf("runMigrate(%q) printed the secret key", args)
		}
		wantCopied := map[int]string{0: "8", 1: "0", 2: "8"}[i]
		if got := summaryField(t, stdout.String(), "copied"); got != wantCopied || summaryField(t, stdout.String(), "failures") != "0" {
			t.Errorf("runMigrate(%q): copied %s keys, want %s, and no failure:\n%s", args, got, wantCopied, &stdout)
		}
	}
	checkFolder(t, back, data)
}

// TestMigrateCommandFailures: a damaged image in the source is listed,
// and the command fails.
func TestMigrateCommandFailures(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	fillFolder(t, from)
	fs, err := filestore.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	var blob string
	for k, err := range fs.List(t.Context(), "blobs/") {
		if err != nil {
			t.Fatal(err)
		}
		blob = k
	}
	if _, err := fs.Put(t.Context(), blob, strings.NewReader("not gzip"), storage.Cond{}); err != nil {
		t.Fatal(err)
	}
	fs.Close()

	var stdout bytes.Buffer
	err = runMigrate(t.Context(), []string{"--from", from, "--to", to}, noEnv, &stdout, io.Discard)
	if !errors.Is(err, errIncomplete) {
		t.Fatalf("runMigrate: got %v, want errIncomplete", err)
	}
	out := stdout.String()
	if summaryField(t, out, "failures") != "1" || !strings.Contains(out, "  "+blob+" (image ") || !strings.Contains(out, "in the source: damaged: not gzip") {
		t.Errorf("summary: want the damaged blob listed:\n%s", out)
	}
}

func TestMigrateCommandCancelled(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	fillFolder(t, from)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := runMigrate(ctx, []string{"--from", from, "--to", to}, noEnv, io.Discard, io.Discard)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "run the same command again") {
		t.Errorf("runMigrate, cancelled: got %v, want context.Canceled and how to resume", err)
	}
}

func TestMigrateCommandUsage(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	if err := os.Symlink(dir, filepath.Join(other, "link")); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string // in the error; "" for errUsage
	}{
		{[]string{"--from", dir}, "both --from and --to are required"},
		{[]string{"--to", dir}, "both --from and --to are required"},
		{nil, "both --from and --to are required"},
		{[]string{"--from", dir, "--to", dir}, "the same store"},
		{[]string{"--from", dir, "--to", "file://" + dir + "/"}, "the same store"},
		{[]string{"--from", dir, "--to", filepath.Join(other, "link")}, "the same store"},
		{[]string{"--from", dir, "--to", filepath.Join(dir, "inside")}, "the same store"},
		{[]string{"--from", filepath.Join(dir, "inside"), "--to", dir}, "the same store"},
		{[]string{"--from", "s3://bucket/a?endpoint=http://127.0.0.1:1", "--to", "s3://bucket/a/?endpoint=http://127.0.0.1:1"}, "the same store"},
		{[]string{"--from", "s3://bucket?endpoint=http://127.0.0.1:1", "--to", "s3://bucket/b?endpoint=http://127.0.0.1:1"}, "the same store"},
		{[]string{"--from", dir, "--to", other, "--workers", "0"}, "--workers"},
		{[]string{"--from", filepath.Join(other, "missing"), "--to", dir}, "is not a data folder"},
		{[]string{"--from", dir, "--to", other, "extra"}, "unexpected argument"},
		{[]string{"--from", dir, "--to", other, "--bogus"}, ""},
	} {
		var stderr bytes.Buffer
		err := runMigrate(t.Context(), tt.args, noEnv, io.Discard, &stderr)
		switch {
		case err == nil:
			t.Errorf("runMigrate(%q): no error, want one", tt.args)
		case tt.want == "" && !errors.Is(err, errUsage):
			t.Errorf("runMigrate(%q): got %v, want errUsage", tt.args, err)
		case tt.want != "" && !strings.Contains(err.Error(), tt.want):
			t.Errorf("runMigrate(%q): got %q, want it to mention %q", tt.args, err, tt.want)
		}
	}
	// Nothing was created by the refusals.
	for _, p := range []string{filepath.Join(dir, "inside"), filepath.Join(other, "missing")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused migration created %s: %v", p, err)
		}
	}

	var stderr bytes.Buffer
	if err := runMigrate(t.Context(), []string{"-h"}, noEnv, io.Discard, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: got %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(stderr.String(), "Usage: imagestore migrate --from STORE --to STORE") || !strings.Contains(stderr.String(), "stop them first") {
		t.Errorf("-h: want the usage, saying the server must be stopped; got:\n%s", &stderr)
	}
}

// TestMigrateCommandOtherStores: distinct buckets and folder-bucket pairs
// are not taken for one store (they fail later, reaching no server).
func TestMigrateCommandOtherStores(t *testing.T) {
	for _, pair := range [][2]string{
		{"s3://bucket/a", "s3://bucket/ab"},
		{"s3://one", "s3://two"},
		{"s3://bucket?endpoint=http://127.0.0.1:1", "s3://bucket?endpoint=http://127.0.0.1:2"},
		{t.TempDir(), "s3://bucket"},
	} {
		same, err := overlap(pair[0], pair[1], noEnv)
		if err != nil || same {
			t.Errorf("overlap(%q, %q): %v, %v; want false", pair[0], pair[1], same, err)
		}
	}
}

func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	clock := time.Unix(0, 0)
	p := &progressBar{w: &buf, tty: true, now: func() time.Time { return clock }, started: clock, tenth: -1}
	for done := 1; done <= 1000; done++ {
		if done == 500 {
			clock = clock.Add(150 * time.Millisecond)
		}
		p.update(done, 1000, int64(done)*2048)
	}
	p.finish()
	out := buf.String()
	// Drawn at the start, once the clock moved, and at the end.
	if got := strings.Count(out, "\r"); got != 3 {
		t.Errorf("terminal: drawn %d times, want 3 (at most ten a second, and the end):\n%q", got, out)
	}
	// The last line, padded to blank the longer one before.
	if !regexp.MustCompile(`\r\[#{30}\] 100%  1000/1000 keys  2\.0 MiB written  0s +\n$`).MatchString(out) {
		t.Errorf("terminal: the last line: got %q", out[strings.LastIndexByte(out, '\r'):])
	}

	buf.Reset()
	p = &progressBar{w: &buf, now: time.Now, started: time.Now(), tenth: -1}
	for done := 1; done <= 1000; done++ {
		p.update(done, 1000, 0)
	}
	p.finish()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 11 || !strings.HasPrefix(lines[0], "  0%  1/1000 keys") || !strings.HasPrefix(lines[10], "100%  1000/1000 keys") {
		t.Errorf("not a terminal: want a line at every tenth, got:\n%s", buf.String())
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d): got %q, want %q", n, got, want)
		}
	}
}
