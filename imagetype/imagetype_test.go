package imagetype_test

import (
	"bytes"
	"errors"
	"image"
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/tiff"
	_ "golang.org/x/image/webp"

	"github.com/imagestore/imagestore/imagetype"
)

func fixtures(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob("testdata/*.*")
	if err != nil || len(paths) < 30 {
		t.Fatalf("fixtures: %d found, %v", len(paths), err)
	}
	m := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		m[filepath.Base(p)] = b
	}
	return m
}

// formatOf returns the imghdr name a fixture's file name announces.
func formatOf(name string) string {
	return strings.SplitN(strings.TrimSuffix(name, filepath.Ext(name)), "-", 2)[0]
}

func TestEveryFixtureIsRecognised(t *testing.T) {
	seen := map[string]bool{}
	for name, b := range fixtures(t) {
		info, err := imagetype.Check(bytes.NewReader(b), 100e6)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got, want := info.Format.Name, formatOf(name); got != want {
			t.Errorf("%s: format %q, want %q", name, got, want)
		}
		if info.Width != 37 || info.Height != 23 {
			t.Errorf("%s: %dx%d, want 37x23", name, info.Width, info.Height)
		}
		seen[info.Format.Name] = true
	}
	for _, f := range imagetype.Formats {
		if !seen[f.Name] {
			t.Errorf("no fixture of format %s", f.Name)
		}
	}
}

// TestAgreesWithGoDecoders checks every fixture that Go's own decoders (the
// standard library and golang.org/x/image) can read: their header parse and
// ours must agree.
func TestAgreesWithGoDecoders(t *testing.T) {
	goFormats := map[string]bool{}
	for name, b := range fixtures(t) {
		cfg, goName, err := image.DecodeConfig(bytes.NewReader(b))
		if err != nil {
			t.Logf("%s: Go cannot parse it (%v); only our parser checks it", name, err)
			continue
		}
		info, err := imagetype.Check(bytes.NewReader(b), 0)
		if err != nil {
			t.Errorf("%s: Go parses it as %s, we refuse it: %v", name, goName, err)
			continue
		}
		if info.Format.Name != goName || info.Width != int64(cfg.Width) || info.Height != int64(cfg.Height) {
			t.Errorf("%s: we say %s %dx%d, Go says %s %dx%d", name, info.Format.Name, info.Width, info.Height, goName, cfg.Width, cfg.Height)
		}
		goFormats[goName] = true
	}
	for _, f := range []string{"jpeg", "png", "gif", "bmp", "tiff", "webp"} {
		if !goFormats[f] {
			t.Errorf("no fixture of %s was parsed by Go's decoder", f)
		}
	}
}

func TestTruncatedFilesAreRefused(t *testing.T) {
	for name, b := range fixtures(t) {
		cuts := []int{0, 1, 2, 3, 5, 8, 12, 16, 20, 24, 32, 48, 64, len(b) / 4, len(b) / 2, len(b) * 3 / 4, len(b) - 10, len(b) - 3}
		cuts = append(cuts, len(b)-1)
		for _, n := range cuts {
			if n < 0 || n >= len(b) {
				continue
			}
			// Where a cut cannot be seen: plain netpbm and XBM files cut
			// inside their last number or closing characters, and a GIF
			// cut exactly before its trailer byte (every block is whole).
			if plainText(name) && n >= len(b)-10 || strings.HasPrefix(name, "gif") && n == len(b)-1 {
				continue
			}
			_, err := imagetype.Check(bytes.NewReader(b[:n]), 0)
			if !errors.Is(err, imagetype.ErrNotImage) {
				t.Errorf("%s cut to %d of %d bytes: error %v, want ErrNotImage", name, n, len(b), err)
			}
		}
	}
}

func plainText(name string) bool {
	return strings.Contains(name, "plain") || strings.HasPrefix(name, "xbm")
}

func TestFakesAreRefused(t *testing.T) {
	text := []byte(" this is just some text, long enough to fill any header that a parser may want to read\n" + strings.Repeat("lorem ipsum ", 100))
	for _, f := range []string{
		"\xff\xd8\xff\xe0\x00\x10JFIF", "\xff\xd8\xff\xdb", "\x89PNG\r\n\x1a\n", "GIF87a", "GIF89a", "MM", "II", "II*\x00", "MM\x00*",
		"\x01\xda", "P1 ", "P4\n", "P2 ", "P5\n", "P3 ", "P6\n", "\x59\xa6\x6a\x95", "#define ", "BM",
		"RIFF\x00\x00\x00\x00WEBP", "\x76\x2f\x31\x01",
	} {
		b := append([]byte(f), text...)
		if _, err := imagetype.Check(bytes.NewReader(b), 0); !errors.Is(err, imagetype.ErrNotImage) {
			t.Errorf("%q followed by text: error %v, want ErrNotImage", f, err)
		}
	}
	for _, b := range []string{"", "hello", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>", "%PDF-1.4", "\x00\x00\x00\x00"} {
		if _, err := imagetype.Check(strings.NewReader(b), 0); !errors.Is(err, imagetype.ErrNotImage) {
			t.Errorf("%q: error %v, want ErrNotImage", b, err)
		}
	}
}

// endless yields zeros forever: a body that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestPixelBombsAreRefusedFromTheHeader(t *testing.T) {
	paths, _ := filepath.Glob("testdata/bombs/bomb.*")
	seen := map[string]bool{}
	for _, p := range paths {
		if strings.HasSuffix(p, ".go") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		// The file as it is, and followed by endless data: Check must stop
		// at the header either way.
		for _, r := range []io.Reader{bytes.NewReader(b), io.MultiReader(bytes.NewReader(b), endless{})} {
			_, err := imagetype.Check(r, 100_000_000)
			var tooMany *imagetype.TooManyPixelsError
			if !errors.As(err, &tooMany) {
				t.Errorf("%s: error %v, want TooManyPixelsError", p, err)
				continue
			}
			if tooMany.Width*tooMany.Height <= 100_000_000 || tooMany.Max != 100_000_000 {
				t.Errorf("%s: %+v", p, tooMany)
			}
		}
		f, _ := imagetype.Detect(b)
		seen[f.Name] = true
		// Under a high enough limit the header itself is valid.
		if _, err := imagetype.Check(bytes.NewReader(b), 1<<40); err != nil && !errors.Is(err, imagetype.ErrNotImage) {
			t.Errorf("%s without limit: %v", p, err)
		}
	}
	for _, f := range imagetype.Formats {
		if !seen[f.Name] {
			t.Errorf("no pixel bomb of format %s", f.Name)
		}
	}
}

func TestInputErrorsArePassedOn(t *testing.T) {
	b := fixtures(t)["png-rgb.png"]
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(b[:100]), iotest.ErrReader(boom))
	if _, err := imagetype.Check(r, 0); !errors.Is(err, boom) {
		t.Fatalf("error %v, want the reader's error", err)
	}
	// Byte-at-a-time readers change nothing.
	if _, err := imagetype.Check(iotest.OneByteReader(bytes.NewReader(b)), 0); err != nil {
		t.Fatal(err)
	}
}

func TestDetect(t *testing.T) {
	for name, b := range fixtures(t) {
		f, ok := imagetype.Detect(b[:imagetype.HeadLen])
		if !ok || f.Name != formatOf(name) {
			t.Errorf("Detect(%s) = %q %v", name, f.Name, ok)
		}
		if !strings.HasPrefix(f.MIME, "image/") {
			t.Errorf("%s: MIME %q", name, f.MIME)
		}
	}
}
