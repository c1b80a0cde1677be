package filestore

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDirSyncShared: of many writers syncing one folder at once, each
// returns only after a fsync that began after it asked, and they share
// fsyncs; a failed fsync is reported to the writers it was to cover.
func TestDirSyncShared(t *testing.T) {
	var started, lastFinishedStart atomic.Int64
	var mu sync.Mutex
	failOn := int64(3)
	boom := errors.New("fsync failed")
	old := fsyncDir
	defer func() { fsyncDir = old }()
	fsyncDir = func(dir string) error {
		n := started.Add(1)
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		if n > lastFinishedStart.Load() {
			lastFinishedStart.Store(n)
		}
		mu.Unlock()
		if n == failOn && dir == "/some/folder" {
			return boom
		}
		return nil
	}
	s := &Store{}
	const writers = 200
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range writers {
		wg.Go(func() {
			before := started.Load()
			err := s.syncDir("/some/folder")
			if covered := lastFinishedStart.Load(); covered <= before {
				t.Errorf("returned after fsync #%d, which began before the call (fsyncs begun then: %d)", covered, before)
			}
			if errors.Is(err, boom) {
				failures.Add(1)
			} else if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	n := started.Load()
	if n >= writers/2 {
		t.Errorf("%d fsyncs for %d writers: not shared", n, writers)
	}
	if n >= failOn && failures.Load() == 0 {
		t.Errorf("fsync #%d failed, and no writer was told", failOn)
	}
	t.Logf("%d writers, %d fsyncs, %d told of the failure", writers, n, failures.Load())
	// Another folder has its own fsyncs.
	before := started.Load()
	if err := s.syncDir("/another/folder"); err != nil || started.Load() != before+1 {
		t.Errorf("another folder: %v, %d fsyncs", err, started.Load()-before)
	}
}
