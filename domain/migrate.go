package domain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"

	"github.com/imagestore/imagestore/storage"
)

// DefaultMigrateWorkers is how many keys Migrate copies at once when
// MigrateOptions.Workers is not set.
const DefaultMigrateWorkers = 8

// MigrateOptions tune Migrate.
type MigrateOptions struct {
	// Workers is how many keys are copied at once; 0 or less means
	// DefaultMigrateWorkers. With an object store, latency rather than
	// bandwidth bounds a copy, so several at once go faster.
	Workers int
	// Progress, if not nil, is called each time a key is done (copied,
	// found already there, or failed), with the keys done so far, the
	// number of keys to do, and the bytes written so far. Migrate
	// serialises the calls (never two at once, done never decreasing), so
	// Progress needs no lock of its own; it holds up the copies while it
	// runs, so it should return quickly.
	Progress func(done, total int, bytes int64)
	// Overwrite makes Migrate replace a record (a user, a token, a list)
	// that dst holds with other bytes than src. Without it such a record
	// is left alone and reported: it was written in dst since (by a
	// server already running on it, say), and replacing it would lose
	// what was written there.
	Overwrite bool
}

// MigrateReport is what Migrate did.
type MigrateReport struct {
	// Users and Images are how many user records and listed images the
	// source holds.
	Users, Images int
	// Copied counts the keys written to the destination; Skipped those it
	// already held, the same (for an image's bytes: bytes that verify).
	Copied, Skipped int
	// Bytes is how many bytes were written to the destination.
	Bytes int64
	// Verified counts the images whose bytes in the destination were read
	// back and matched their recorded SHA-256 and length.
	Verified int
	// Unreferenced counts the source's blobs that no image names (an
	// interrupted upload's bytes, say): they are not copied.
	Unreferenced int
	// Failures lists the keys that were not copied, by key.
	Failures []MigrateFailure
}

// SourceDamage counts the failures that are faults of the source (see
// MigrateFailure.Source).
func (r MigrateReport) SourceDamage() int {
	n := 0
	for _, f := range r.Failures {
		if f.Source {
			n++
		}
	}
	return n
}

// MigrateFailure is a key that Migrate did not copy, and why.
type MigrateFailure struct {
	// Key is the key in the store.
	Key string
	// Image describes the image whose bytes Key holds, if it is a blob:
	// its id and name.
	Image string
	// Source is true when the fault is in the source: an image's bytes
	// there are damaged or missing, or a record does not decode. Such
	// bytes are not copied, and running the migration again will not
	// help: the image can only be replaced or deleted. Otherwise the copy
	// failed (a store's error, or bytes that did not read back the same),
	// and running the migration again retries it.
	Source bool
	// Err says what went wrong.
	Err error
}

// String describes the failure in one line: the key, the image, whether
// the source is at fault, and the error.
func (f MigrateFailure) String() string {
	s := f.Key
	if f.Image != "" {
		s += " (" + f.Image + ")"
	}
	if f.Source {
		s += ": in the source"
	}
	return s + ": " + f.Err.Error()
}

// Migrate copies everything from the store src to the store dst: users,
// tokens, image lists and images' bytes, and any other record. Each image's
// bytes are checked as they are copied and read back from dst afterwards,
// against the SHA-256 and length its list records.
//
// It may be interrupted and run again, as often as need be: a key that dst
// already holds the same (for an image's bytes, bytes that verify) is
// skipped; an image's bytes that do not verify are written again (a blob's
// key names one upload only); a record that dst holds with other bytes is
// left alone and reported, unless opts.Overwrite. It never deletes anything
// in dst.
// Keys are written in an order that never shows, in dst, a user whose data
// is not all there: images' bytes first, then tokens and other records,
// then image lists, then user records. A list is not written while bytes
// it names failed to copy, nor a user record while its list or token
// failed; running again copies them once it can. An image whose bytes are
// damaged or missing in the source is reported (see MigrateFailure.Source)
// and not copied, but its user and list are: such an image is as broken in
// dst as in src, and `imagestore check --repair` on dst unlists it.
// Blobs that no list names are counted, not copied, and neither are image
// variants: they are a cache, made again on demand.
//
// Nothing may write to src or dst meanwhile: a server running on src could
// change it under the copy. Migrate returns an error only for what stops the
// whole migration (src cannot be listed, ctx is done), with the report of
// what was done until then; a key that fails is listed in the report's
// Failures, and the others go on.
func Migrate(ctx context.Context, src, dst storage.Store, opts MigrateOptions) (MigrateReport, error) {
	m := &migration{src: src, dst: dst, opts: opts, holdsBack: map[string]bool{}}
	if m.opts.Workers <= 0 {
		m.opts.Workers = DefaultMigrateWorkers
	}
	var err error
	if m.srcSvc, err = New(src, DefaultConfig); err != nil {
		return m.rep, err
	}
	if m.dstSvc, err = New(dst, DefaultConfig); err != nil {
		return m.rep, err
	}

	var blobKeys, indexKeys, userKeys, otherKeys []string
	for key, err := range src.List(ctx, "") {
		if err != nil {
			return m.rep, fmt.Errorf("list the source: %w", err)
		}
		switch _, isIndex := indexUser(key); {
		case strings.HasPrefix(key, "variants/") || strings.HasPrefix(key, "health/"):
			// Caches (variants are made again on demand) and probes.
			continue
		case strings.HasPrefix(key, "indexlog/"):
			// A data folder's lists are copied whole, their logs applied.
			continue
		case strings.HasPrefix(key, "blobs/"):
			blobKeys = append(blobKeys, key)
		case isIndex:
			indexKeys = append(indexKeys, key)
		case strings.HasPrefix(key, "users/"):
			userKeys = append(userKeys, key)
		default:
			otherKeys = append(otherKeys, key)
		}
	}
	m.rep.Users = len(userKeys)

	// Which image each blob must hold, from every list.
	m.planned = map[string]blobRef{}
	m.unplanned = map[string]error{}
	var planMu sync.Mutex
	err = parallel(ctx, m.opts.Workers, indexKeys, func(key string) {
		uh, _ := indexUser(key)
		ix, _, err := m.srcSvc.loadIndex(ctx, uh)
		planMu.Lock()
		defer planMu.Unlock()
		if err != nil {
			m.unplanned[key] = err
			return
		}
		for _, img := range ix.Images {
			m.planned[blobKey(uh, img.Blob)] = blobRef{uh: uh, img: img}
		}
	})
	if err != nil {
		return m.rep, stopped(err)
	}
	listed := slices.Sorted(maps.Keys(m.planned))
	m.rep.Images = len(listed)
	for _, key := range blobKeys {
		if _, ok := m.planned[key]; !ok {
			m.rep.Unreferenced++
		}
	}
	m.total = len(listed) + len(otherKeys) + len(indexKeys) + len(userKeys)

	// Each phase ends before the next begins: see the order above.
	phases := []struct {
		keys []string
		copy func(ctx context.Context, key string)
	}{
		{listed, m.copyBlob},
		{otherKeys, m.copyOther},
		{indexKeys, m.copyIndex},
		{userKeys, m.copyUser},
	}
	for _, ph := range phases {
		if err := parallel(ctx, m.opts.Workers, ph.keys, func(key string) { ph.copy(ctx, key) }); err != nil {
			return m.report(), stopped(err)
		}
	}
	return m.report(), nil
}

func stopped(err error) error { return fmt.Errorf("migration stopped: %w", err) }

// indexUser returns the user hash of an index key, if key is one.
func indexUser(key string) (string, bool) {
	uh, ok := strings.CutPrefix(key, "index/")
	if !ok {
		return "", false
	}
	uh, ok = strings.CutSuffix(uh, ".json")
	return uh, ok && uh != "" && !strings.Contains(uh, "/")
}

// blobRef is the image a blob must hold, and its user's hash.
type blobRef struct {
	uh  string
	img Image
}

func (b blobRef) describe() string { return "image " + b.img.ID + ", " + b.img.Name }

// migration is the state of one Migrate.
type migration struct {
	src, dst       storage.Store
	srcSvc, dstSvc *Service
	opts           MigrateOptions
	// planned and unplanned are written before the copies, and only read
	// during them.
	planned   map[string]blobRef // blob key -> the image it holds
	unplanned map[string]error   // index key -> why it could not be read

	mu    sync.Mutex // guards what follows
	rep   MigrateReport
	total int
	done  int
	// holdsBack has the keys that failed to copy in this run and hold back
	// the records that depend on them (see Migrate).
	holdsBack map[string]bool
}

// parallel runs fn on each item, with up to n at once, and returns
// ctx.Err() if ctx ended before they were all done.
func parallel[T any](ctx context.Context, n int, items []T, fn func(T)) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, len(items)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(items)) {
					return
				}
				fn(items[i])
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

func (m *migration) report() MigrateReport {
	m.mu.Lock()
	defer m.mu.Unlock()
	rep := m.rep
	rep.Failures = slices.Clone(rep.Failures)
	slices.SortFunc(rep.Failures, func(a, b MigrateFailure) int { return strings.Compare(a.Key, b.Key) })
	return rep
}

// finished counts a key done and tells Progress; m.mu must be held.
func (m *migration) finished() {
	m.done++
	if m.opts.Progress != nil {
		m.opts.Progress(m.done, m.total, m.rep.Bytes)
	}
}

func (m *migration) copied(verified bool)  { m.count(&m.rep.Copied, verified) }
func (m *migration) skipped(verified bool) { m.count(&m.rep.Skipped, verified) }

// count records a key done, copied or skipped, and an image verified.
func (m *migration) count(n *int, verified bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	*n++
	if verified {
		m.rep.Verified++
	}
	m.finished()
}

func (m *migration) wrote(n int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rep.Bytes += n
}

// fail records a key that was not copied. A failure because ctx ended is
// not one: Migrate reports that it stopped.
func (m *migration) fail(ctx context.Context, f MigrateFailure) {
	if ctx.Err() != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rep.Failures = append(m.rep.Failures, f)
	// Bytes damaged in the source hold nothing back: they will never copy.
	if !f.Source || !strings.HasPrefix(f.Key, "blobs/") {
		m.holdsBack[f.Key] = true
	}
	m.finished()
}

// heldBack reports whether a key that others depend on failed to copy.
func (m *migration) heldBack(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.holdsBack[key]
}

// copyBlob copies an image's bytes, unless dst holds them already, checking
// them as they pass and reading them back from dst.
func (m *migration) copyBlob(ctx context.Context, key string) {
	ref := m.planned[key]
	if m.dstSvc.verifyBlob(ctx, ref.uh, ref.img) == nil {
		m.skipped(true)
		return
	}
	failure := MigrateFailure{Key: key, Image: ref.describe()}
	rc, _, err := m.src.Get(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		failure.Source, failure.Err = true, errors.New("missing")
		m.fail(ctx, failure)
		return
	}
	if err != nil {
		failure.Err = fmt.Errorf("read: %w", err)
		m.fail(ctx, failure)
		return
	}
	c := newCheckedCopy(rc, ref.img)
	_, err = m.dst.Put(ctx, key, c, storage.Cond{})
	rc.Close()
	switch {
	case c.damage != nil: // the Put failed, on purpose
		failure.Source, failure.Err = true, fmt.Errorf("damaged: %w", c.damage)
		m.fail(ctx, failure)
		return
	case err != nil:
		failure.Err = fmt.Errorf("copy: %w", err)
		m.fail(ctx, failure)
		return
	}
	m.wrote(c.written)
	if err := m.dstSvc.verifyBlob(ctx, ref.uh, ref.img); err != nil {
		failure.Err = fmt.Errorf("the copy does not read back as the image (the source's bytes were good): %w", err)
		m.fail(ctx, failure)
		return
	}
	m.copied(true)
}

// copyOther copies a record that nothing else depends on being there.
func (m *migration) copyOther(ctx context.Context, key string) {
	data, ok := m.readSource(ctx, key)
	if ok {
		m.putRecord(ctx, key, data)
	}
}

// copyIndex copies a user's list of images, unless bytes it names failed to
// copy.
func (m *migration) copyIndex(ctx context.Context, key string) {
	if err, ok := m.unplanned[key]; ok {
		m.fail(ctx, MigrateFailure{Key: key, Source: isDecodeError(err), Err: fmt.Errorf("read the list: %w", err)})
		return
	}
	// The list as the source's servers read it (a data folder's with its
	// log applied), written whole.
	uh, _ := indexUser(key)
	ix, etag, err := m.srcSvc.loadIndex(ctx, uh)
	switch {
	case err == nil && etag == "":
		m.fail(ctx, MigrateFailure{Key: key, Err: errors.New("removed from the source during the migration (is a server using it?)")})
		return
	case err != nil:
		m.fail(ctx, MigrateFailure{Key: key, Source: isDecodeError(err), Err: fmt.Errorf("read the list: %w", err)})
		return
	}
	data := appendIndexJSON(nil, ix.Images)
	var notCopied, changed int
	for _, img := range ix.Images {
		k := blobKey(uh, img.Blob)
		if _, ok := m.planned[k]; !ok {
			changed++
		} else if m.heldBack(k) {
			notCopied++
		}
	}
	switch {
	case changed > 0:
		m.fail(ctx, MigrateFailure{Key: key, Err: fmt.Errorf("held back: the list changed during the migration (is a server using the source?); run it again")})
	case notCopied > 0:
		m.fail(ctx, MigrateFailure{Key: key, Err: fmt.Errorf("held back: the bytes of %d of its images failed to copy", notCopied)})
	default:
		m.putRecord(ctx, key, data)
	}
}

// copyUser copies a user record, last, unless the user's list or token
// failed to copy.
func (m *migration) copyUser(ctx context.Context, key string) {
	data, ok := m.readSource(ctx, key)
	if !ok {
		return
	}
	var u User
	if err := json.Unmarshal(data, &u); err != nil {
		m.fail(ctx, MigrateFailure{Key: key, Source: true, Err: fmt.Errorf("decode the user: %w", err)})
		return
	}
	switch {
	case m.heldBack(indexKey(userHashOf(u.Name))):
		m.fail(ctx, MigrateFailure{Key: key, Err: errors.New("held back: the user's list of images failed to copy")})
	case m.heldBack(tokenKey(u.Token)):
		m.fail(ctx, MigrateFailure{Key: key, Err: errors.New("held back: the user's token failed to copy")})
	default:
		m.putRecord(ctx, key, data)
	}
}

// readSource reads a whole record of src. On an error it records the
// failure and returns false.
func (m *migration) readSource(ctx context.Context, key string) ([]byte, bool) {
	data, err := readAll(ctx, m.src, key)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		m.fail(ctx, MigrateFailure{Key: key, Err: errors.New("removed from the source during the migration (is a server using it?)")})
		return nil, false
	case err != nil:
		m.fail(ctx, MigrateFailure{Key: key, Err: fmt.Errorf("read: %w", err)})
		return nil, false
	}
	return data, true
}

// errDiffers is the failure of a record that dst holds with other bytes.
var errDiffers = errors.New("the destination holds another version, written there since (by a server running on it?): not overwritten; compare them, and run again with --overwrite to replace it with the source's")

// putRecord writes a record's bytes to dst, unless it holds them already,
// or holds other bytes (see MigrateOptions.Overwrite).
func (m *migration) putRecord(ctx context.Context, key string, data []byte) {
	cur, err := readAll(ctx, m.dst, key)
	switch {
	case err == nil && bytes.Equal(cur, data):
		m.skipped(false)
		return
	case err == nil && !m.opts.Overwrite:
		m.fail(ctx, MigrateFailure{Key: key, Err: errDiffers})
		return
	}
	if _, err := m.dst.Put(ctx, key, bytes.NewReader(data), storage.Cond{}); err != nil {
		m.fail(ctx, MigrateFailure{Key: key, Err: fmt.Errorf("write: %w", err)})
		return
	}
	m.wrote(int64(len(data)))
	m.copied(false)
}

func readAll(ctx context.Context, st storage.Store, key string) ([]byte, error) {
	rc, _, err := st.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// isDecodeError reports whether err says that a record is not the JSON it
// should be, rather than that it could not be read.
func isDecodeError(err error) bool {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	return errors.As(err, &syntax) || errors.As(err, &typ) || errors.Is(err, io.ErrUnexpectedEOF)
}

// checkedCopy is what a blob's copy is written from: it yields the source's
// bytes unchanged, and decompresses and hashes them as they pass. At their
// end it fails, instead of returning io.EOF, if they are not the image
// recorded: the store's Put then writes nothing, so damaged bytes are never
// copied, and are found without reading the source a second time.
type checkedCopy struct {
	src     io.Reader
	srcErr  error        // src's own failure, as opposed to a fault of its bytes
	pending bytes.Buffer // bytes read from src, not yet passed on
	zr      *gzip.Reader
	out     []byte // decompressed bytes, hashed and dropped
	h       hash.Hash
	n       int64 // decompressed length so far
	img     Image
	end     error // what Read returns once pending is empty: io.EOF, or why not
	// damage says why the bytes are not the image's, when they are not.
	damage error
	// written counts the bytes passed on.
	written int64
}

func newCheckedCopy(src io.Reader, img Image) *checkedCopy {
	c := &checkedCopy{src: src, img: img, h: sha256.New(), out: make([]byte, 32<<10)}
	zr, err := gzip.NewReader(feed{c})
	if err != nil {
		c.refuse(fmt.Errorf("not gzip: %v", err))
	}
	c.zr = zr
	return c
}

// feed is what the decompressor reads: src, keeping what passes for Read.
type feed struct{ c *checkedCopy }

func (f feed) Read(p []byte) (int, error) {
	n, err := f.c.src.Read(p)
	f.c.pending.Write(p[:n])
	if err != nil && err != io.EOF {
		f.c.srcErr = err
	}
	return n, err
}

// refuse ends the copy: for damage, or for src's own error if it failed.
func (c *checkedCopy) refuse(err error) {
	if c.srcErr != nil {
		c.end = c.srcErr
		return
	}
	c.damage, c.end = err, err
}

func (c *checkedCopy) Read(p []byte) (int, error) {
	for c.pending.Len() == 0 {
		if c.end != nil {
			return 0, c.end
		}
		c.advance()
	}
	n, _ := c.pending.Read(p)
	c.written += int64(n)
	return n, nil
}

// advance decompresses the next piece, reading more of src.
func (c *checkedCopy) advance() {
	n, err := c.zr.Read(c.out)
	c.h.Write(c.out[:n])
	c.n += int64(n)
	switch {
	case c.n > c.img.Size:
		c.refuse(fmt.Errorf("more than the %d bytes recorded", c.img.Size))
	case err == io.EOF && c.n != c.img.Size:
		c.refuse(fmt.Errorf("%d bytes, %d recorded", c.n, c.img.Size))
	case err == io.EOF:
		if sum := hex.EncodeToString(c.h.Sum(nil)); sum != c.img.SHA256 {
			c.refuse(fmt.Errorf("SHA-256 %s, %s recorded", sum, c.img.SHA256))
		} else {
			c.end = io.EOF
		}
	case err != nil:
		c.refuse(fmt.Errorf("unreadable: %v", err))
	}
}
