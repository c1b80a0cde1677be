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
	"syscall"

	"github.com/imagestore/imagestore/storage"
)

var _ storage.Stager = (*Store)(nil)

// staged is a value written but not yet under its key: a temporary file
// in the key's folder, renamed into place.
//
// Not an unnamed file (O_TMPFILE) linked to its name: that file's inode
// is synced while no name holds it, and on ext4 without a journal the
// fsync of the folder after the link does not write the inode again, so
// a power cut could leave a durable name on an inode whose count of names
// is still zero on disk, which the kernel refuses to open. A temporary
// file is synced with its name, and the rename only moves that name.
type staged struct {
	s      *Store
	key, p string // the key, and the path it maps to
	dir    string
	f      *os.File
	tmp    string // the temporary file's path (p itself if named)
	size   int64
	synced bool
	named  bool // created under its key's name (StageNew)
	done   bool // renamed into place, or published if named
}

// Stage implements storage.Stager.
func (s *Store) Stage(ctx context.Context, key string, r io.Reader) (storage.Staged, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	st, err := s.stage(ctx, key, p, r)
	if err != nil {
		return nil, wrapWriteErr("put", key, err)
	}
	return st, nil
}

// StageNew implements storage.Stager: the file is created under the key's
// own name, if absent, and written there, which saves its rename.
func (s *Store) StageNew(ctx context.Context, key string, r io.Reader) (storage.Staged, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	st, err := s.stageAt(ctx, key, p, r, true)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("put %s: %w", key, storage.ErrPrecondition)
	}
	if err != nil {
		return nil, wrapWriteErr("put", key, err)
	}
	return st, nil
}

// stage writes r's bytes into a new temporary file in the folder of key's
// path p. On error nothing is left behind.
func (s *Store) stage(ctx context.Context, key, p string, r io.Reader) (*staged, error) {
	return s.stageAt(ctx, key, p, r, false)
}

// stageAt is stage, into a file created at p itself if named.
func (s *Store) stageAt(ctx context.Context, key, p string, r io.Reader, named bool) (_ *staged, err error) {
	dir := filepath.Dir(p)
	if err := s.ensureDir(dir); err != nil {
		return nil, err
	}
	if err := s.faultAt("create", key); err != nil {
		return nil, err
	}
	st := &staged{s: s, key: key, p: p, dir: dir, named: named}
	if named {
		st.f, err = createFile(p)
	} else {
		st.f, err = os.CreateTemp(dir, tmpPrefix+"*")
	}
	if err != nil {
		return nil, err
	}
	st.tmp = st.f.Name()
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
	if err := os.Chtimes(st.tmp, mt, mt); err != nil {
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

// Publish renames the file to the key's name once the key is found
// absent, under the key's lock (the folder is this process's alone).
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

// place puts the synced file under its key if cond holds. A file staged
// under its key's name is there already.
func (st *staged) place(ctx context.Context, cond storage.Cond) error {
	s := st.s
	mu := s.stripe(st.key)
	mu.Lock()
	defer mu.Unlock()
	if st.named {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !st.holdsKey() {
			return fmt.Errorf("put %s: written or removed since it was staged: %w", st.key, storage.ErrPrecondition)
		}
		st.done = true
		return nil
	}
	if err := s.check(st.key, st.p, cond); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.faultAt("rename", st.key); err != nil {
		return wrapWriteErr("put", st.key, err)
	}
	if err := os.Rename(st.tmp, st.p); err != nil {
		return wrapWriteErr("put", st.key, err)
	}
	st.done = true
	return nil
}

func (st *staged) Close() error {
	if st.f == nil {
		return nil
	}
	if !st.done && st.named {
		// The key's name may hold another value by now: only this one
		// goes.
		mu := st.s.stripe(st.key)
		mu.Lock()
		if st.holdsKey() {
			os.Remove(st.p)
		}
		mu.Unlock()
	}
	err := st.f.Close()
	st.f = nil
	if !st.done && !st.named {
		os.Remove(st.tmp)
	}
	return err
}

// holdsKey reports whether the key's name still holds this file, staged
// under it (StageNew). The key's stripe must be held.
func (st *staged) holdsKey() bool {
	mine, err := st.f.Stat()
	if err != nil {
		return false
	}
	there, err := os.Lstat(st.p)
	return err == nil && os.SameFile(mine, there)
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

// createFile creates a new file at p, failing if p exists. Unlike
// os.OpenFile, it does not offer the file to the runtime's poller, which
// refuses regular files: an fcntl pair and a failed epoll_ctl saved.
func createFile(p string) (*os.File, error) {
	for {
		fd, err := syscall.Open(p, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o600)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		return os.NewFile(uintptr(fd), p), nil
	}
}
