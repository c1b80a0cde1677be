package imagetype_test

import (
	"bytes"
	"errors"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagestore/imagestore/imagetype"
)

// FuzzCheck feeds arbitrary bytes to Check: it must never panic, and what it
// accepts must have a known format and a size within the limit.
func FuzzCheck(f *testing.F) {
	paths, _ := filepath.Glob("testdata/*.*")
	bombs, _ := filepath.Glob("testdata/bombs/bomb.*")
	for _, p := range append(paths, bombs...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		const limit = 1 << 20
		info, err := imagetype.Check(bytes.NewReader(b), limit)
		if err != nil {
			var tooMany *imagetype.TooManyPixelsError
			if !errors.Is(err, imagetype.ErrNotImage) && !errors.As(err, &tooMany) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		if info.Width <= 0 || info.Height <= 0 || info.Width*info.Height > limit {
			t.Fatalf("accepted %s of %dx%d", info.Format.Name, info.Width, info.Height)
		}
		if f, ok := imagetype.Detect(b); !ok || f.Name != info.Format.Name {
			t.Fatalf("accepted as %s, detected as %s", info.Format.Name, f.Name)
		}
		// What Go's own parser calls malformed must not be accepted.
		if cfg, name, err := image.DecodeConfig(bytes.NewReader(b)); err == nil {
			if name != info.Format.Name || int64(cfg.Width) != info.Width || int64(cfg.Height) != info.Height {
				t.Fatalf("accepted as %s %dx%d, Go says %s %dx%d", info.Format.Name, info.Width, info.Height, name, cfg.Width, cfg.Height)
			}
		} else if msg := err.Error(); !strings.Contains(msg, "unsupported") && !strings.Contains(msg, "not implemented") && err != image.ErrFormat {
			t.Fatalf("accepted as %s, but Go's parser says: %v", info.Format.Name, err)
		}
	})
}
