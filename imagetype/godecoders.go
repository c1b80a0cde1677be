package imagetype

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"strings"
	"sync"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
	"golang.org/x/image/webp"
)

// goDecoders are the header parsers of Go and golang.org/x/image, by format
// name. Check's own parser reads every accepted file; for these formats the
// file's head must also satisfy Go's parser, which is stricter about some
// fields, unless Go merely does not support a valid variant (a 12-bit JPEG,
// a run-length encoded BMP).
var goDecoders = map[string]func(io.Reader) (image.Config, error){
	"jpeg": jpeg.DecodeConfig,
	"png":  png.DecodeConfig,
	"gif":  gif.DecodeConfig,
	"bmp":  bmp.DecodeConfig,
	"tiff": tiff.DecodeConfig,
	"webp": webp.DecodeConfig,
}

// headLen is how much of a file is kept for Go's parser: enough for every
// header but those behind very large metadata, which Check's own parser
// alone then judges.
const headLen = 64 << 10

var headPool = sync.Pool{New: func() any { b := make([]byte, 0, headLen); return &b }}

// checkWithGo runs Go's parser for the format, if there is one, on the
// file's head (the whole file if it is short enough).
func checkWithGo(format string, head []byte, total int64, w, h int64) error {
	dec, ok := goDecoders[format]
	if !ok {
		return nil
	}
	cfg, err := dec(bytes.NewReader(head))
	switch {
	case err == nil:
		if int64(cfg.Width) != w || int64(cfg.Height) != h {
			return fmt.Errorf("%w: %s header says %dx%d, Go's parser %dx%d", ErrNotImage, format, w, h, cfg.Width, cfg.Height)
		}
		return nil
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if total > int64(len(head)) {
			return nil // the header lies beyond the head kept: ours judged it
		}
		return fmt.Errorf("%w: %s: %v", ErrNotImage, format, err)
	case unsupported(err):
		return nil
	default:
		return fmt.Errorf("%w: %v", ErrNotImage, err)
	}
}

// unsupported reports whether a Go decoder refused a valid variant it does
// not implement, rather than a malformed file.
func unsupported(err error) bool {
	var jerr jpeg.UnsupportedError
	var perr png.UnsupportedError
	var terr tiff.UnsupportedError
	if errors.As(err, &jerr) || errors.As(err, &perr) || errors.As(err, &terr) || errors.Is(err, bmp.ErrUnsupported) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "unsupported") || strings.Contains(msg, "not implemented")
}
