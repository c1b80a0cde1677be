package domain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/imagestore/imagestore/storage"
)

// index is a user's list of images, in upload order, kept in the store as
// one record per user, and on a data folder a log of the changes since
// that record (see indexlog.go).
//
// The lists kept in the cache are shared read-only (see frozen). A batch
// of changes works on a copy (see working), through add, set and remove,
// which note what changed: the log record of the batch. The copy costs
// nothing until an image is changed or removed: additions go after the end
// of the shared list, in room of its array that no reader looks at.
type index struct {
	Images []Image `json:"images"`
	// Log says that the changes after this record are in log records,
	// from Seq+1 on. In memory, Seq is that of the last record read.
	Log bool   `json:"log,omitempty"`
	Seq uint64 `json:"seq,omitempty"`

	// A shared list's: its lookup by id and name, and its images with
	// the room after them (Images itself is capped, so that an append by
	// a reader never writes there).
	lk    *lookup
	spare []Image

	// A working copy's: what it changed; the lookup of the list it was
	// made from (its first baseLen images), usable while the copy has only
	// added images; whether Images is its own array yet.
	rec           *indexLogRecord
	added         map[string]bool // ids added by this batch
	base          *lookup
	baseLen       int
	additionsOnly bool
	owned         bool
}

// netChange is how many images a working copy's batch added and removed,
// net of those it added and removed again.
func (ix *index) netChange() (added, removed int) {
	if ix.rec == nil {
		return 0, 0
	}
	return len(ix.added), len(ix.rec.Del)
}

func (ix *index) byID(id string) int {
	switch {
	case ix.lk != nil:
		return ix.lk.byID(id)
	case ix.additionsOnly && ix.base != nil:
		if i := ix.base.byID(id); i >= 0 {
			return i
		}
		return find(ix.Images, ix.baseLen, func(img *Image) bool { return img.ID == id })
	}
	return find(ix.Images, 0, func(img *Image) bool { return img.ID == id })
}

func (ix *index) byName(name string) int {
	switch {
	case ix.lk != nil:
		return ix.lk.byName(name)
	case ix.additionsOnly && ix.base != nil:
		if i := ix.base.byName(name); i >= 0 {
			return i
		}
		return find(ix.Images, ix.baseLen, func(img *Image) bool { return img.Name == name })
	}
	return find(ix.Images, 0, func(img *Image) bool { return img.Name == name })
}

// find returns the position of the first image of imgs[from:] that match
// accepts, or -1.
func find(imgs []Image, from int, match func(*Image) bool) int {
	for i := from; i < len(imgs); i++ {
		if match(&imgs[i]) {
			return i
		}
	}
	return -1
}

// frozen returns ix, read from the store or made by a batch, ready to be
// shared read-only.
func (ix index) frozen() index {
	n := len(ix.Images)
	l := &lookup{imgs: ix.Images[:n:n]}
	if ix.additionsOnly && ix.base != nil {
		// Only additions: the lookup of the list before them still holds
		// for its images, and one for the new ones is added. It also takes
		// over the images of each lookup before it that covers no more
		// than twice as many as it would: along a chain, each lookup
		// covers more than twice as many images as the next, so a chain
		// is at most log2 of its list's length long, and each time an
		// image is put in a map again, its lookup is at least half as
		// large again: O(log n) times over all the additions. (Rebuilding
		// a whole lookup every 32 batches instead cost a list of 20,000
		// images a tenth of the server's CPU during uploads.)
		parent, from := ix.base, ix.baseLen
		for parent != nil && parent.len() <= 2*(n-from) {
			parent, from = parent.parent, parent.from
		}
		if parent != nil && parent.depth < maxLookupDepth {
			l.parent, l.from, l.depth = parent, from, parent.depth+1
		}
	}
	return index{Images: ix.Images[:n:n], Log: ix.Log, Seq: ix.Seq, lk: l, spare: ix.Images}
}

// working returns a copy of ix that a batch may change.
func (ix index) working() index {
	imgs := ix.spare
	if imgs == nil {
		imgs = ix.Images
	}
	return index{Images: imgs, Log: ix.Log, Seq: ix.Seq,
		rec: &indexLogRecord{}, base: ix.lk, baseLen: len(imgs), additionsOnly: true}
}

// add appends img to a working copy.
func (ix *index) add(img Image) {
	ix.Images = append(ix.Images, img)
	ix.rec.Put = append(ix.rec.Put, img)
	if ix.added == nil {
		ix.added = map[string]bool{}
	}
	ix.added[img.ID] = true
}

// set replaces a working copy's image at i (the same id) by img.
func (ix *index) set(i int, img Image) {
	ix.own()
	ix.Images[i] = img
	if j := slices.IndexFunc(ix.rec.Put, func(p Image) bool { return p.ID == img.ID }); j >= 0 {
		ix.rec.Put[j] = img
	} else {
		ix.rec.Put = append(ix.rec.Put, img)
	}
}

// remove removes a working copy's image at i.
func (ix *index) remove(i int) {
	ix.own()
	id := ix.Images[i].ID
	ix.Images = slices.Delete(ix.Images, i, i+1)
	ix.rec.Put = slices.DeleteFunc(ix.rec.Put, func(p Image) bool { return p.ID == id })
	if ix.added[id] {
		delete(ix.added, id)
	} else {
		ix.rec.Del = append(ix.rec.Del, id)
	}
}

// indexMark is what a change of a working copy moves: a change that fails
// must leave it as it was (see updateIndex).
type indexMark struct {
	n, puts, added, removed int
	owned, additionsOnly    bool
}

func (ix *index) mark() indexMark {
	m := indexMark{n: len(ix.Images), owned: ix.owned, additionsOnly: ix.additionsOnly}
	m.added, m.removed = ix.netChange()
	if ix.rec != nil {
		m.puts = len(ix.rec.Put)
	}
	return m
}

// own gives a working copy an array of its own before an image of the
// shared list is changed or removed.
func (ix *index) own() {
	ix.additionsOnly = false
	if !ix.owned {
		ix.Images, ix.owned = slices.Clone(ix.Images), true
	}
}

// maxLookupDepth bounds the chain of lookups of lists made by additions:
// past it a lookup is built whole again. Chains are about log2 of their
// list's length long (see frozen), so this is for odd sequences of batch
// sizes only.
const maxLookupDepth = 32

// lookup finds a shared list's images by id and by name. It is built on
// first use. A list made by adding images to another has a lookup of its
// new images only, which asks the other list's (parent) for the rest.
type lookup struct {
	imgs   []Image
	parent *lookup // of imgs[:from], if any
	from   int
	depth  int

	once       sync.Once
	ids, names map[string]int // positions in imgs, of imgs[from:]
}

// minLookupMaps is the length from which a list is worth maps.
const minLookupMaps = 16

// len is how many images the lookup covers itself, not its parent.
func (l *lookup) len() int { return len(l.imgs) - l.from }

func (l *lookup) build() {
	if len(l.imgs)-l.from < minLookupMaps {
		return // searched
	}
	l.ids = make(map[string]int, len(l.imgs)-l.from)
	l.names = make(map[string]int, len(l.imgs)-l.from)
	for i := l.from; i < len(l.imgs); i++ {
		l.ids[l.imgs[i].ID] = i
		if _, dup := l.names[l.imgs[i].Name]; !dup {
			l.names[l.imgs[i].Name] = i
		}
	}
}

func (l *lookup) byID(id string) int {
	l.once.Do(l.build)
	if l.ids != nil {
		if i, ok := l.ids[id]; ok {
			return i
		}
	} else if i := find(l.imgs, l.from, func(img *Image) bool { return img.ID == id }); i >= 0 {
		return i
	}
	if l.parent != nil {
		return l.parent.byID(id)
	}
	return -1
}

func (l *lookup) byName(name string) int {
	if l.parent != nil {
		if i := l.parent.byName(name); i >= 0 {
			return i // the first image of that name
		}
	}
	l.once.Do(l.build)
	if l.names != nil {
		if i, ok := l.names[name]; ok {
			return i
		}
		return -1
	}
	return find(l.imgs, l.from, func(img *Image) bool { return img.Name == name })
}

// maxCachedIndexes bounds the cache of decoded indexes; maxCachedTokens
// that of tokens and users.
const (
	maxCachedIndexes = 4096
	maxCachedTokens  = 65536
)

// cachedIndex is a decoded index, and the ETag and seq of the record it
// came from (etag "" for a user without one).
type cachedIndex struct {
	etag    string
	baseSeq uint64
	ix      index
	// logTorn says that the list's log ends in a part of a record, which
	// the next record must not follow: the list is written whole next.
	logTorn bool
}

// writeGen returns the counter of writes of the records of the user with
// that hash (and of the users who share the counter). A reader that
// missed the cache notes it before reading the store, and caches what it
// read only if no write ended meanwhile: it could have read the version
// before that write, after the writer updated the cache.
func (s *Service) writeGen(uh string) *atomic.Uint64 {
	return &s.writeGens[maphash.String(s.seed, uh)%uint64(len(s.writeGens))]
}

// loadIndex reads the user's index; a user without one has no images.
// The index returned is shared with a cache: callers must not modify it
// (updateIndex works on a copy).
func (s *Service) loadIndex(ctx context.Context, uh string) (index, string, error) {
	c, err := s.loadIndexState(ctx, uh)
	return c.ix, c.etag, err
}

// loadIndexState is loadIndex, with the seq of the record read.
func (s *Service) loadIndexState(ctx context.Context, uh string) (cachedIndex, error) {
	c, cached := s.indexes.get(uh)
	if cached && s.cfg.SoleWriter {
		return c, nil // every write went through this Service
	}
	gen := s.writeGen(uh)
	for attempt := 0; ; attempt++ {
		g := gen.Load()
		// Shared store: a decoded index is kept while the store's ETag for
		// it stays the same, a stat instead of reading and decoding it
		// again.
		attrs, err := s.store.Stat(ctx, indexKey(uh))
		if errors.Is(err, storage.ErrNotFound) {
			if s.cfg.SoleWriter {
				s.indexes.putIf(uh, cachedIndex{}, func() bool { return gen.Load() == g })
			}
			return cachedIndex{}, nil
		}
		if err != nil {
			return cachedIndex{}, err
		}
		if cached && c.etag == attrs.ETag {
			return c, nil
		}
		var ix index
		etag, err := s.getJSON(ctx, indexKey(uh), &ix)
		if errors.Is(err, storage.ErrNotFound) {
			return cachedIndex{}, nil
		}
		if err != nil {
			return cachedIndex{}, err
		}
		st := cachedIndex{etag: etag, baseSeq: ix.Seq}
		if ix.Log {
			var ls indexLogState
			ls, err = s.readIndexLog(ctx, uh, st.baseSeq, &ix, func() bool { return gen.Load() != g })
			ix.Seq, st.logTorn = ls.seq, ls.torn
			if errors.Is(err, errIndexLogGap) && gen.Load() != g && attempt < 100 {
				continue // a compaction removed records meanwhile: read again
			}
			if err != nil {
				return cachedIndex{}, fmt.Errorf("the list of images: %w", err)
			}
		}
		st.ix = ix.frozen()
		s.indexes.putIf(uh, st, func() bool { return gen.Load() == g })
		return st, nil
	}
}

// An indexOp is one change waiting to be written into a user's index.
type indexOp struct {
	change func(*index) error
	// done receives the outcome; or errLead, which makes the receiver
	// write the next batch.
	done chan error
}

var errLead = errors.New("lead the next batch")

// indexQueue holds the changes waiting while a user's index is written.
type indexQueue struct {
	pending []*indexOp
}

// updateIndex applies change to the user's index, and returns change's
// error or the store's. change must leave the index as it was when it
// returns an error.
//
// Changes of one user's index are written in batches (group commit): while
// one write is in progress, the changes that arrive wait, and the next
// write carries them all, each still applied on the state the ones before
// it left. One durable write then serves many uploads. Each write is a
// compare-and-swap on the record's ETag, retried on a concurrent change:
// within this process, batches of one user take turns, and across
// processes sharing a store, the conditional write alone keeps them correct.
func (s *Service) updateIndex(ctx context.Context, uh string, change func(*index) error) error {
	op := &indexOp{change: change, done: make(chan error, 1)}
	s.queueMu.Lock()
	q, busy := s.queues[uh]
	if busy {
		q.pending = append(q.pending, op)
	} else {
		q = &indexQueue{}
		s.queues[uh] = q
	}
	s.queueMu.Unlock()

	batch := []*indexOp{op}
	if busy {
		if err := <-op.done; err != errLead {
			return err // written in a batch that another request led
		}
		s.queueMu.Lock()
		batch, q.pending = q.pending, nil // op among them
		s.queueMu.Unlock()
	}
	// The batch is written for the requests of all its changes: the one
	// leading it giving up must not stop it. The turn passes on whatever
	// happens, or the user's list would stay locked.
	func() {
		defer func() {
			s.queueMu.Lock()
			if len(q.pending) > 0 {
				q.pending[0].done <- errLead
			} else {
				delete(s.queues, uh)
			}
			s.queueMu.Unlock()
		}()
		s.commitIndex(context.WithoutCancel(ctx), uh, batch)
	}()
	return <-op.done
}

// errNotWritten is the outcome of the changes of a batch that failed before
// its write was tried (one of its changes panicked).
var errNotWritten = errors.New("the list was not written")

// commitIndex applies the batch's changes in order to the user's index,
// writes it, and sends each change its outcome.
func (s *Service) commitIndex(ctx context.Context, uh string, batch []*indexOp) {
	// Each change hears its outcome, even if one of them panics: until the
	// batch's outcome is known, it is a failure.
	results := make([]error, len(batch))
	for i := range results {
		results[i] = errNotWritten
	}
	defer func() {
		for i, op := range batch {
			op.done <- results[i]
		}
	}()
	gen := s.writeGen(uh)
	for {
		cur, err := s.loadIndexState(ctx, uh)
		if err != nil {
			for i := range results {
				results[i] = err
			}
			return
		}
		ix := cur.ix.working()
		changed := false
		outcomes := make([]error, len(batch))
		for i, op := range batch {
			var panicked any
			before := ix.mark()
			outcomes[i], panicked = applyChange(op.change, &ix)
			if panicked == nil && outcomes[i] != nil && ix.mark() != before {
				panicked = fmt.Sprintf("a change failed (%v) after changing the list", outcomes[i])
			}
			if panicked != nil {
				// A bug: the list may be half changed, so nothing of the
				// batch is written, and each of its requests fails.
				s.log.Error("a change of an image list panicked; its batch was not written",
					"panic", panicked, "stack", string(debug.Stack()))
				for j := range results {
					results[j] = fmt.Errorf("%w: a change panicked: %v", errNotWritten, panicked)
				}
				return
			}
			changed = changed || outcomes[i] == nil
		}
		if !changed {
			copy(results, outcomes)
			return
		}
		next, err := s.writeIndex(ctx, uh, cur, ix)
		gen.Add(1)
		if err == nil {
			s.indexes.put(uh, next)
			copy(results, outcomes)
			if next.baseSeq > cur.baseSeq {
				s.pruneIndexLog(ctx, uh, next.baseSeq) // compacted: see indexlog.go
			}
			return
		}
		// The write's outcome may be unknown (a failed fsync after the
		// rename): read the record again next time.
		s.indexes.forget(uh)
		if !errors.Is(err, storage.ErrPrecondition) {
			s.unsure.Store(uh, true)
			for i := range outcomes {
				if outcomes[i] == nil {
					outcomes[i] = err
				}
			}
			copy(results, outcomes)
			return
		}
	}
}

var indexBuffers sync.Pool // of *[]byte

// writeIndex writes ix, the user's list after cur with a batch's changes,
// and returns what the cache keeps of it: on a data folder, as a log
// record while the log is short, else whole (see indexlog.go).
func (s *Service) writeIndex(ctx context.Context, uh string, cur cachedIndex, ix index) (cachedIndex, error) {
	seq := cur.ix.Seq
	// After a write that failed, perhaps after it was made (a failed
	// fsync), the list is written whole: a record's folder is not the
	// whole list's, and a record made durable on a whole list that is not
	// (or after one that is not) would leave a gap after a crash.
	_, unsure := s.unsure.Load(uh)
	if s.cfg.SoleWriter && cur.ix.Log && seq-cur.baseSeq < indexLogLimit(len(cur.ix.Images)) && !unsure && !cur.logTorn {
		if verifyIndexRecords && ix.rec != nil {
			if got := ix.rec.apply(slices.Clone(cur.ix.Images), nil); !slices.Equal(got, ix.Images) {
				panic("a batch's log record does not give the list the batch made")
			}
		}
		if added, removed := ix.netChange(); ix.rec != nil && len(ix.Images) == len(cur.ix.Images)+added-removed {
			if err := s.putIndexLog(ctx, uh, cur.baseSeq, seq+1, ix.rec); err != nil {
				return cachedIndex{}, err
			}
			ix.Seq = seq + 1
			return cachedIndex{etag: cur.etag, baseSeq: cur.baseSeq, ix: ix.frozen()}, nil
		}
		// A change that went around add, set and remove (a bug): its
		// record could miss something, so the list is written whole.
		s.log.Error("a change of an image list was not noted; the list is written whole", "user", uh)
	}
	if s.stager != nil {
		// Blobs published in the background may not be durable yet: a
		// whole list is not checked as a log is when read (see
		// pendingBlob), so it names none that a crash could undo.
		if err := s.stager.Flush(ctx, blobFolder(uh)); err != nil {
			return cachedIndex{}, storeErr(err)
		}
	}
	cond := storage.Cond{IfMatch: cur.etag}
	if cur.etag == "" {
		cond = storage.Cond{IfAbsent: true}
	}
	ix.Log, ix.Seq = s.cfg.SoleWriter, 0
	if ix.Log {
		if cur.ix.Log {
			// A number no record has: a reader of the previous whole
			// list meets a gap there, even while the records folded in
			// are not removed yet (or failed to be).
			ix.Seq = seq + 1
		} else {
			// The first whole list with a log: records already there
			// (of a log whose list was since written whole, by a server
			// sharing the store, or by migrate) are at or below its
			// number, never applied after it, removed or not.
			top, err := s.topIndexLogSeq(ctx, uh)
			if err != nil {
				return cachedIndex{}, err
			}
			ix.Seq = top + 1
		}
	}
	tag, err := s.putIndex(ctx, uh, ix, cond)
	if err != nil {
		return cachedIndex{}, err
	}
	s.unsure.Delete(uh)
	return cachedIndex{etag: tag, baseSeq: ix.Seq, ix: ix.frozen()}, nil
}

// putIndex writes the user's index record.
func (s *Service) putIndex(ctx context.Context, uh string, ix index, cond storage.Cond) (etag string, err error) {
	return s.putEncoded(ctx, indexKey(uh), cond, func(b []byte) []byte {
		if ix.Log {
			return appendLoggedIndexJSON(b, ix.Seq, ix.Images)
		}
		return appendIndexJSON(b, ix.Images)
	})
}

// putEncoded writes the record that encode appends to a pooled buffer.
func (s *Service) putEncoded(ctx context.Context, key string, cond storage.Cond, encode func([]byte) []byte) (etag string, err error) {
	bp := encodeRecord(encode)
	defer releaseRecord(bp)
	attrs, err := s.store.Put(ctx, key, bytes.NewReader(*bp), cond)
	return attrs.ETag, storeErr(err)
}

// encodeRecord returns what encode appends to a pooled buffer, which the
// caller gives back with releaseRecord.
func encodeRecord(encode func([]byte) []byte) *[]byte {
	bp, _ := indexBuffers.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	*bp = encode((*bp)[:0])
	return bp
}

func releaseRecord(bp *[]byte) {
	if cap(*bp) <= 4<<20 { // a very large list's buffer is not kept
		indexBuffers.Put(bp)
	}
}

// applyChange runs change, turning a panic into a value returned.
func applyChange(change func(*index) error, ix *index) (err error, panicked any) {
	defer func() {
		if v := recover(); v != nil {
			panicked = v
		}
	}()
	return change(ix), nil
}
