package domain

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/imagestore/imagestore/imagetype"
	"github.com/imagestore/imagestore/storage/filestore"
)

// feedAll feeds data to c in chunks of size n, and returns the first
// verdict a feed gave (nil if none did).
func feedAll(c *inlineCheck, data []byte, n int) error {
	for len(data) > 0 {
		k := min(n, len(data))
		if v := c.feed(data[:k]); v != nil {
			return v
		}
		data = data[k:]
	}
	return nil
}

func TestInlineCheck(t *testing.T) {
	img := tinyPNG(t, 7)
	for _, chunk := range []int{1, 3, 64, len(img)} {
		c := newInlineCheck(0)
		if v := feedAll(c, img, chunk); v != nil {
			t.Fatalf("chunks of %d: a whole PNG refused before its end: %v", chunk, v)
		}
		if v := c.end(io.EOF); v != errCheckedOK {
			t.Fatalf("chunks of %d: a whole PNG gave %v at its end", chunk, v)
		}
		if c.info.Format.Name != "png" || c.info.Width != 4 || c.info.Height != 4 {
			t.Errorf("chunks of %d: found %+v, want a 4x4 png", chunk, c.info)
		}
		c.close()
	}

	t.Run("not an image", func(t *testing.T) {
		c := newInlineCheck(0)
		defer c.close()
		v := feedAll(c, []byte("this is text, and not an image of any kind"), 64)
		if !errors.Is(v, imagetype.ErrNotImage) {
			t.Fatalf("text: the first feed gave %v, want ErrNotImage", v)
		}
		if again := c.feed(img); again != v {
			t.Errorf("a feed after the refusal gave %v, want the refusal again", again)
		}
		if end := c.end(io.EOF); end != v {
			t.Errorf("the end after the refusal gave %v, want the refusal again", end)
		}
	})

	t.Run("cut short", func(t *testing.T) {
		c := newInlineCheck(0)
		defer c.close()
		if v := feedAll(c, img[:len(img)-10], 5); v != nil {
			t.Fatalf("a PNG's start refused: %v", v)
		}
		if v := c.end(io.EOF); v == errCheckedOK || v == nil {
			t.Fatalf("a PNG cut short was accepted (%v)", v)
		}
	})

	t.Run("input error", func(t *testing.T) {
		c := newInlineCheck(0)
		defer c.close()
		feedAll(c, img[:20], 20)
		boom := errors.New("connection reset")
		if v := c.end(boom); !errors.Is(v, boom) {
			t.Fatalf("an input that failed gave %v, want its error", v)
		}
	})

	t.Run("too many pixels", func(t *testing.T) {
		c := newInlineCheck(15)
		defer c.close()
		v := feedAll(c, img, len(img))
		if v == nil {
			v = c.end(io.EOF)
		}
		var tooMany *imagetype.TooManyPixelsError
		if !errors.As(v, &tooMany) {
			t.Fatalf("16 pixels against a limit of 15 gave %v", v)
		}
	})

	t.Run("closed early", func(t *testing.T) {
		c := newInlineCheck(0)
		feedAll(c, img[:30], 7)
		c.close() // a write that panicked: the parser must not stay behind
		if !c.finished {
			t.Fatal("the parser did not finish when its check was closed")
		}
		if c.verdict != errAborted {
			t.Errorf("a check closed early gave %v, want errAborted", c.verdict)
		}
	})
}

// fileCount returns how many files there are under dir, and how many file
// descriptors the process has open.
func fileCount(t *testing.T, dir string) (files, fds int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd to count open files: %v", err)
	}
	return files, len(open)
}

// TestUploadFailuresLeaveNothing: an upload that fails while its bytes
// are being written (not an image, the client's body failing, the image
// parser panicking) returns its error, stores nothing and leaves no file
// open, on a real data folder.
func TestUploadFailuresLeaveNothing(t *testing.T) {
	dir := t.TempDir()
	st, err := filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := soleService(t, st)
	ctx := t.Context()
	u, err := svc.CreateUser(ctx, "fails", "")
	if err != nil {
		t.Fatal(err)
	}
	img := tinyPNG(t, 1)
	if _, err := svc.Upload(ctx, u, "first.png", bytes.NewReader(img)); err != nil { // the folders exist, and a list
		t.Fatal(err)
	}

	filesBefore, fdsBefore := fileCount(t, dir)
	// 8 MiB of zeros after a header that is not an image's.
	notImage := &countingReader{r: io.MultiReader(strings.NewReader("plain text, not an image"), io.LimitReader(zeros{}, 8<<20))}
	if _, err := svc.Upload(ctx, u, "text.png", notImage); !errors.Is(err, imagetype.ErrNotImage) {
		t.Errorf("a text upload: %v, want ErrNotImage", err)
	}
	if notImage.n > 1<<20 {
		t.Errorf("%d bytes of a text upload read before it was refused", notImage.n)
	}

	boom := errors.New("connection reset by peer")
	cut := io.MultiReader(bytes.NewReader(img[:len(img)/2]), iotest.ErrReader(boom))
	if _, err := svc.Upload(ctx, u, "cut.png", cut); !errors.Is(err, boom) {
		t.Errorf("an upload whose body failed: %v, want the body's error", err)
	}

	checkImage = func(r io.Reader, maxPixels int64) (imagetype.Info, error) {
		var b [16]byte
		io.ReadFull(r, b[:])
		panic("a bug in the parser")
	}
	defer func() { checkImage = imagetype.Check }()
	if _, err := svc.Upload(ctx, u, "panic.png", bytes.NewReader(img)); err == nil || !strings.Contains(err.Error(), "a bug in the parser") {
		t.Errorf("an upload whose parser panicked: %v, want the panic as an error", err)
	}
	checkImage = imagetype.Check

	if files, fds := fileCount(t, dir); files != filesBefore || fds != fdsBefore {
		t.Errorf("after three failed uploads: %d files and %d open, %d and %d before", files, fds, filesBefore, fdsBefore)
	}
	if imgs, err := svc.List(ctx, u); err != nil || len(imgs) != 1 {
		t.Errorf("%d images listed after three failed uploads (%v), want 1", len(imgs), err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
