package httpapi

import (
	"bytes"
	"io"
	"testing"
)

// countingWriter counts the Write calls it gets.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) { c.writes++; return c.Buffer.Write(p) }

// TestWriteInMemory: bytes in memory go out in one Write, whole or inside
// a limit that does not cut them; a limit that cuts them, or a reader that
// is not in memory, is left to a copy.
func TestWriteInMemory(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 20_000) // 200 KB: more than a copy's buffer
	for _, tc := range []struct {
		name string
		src  func() io.Reader
		ok   bool
	}{
		{"bytes.Reader", func() io.Reader { return bytes.NewReader(data) }, true},
		{"whole limit", func() io.Reader { return io.LimitReader(bytes.NewReader(data), int64(len(data))) }, true},
		{"larger limit", func() io.Reader { return io.LimitReader(bytes.NewReader(data), 1<<30) }, true},
		{"cutting limit", func() io.Reader { return io.LimitReader(bytes.NewReader(data), 10) }, false},
		{"a stream", func() io.Reader { return io.MultiReader(bytes.NewReader(data)) }, false},
	} {
		var w countingWriter
		src := tc.src()
		n, ok, err := writeInMemory(&w, src)
		if ok != tc.ok || err != nil {
			t.Errorf("%s: ok %v, %v; want ok %v", tc.name, ok, err, tc.ok)
			continue
		}
		if !ok {
			if w.writes != 0 {
				t.Errorf("%s: refused, but wrote", tc.name)
			}
			continue
		}
		if n != int64(len(data)) || w.writes != 1 || !bytes.Equal(w.Bytes(), data) {
			t.Errorf("%s: %d bytes in %d writes, want %d in 1", tc.name, n, w.writes, len(data))
		}
	}
	// The limit is kept up to date.
	lr := &io.LimitedReader{R: bytes.NewReader(data), N: int64(len(data)) + 5}
	if _, ok, _ := writeInMemory(io.Discard, lr); !ok || lr.N != 5 {
		t.Errorf("limit after the write: %d, want 5", lr.N)
	}
}
