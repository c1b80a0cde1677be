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
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/imagestore/imagestore/internal/servertest"
)

// chromium is Debian's Chromium; the tests never download a browser.
const chromium = "/usr/bin/chromium"

// binary is the server, built once for the package.
var binary string

func TestMain(m *testing.M) {
	servertest.Main(m, map[string]*string{servertest.ServerPackage: &binary})
}

// start runs the server on a free loopback port with a temporary data
// folder and waits until it answers /healthz; it is killed when the test
// ends. args come after servertest's defaults, and so override them: the
// defaults set no limits that the test does not ask for, since it creates
// users and sends requests from one address, and the machine's disk may be
// small.
func start(t *testing.T, args ...string) string {
	t.Helper()
	return servertest.Start(t, binary, "", servertest.Options{Args: args}).URL
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
