package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryFormat uploads a real file of every accepted format (several
// variants each), reads it back byte for byte, and checks that fakes,
// truncated files and pixel bombs of each format are refused.
func TestEveryFormat(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.newUser("formats")
	mimeOf := map[string]string{
		"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "bmp": "image/bmp", "tiff": "image/tiff",
		"webp": "image/webp", "pbm": "image/x-portable-bitmap", "pgm": "image/x-portable-graymap",
		"ppm": "image/x-portable-pixmap", "rast": "image/x-sun-raster", "xbm": "image/x-xbitmap",
		"rgb": "image/x-rgb", "exr": "image/x-exr",
	}
	paths, _ := filepath.Glob("../imagetype/testdata/*.*")
	seen := map[string]bool{}
	for _, p := range paths {
		name := filepath.Base(p)
		format := strings.SplitN(name, "-", 2)[0]
		format = strings.TrimSuffix(format, filepath.Ext(format))
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			id := s.uploadID(tok, name, data)
			r := s.get("/imageapi/token/" + tok + "/get-image/" + id + "/")
			if r.status != 200 || !bytes.Equal(r.body, data) {
				t.Fatalf("get-image: %d, %d bytes, want the %d uploaded", r.status, len(r.body), len(data))
			}
			if got := r.header.Get("Content-Type"); got != mimeOf[format] {
				t.Errorf("Content-Type %q, want %q", got, mimeOf[format])
			}
			// Cut in half, or to its first bytes: refused.
			for _, n := range []int{len(data) / 2, 20} {
				wantJSON(t, "truncated", s.upload(tok, "cut-"+name, data[:n]), 406, notImage)
			}
			// The magic bytes followed by text: refused.
			fake := append(append([]byte{}, data[:4]...), []byte(strings.Repeat(" not an image", 50))...)
			wantJSON(t, "fake", s.upload(tok, "fake-"+name, fake), 406, notImage)
			seen[format] = true
		})
	}
	if len(seen) != len(mimeOf) {
		t.Errorf("formats exercised: %d, want %d", len(seen), len(mimeOf))
	}

	bombs, _ := filepath.Glob("../imagetype/testdata/bombs/bomb.*")
	nbombs := 0
	for _, p := range bombs {
		if strings.HasSuffix(p, ".go") {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		r := s.upload(tok, filepath.Base(p), data)
		if r.status != 413 || !strings.Contains(string(r.body), "limit is 100000000 pixels") {
			t.Errorf("%s: %v, want 413 naming the pixel limit", p, r)
		}
		nbombs++
	}
	if nbombs < 13 {
		t.Errorf("%d pixel bombs tried, want one per format", nbombs)
	}
	// Nothing refused was stored.
	if got := len(s.list(tok)); got != len(paths) {
		t.Errorf("%d images listed, want %d", got, len(paths))
	}
}
