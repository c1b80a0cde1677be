package filestore

import "sync"

// A dirSyncer shares directory fsyncs between the writes that need them:
// a write that links or renames a file into a folder returns only after a
// fsync of that folder that began after its own change, so writes that
// arrive together into one folder (the uploads of one user, the lists of
// many) wait for one fsync that covers them all rather than queueing one
// each. No write is acknowledged before a fsync that covers it.
type dirSyncer struct {
	mu      sync.Mutex
	cond    sync.Cond
	running bool   // a fsync is in progress
	started uint64 // fsyncs begun
	done    uint64 // the number of the last fsync finished
	err     error  // its outcome
}

// syncDir makes the changes made so far to the entries of dir durable.
func (s *Store) syncDir(dir string) error {
	v, ok := s.syncers.Load(dir)
	if !ok {
		d := &dirSyncer{}
		d.cond.L = &d.mu
		v, _ = s.syncers.LoadOrStore(dir, d)
	}
	return v.(*dirSyncer).sync(dir)
}

func (d *dirSyncer) sync(dir string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	// The fsync in progress, if any, may have begun before this caller's
	// change: only one that begins from now on covers it.
	want := d.started + 1
	for d.done < want {
		if d.running {
			d.cond.Wait()
			continue
		}
		d.running = true
		d.started++
		n := d.started
		d.mu.Unlock()
		err := fsyncDir(dir)
		d.mu.Lock()
		d.running = false
		d.done, d.err = n, err
		d.cond.Broadcast()
	}
	// The last fsync finished began after this caller's change: its
	// outcome is this caller's.
	return d.err
}
