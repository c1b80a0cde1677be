package imagetype_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
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
	})
}
