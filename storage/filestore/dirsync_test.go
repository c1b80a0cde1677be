package filestore

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagestore/imagestore/storage"
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

// TestFolderFoundIsMadeDurable: a write into a folder that exists but that
// this store has not made durable (another write may have just created it,
// its parent's fsync still running) syncs the parent before it returns.
func TestFolderFoundIsMadeDurable(t *testing.T) {
	var mu sync.Mutex
	var synced []string
	old := fsyncDir
	defer func() { fsyncDir = old }()
	fsyncDir = func(dir string) error {
		mu.Lock()
		synced = append(synced, dir)
		mu.Unlock()
		return old(dir)
	}
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Made behind the store's back, as a racing write would.
	if err := os.MkdirAll(filepath.Join(s.root, "a", "b"), 0o750); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	synced = nil
	mu.Unlock()
	if _, err := s.Put(t.Context(), "a/b/key", strings.NewReader("v"), storage.Cond{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{s.root, filepath.Join(s.root, "a"), filepath.Join(s.root, "a", "b")} {
		if !slices.Contains(synced, want) {
			t.Errorf("%s was not synced; synced: %q", want, synced)
		}
	}
}
