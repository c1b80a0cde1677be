package filestore

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Append implements storage.Stager: p is written at the end of the key's
// file, which is then synced. A file the append creates, or finds empty,
// has its folder synced too: an empty file may be one whose creation a
// crash could still undo.
//
// An append that fails once it has begun to write truncates the file back
// to its length before, so that the value is left as it was whenever the
// disk allows it.
func (s *Store) Append(ctx context.Context, key string, p []byte) error {
	path, err := s.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.appendFile(path, key, p); err != nil {
		return wrapWriteErr("append", key, err)
	}
	return nil
}

func (s *Store) appendFile(path, key string, p []byte) error {
	dir := filepath.Dir(path)
	if err := s.ensureDir(dir); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if errors.Is(err, fs.ErrNotExist) {
		if err := s.faultAt("create", key); err != nil {
			return err
		}
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	undo := func(err error) error {
		if terr := f.Truncate(size); terr != nil {
			return errors.Join(err, terr)
		}
		return err
	}
	if len(p) > 0 {
		if err := s.faultAt("write", key); err != nil {
			return err
		}
		if _, err := f.Write(p); err != nil {
			return undo(err)
		}
	}
	if err := s.faultAt("sync", key); err != nil {
		return undo(err)
	}
	// fsync rather than fdatasync: the length changes with each append,
	// so the inode is written either way.
	if err := f.Sync(); err != nil {
		return undo(err)
	}
	if size == 0 {
		if err := s.faultAt("syncdir", key); err != nil {
			return err
		}
		if err := s.syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}
