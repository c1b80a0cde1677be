package main

import (
	"context"
	"strings"
	"time"

	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/filestore"
	"github.com/imagestore/imagestore/storage/s3store"
)

// openedStore is a store the program opened, with what the program must
// know about it.
type openedStore struct {
	// Store is the store itself, not embedded: what the program passes on
	// must be the store, with the optional methods it may have (FreeBytes).
	Store storage.Store
	// sole is true for a data folder, which this process holds locked:
	// nobody else writes it. A bucket may be shared by several servers.
	sole bool
	// desc names the store in logs and messages, without credentials.
	desc  string
	close func() error
}

// orphanGrace is how old an unreferenced blob in a shared store must be
// before the start-up sweep removes it: another server may be between
// writing an upload's bytes and listing it.
const orphanGrace = time.Hour

// openStore opens the store a --store value names: s3://bucket/prefix?...
// for an S3-compatible bucket (credentials from the AWS_* variables), or
// else a data folder, with or without file://.
func openStore(ctx context.Context, spec string, getenv func(string) string) (openedStore, error) {
	if strings.HasPrefix(spec, "s3://") {
		cfg, err := s3store.ParseURL(spec, getenv)
		if err != nil {
			return openedStore{}, err
		}
		s, err := s3store.New(ctx, cfg)
		if err != nil {
			return openedStore{}, err
		}
		return openedStore{Store: s, desc: s.String(), close: func() error { return nil }}, nil
	}
	dir := strings.TrimPrefix(spec, "file://")
	fs, err := filestore.Open(dir)
	if err != nil {
		return openedStore{}, err
	}
	return openedStore{Store: fs, sole: true, desc: dir, close: fs.Close}, nil
}
