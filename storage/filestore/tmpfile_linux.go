package filestore

import (
	"errors"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// openUnnamed makes a file with no name in dir (O_TMPFILE), which
// linkUnnamed later names through its /proc path, failing if the name
// exists. A new key then changes its folder once (one new entry) instead
// of three times (a temporary name, then a rename), which costs the kernel
// less on every upload, and a crash before the link leaves nothing behind:
// the file system frees an inode that no name holds.
//
// It returns a nil file, and no error, where the file system or the
// system cannot do it (no O_TMPFILE, no /proc): the caller then takes the
// portable way, a named temporary file.
func openUnnamed(dir string) (*os.File, string, error) {
	if !haveProcFD() {
		return nil, "", nil
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	return os.NewFile(uintptr(fd), dir+"/(unnamed)"), "/proc/self/fd/" + strconv.Itoa(fd), nil
}

// haveProcFD reports whether /proc/self/fd exists, through which an
// unnamed file is linked.
var haveProcFD = sync.OnceValue(func() bool {
	_, err := os.Stat("/proc/self/fd")
	return err == nil
})

// linkUnnamed gives the unnamed file at fdPath the name p; an error
// satisfying os.IsExist if p exists.
func linkUnnamed(fdPath, p string) error {
	err := unix.Linkat(unix.AT_FDCWD, fdPath, unix.AT_FDCWD, p, unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		return &os.LinkError{Op: "link", Old: fdPath, New: p, Err: err}
	}
	return nil
}
