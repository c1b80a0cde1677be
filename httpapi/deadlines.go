package httpapi

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// errSlowClient means a client sent no part of its request body for longer
// than Options.BodyTimeout.
var errSlowClient = errors.New("the client sent nothing for too long")

// progressDeadlines protects the server from clients too slow to be real,
// without cutting off a large transfer on a slow link: rather than one
// deadline for a whole request, each read of the request body and each
// write of the response must make progress within Options.BodyTimeout.
func (s *Server) progressDeadlines(next http.Handler) http.Handler {
	if s.opts.BodyTimeout <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		var body *deadlineBody
		if r.Body != nil && r.Body != http.NoBody {
			body = &deadlineBody{ReadCloser: r.Body, rc: rc, timeout: s.opts.BodyTimeout}
			r.Body = body
		}
		next.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: rc, timeout: s.opts.BodyTimeout}, r)
		// After a handler that left part of the body unread (a refusal),
		// the server reads what is left to reuse the connection: that too
		// must not wait for a stalled client forever.
		// Go reads that before it sends the answer, so the answer's own
		// deadline comes after the reading's.
		if body != nil && body.err == nil {
			rc.SetReadDeadline(time.Now().Add(s.opts.BodyTimeout))
			rc.SetWriteDeadline(time.Now().Add(2 * s.opts.BodyTimeout))
		}
	})
}

type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	err     error // the first error a read met, io.EOF included
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	n, err := b.ReadCloser.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		err = errSlowClient
	}
	if err != nil && b.err == nil {
		b.err = err
	}
	return n, err
}

type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.ResponseWriter.Write(p)
}

// ReadFrom copies in pieces, each with a fresh deadline, each through the
// connection's own ReadFrom (sendfile for a file). The connection sees
// through one io.LimitedReader around a file, no more: a limited source
// is copied as pieces of its own reader, its limit kept up to date.
func (w *deadlineWriter) ReadFrom(src io.Reader) (int64, error) {
	if n, ok, err := writeInMemory(pieceWriter{w}, src); ok {
		return n, err
	}
	inner, lr := src, (*io.LimitedReader)(nil)
	if l, ok := src.(*io.LimitedReader); ok {
		inner, lr = l.R, l
	}
	var total int64
	for {
		n := int64(piece)
		if lr != nil {
			n = min(n, lr.N)
		}
		if n <= 0 {
			return total, nil
		}
		w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
		c, err := io.Copy(w.ResponseWriter, io.LimitReader(inner, n))
		total += c
		if lr != nil {
			lr.N -= c
		}
		if err != nil || c < n {
			return total, err
		}
	}
}

func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// piece is how much of a response one deadline covers.
const piece = 1 << 20

// pieceWriter writes to a deadlineWriter a piece at a time, each with a
// fresh deadline.
type pieceWriter struct{ w *deadlineWriter }

func (p pieceWriter) Write(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		n, err := p.w.Write(b[:min(len(b), piece)])
		total += n
		if err != nil {
			return total, err
		}
		b = b[n:]
	}
	return total, nil
}

// inMemory is a reader whose bytes are all in memory, such as a
// *bytes.Reader: it can write what is left in one Write.
type inMemory interface {
	Len() int
	io.WriterTo
}

// writeInMemory writes a source whose bytes are in memory (alone or in an
// io.LimitedReader that does not cut it short, as http.ServeContent passes
// a cached image) to dst as they are: in one Write, where a copy would
// allocate a 32 KiB buffer and make a system call per 32 KiB. ok is false
// for any other source, untouched.
func writeInMemory(dst io.Writer, src io.Reader) (n int64, ok bool, err error) {
	lr, _ := src.(*io.LimitedReader)
	if lr != nil {
		src = lr.R
	}
	br, isMem := src.(inMemory)
	if !isMem || lr != nil && lr.N < int64(br.Len()) {
		return 0, false, nil
	}
	n, err = br.WriteTo(dst)
	if lr != nil {
		lr.N -= n
	}
	return n, true, err
}
