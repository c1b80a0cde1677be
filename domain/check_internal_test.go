package domain

import (
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/imagestore/imagestore/imagetype"
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
		before := runtime.NumGoroutine()
		for range 50 {
			c := newInlineCheck(0)
			feedAll(c, img[:30], 7)
			c.close() // a write that panicked: the parser must not stay behind
		}
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			t.Errorf("%d goroutines after closing 50 unfinished checks, %d before", n, before)
		}
	})
}
