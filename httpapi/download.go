package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/imagestore/imagestore/domain"
)

// serveImageAs answers a download of the user's image id, as HTTP should:
//
//   - a strong ETag from the content's SHA-256 and Last-Modified, so that
//     If-None-Match and If-Modified-Since give 304;
//   - to a client that accepts gzip (and asks for no range), the stored gzip
//     stream as it is, with Content-Encoding: gzip and its length, copied
//     straight from the store (sendfile for the file store): the server never
//     decompresses it;
//   - to other clients the decompressed bytes, streamed, with Range (206,
//     416) and HEAD handled by http.ServeContent;
//   - Cache-Control: private (the image is its owner's), Vary:
//     Accept-Encoding, and a Content-Disposition made from the file name.
func (s *Server) serveImageAs(w http.ResponseWriter, r *http.Request, u domain.User, id string,
	disposition func(name string) string, writeErr func(http.ResponseWriter, *http.Request, error)) {
	ctx := r.Context()
	passThrough := acceptsGzip(r) && r.Header.Get("Range") == ""
	if !passThrough && r.Method == http.MethodGet {
		// Small enough images are decompressed once and kept (see
		// domain.Service.Content).
		img, data, err := s.svc.Content(ctx, u, id)
		if errors.Is(err, domain.ErrDamaged) {
			s.log.Error("image download failed", "route", routeOf(r), "err", err)
			s.opts.Metrics.DownloadFailed()
		}
		if err != nil {
			writeErr(w, r, err)
			return
		}
		if data != nil {
			setImageHeaders(w.Header(), img, disposition, false)
			tameRange(r, img.Size)
			// The headers and the bytes leave together: corked until all
			// of them are written, the last ones flushed from net/http's
			// buffer first.
			uncork := corked(ctx)
			http.ServeContent(w, r, "", img.Updated, bytes.NewReader(data))
			http.NewResponseController(w).Flush()
			uncork()
			return
		}
	}
	img, stored, storedSize, err := s.svc.OpenStored(ctx, u, id)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	defer func() { stored.Close() }()
	h := w.Header()
	setImageHeaders(h, img, disposition, passThrough)

	if passThrough {
		if notModified(r, h.Get("Etag"), img.Updated) {
			h.Del("Content-Type")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Length", strconv.FormatInt(storedSize, 10))
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusOK)
		if mem, ok := stored.(inMemory); ok && int64(mem.Len()) == storedSize {
			// Cached: the headers and the bytes leave in one write (see
			// writeInMemory), with no cork to set and lift.
			if n, err := io.Copy(w, stored); err != nil || n != storedSize {
				s.abortDownload(r, n, storedSize, err)
			}
			return
		}
		uncork := corked(ctx)
		defer uncork()
		// Flushing the headers first spares the copy of the body's first
		// bytes through a buffer that net/http makes otherwise (for
		// sniffing), and the limit tells sendfile where the file ends, so
		// that no call is spent finding its end: the whole body goes out
		// by one sendfile, in the same segments as the headers (corked).
		http.NewResponseController(w).Flush()
		if n, err := io.Copy(w, io.LimitReader(stored, storedSize)); err != nil || n != storedSize {
			s.abortDownload(r, n, storedSize, err)
		}
		return
	}

	body := &gunzipSeeker{size: img.Size, stored: stored, reopen: func() (io.ReadCloser, error) {
		again, rc, _, err := s.svc.OpenStored(ctx, u, id)
		if err == nil && again.SHA256 != img.SHA256 {
			rc.Close()
			err = errors.New("the image was replaced during the download")
		}
		return rc, err
	}}
	defer func() { stored = body.stored }() // the one to close
	tameRange(r, img.Size)
	http.ServeContent(w, r, "", img.Updated, body)
	if body.err != nil && !errors.Is(body.err, io.EOF) {
		s.abortDownload(r, body.pos, img.Size, body.err)
	}
}

// setImageHeaders sets the headers of a download of img, as its stored
// gzip stream (gz) or as its bytes.
func setImageHeaders(h http.Header, img domain.Image, disposition func(name string) string, gz bool) {
	h.Set("Content-Type", img.MIME())
	h.Set("Content-Disposition", disposition(img.Name))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "private")
	h.Add("Vary", "Accept-Encoding")
	h.Set("Last-Modified", img.Updated.UTC().Format(http.TimeFormat))
	// Each representation has its own strong ETag: the gzip stream and the
	// decompressed bytes are different byte sequences.
	if gz {
		h.Set("Etag", `"`+img.SHA256+`-gz"`)
	} else {
		h.Set("Etag", `"`+img.SHA256+`"`)
	}
}

// abortDownload ends a download that failed after its status line was sent:
// the only honest signal left is to cut the connection, so that the client
// sees a short body.
func (s *Server) abortDownload(r *http.Request, sent, size int64, err error) {
	if err == nil {
		err = fmt.Errorf("stored image has the wrong length")
	}
	s.log.Error("image download failed", "route", routeOf(r), "sent", sent, "size", size, "err", err)
	s.opts.Metrics.DownloadFailed()
	panic(http.ErrAbortHandler)
}

// acceptsGzip reports whether the request's Accept-Encoding admits gzip.
func acceptsGzip(r *http.Request) bool { return acceptsGzipIn(r.Header.Get("Accept-Encoding")) }

// acceptsGzipIn reports whether an Accept-Encoding value admits gzip.
func acceptsGzipIn(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "x-gzip" {
			continue
		}
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		return q > 0
	}
	return false
}

// notModified evaluates If-None-Match (a weak comparison, RFC 9110 13.1.2)
// or, without it, If-Modified-Since, for a GET or HEAD.
func notModified(r *http.Request, etag string, modified time.Time) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for tag := range strings.SplitSeq(inm, ",") {
			tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
			if tag == "*" || tag == etag {
				return true
			}
		}
		return false
	}
	v := r.Header.Get("If-Modified-Since")
	if v == "" {
		return false // most requests: no parse errors to allocate
	}
	if ims, err := http.ParseTime(v); err == nil {
		return !modified.Truncate(time.Second).After(ims)
	}
	return false
}

// gunzipSeeker presents an image's decompressed bytes as an io.ReadSeeker
// for http.ServeContent without holding them: a seek only moves a target,
// a read moving forward discards bytes, and a read behind the stream's
// position (a second range) reopens the image.
type gunzipSeeker struct {
	size   int64
	stored io.ReadCloser // the open gzip stream, closed by the caller
	reopen func() (io.ReadCloser, error)

	zr     *gzip.Reader
	pos    int64 // position of zr
	target int64 // position the next read starts from
	err    error // the first error a read met
}

func (g *gunzipSeeker) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += g.target
	case io.SeekEnd:
		offset += g.size
	default:
		return 0, errors.New("bad whence")
	}
	if offset < 0 {
		return 0, errors.New("negative position")
	}
	g.target = offset
	return offset, nil
}

func (g *gunzipSeeker) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.read(p)
	if err != nil {
		g.err = err
	}
	return n, err
}

func (g *gunzipSeeker) read(p []byte) (int, error) {
	if g.zr != nil && g.target < g.pos {
		rc, err := g.reopen()
		if err != nil {
			return 0, err
		}
		g.stored.Close()
		g.stored, g.zr, g.pos = rc, nil, 0
	}
	if g.zr == nil {
		zr, err := gzip.NewReader(g.stored)
		if err != nil {
			return 0, fmt.Errorf("damaged blob: %w", err)
		}
		g.zr = zr
	}
	if g.target > g.pos {
		n, err := io.CopyN(io.Discard, g.zr, g.target-g.pos)
		g.pos += n
		if err != nil {
			return 0, err
		}
	}
	n, err := g.zr.Read(p)
	if err != nil && err != io.EOF {
		return 0, err // a checksum error can come with the last bytes: drop them
	}
	if err == nil && g.pos+int64(n) >= g.size {
		// Before the last bytes go out, make gzip check its CRC and
		// length: a damaged blob then ends the response short, rather
		// than complete and wrong.
		var one [1]byte
		if m, err2 := g.zr.Read(one[:]); m != 0 || err2 != io.EOF {
			if err2 == nil || err2 == io.EOF {
				err2 = errors.New("stored image is longer than recorded")
			}
			return 0, err2
		}
		err = io.EOF
	}
	g.pos += int64(n)
	g.target = g.pos
	return n, err
}

// maxRanges bounds the ranges of one request.
const maxRanges = 16

// tameRange rewrites a request's Range header before http.ServeContent
// sees it, so that ranges cost no more than the image: a range behind the
// previous one means decompressing the image again from its start, so a
// list of ranges must be short and ascending, or only its first range is
// served (RFC 9110 14.2 lets a server do less than asked). A unit other
// than bytes is ignored, as the RFC says, and an empty suffix ("-0") is
// unsatisfiable.
func tameRange(r *http.Request, size int64) {
	h := r.Header.Get("Range")
	if h == "" {
		return
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		r.Header.Del("Range")
		return
	}
	var kept []string
	last := int64(-1)
	ordered := true
	for part := range strings.SplitSeq(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if part == "-0" {
			continue // a suffix of no bytes
		}
		kept = append(kept, part)
		first, second, _ := strings.Cut(part, "-")
		start, err1 := strconv.ParseInt(first, 10, 64)
		end, err2 := strconv.ParseInt(second, 10, 64)
		switch {
		case first == "": // a suffix: the last n bytes
			start, end, err1 = size-end, size-1, nil
		case second == "":
			end, err2 = size-1, nil
		}
		if err1 != nil || err2 != nil || start <= last {
			ordered = false
		}
		last = max(last, end)
	}
	switch {
	case len(kept) == 0:
		r.Header.Set("Range", "bytes="+strconv.FormatInt(size, 10)+"-") // answered 416
	case len(kept) > maxRanges || !ordered && len(kept) > 1:
		r.Header.Set("Range", "bytes="+kept[0])
	default:
		r.Header.Set("Range", "bytes="+strings.Join(kept, ","))
	}
}
