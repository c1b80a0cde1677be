// Package filestore is a storage.Store on a local directory: one file per
// key, written atomically and durably.
//
// A Put writes a temporary file (named ".tmp-*") in the key's own folder,
// fsyncs it, renames it over the key's file and fsyncs the folder, so that a
// crash at any instant leaves either the old value or the new one. Temporary
// files left by a crash are removed when the store is opened. The store is
// a storage.Stager: those steps can also be taken one at a time.
//
// The folder belongs to one process at a time: Open takes an exclusive
// flock(2) on a lock file in it, which the kernel releases when the process
// ends, however it ends. Conditional writes are therefore decided in process
// memory, under a lock per key.
//
// An ETag is made of the file's inode number, size and modification time;
// the store gives every version it writes a modification time no earlier
// version of any key has had in this process, so ETags are never reused.
package filestore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imagestore/imagestore/storage"
)

const (
	objectsDir = "objects"
	lockName   = "imagestore.lock"
	tmpPrefix  = ".tmp-"
)

// ErrLocked is returned by Open when another process holds the folder.
var ErrLocked = errors.New("the data folder is in use by another imagestore process")

// Store is a storage.Store rooted at a directory. Close it to release the
// folder.
type Store struct {
	dir  string // the data folder
	root string // dir/objects: where the keys live
	lock *os.File

	seed    maphash.Seed
	stripes [256]sync.Mutex // serialises the decide-and-rename step per key

	dirs    sync.Map // folders known to exist and to be durable
	syncers sync.Map // folder -> *dirSyncer: see syncDir

	clockMu sync.Mutex
	last    int64 // the last modification time given, in ns
	step    int64 // the file system's timestamp granularity, in ns

	fault func(step, key string) error // see Options.Fault
}

// faultAt runs the fault hook, if any, for a step of a write.
func (s *Store) faultAt(step, key string) error {
	if s.fault == nil {
		return nil
	}
	if err := s.fault(step, key); err != nil {
		return fmt.Errorf("%s (injected): %w", step, err)
	}
	return nil
}

var _ storage.Store = (*Store)(nil)

// Open opens (creating it if needed) the store in dir, takes the folder's
// lock, and removes temporary files left by an interrupted write. It returns
// an error wrapping ErrLocked if another process has the folder open.
func Open(dir string) (*Store, error) { return OpenWith(dir, Options{}) }

// Options change how a store behaves; the zero value is the normal store.
type Options struct {
	// Fault, when set, is called before each step of a write with the
	// step's name ("create", "write", "sync", "rename", "syncdir",
	// "delete") and the key; an error it returns makes that step fail as
	// a failing disk would. It exists for fault-injection tests.
	Fault func(step, key string) error
}

// OpenWith is Open with options.
func OpenWith(dir string, opts Options) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := io.ReadAll(io.LimitReader(lock, 32))
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (pid %s); stop it first, or use another --data folder",
				dir, ErrLocked, strings.TrimSpace(string(pid)))
		}
		return nil, fmt.Errorf("lock data folder: %w", err)
	}
	// The pid is only a hint for the message above; the lock is the flock.
	if err := lock.Truncate(0); err == nil {
		lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	s := &Store{dir: dir, root: filepath.Join(dir, objectsDir), lock: lock, seed: maphash.MakeSeed(), fault: opts.Fault}
	if err := s.ensureDir(s.root); err != nil {
		s.Close()
		return nil, err
	}
	if s.step, err = s.probeTimeStep(); err != nil {
		s.Close()
		return nil, err
	}
	if _, err := s.removeTempFiles(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the folder's lock. The store must not be used afterwards.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close() // closing the descriptor releases the flock
	s.lock = nil
	return err
}

// removeTempFiles deletes the temporary files of writes that a crash
// interrupted. They were never renamed into place, so no key refers to them.
func (s *Store) removeTempFiles() (int, error) {
	left, err := s.Leftovers()
	for _, p := range left {
		if err == nil {
			err = os.Remove(p)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("remove temporary files: %w", err)
	}
	return len(left), nil
}

// Leftovers returns the paths of temporary files in the store: those of
// writes in progress, and those a crash left behind. When no write is in
// progress there must be none.
func (s *Store) Leftovers() ([]string, error) {
	var left []string
	err := filepath.WalkDir(s.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), tmpPrefix) {
			left = append(left, path)
		}
		return nil
	})
	return left, err
}

// probeTimeStep finds how finely the file system records modification
// times, so that nextModTime hands out times that stay distinct once stored.
func (s *Store) probeTimeStep() (int64, error) {
	f, err := os.CreateTemp(s.root, tmpPrefix+"probe-")
	if err != nil {
		return 0, fmt.Errorf("probe data folder: %w", err)
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	want := time.Unix(1_700_000_000, 123_456_789)
	if err := os.Chtimes(name, want, want); err != nil {
		return 0, fmt.Errorf("probe data folder: %w", err)
	}
	fi, err := os.Stat(name)
	if err != nil {
		return 0, fmt.Errorf("probe data folder: %w", err)
	}
	got := fi.ModTime().UnixNano()
	for _, step := range []int64{1, 1e3, 1e6, 1e9} {
		if got == want.UnixNano()/step*step {
			return step, nil
		}
	}
	return 2e9, nil
}

// nextModTime returns a time later than every time it returned before, in
// the file system's granularity.
func (s *Store) nextModTime() time.Time {
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	t := time.Now().UnixNano() / s.step * s.step
	if t <= s.last {
		t = s.last + s.step
	}
	s.last = t
	return time.Unix(0, t)
}

func (s *Store) path(key string) (string, error) {
	if !storage.ValidKey(key) {
		return "", fmt.Errorf("%w: %q", storage.ErrInvalidKey, key)
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

func (s *Store) stripe(key string) *sync.Mutex {
	return &s.stripes[maphash.String(s.seed, key)%uint64(len(s.stripes))]
}

func attrsOf(fi fs.FileInfo) storage.Attrs {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	mt := fi.ModTime()
	return storage.Attrs{
		Size:    fi.Size(),
		ETag:    strconv.FormatUint(ino, 36) + "." + strconv.FormatInt(fi.Size(), 36) + "." + strconv.FormatInt(mt.UnixNano(), 36),
		ModTime: mt,
	}
}

// notFound turns the errors of a missing file, or of a missing folder on its
// path, into storage.ErrNotFound.
func notFound(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%s %s: %w", op, key, storage.ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// Get implements storage.Store. The reader is the *os.File itself, so that
// copying it to a network connection can use sendfile(2).
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, storage.Attrs, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, storage.Attrs{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, storage.Attrs{}, err
	}
	f, err := openRead(p)
	if err != nil {
		return nil, storage.Attrs{}, notFound("get", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, storage.Attrs{}, fmt.Errorf("get %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() { // a folder such as "blobs" is not a key
		f.Close()
		return nil, storage.Attrs{}, fmt.Errorf("get %s: %w", key, storage.ErrNotFound)
	}
	return f, attrsOf(fi), nil
}

// openRead opens a file for reading. os.Open would also try to register
// it with the runtime's poller, which a regular file refuses: four fcntl
// calls and a failed epoll_ctl on every download. A descriptor opened
// blocking and handed to os.NewFile costs one fcntl.
func openRead(p string) (*os.File, error) {
	for {
		fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: p, Err: err}
		}
		return os.NewFile(uintptr(fd), p), nil
	}
}

// Stat implements storage.Store.
func (s *Store) Stat(ctx context.Context, key string) (storage.Attrs, error) {
	p, err := s.path(key)
	if err != nil {
		return storage.Attrs{}, err
	}
	return s.stat(key, p)
}

func (s *Store) stat(key, p string) (storage.Attrs, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return storage.Attrs{}, notFound("stat", key, err)
	}
	if !fi.Mode().IsRegular() {
		return storage.Attrs{}, fmt.Errorf("stat %s: %w", key, storage.ErrNotFound)
	}
	return attrsOf(fi), nil
}

// check returns nil if cond holds for the file at p. The key's stripe must
// be held.
func (s *Store) check(key, p string, cond storage.Cond) error {
	if !cond.IfAbsent && cond.IfMatch == "" {
		return nil
	}
	cur, err := s.stat(key, p)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return storage.Precondition(key, cond, err == nil, cur.ETag)
}

// wrapWriteErr marks a full disk as storage.ErrInsufficientStorage.
func wrapWriteErr(op, key string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%s %s: %w: %w", op, key, storage.ErrInsufficientStorage, err)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// Put implements storage.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	p, err := s.path(key)
	if err != nil {
		return storage.Attrs{}, err
	}
	if err := storage.CheckCond(cond); err != nil {
		return storage.Attrs{}, err
	}
	st, err := s.stage(ctx, key, p, r)
	if err != nil {
		return storage.Attrs{}, wrapWriteErr("put", key, err)
	}
	defer st.Close()
	if err := st.sync(); err != nil {
		return storage.Attrs{}, wrapWriteErr("put", key, err)
	}
	if err := st.place(ctx, cond); err != nil {
		return storage.Attrs{}, err
	}
	if err := s.faultAt("syncdir", key); err != nil {
		return storage.Attrs{}, wrapWriteErr("put", key, err)
	}
	if err := s.syncDir(st.dir); err != nil {
		// Placed, but perhaps not durably: the caller must not
		// acknowledge a write that a crash could undo.
		return storage.Attrs{}, wrapWriteErr("put", key, err)
	}
	return st.attrs()
}

// copyBuffers are the buffers values are copied into files through: an
// os.File would otherwise allocate 32 KiB for each copy.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 128<<10); return &b }}

// copyToFile copies r to f, stopping when ctx is done, and returns the
// number of bytes copied.
func copyToFile(ctx context.Context, f *os.File, r io.Reader) (int64, error) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{f}, ctxReader{ctx, r}, *bp)
}

// ctxReader stops a copy once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Delete implements storage.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.unlink(ctx, key)
	if err != nil {
		return err
	}
	return s.syncDir(filepath.Dir(p))
}

// Unlink implements storage.Stager: Delete, without the folder's fsync.
func (s *Store) Unlink(ctx context.Context, key string) error {
	_, err := s.unlink(ctx, key)
	return err
}

// unlink removes key's file, and returns its path.
func (s *Store) unlink(ctx context.Context, key string) (string, error) {
	p, err := s.path(key)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	mu := s.stripe(key)
	mu.Lock()
	defer mu.Unlock()
	if _, err := s.stat(key, p); err != nil {
		return "", err
	}
	if err := s.faultAt("delete", key); err != nil {
		return "", err
	}
	if err := os.Remove(p); err != nil {
		return "", notFound("delete", key, err)
	}
	return p, nil
}

// List implements storage.Store.
func (s *Store) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if !storage.ValidPrefix(prefix) {
			yield("", fmt.Errorf("%w: %q", storage.ErrInvalidKey, prefix))
			return
		}
		// Walk only the deepest folder that the prefix names whole.
		start := s.root
		if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
			start = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
		}
		var keys []string
		err := filepath.WalkDir(start, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if path == start && errors.Is(err, fs.ErrNotExist) {
					return fs.SkipAll
				}
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if strings.HasPrefix(d.Name(), ".") || d.IsDir() {
				return nil
			}
			rel, err := filepath.Rel(s.root, path)
			if err != nil {
				return err
			}
			if key := filepath.ToSlash(rel); strings.HasPrefix(key, prefix) {
				keys = append(keys, key)
			}
			return nil
		})
		if err != nil {
			yield("", fmt.Errorf("list %q: %w", prefix, err))
			return
		}
		// WalkDir's order puts "a/b" before "a-b"; keys sort by bytes.
		slices.Sort(keys)
		for _, k := range keys {
			if !yield(k, nil) {
				return
			}
		}
	}
}

// ensureDir creates dir and any missing parents, making each new entry
// durable by syncing the folder that holds it.
func (s *Store) ensureDir(dir string) error {
	if _, ok := s.dirs.Load(dir); ok {
		return nil
	}
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s is not a folder", dir)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	// A folder found may have just been made by another write, whose sync
	// of the parent has not ended: a write into it must not count on it.
	// So the parent is synced either way, once per folder and process.
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := s.ensureDir(parent); err != nil {
			return err
		}
	}
	if err != nil {
		if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	if parent != dir {
		if err := s.syncDir(parent); err != nil {
			return err
		}
	}
	s.dirs.Store(dir, struct{}{})
	return nil
}

// fsyncDir fsyncs a folder; writes call it through Store.syncDir, which
// shares one fsync between the writes that arrive together. (A variable for
// the tests of that sharing.)
//
// It uses the system calls directly: an os.File would register the folder
// with the runtime's poller, and ask the kernel three times more.
var fsyncDir = func(dir string) error {
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	err = syscall.Fsync(fd)
	if cerr := syscall.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return &os.PathError{Op: "fsync", Path: dir, Err: err}
	}
	return nil
}

// FreeBytes returns the space left for an unprivileged user on the file
// system of the store.
func (s *Store) FreeBytes() (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.root, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
