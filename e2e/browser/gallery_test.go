// Package browser tests the web gallery in a real browser: Debian's headless
// Chromium, driven by playwright-core from Node (gallery.test.mjs), against
// the real server binary on loopback. ./scripts/browser.sh installs what it
// needs.
package browser

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// chromium is Debian's Chromium; the tests never download a browser.
const chromium = "/usr/bin/chromium"

// binary is the server, built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imagestore-browser-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "imagestore")
	build := exec.Command("go", "build", "-o", binary, "../../cmd/imagestore")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the server:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output while it runs.
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

// listenRe finds the listening address in the server's log.
var listenRe = regexp.MustCompile(`msg"?[=:]"?listening"?[ ,]"?addr"?[=:]"?([0-9.:]+)`)

// start runs the server on a free loopback port with a temporary data
// folder and waits until it answers /healthz; it is killed when the test
// ends. args come after the defaults, and so override them.
func start(t *testing.T, args ...string) string {
	t.Helper()
	// No limits that the test does not ask for: it creates users and sends
	// requests from one address, and the machine's disk may be small.
	defaults := []string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--account-rate", "0", "--auth-failure-rate", "0", "--min-free", "0"}
	cmd := exec.Command(binary, append(defaults, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no IMAGESTORE_* from outside
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("server %v exited: %v\n%s", args, err, stderr.String())
		default:
		}
		if m := listenRe.FindStringSubmatch(stderr.String()); m != nil {
			url := "http://" + m[1]
			if resp, err := http.Get(url + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return url
				}
			}
		}
	}
	t.Fatalf("server %v did not start:\n%s", args, stderr.String())
	return ""
}

// missing returns why the browser tests cannot run here, or "".
func missing() string {
	if _, err := exec.LookPath("node"); err != nil {
		return "node is not installed"
	}
	if _, err := os.Stat(chromium); err != nil {
		return chromium + " is missing"
	}
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		return "e2e/browser/node_modules has no playwright-core"
	}
	return ""
}

// writeFixtures writes the files the browser uploads into dir: images from
// imagetype/testdata, small PNGs of distinct colours, and a PNG of noise
// too large for a 64 KiB upload limit.
func writeFixtures(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{"png-palette.png", "jpeg-baseline.jpg", "png-rgb.png"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "imagetype", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writePNG := func(name string, img image.Image) {
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	solid := func(c color.NRGBA) image.Image {
		img := image.NewNRGBA(image.Rect(0, 0, 24, 16))
		for i := 0; i < len(img.Pix); i += 4 {
			img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
		}
		return img
	}
	for i := 1; i <= 5; i++ {
		writePNG(fmt.Sprintf("page-%d.png", i), solid(color.NRGBA{uint8(40 * i), uint8(200 - 30*i), 120, 255}))
	}
	writePNG("dropped.png", solid(color.NRGBA{200, 60, 160, 255}))
	noise := image.NewNRGBA(image.Rect(0, 0, 256, 256))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range noise.Pix {
		noise.Pix[i] = uint8(rng.IntN(256))
	}
	writePNG("big.png", noise)
}

// TestGallery drives the gallery like a user: see gallery.test.mjs for the
// steps. Without node, Chromium or node_modules it skips, saying so; under
// CI=true it fails instead.
func TestGallery(t *testing.T) {
	if why := missing(); why != "" {
		msg := "browser tests not run: " + why + " (./scripts/browser.sh installs what they need)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	mainURL := start(t)
	smallUploads := start(t, "--max-upload", "64KiB")
	diskFull := start(t, "--min-free", "999999GiB")
	rateLimited := start(t, "--account-rate", "2/min")

	fixtures := t.TempDir()
	writeFixtures(t, fixtures)
	shots, err := filepath.Abs(filepath.Join("screenshots", "gallery"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(shots); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "gallery.test.mjs", mainURL, shots, fixtures,
		"--small-upload", smallUploads, "--disk-full", diskFull, "--rate-limited", rateLimited)
	// Node and the browser it starts form one process group, ended together
	// if the run takes too long.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	began := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node gallery.test.mjs: %v\n%s\nscreenshots: %s", err, out, shots)
	}
	t.Logf("node gallery.test.mjs passed in %v:\n%s", time.Since(began).Round(time.Millisecond), out)
	t.Logf("screenshots: %s", shots)
}
