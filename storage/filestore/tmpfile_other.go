//go:build !linux

package filestore

import (
	"errors"
	"os"
)

// openUnnamed is the Linux way of making a new file; elsewhere a named
// temporary file is used.
func openUnnamed(dir string) (*os.File, string, error) { return nil, "", nil }

func linkUnnamed(fdPath, p string) error { return errors.ErrUnsupported }
