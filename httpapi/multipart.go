package httpapi

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"sync"

	"github.com/imagestore/imagestore/domain"
)

// filePart is the first file of a multipart form, read as a stream.
// Release it once the request no longer reads it.
type filePart struct {
	*multipart.Part
	name string // the client's file name, raw: the domain cleans it
	buf  *bufio.Reader
}

// release gives back the part's read-ahead buffer.
func (p *filePart) release() {
	if p.buf != nil {
		p.buf.Reset(nil)
		bodyBuffers.Put(p.buf)
		p.buf = nil
	}
}

// bodyBuffers read ahead of a multipart reader: it reads 4 KiB at a time,
// and under it each of those would be a read(2) of the connection, 25 for
// a 100 KB image.
var bodyBuffers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// firstFile finds the first part of a multipart/form-data body that carries
// a file, skipping (and not keeping) the text fields before it. What
// follows it is not parsed (a read-ahead of up to 64 KiB may take some of
// it in). The body is limited to the maximum upload size as it streams,
// so memory stays bounded whatever the client sends. It returns errNoFile for
// a body without a file part, as the original answered 204 then.
func (s *Server) firstFile(w http.ResponseWriter, r *http.Request) (*filePart, error) {
	if r.ContentLength > s.opts.MaxUploadBytes {
		return nil, &uploadTooLargeError{limit: s.opts.MaxUploadBytes, actual: r.ContentLength}
	}
	// Part headers are held in memory while they are parsed; bounding what
	// may come before the file bounds them, whatever the upload limit.
	buf := bodyBuffers.Get().(*bufio.Reader)
	buf.Reset(http.MaxBytesReader(w, r.Body, s.opts.MaxUploadBytes))
	part := &filePart{buf: buf}
	found := false
	defer func() {
		if !found {
			part.release()
		}
	}()
	prefix := &prefixLimiter{r: buf, left: maxFormPrefix}
	r.Body = struct {
		io.Reader
		io.Closer
	}{prefix, r.Body}
	mr, err := r.MultipartReader()
	if errors.Is(err, http.ErrNotMultipart) {
		return nil, errNoFile
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil, errNoFile
		}
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) || errors.Is(err, errFormPrefixTooLarge) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", errMalformed, err)
		}
		if name, ok := fileName(p); ok {
			prefix.left = -1 // the file itself is bounded by the upload limit only
			part.Part, part.name, found = p, name, true
			return part, nil
		}
		// A text field, or a file part without a name: skip it.
		if _, err := io.Copy(io.Discard, p); err != nil {
			return nil, err
		}
	}
}

// fileName returns the filename parameter of a part's Content-Disposition
// (filename* of RFC 7578/2231 included), if it is a file part whose name is
// usable.
func fileName(p *multipart.Part) (string, bool) {
	disp, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil || disp != "form-data" {
		return "", false
	}
	raw, ok := params["filename"]
	if !ok {
		return "", false
	}
	if _, ok := domain.CleanName(raw); !ok {
		return "", false
	}
	return raw, true
}

// maxFormPrefix bounds the bytes of a form before its file part's content:
// the headers of the parts and any text fields before the file.
const maxFormPrefix = 1 << 20

var errFormPrefixTooLarge = fmt.Errorf("the form fields before the file exceed %d bytes", maxFormPrefix)

// prefixLimiter fails once more than left bytes were read, unless left is
// negative (no limit).
type prefixLimiter struct {
	r    io.Reader
	left int64
}

func (p *prefixLimiter) Read(b []byte) (int, error) {
	if p.left < 0 {
		return p.r.Read(b)
	}
	if p.left == 0 {
		return 0, errFormPrefixTooLarge
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n, err := p.r.Read(b)
	p.left -= int64(n)
	return n, err
}
