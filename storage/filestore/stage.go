package filestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/imagestore/imagestore/storage"
)

var _ storage.Stager = (*Store)(nil)

// staged is a value written but not yet under its key: an unnamed file
// (see openUnnamed) where the system allows, else a named temporary file
// in the key's folder.
type staged struct {
	s      *Store
	key, p string // the key, and the path it maps to
	dir    string
	f      *os.File
	from   string // what to link or rename from: /proc/self/fd/N or the temporary file
	named  bool   // from is a temporary file (renamed into place, not linked)
	size   int64
	synced bool
	done   bool // published, or the temporary file renamed away
}

// Stage implements storage.Stager.
func (s *Store) Stage(ctx context.Context, key string, r io.Reader) (storage.Staged, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	st, err := s.stage(ctx, key, p, r, s.portable)
	if err != nil {
		return nil, wrapWriteErr("put", key, err)
	}
	return st, nil
}

// stage writes r's bytes into a new file in the folder of key's path p,
// named (a temporary file) if named is set or the system has no unnamed
// files. On error nothing is left behind.
func (s *Store) stage(ctx context.Context, key, p string, r io.Reader, named bool) (_ *staged, err error) {
	dir := filepath.Dir(p)
	if err := s.ensureDir(dir); err != nil {
		return nil, err
	}
	if err := s.faultAt("create", key); err != nil {
		return nil, err
	}
	st := &staged{s: s, key: key, p: p, dir: dir}
	if !named {
		st.f, st.from, err = openUnnamed(dir)
		if err != nil {
			return nil, err
		}
	}
	if st.f == nil {
		if st.f, err = os.CreateTemp(dir, tmpPrefix+"*"); err != nil {
			return nil, err
		}
		st.from, st.named = st.f.Name(), true
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	if st.size, err = copyToFile(ctx, st.f, r); err != nil {
		return nil, err
	}
	if err := s.faultAt("write", key); err != nil {
		return nil, err
	}
	mt := s.nextModTime()
	if err := os.Chtimes(st.from, mt, mt); err != nil {
		return nil, err
	}
	return st, nil
}

func (st *staged) Size() int64 { return st.size }

func (st *staged) Sync() error {
	if err := st.sync(); err != nil {
		return wrapWriteErr("put", st.key, err)
	}
	return nil
}

func (st *staged) sync() error {
	if st.synced {
		return nil
	}
	if err := st.s.faultAt("sync", st.key); err != nil {
		return err
	}
	if err := st.f.Sync(); err != nil {
		return err
	}
	st.synced = true
	return nil
}

// Publish links the unnamed file to the key's name, which fails if the
// name exists; a temporary file is renamed, once the key is found absent
// under the key's lock (the folder is this process's alone).
func (st *staged) Publish(ctx context.Context) (storage.Attrs, error) {
	if st.done {
		return storage.Attrs{}, fmt.Errorf("put %s: published already", st.key)
	}
	if err := st.sync(); err != nil {
		return storage.Attrs{}, wrapWriteErr("put", st.key, err)
	}
	if err := st.place(ctx, storage.Cond{IfAbsent: true}); err != nil {
		return storage.Attrs{}, err
	}
	return st.attrs()
}

// attrs returns the attributes of the file written, whatever happened to
// its key since it was placed (a write of another version, a removal).
func (st *staged) attrs() (storage.Attrs, error) {
	fi, err := st.f.Stat()
	if err != nil {
		return storage.Attrs{}, fmt.Errorf("stat %s: %w", st.key, err)
	}
	return attrsOf(fi), nil
}

// place puts the synced file under its key if cond holds.
func (st *staged) place(ctx context.Context, cond storage.Cond) error {
	s := st.s
	mu := s.stripe(st.key)
	mu.Lock()
	defer mu.Unlock()
	if st.named || !cond.IfAbsent {
		if err := s.check(st.key, st.p, cond); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.faultAt("rename", st.key); err != nil {
		return wrapWriteErr("put", st.key, err)
	}
	if st.named {
		if err := os.Rename(st.from, st.p); err != nil {
			return wrapWriteErr("put", st.key, err)
		}
	} else if err := linkUnnamed(st.from, st.p); err != nil {
		if os.IsExist(err) {
			return storage.Precondition(st.key, cond, true, "")
		}
		return wrapWriteErr("put", st.key, err)
	}
	st.done = true
	return nil
}

func (st *staged) Close() error {
	if st.f == nil {
		return nil
	}
	err := st.f.Close()
	st.f = nil
	if st.named && !st.done {
		os.Remove(st.from)
	}
	return err
}

// Flush implements storage.Stager: one fsync of the folder, shared with
// the writes into it that ask at the same time (see syncDir). A folder
// that does not exist has nothing to make durable.
func (s *Store) Flush(ctx context.Context, folder string) error {
	key, ok := strings.CutSuffix(folder, "/")
	if !ok {
		return fmt.Errorf("flush %q: %w: a folder ends in /", folder, storage.ErrInvalidKey)
	}
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.faultAt("syncdir", folder); err != nil {
		return wrapWriteErr("flush", folder, err)
	}
	if err := s.syncDir(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // nothing was published there
		}
		return wrapWriteErr("flush", folder, err)
	}
	return nil
}
