package domain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"runtime/debug"
	"sync"

	"github.com/klauspost/compress/gzip"

	"github.com/imagestore/imagestore/imagetype"
	"github.com/imagestore/imagestore/storage"
)

// storedBlob is what writing an image's bytes produced.
type storedBlob struct {
	name       string
	info       imagetype.Info
	size       int64
	storedSize int64
	sha256     string
	// pending is set for a blob that writeBlob only staged: it is being
	// published in the background (see pendingBlob).
	pending *pendingBlob
}

// errAborted stops the image check when the write ends before the input
// does.
var errAborted = errors.New("write aborted")

// writeBlob streams r into a new blob of the user: it checks that the bytes
// are an image (a parser run on each chunk as it passes: see inlineCheck),
// hashes and compresses them, and stores the result with
// create-if-absent. If the check fails, the write is abandoned before
// anything is made durable, and the check's error is returned.
//
// With staged set, on a store that can (a data folder: see s.stager), the
// blob is only staged, and published in the background: the caller must
// wait for its pending publication (see pendingBlob) before acknowledging
// it.
func (s *Service) writeBlob(ctx context.Context, userHash string, r io.Reader, staged bool) (storedBlob, error) {
	r = s.uploadReader(r) // metadata stripped first: what is checked and stored is the result
	check := newInlineCheck(s.cfg.MaxPixels)
	defer check.close()
	tee := &checkedReader{src: fullReader{r}, check: check}
	h := sha256.New()
	counted := &countingReader{r: io.TeeReader(tee, h)}
	gz := s.newGzipReader(counted)
	defer s.releaseGzipReader(gz)

	name := newBlobName()
	// Spared by the orphan sweep until the caller has named it in a list,
	// or dropped it (it deletes the key from s.writing). A failure here
	// deletes it.
	s.writing.Store(blobKey(userHash, name), true)
	written := false
	defer func() {
		if !written {
			s.writing.Delete(blobKey(userHash, name))
		}
	}()
	var attrs storage.Attrs
	var stagedBlob storage.Staged
	var err error
	if staged && s.stager != nil {
		// Under its own name at once: nothing looks a blob up before the
		// list record that names it, appended only once it is published.
		stagedBlob, err = s.stager.StageNew(ctx, blobKey(userHash, name), gz)
		if err == nil {
			attrs.Size = stagedBlob.Size()
		}
	} else {
		attrs, err = s.store.Put(ctx, blobKey(userHash, name), gz, storage.Cond{IfAbsent: true})
	}
	verdict := check.end(errAborted) // the write may have stopped before the input ended
	if err != nil {
		if verdict != errCheckedOK && verdict != errAborted {
			// The checker's verdict explains the failed write (a refused
			// image, or the client's own read error).
			return storedBlob{}, verdict
		}
		return storedBlob{}, storeErr(err)
	}
	if verdict != errCheckedOK {
		// Cannot happen: the write only completes once the checker agreed.
		if stagedBlob != nil {
			stagedBlob.Close()
		} else {
			s.deleteBlob(ctx, userHash, name)
		}
		return storedBlob{}, fmt.Errorf("image check: %w", verdict)
	}
	b := storedBlob{
		name:       name,
		info:       check.info,
		size:       counted.n,
		storedSize: attrs.Size,
		sha256:     hex.EncodeToString(h.Sum(nil)),
	}
	if stagedBlob != nil {
		b.pending = s.publishBlob(userHash, stagedBlob)
	}
	written = true
	return b, nil
}

// A pendingBlob is a new image's blob published in the background while
// the list record that names it is written: the record is appended to its
// list's log (see indexlog.go) once the blob is published, and synced
// while the blob's name is made durable. An upload waits for both.
//
// A crash can then leave a durable record naming a blob whose name was
// not durable yet (nor acknowledged): reading a list's log drops such
// images (see readIndexLog). A record is appended only once the blobs it
// names are published, their bytes durable, so a blob a record names and
// that is there is whole. (A blob is written under its own name from the
// start, so a crash may also leave a part of one that no record names:
// the start-up sweep removes it, as any blob no list names.)
type pendingBlob struct {
	published chan struct{} // closed once Publish returned
	pubErr    error
	done      chan struct{} // closed once the name is durable, or failed
	err       error
}

// publishBlob publishes st, the user's staged blob, and makes its name
// durable, in a goroutine of its own: the request's end must not stop it.
func (s *Service) publishBlob(userHash string, st storage.Staged) *pendingBlob {
	p := &pendingBlob{published: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer st.Close()
		ctx := context.Background()
		_, p.pubErr = st.Publish(ctx)
		close(p.published)
		if p.err = p.pubErr; p.err == nil {
			p.err = s.stager.Flush(ctx, blobFolder(userHash))
		}
	}()
	return p
}

// ready waits until the blob is published (visible, durable once its
// folder is flushed), and returns the error if it could not be.
func (p *pendingBlob) ready() error {
	<-p.published
	return storeErr(p.pubErr)
}

// wait waits until the blob's name is durable, and returns the error if
// it is not.
func (p *pendingBlob) wait() error {
	<-p.done
	return storeErr(p.err)
}

// errCheckedOK is the image check's verdict on an image it accepted.
var errCheckedOK = errors.New("image checked")

// nameTaken refuses an upload whose name is taken, storing nothing. The
// original checked the image first, so r is still read through the image
// check: a non-image gets its own error, not ErrNameTaken.
func (s *Service) nameTaken(r io.Reader) error {
	if _, err := imagetype.Check(s.uploadReader(r), s.cfg.MaxPixels); err != nil {
		return err
	}
	return ErrNameTaken
}

// checkedReader passes src through the image check, and fails as soon as
// the check refuses the stream. Its io.EOF comes only after the check
// accepted the whole stream.
type checkedReader struct {
	src   io.Reader
	check *inlineCheck
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.src.Read(p)
	if n > 0 {
		if v := c.check.feed(p[:n]); v != nil && v != errCheckedOK {
			return 0, v
		}
	}
	if err == io.EOF {
		if v := c.check.end(io.EOF); v != errCheckedOK {
			return 0, v
		}
		return n, io.EOF
	}
	if err != nil {
		c.check.end(err)
		return n, err
	}
	return n, nil
}

// checkImage is the image check: imagetype.Check, but for tests.
var checkImage = imagetype.Check

// inlineCheck runs imagetype.Check, a parser that pulls its input from a
// reader, as a coroutine of the goroutine that feeds it (iter.Pull): each
// chunk of an upload is checked as it passes, by a direct switch to the
// parser and back, with no goroutine waiting for a turn on a busy CPU and
// no pipe.
type inlineCheck struct {
	next, stop func()
	yield      func() bool // the parser's way back to the feeder
	in         []byte      // fed, not yet read by the parser
	endErr     error       // what the parser reads once in is empty: io.EOF or the input's error
	finished   bool
	info       imagetype.Info
	verdict    error // once finished: errCheckedOK, or why the stream was refused
}

func newInlineCheck(maxPixels int64) *inlineCheck {
	c := &inlineCheck{}
	next, stop := iter.Pull(func(yield func(struct{}) bool) {
		defer func() {
			// A bug of the parser: an error, so that the store sees its
			// input fail and cleans up, where a panic would unwind
			// through it (and a server error, logged with the stack).
			if v := recover(); v != nil {
				c.verdict = fmt.Errorf("image check: the parser panicked: %v\n%s", v, debug.Stack())
				c.finished = true
			}
		}()
		c.yield = func() bool { return yield(struct{}{}) }
		c.info, c.verdict = checkImage(c, maxPixels)
		if c.verdict == nil {
			c.verdict = errCheckedOK
		}
		c.finished = true
	})
	c.next = func() { next() }
	c.stop = stop
	return c
}

// Read is the parser's input: the bytes fed so far, then, once they are
// read, a switch back to the feeder for more.
func (c *inlineCheck) Read(p []byte) (int, error) {
	for len(c.in) == 0 {
		if c.endErr != nil {
			return 0, c.endErr
		}
		if !c.yield() {
			return 0, errAborted // closed before the input ended
		}
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	return n, nil
}

// feed runs the parser on p until it has read all of p or finished, and
// returns its verdict if it finished (nil if not).
func (c *inlineCheck) feed(p []byte) error {
	if !c.finished {
		c.in = p
		c.next()
		c.in = nil
	}
	if c.finished {
		return c.verdict
	}
	return nil
}

// end tells the parser that its input ended with err (io.EOF, the input's
// error, or errAborted when the write stopped early), and returns its
// verdict.
func (c *inlineCheck) end(err error) error {
	if !c.finished {
		c.endErr = err
		c.next()
	}
	if !c.finished {
		// Cannot happen: a parser given nothing more returns.
		return fmt.Errorf("image check: it did not finish at the end of its input")
	}
	return c.verdict
}

// close ends the parser if it has not finished (a panic in the feeder).
func (c *inlineCheck) close() { c.stop() }

// fullReader fills each buffer it is given, unless its source ends or
// fails first. An upload's body comes from the network a few KiB at a
// time; read through it, each step after it (the image check, the hash,
// the compressor, the file's write) takes a few large chunks instead of
// one per network read: for 100 KB, about 25 fewer switches to the
// check's parser and write(2) calls.
type fullReader struct{ r io.Reader }

func (f fullReader) Read(p []byte) (n int, err error) {
	// Not io.ReadFull, which cannot tell its own io.ErrUnexpectedEOF from
	// the source's (a multipart part cut short, which must fail).
	for n < len(p) && err == nil {
		var m int
		m, err = f.r.Read(p[n:])
		n += m
	}
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// gzipReader compresses what it reads from src: reading from it yields the
// gzip stream. It lets a store's Put pull compressed bytes without a
// goroutine in between.
//
// Unless all is set, an image whose format compresses its data already
// (JPEG, PNG, WebP: recognised by its first bytes) goes into gzip's stored
// blocks instead of being deflated again: deflate saves under 1% of such
// data, and costs most of an upload's CPU (0.7 ms for 100 KB of JPEG at
// level 6, against 0.03 ms stored). The stream is gzip all the same.
type gzipReader struct {
	src     io.Reader
	zw      *gzip.Writer // the writer of this stream: one of the two below
	deflate *gzip.Writer // at the configured level
	stored  *gzip.Writer // gzip.NoCompression
	all     bool         // deflate every format
	started bool
	out     bytes.Buffer
	chunk   []byte
	done    bool
	err     error
}

// sniffLen is how many bytes of a stream decide its gzip level.
const sniffLen = 12

// compressedAlready reports whether head begins an image format whose data
// is compressed already.
func compressedAlready(head []byte) bool {
	switch {
	case bytes.HasPrefix(head, []byte("\xff\xd8\xff")): // JPEG
		return true
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return true
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return true
	}
	return false
}

func (g *gzipReader) Read(p []byte) (int, error) {
	for g.out.Len() == 0 {
		if g.err != nil {
			return 0, g.err
		}
		if g.done {
			return 0, io.EOF
		}
		var n int
		var err error
		if !g.started {
			// The first bytes choose the writer.
			n, err = io.ReadAtLeast(g.src, g.chunk, sniffLen)
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			g.zw = g.deflate
			if !g.all && compressedAlready(g.chunk[:n]) {
				g.zw = g.stored
			}
			g.zw.Reset(&g.out)
			g.started = true
		} else {
			n, err = g.src.Read(g.chunk)
		}
		if n > 0 {
			g.zw.Write(g.chunk[:n]) // writes to g.out, which cannot fail
		}
		switch {
		case err == io.EOF:
			g.zw.Close()
			g.done = true
		case err != nil:
			g.err = err
		}
	}
	return g.out.Read(p)
}

var gzipPools sync.Map // gzip level -> *sync.Pool of *gzipReader

func (s *Service) newGzipReader(src io.Reader) *gzipReader {
	p, _ := gzipPools.LoadOrStore(s.cfg.GzipLevel, &sync.Pool{})
	g, _ := p.(*sync.Pool).Get().(*gzipReader)
	if g == nil {
		g = &gzipReader{chunk: make([]byte, 64<<10)}
		g.deflate, _ = gzip.NewWriterLevel(&g.out, s.cfg.GzipLevel) // level checked in New
		g.stored, _ = gzip.NewWriterLevel(&g.out, gzip.NoCompression)
	}
	g.src, g.done, g.err, g.started, g.all = src, false, nil, false, s.cfg.GzipAll
	g.out.Reset()
	return g
}

func (s *Service) releaseGzipReader(g *gzipReader) {
	g.src, g.zw = nil, nil
	if g.out.Cap() > 1<<20 {
		g.out = bytes.Buffer{}
	}
	p, _ := gzipPools.Load(s.cfg.GzipLevel)
	p.(*sync.Pool).Put(g)
}

type gunzipReadCloser struct {
	*gzip.Reader
	c io.Closer
}

func (g *gunzipReadCloser) Close() error { return g.c.Close() }

func (s *Service) deleteBlob(ctx context.Context, userHash, name string) {
	if s.hot != nil {
		s.hot.remove(contentCacheKey(userHash, name))
		s.hot.remove(storedCacheKey(blobKey(userHash, name)))
	}
	err := s.store.Delete(context.WithoutCancel(ctx), blobKey(userHash, name))
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		// An unreferenced blob wastes space but harms nothing.
		s.log.Warn("could not remove an unreferenced blob", "blob", name, "err", err)
	}
	s.deleteVariants(ctx, userHash, name)
}

// storeErr translates the store's errors that mean something to callers.
func storeErr(err error) error {
	if errors.Is(err, storage.ErrInsufficientStorage) {
		return fmt.Errorf("%w: %w", ErrInsufficientStorage, err)
	}
	return err
}
