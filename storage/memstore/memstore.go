// Package memstore is a storage.Store held in process memory: for tests, and
// for trying imagestore without touching the disk. Nothing survives the
// process.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imagestore/imagestore/storage"
)

type object struct {
	data    []byte
	etag    string
	modTime time.Time
}

// Store is an in-memory storage.Store. The zero value is not usable; call New.
type Store struct {
	mu      sync.RWMutex
	objects map[string]object
	gen     uint64
}

// New returns an empty store.
func New() *Store {
	return &Store{objects: make(map[string]object)}
}

var _ storage.Store = (*Store)(nil)

func keyErr(key string) error {
	return fmt.Errorf("%w: %q", storage.ErrInvalidKey, key)
}

// Get implements storage.Store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, storage.Attrs, error) {
	if !storage.ValidKey(key) {
		return nil, storage.Attrs{}, keyErr(key)
	}
	if err := ctx.Err(); err != nil {
		return nil, storage.Attrs{}, err
	}
	s.mu.RLock()
	o, ok := s.objects[key]
	s.mu.RUnlock()
	if !ok {
		return nil, storage.Attrs{}, fmt.Errorf("get %s: %w", key, storage.ErrNotFound)
	}
	// o.data is never modified after it is stored, so sharing it is safe.
	return io.NopCloser(bytes.NewReader(o.data)), attrs(o), nil
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.Attrs, error) {
	if !storage.ValidKey(key) {
		return storage.Attrs{}, keyErr(key)
	}
	s.mu.RLock()
	o, ok := s.objects[key]
	s.mu.RUnlock()
	if !ok {
		return storage.Attrs{}, fmt.Errorf("stat %s: %w", key, storage.ErrNotFound)
	}
	return attrs(o), nil
}

func attrs(o object) storage.Attrs {
	return storage.Attrs{Size: int64(len(o.data)), ETag: o.etag, ModTime: o.modTime}
}

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	if !storage.ValidKey(key) {
		return storage.Attrs{}, keyErr(key)
	}
	if err := storage.CheckCond(cond); err != nil {
		return storage.Attrs{}, err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return storage.Attrs{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.Attrs{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(key, cond); err != nil {
		return storage.Attrs{}, err
	}
	s.gen++
	o := object{data: data, etag: fmt.Sprintf("m%d", s.gen), modTime: time.Now()}
	s.objects[key] = o
	return attrs(o), nil
}

// check reports whether cond holds for key. s.mu must be held.
func (s *Store) check(key string, cond storage.Cond) error {
	cur, exists := s.objects[key]
	return storage.Precondition(key, cond, exists, cur.etag)
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if !storage.ValidKey(key) {
		return keyErr(key)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[key]; !ok {
		return fmt.Errorf("delete %s: %w", key, storage.ErrNotFound)
	}
	delete(s.objects, key)
	return nil
}

// List implements storage.Store.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if !storage.ValidPrefix(prefix) {
			yield("", keyErr(prefix))
			return
		}
		s.mu.RLock()
		var keys []string
		for k := range s.objects {
			if strings.HasPrefix(k, prefix) {
				keys = append(keys, k)
			}
		}
		s.mu.RUnlock()
		slices.Sort(keys)
		for _, k := range keys {
			if err := ctx.Err(); err != nil {
				yield("", err)
				return
			}
			if !yield(k, nil) {
				return
			}
		}
	}
}

var _ storage.Stager = (*Store)(nil)

// Stage implements storage.Stager: the bytes are kept aside until Publish.
func (s *Store) Stage(ctx context.Context, key string, r io.Reader) (storage.Staged, error) {
	if !storage.ValidKey(key) {
		return nil, keyErr(key)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &staged{s: s, key: key, data: data}, nil
}

// StageNew implements storage.Stager: as a file store does, the value
// is under its key at once, and Publish checks that it still is.
func (s *Store) StageNew(ctx context.Context, key string, r io.Reader) (storage.Staged, error) {
	v, err := s.Stage(ctx, key, r)
	if err != nil {
		return nil, err
	}
	st := v.(*staged)
	a, err := s.Put(ctx, key, bytes.NewReader(st.data), storage.Cond{IfAbsent: true})
	if err != nil {
		return nil, err
	}
	st.named = a.ETag
	return st, nil
}

// Unlink implements storage.Stager: Delete.
func (s *Store) Unlink(ctx context.Context, key string) error { return s.Delete(ctx, key) }

// Append implements storage.Stager. The value is copied with p at its
// end, so that readers of the value before keep their bytes.
func (s *Store) Append(ctx context.Context, key string, p []byte) error {
	if !storage.ValidKey(key) {
		return keyErr(key)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.objects[key]
	data := make([]byte, 0, len(o.data)+len(p))
	data = append(append(data, o.data...), p...)
	s.gen++
	s.objects[key] = object{data: data, etag: fmt.Sprintf("m%d", s.gen), modTime: time.Now()}
	return nil
}

// Flush implements storage.Stager; memory has nothing to make durable.
func (s *Store) Flush(ctx context.Context, folder string) error {
	if !strings.HasSuffix(folder, "/") || !storage.ValidPrefix(folder) {
		return fmt.Errorf("flush %q: %w", folder, storage.ErrInvalidKey)
	}
	return ctx.Err()
}

type staged struct {
	s     *Store
	key   string
	data  []byte
	named string // the ETag of the value StageNew put under the key
	done  bool
}

func (st *staged) Size() int64 { return int64(len(st.data)) }
func (st *staged) Sync() error { return nil }

func (st *staged) Close() error {
	if st.named != "" && !st.done {
		st.s.mu.Lock()
		if o, ok := st.s.objects[st.key]; ok && o.etag == st.named {
			delete(st.s.objects, st.key)
		}
		st.s.mu.Unlock()
	}
	return nil
}

func (st *staged) Publish(ctx context.Context) (storage.Attrs, error) {
	if st.done {
		return storage.Attrs{}, fmt.Errorf("put %s: published already", st.key)
	}
	if st.named != "" {
		if err := ctx.Err(); err != nil {
			return storage.Attrs{}, err
		}
		st.s.mu.RLock()
		o, ok := st.s.objects[st.key]
		st.s.mu.RUnlock()
		if !ok || o.etag != st.named {
			return storage.Attrs{}, fmt.Errorf("put %s: written or removed since it was staged: %w", st.key, storage.ErrPrecondition)
		}
		st.done = true
		return attrs(o), nil
	}
	a, err := st.s.Put(ctx, st.key, bytes.NewReader(st.data), storage.Cond{IfAbsent: true})
	st.done = err == nil
	return a, err
}
