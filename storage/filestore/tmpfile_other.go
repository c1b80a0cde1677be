//go:build !linux

package filestore

import (
	"context"
	"io"

	"github.com/imagestore/imagestore/storage"
)

// putNew is the Linux way of creating a key; elsewhere Put takes the
// portable way.
func (s *Store) putNew(ctx context.Context, key, p, dir string, r io.Reader) (storage.Attrs, error, bool) {
	return storage.Attrs{}, nil, false
}
