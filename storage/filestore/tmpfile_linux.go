package filestore

import (
	"context"
	"errors"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/imagestore/imagestore/storage"
)

// putNew writes a key that must not exist yet (Cond.IfAbsent) through an
// unnamed file: O_TMPFILE makes an inode with no name in dir, the value is
// written and synced into it, and linkat gives it the key's name, failing
// if the name exists. The folder changes once (one new entry) instead of
// three times (a temporary name, then a rename), which costs the kernel
// less on every upload, and a crash before the link leaves nothing behind:
// the file system frees an inode that no name holds.
//
// done is false, with nothing read from r, where the file system or the
// system cannot do it (no O_TMPFILE, no /proc): Put then takes the
// portable way.
func (s *Store) putNew(ctx context.Context, key, p, dir string, r io.Reader) (_ storage.Attrs, _ error, done bool) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		return storage.Attrs{}, nil, false
	}
	if err := s.faultAt("create", key); err != nil {
		return storage.Attrs{}, wrapWriteErr("put", key, err), true
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
		return storage.Attrs{}, nil, false
	}
	if err != nil {
		return storage.Attrs{}, wrapWriteErr("put", key, err), true
	}
	f := os.NewFile(uintptr(fd), dir+"/(unnamed)")
	defer f.Close()
	fdPath := "/proc/self/fd/" + strconv.Itoa(fd)
	if err := copyToFile(ctx, f, r); err != nil {
		return storage.Attrs{}, wrapWriteErr("put", key, err), true
	}
	if err := s.faultAt("write", key); err != nil {
		return storage.Attrs{}, wrapWriteErr("put", key, err), true
	}
	mt := s.nextModTime()
	if err := os.Chtimes(fdPath, mt, mt); err != nil {
		return storage.Attrs{}, wrapWriteErr("put", key, err), true
	}
	if err := s.faultAt("sync", key); err != nil {
		return storage.Attrs{}, wrapWriteErr("put", key, err), true
	}
	if err := f.Sync(); err != nil {
		return storage.Attrs{}, wrapWriteErr("put", key, err), true
	}

	mu := s.stripe(key)
	mu.Lock()
	defer mu.Unlock()
	if err := ctx.Err(); err != nil {
		return storage.Attrs{}, err, true
	}
	if err := s.faultAt("rename", key); err != nil {
		return storage.Attrs{}, wrapWriteErr("put", key, err), true
	}
	err = unix.Linkat(unix.AT_FDCWD, fdPath, unix.AT_FDCWD, p, unix.AT_SYMLINK_FOLLOW)
	if errors.Is(err, unix.EEXIST) {
		return storage.Attrs{}, storage.Precondition(key, storage.Cond{IfAbsent: true}, true, ""), true
	}
	if err != nil {
		return storage.Attrs{}, wrapWriteErr("put", key, err), true
	}
	if err := s.faultAt("syncdir", key); err != nil {
		return storage.Attrs{}, wrapWriteErr("put", key, err), true
	}
	if err := s.syncDir(dir); err != nil {
		// Linked, but perhaps not durably: the caller must not acknowledge it.
		return storage.Attrs{}, wrapWriteErr("put", key, err), true
	}
	attrs, err := s.stat(key, p)
	return attrs, err, true
}
