package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// durableLoop is the ceiling for uploads: conc goroutines, each writing
// payload durably into new files of a new folder under parent in a loop for
// d, the way a careful store writes a file (temporary file, write, fsync,
// close, rename, fsync of the folder), with nothing else: no HTTP, no
// hashing, no compression, no index.
//
// Its files stay until the benchmark ends, like the server's: on an ext4
// without a journal, each inode freed makes every file created in its
// block group for the next 60 to 300 s skip it (ext4's recently_deleted),
// so removing thousands of files here would slow the server's next run
// down and make the ratio unfair.
func durableLoop(ctx context.Context, parent string, conc int, d time.Duration, payload []byte) (*loadStats, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, "run-") // a fresh folder: no name is ever written twice
	if err != nil {
		return nil, err
	}
	lat := make([][]time.Duration, conc)
	errs := make([]error, conc)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for g := range conc {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				t0 := time.Now()
				if err := durableWrite(dir, fmt.Sprintf("w-%d-%d", g, i), payload); err != nil {
					errs[g] = err
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st := &loadStats{elapsed: time.Since(start)}
	for g := range conc {
		if errs[g] != nil {
			return nil, fmt.Errorf("durable write loop: %w", errs[g])
		}
		st.latencies = append(st.latencies, lat[g]...)
	}
	slices.Sort(st.latencies)
	st.requests = int64(len(st.latencies))
	st.sent = st.requests * int64(len(payload))
	return st, nil
}

// durableWrite writes one file so that it survives a crash once the
// function returns.
func durableWrite(dir, name string, payload []byte) error {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(payload); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	folder, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer folder.Close()
	return folder.Sync()
}
