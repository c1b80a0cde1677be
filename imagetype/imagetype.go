// Package imagetype recognises the image formats imagestore accepts and
// checks that a stream really is a whole image of that format, reading it
// once, front to back, in constant memory.
//
// The formats are those the original program accepted through Python's
// imghdr: JPEG, PNG, GIF, BMP, TIFF, WebP, the netpbm family (PBM, PGM,
// PPM), Sun raster, XBM, SGI rgb and OpenEXR. A format is recognised by its
// magic bytes, and then its header must parse to a width and a height; a
// fake file that only starts with the right bytes fails there. Where a format
// says how long the file is, or has an end marker, a truncated file is
// refused too. Pixels are never decoded: a header that claims more pixels
// than allowed is refused as soon as it is read.
package imagetype

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Format is one accepted image format.
type Format struct {
	// Name is the short name Python's imghdr gave the format ("jpeg",
	// "png", "rast", ...).
	Name string
	// MIME is the media type to serve the image with.
	MIME  string
	parse parseFunc
	match func(head []byte) bool
}

// Info is what Check learns about an image.
type Info struct {
	Format Format
	Width  int64
	Height int64
}

// ErrNotImage is returned (wrapped, with the reason) for input that is not
// a whole image of an accepted format.
var ErrNotImage = errors.New("not an image of an accepted type")

// TooManyPixelsError is returned when an image's header claims more pixels
// than the limit given to Check.
type TooManyPixelsError struct {
	Width, Height int64
	Max           int64
}

func (e *TooManyPixelsError) Error() string {
	return fmt.Sprintf("image of %dx%d pixels exceeds the limit of %d pixels", e.Width, e.Height, e.Max)
}

// A parseFunc reads one format's structure from r, which is positioned at
// the start of the file. It calls dims as soon as the image's size is known
// and returns at once if dims returns an error. It returns the least length
// the whole file must have (0 if the parser itself read up to the format's
// end marker).
type parseFunc func(r *reader, dims func(w, h int64) error) (minLen int64, err error)

// Formats lists every accepted format, in the order Detect tries them.
var Formats = []Format{
	{Name: "jpeg", MIME: "image/jpeg", parse: parseJPEG, match: prefix("\xff\xd8\xff")},
	{Name: "png", MIME: "image/png", parse: parsePNG, match: prefix("\x89PNG\r\n\x1a\n")},
	{Name: "gif", MIME: "image/gif", parse: parseGIF, match: func(h []byte) bool {
		return hasPrefix(h, "GIF87a") || hasPrefix(h, "GIF89a")
	}},
	{Name: "tiff", MIME: "image/tiff", parse: parseTIFF, match: func(h []byte) bool {
		return hasPrefix(h, "MM") || hasPrefix(h, "II")
	}},
	{Name: "rgb", MIME: "image/x-rgb", parse: parseSGI, match: prefix("\x01\xda")},
	{Name: "pbm", MIME: "image/x-portable-bitmap", parse: parsePNM, match: pnm("14")},
	{Name: "pgm", MIME: "image/x-portable-graymap", parse: parsePNM, match: pnm("25")},
	{Name: "ppm", MIME: "image/x-portable-pixmap", parse: parsePNM, match: pnm("36")},
	{Name: "rast", MIME: "image/x-sun-raster", parse: parseSunRaster, match: prefix("\x59\xa6\x6a\x95")},
	{Name: "xbm", MIME: "image/x-xbitmap", parse: parseXBM, match: prefix("#define ")},
	{Name: "bmp", MIME: "image/bmp", parse: parseBMP, match: prefix("BM")},
	{Name: "webp", MIME: "image/webp", parse: parseWebP, match: func(h []byte) bool {
		return hasPrefix(h, "RIFF") && len(h) >= 12 && string(h[8:12]) == "WEBP"
	}},
	{Name: "exr", MIME: "image/x-exr", parse: parseEXR, match: prefix("\x76\x2f\x31\x01")},
}

func hasPrefix(h []byte, p string) bool { return len(h) >= len(p) && string(h[:len(p)]) == p }

func prefix(p string) func([]byte) bool { return func(h []byte) bool { return hasPrefix(h, p) } }

func pnm(digits string) func([]byte) bool {
	return func(h []byte) bool {
		return len(h) >= 3 && h[0] == 'P' && (h[1] == digits[0] || h[1] == digits[1]) && isSpace(h[2])
	}
}

// HeadLen is how many leading bytes Detect needs to recognise any format.
const HeadLen = 16

// Detect returns the format whose magic bytes begin head.
func Detect(head []byte) (Format, bool) {
	for _, f := range Formats {
		if f.match(head) {
			return f, true
		}
	}
	return Format{}, false
}

// ByName returns the format with the given imghdr name.
func ByName(name string) (Format, bool) {
	for _, f := range Formats {
		if f.Name == name {
			return f, true
		}
	}
	return Format{}, false
}

// Check reads r to its end and returns the image's format and size. It
// returns an error wrapping ErrNotImage if r is not a whole image of an
// accepted format, a *TooManyPixelsError (before reading further) if the
// header claims more than maxPixels pixels (no limit if maxPixels <= 0), or
// the error r returned.
func Check(r io.Reader, maxPixels int64) (Info, error) {
	rd := newReader(r)
	defer rd.release()
	head, _ := rd.br.Peek(HeadLen)
	f, ok := Detect(head)
	if !ok {
		if err := rd.srcErr(); err != nil {
			return Info{}, err
		}
		return Info{}, fmt.Errorf("%w: unknown magic bytes", ErrNotImage)
	}
	info := Info{Format: f}
	gotDims := false
	dims := func(w, h int64) error {
		if w <= 0 || h <= 0 || w > maxDim || h > maxDim {
			return fmt.Errorf("%w: %s of %dx%d pixels", ErrNotImage, f.Name, w, h)
		}
		if maxPixels > 0 && w*h > maxPixels {
			return &TooManyPixelsError{Width: w, Height: h, Max: maxPixels}
		}
		if !gotDims {
			info.Width, info.Height, gotDims = w, h, true
		}
		return nil
	}
	minLen, err := f.parse(rd, dims)
	if err == nil && !gotDims {
		err = errors.New("no image size found")
	}
	if err == nil {
		_, err = rd.br.WriteTo(io.Discard)
	}
	if err != nil {
		if srcErr := rd.srcErr(); srcErr != nil {
			return Info{}, srcErr // the input failed, not the format
		}
		var tooMany *TooManyPixelsError
		if errors.As(err, &tooMany) || errors.Is(err, ErrNotImage) {
			return Info{}, err
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return Info{}, fmt.Errorf("%w: truncated %s", ErrNotImage, f.Name)
		}
		return Info{}, fmt.Errorf("%w: %s: %v", ErrNotImage, f.Name, err)
	}
	if total := rd.total(); total < minLen {
		return Info{}, fmt.Errorf("%w: truncated %s (%d bytes of at least %d)", ErrNotImage, f.Name, total, minLen)
	}
	if err := checkWithGo(f.Name, *rd.src.head, rd.total(), info.Width, info.Height); err != nil {
		return Info{}, err
	}
	return info, nil
}

// maxDim bounds each dimension, so that w*h never overflows.
const maxDim = 1<<31 - 1

// errReader remembers the first error other than io.EOF that the
// underlying reader returned, so that Check can tell a failing input from a
// malformed image, and counts the bytes read.
type errReader struct {
	r    io.Reader
	n    int64
	err  error
	head *[]byte // the first headLen bytes, for Go's parsers
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if h := *e.head; len(h) < headLen && n > 0 {
		*e.head = append(h, p[:min(n, headLen-len(h))]...)
	}
	e.n += int64(n)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// reader is a buffered reader with the small helpers parsers need. Every
// read is bounded: nothing allocates in proportion to what the file claims.
type reader struct {
	src *errReader
	br  *bufio.Reader
	buf [256]byte
}

func newReader(r io.Reader) *reader {
	head := headPool.Get().(*[]byte)
	*head = (*head)[:0]
	src := &errReader{r: r, head: head}
	br := bufPool.Get().(*bufio.Reader)
	br.Reset(src)
	return &reader{src: src, br: br}
}

// bufPool holds the readers' 32 KiB buffers: one per upload otherwise.
var bufPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

// release returns the reader's buffers; it must not be used afterwards.
func (r *reader) release() {
	headPool.Put(r.src.head)
	r.br.Reset(nil)
	bufPool.Put(r.br)
	r.br = nil
}

// srcErr is the input's own failure, if it failed.
func (r *reader) srcErr() error { return r.src.err }

// pos is how many bytes the parser has consumed.
func (r *reader) pos() int64 { return r.src.n - int64(r.br.Buffered()) }

// total is the length of the input once it has been read to its end.
func (r *reader) total() int64 { return r.src.n }

// full reads exactly n bytes (n <= 256) and returns them; the slice is
// valid until the next call.
func (r *reader) full(n int) ([]byte, error) {
	b := r.buf[:n]
	if _, err := io.ReadFull(r.br, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// skip discards exactly n bytes.
func (r *reader) skip(n int64) error {
	for n > 0 {
		k := int(min(n, 1<<30))
		d, err := r.br.Discard(k)
		n -= int64(d)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// skipTo discards bytes up to the absolute offset off, which must not be
// behind the current position.
func (r *reader) skipTo(off int64) error {
	if off < r.pos() {
		return fmt.Errorf("offset %d points backwards", off)
	}
	return r.skip(off - r.pos())
}

func (r *reader) byte() (byte, error) {
	b, err := r.br.ReadByte()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return b, err
}
