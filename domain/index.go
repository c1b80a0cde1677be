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
// one record per user.
type index struct {
	Images []Image `json:"images"`

	// Positions by id and by name, built for the lists kept in the cache
	// (which are read-only); nil on a working copy, which is searched.
	ids, names map[string]int
}

func (ix *index) byID(id string) int {
	if ix.ids != nil {
		if i, ok := ix.ids[id]; ok {
			return i
		}
		return -1
	}
	return slices.IndexFunc(ix.Images, func(img Image) bool { return img.ID == id })
}

func (ix *index) byName(name string) int {
	if ix.names != nil {
		if i, ok := ix.names[name]; ok {
			return i
		}
		return -1
	}
	return slices.IndexFunc(ix.Images, func(img Image) bool { return img.Name == name })
}

// frozen returns ix ready to be shared read-only, with its lookup maps
// when it is long enough for them to pay.
func (ix index) frozen() index {
	ix.ids, ix.names = nil, nil
	if len(ix.Images) > 16 {
		ix.ids = make(map[string]int, len(ix.Images))
		ix.names = make(map[string]int, len(ix.Images))
		for i, img := range ix.Images {
			ix.ids[img.ID] = i
			ix.names[img.Name] = i
		}
	}
	return ix
}

// working returns a copy of ix that may be changed.
func (ix index) working() index {
	return index{Images: slices.Clone(ix.Images)}
}

// maxCachedIndexes bounds the cache of decoded indexes; maxCachedTokens
// that of tokens and users.
const (
	maxCachedIndexes = 4096
	maxCachedTokens  = 65536
)

// cachedIndex is a decoded index and the ETag of the record it came from
// ("" for a user without one).
type cachedIndex struct {
	etag string
	ix   index
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
	c, cached := s.indexes.get(uh)
	if cached && s.cfg.SoleWriter {
		return c.ix, c.etag, nil // every write went through this Service
	}
	gen := s.writeGen(uh)
	g := gen.Load()
	// Shared store: a decoded index is kept while the store's ETag for it
	// stays the same, a stat instead of reading and decoding it again.
	attrs, err := s.store.Stat(ctx, indexKey(uh))
	if errors.Is(err, storage.ErrNotFound) {
		if s.cfg.SoleWriter {
			s.indexes.putIf(uh, cachedIndex{}, func() bool { return gen.Load() == g })
		}
		return index{}, "", nil
	}
	if err != nil {
		return index{}, "", err
	}
	if cached && c.etag == attrs.ETag {
		return c.ix, c.etag, nil
	}
	var ix index
	etag, err := s.getJSON(ctx, indexKey(uh), &ix)
	if errors.Is(err, storage.ErrNotFound) {
		return index{}, "", nil
	}
	if err != nil {
		return index{}, "", err
	}
	ix = ix.frozen()
	s.indexes.putIf(uh, cachedIndex{etag: etag, ix: ix}, func() bool { return gen.Load() == g })
	return ix, etag, nil
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
		cur, etag, err := s.loadIndex(ctx, uh)
		if err != nil {
			for i := range results {
				results[i] = err
			}
			return
		}
		ix := cur.working()
		changed := false
		outcomes := make([]error, len(batch))
		for i, op := range batch {
			var panicked any
			outcomes[i], panicked = applyChange(op.change, &ix)
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
		cond := storage.Cond{IfMatch: etag}
		if etag == "" {
			cond = storage.Cond{IfAbsent: true}
		}
		newTag, err := s.putIndex(ctx, uh, ix.Images, cond)
		gen.Add(1)
		if err == nil {
			s.indexes.put(uh, cachedIndex{etag: newTag, ix: ix.frozen()})
			copy(results, outcomes)
			return
		}
		// The write's outcome may be unknown (a failed fsync after the
		// rename): read the record again next time.
		s.indexes.forget(uh)
		if !errors.Is(err, storage.ErrPrecondition) {
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

// putIndex writes the user's index record.
func (s *Service) putIndex(ctx context.Context, uh string, imgs []Image, cond storage.Cond) (etag string, err error) {
	bp, _ := indexBuffers.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	*bp = appendIndexJSON((*bp)[:0], imgs)
	attrs, err := s.store.Put(ctx, indexKey(uh), bytes.NewReader(*bp), cond)
	if cap(*bp) <= 4<<20 { // a very large list's buffer is not kept
		indexBuffers.Put(bp)
	}
	return attrs.ETag, storeErr(err)
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
