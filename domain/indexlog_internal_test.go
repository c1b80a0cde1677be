package domain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/memstore"
)

// Every log record a test writes is checked against the list its batch
// made (see writeIndex).
func init() { verifyIndexRecords = true }

// indexPuts counts the writes of whole lists and of log records.
type indexPuts struct {
	storage.Store
	whole, records atomic.Int64
}

func (s *indexPuts) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	switch {
	case strings.HasPrefix(key, "index/"):
		s.whole.Add(1)
	case strings.HasPrefix(key, "indexlog/"):
		s.records.Add(1)
	}
	return s.Store.Put(ctx, key, r, cond)
}

func soleService(t *testing.T, st storage.Store) *Service {
	t.Helper()
	cfg := DefaultConfig
	cfg.SoleWriter = true
	svc, err := New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// addImage returns a change that adds an image named name to the list of
// the user with hash uh, whose blob it stores in svc's store first.
func addImage(t *testing.T, svc *Service, uh, name string) func(*index) error {
	img := Image{ID: NewID(), Name: name, Blob: testBlob(t, svc.store, uh), Created: time.Now().UTC()}
	return func(ix *index) error {
		img := img
		for ix.byID(img.ID) >= 0 { // ids are short: as Upload does
			img.ID = NewID()
		}
		ix.add(img)
		return nil
	}
}

// testBlob stores a blob for the user and returns its name: an image
// added by a list's log whose blob is missing is dropped when the list is
// read (an upload a crash cut short: see pendingBlob).
func testBlob(t *testing.T, st storage.Store, uh string) string {
	t.Helper()
	name := newBlobName()
	if _, err := st.Put(t.Context(), blobKey(uh, name), strings.NewReader("blob"), storage.Cond{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	return name
}

func names(imgs []Image) []string {
	out := make([]string, len(imgs))
	for i, img := range imgs {
		out[i] = img.Name
	}
	return out
}

func logRecords(t *testing.T, st storage.Store, uh string) []string {
	t.Helper()
	var out []string
	for key, err := range st.List(t.Context(), indexLogPrefix(uh)) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, key)
	}
	return out
}

// TestIndexLog: on a store that is the process's alone, each write of a
// list is a small log record, the list (short here) is written whole once
// every maxIndexLog writes, and a server started afresh on the store reads the
// same list as the one that wrote it, after any mix of uploads,
// replacements and deletions.
//
// Both ways of storing records are tried: appended to a log file (a store
// that can append), and each a key of its own.
func TestIndexLog(t *testing.T) {
	t.Run("log files", func(t *testing.T) {
		st := &indexAppends{Store: memstore.New()}
		testIndexLog(t, st, func() (int64, int64) { return st.whole.Load(), st.records.Load() })
	})
	t.Run("records as keys", func(t *testing.T) {
		st := &indexPuts{Store: memstore.New()}
		testIndexLog(t, st, func() (int64, int64) { return st.whole.Load(), st.records.Load() })
	})
}

// indexAppends counts the writes of whole lists and the records appended
// to logs, of a store that can append.
type indexAppends struct {
	*memstore.Store
	whole, records atomic.Int64
}

func (s *indexAppends) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	if strings.HasPrefix(key, "index/") {
		s.whole.Add(1)
	}
	return s.Store.Put(ctx, key, r, cond)
}

func (s *indexAppends) Append(ctx context.Context, key string, p []byte) error {
	if len(p) > 0 {
		s.records.Add(1)
	}
	return s.Store.Append(ctx, key, p)
}

func testIndexLog(t *testing.T, st storage.Store, counts func() (whole, records int64)) {
	ctx := t.Context()
	svc := soleService(t, st)
	uh := userHashOf("logged")
	rng := rand.New(rand.NewPCG(1, 2))
	var model []Image // what the list must be
	const ops = 300
	for op := range ops {
		var change func(*index) error
		switch k := rng.IntN(10); {
		case k < 6 || len(model) < 3: // upload
			img := Image{ID: NewID(), Name: fmt.Sprintf("img-%d", op), Blob: testBlob(t, st, uh), Created: time.Unix(int64(op), 0).UTC()}
			for slices.ContainsFunc(model, func(m Image) bool { return m.ID == img.ID }) {
				img.ID = NewID() // ids are short: as Upload does
			}
			model = append(model, img)
			change = func(ix *index) error { ix.add(img); return nil }
		case k < 8: // replace in place
			i := rng.IntN(len(model))
			model[i].Blob, model[i].Name = testBlob(t, st, uh), fmt.Sprintf("replaced-%d", op)
			img := model[i]
			change = func(ix *index) error { ix.set(ix.byID(img.ID), img); return nil }
		default: // delete
			i := rng.IntN(len(model))
			id := model[i].ID
			model = slices.Delete(model, i, i+1)
			change = func(ix *index) error { ix.remove(ix.byID(id)); return nil }
		}
		if err := svc.updateIndex(ctx, uh, change); err != nil {
			t.Fatalf("op %d: %v", op, err)
		}
		if n := len(logRecords(t, st, uh)); n > maxIndexLog {
			t.Fatalf("op %d: %d log records, more than %d", op, n, maxIndexLog)
		}
		if op%25 == 24 || op == ops-1 {
			fresh := soleService(t, st)
			ix, _, err := fresh.loadIndex(ctx, uh)
			if err != nil {
				t.Fatalf("op %d: a fresh server: %v", op, err)
			}
			if !slices.Equal(ix.Images, model) {
				t.Fatalf("op %d: a fresh server reads\n%q\nwant\n%q", op, names(ix.Images), names(model))
			}
		}
	}
	ix, _, _ := svc.loadIndex(ctx, uh)
	if !slices.Equal(ix.Images, model) {
		t.Fatalf("the writer's own list differs from the model")
	}
	whole, records := counts()
	t.Logf("%d writes: %d whole lists, %d log records", ops, whole, records)
	if wantWhole := int64(ops/(maxIndexLog+1) + 1); whole != wantWhole || whole+records != ops {
		t.Errorf("%d whole lists and %d log records for %d writes, want %d whole", whole, records, ops, wantWhole)
	}
}

// TestIndexLogGrowsWithTheList: a long list is written whole less often,
// in proportion to its length (indexLogLimit), so that its changes do not
// cost more as it grows; and a fresh server still reads it right.
func TestIndexLogGrowsWithTheList(t *testing.T) {
	ctx := t.Context()
	st := &indexAppends{Store: memstore.New()}
	svc := soleService(t, st)
	uh := userHashOf("long")
	var model []Image
	add := func(op int) func(*index) error {
		img := Image{ID: NewID(), Name: fmt.Sprintf("img-%d", op), Blob: testBlob(t, st, uh), Created: time.Unix(int64(op), 0).UTC()}
		for slices.ContainsFunc(model, func(m Image) bool { return m.ID == img.ID }) {
			img.ID = NewID()
		}
		model = append(model, img)
		return func(ix *index) error { ix.add(img); return nil }
	}
	// 1,000 images in one change: one record.
	var changes []func(*index) error
	for op := range 1000 {
		changes = append(changes, add(op))
	}
	if err := svc.updateIndex(ctx, uh, func(ix *index) error {
		for _, c := range changes {
			c(ix)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	const ops = 600
	wholeBefore := st.whole.Load()
	since, longest := 0, 0 // records since the last whole list
	for op := 1000; op < 1000+ops; op++ {
		limit := indexLogLimit(len(model))
		w := st.whole.Load()
		if err := svc.updateIndex(ctx, uh, add(op)); err != nil {
			t.Fatalf("op %d: %v", op, err)
		}
		if st.whole.Load() > w {
			since = 0
		} else {
			since++
		}
		longest = max(longest, since)
		if uint64(since) > limit {
			t.Fatalf("op %d: %d records since the list was written whole, more than %d for %d images", op, since, limit, len(model)-1)
		}
	}
	whole := st.whole.Load() - wholeBefore
	t.Logf("%d changes of a list of 1,000 to %d images: %d whole lists, at most %d records in a row", ops, len(model), whole, longest)
	if longest <= maxIndexLog {
		t.Errorf("at most %d records in a row in a list of over 1,000 images: the limit did not grow", longest)
	}
	// One whole list per 126-200 records, against one per 65 for a short
	// list.
	if whole > ops/126+1 {
		t.Errorf("%d whole lists for %d changes of a list of over 1,000 images", whole, ops)
	}
	fresh := soleService(t, st)
	ix, _, err := fresh.loadIndex(ctx, uh)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ix.Images, model) {
		t.Fatalf("a fresh server reads %d images, not the %d written", len(ix.Images), len(model))
	}
}

// TestIndexLogGap: a log record missing between others (a folder damaged
// by hand) is an error, never a list silently missing changes: in a log
// file, and among records stored as keys of their own.
func TestIndexLogGap(t *testing.T) {
	ctx := t.Context()
	for _, files := range []bool{true, false} {
		mem := memstore.New()
		var st storage.Store = mem
		if !files {
			st = &indexPuts{Store: mem} // not a Stager: no appends
		}
		svc := soleService(t, st)
		uh := userHashOf("gap")
		for i := range 5 {
			if err := svc.updateIndex(ctx, uh, addImage(t, svc, uh, fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		keys := logRecords(t, st, uh)
		if files {
			if len(keys) != 1 || !strings.HasSuffix(keys[0], ".log") {
				t.Fatalf("log keys %q, want one log file", keys)
			}
			frames := logFrames(t, st, keys[0])
			if len(frames) != 4 {
				t.Fatalf("%d records in the log, want 4", len(frames))
			}
			damaged := slices.Concat(frames[0], frames[2], frames[3])
			if _, err := st.Put(ctx, keys[0], bytes.NewReader(damaged), storage.Cond{}); err != nil {
				t.Fatal(err)
			}
		} else {
			if len(keys) != 4 {
				t.Fatalf("log keys %q, want 4 records", keys)
			}
			if err := st.Delete(ctx, keys[1]); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := soleService(t, st).loadIndex(ctx, uh); !errors.Is(err, errIndexLogGap) {
			t.Fatalf("files %v: a list with a record missing: %v, want errIndexLogGap", files, err)
		}
	}
}

// logFrames returns the framed records of the log file at key.
func logFrames(t *testing.T, st storage.Store, key string) [][]byte {
	t.Helper()
	rc, _, err := st.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	f := logFramesOf(t, key)
	for len(b) > 0 {
		_, _, rest, whole := f.next(b)
		if !whole {
			t.Fatalf("%s ends in %d bytes that are not a whole record", key, len(b))
		}
		frames = append(frames, b[:len(b)-len(rest)])
		b = rest
	}
	return frames
}

// logFramesOf returns the framing of the log file at key.
func logFramesOf(t *testing.T, key string) indexLogFrames {
	t.Helper()
	parts := strings.Split(key, "/")
	base, file, ok := indexLogName(key)
	if len(parts) != 3 || !file || !ok {
		t.Fatalf("%s is not a log file's key", key)
	}
	return framesOf(parts[1], base)
}

// TestIndexLogTornTail: a log file that ends in a part of a record (an
// append a crash cut short, never acknowledged) reads as the records
// before it, and the next write does not follow that part, which would
// hide it from every reader: the list is written whole, and goes on with
// a new log.
func TestIndexLogTornTail(t *testing.T) {
	ctx := t.Context()
	for _, tail := range []struct {
		name string
		b    func(frame []byte) []byte
	}{
		{"a frame's first bytes", func(f []byte) []byte { return f[:10] }},
		{"a frame without its end", func(f []byte) []byte { return f[:len(f)-3] }},
		{"a frame whose bytes differ", func(f []byte) []byte {
			f = slices.Clone(f)
			f[len(f)-2] ^= 0x20
			return f
		}},
		{"zeros", func(f []byte) []byte { return make([]byte, len(f)) }},
		// Whole records, with the right number, of other logs: bytes a
		// block held before the file system gave it to this log.
		{"another base's record", func(f []byte) []byte {
			return framesOf(userHashOf("torn"), 99).append(nil, 4, &indexLogRecord{Del: []string{"x"}})
		}},
		{"another user's record", func(f []byte) []byte {
			return framesOf(userHashOf("other"), 1).append(nil, 4, &indexLogRecord{Del: []string{"x"}})
		}},
	} {
		st := memstore.New()
		svc := soleService(t, st)
		uh := userHashOf("torn")
		for i := range 3 {
			if err := svc.updateIndex(ctx, uh, addImage(t, svc, uh, fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		keys := logRecords(t, st, uh)
		if len(keys) != 1 {
			t.Fatalf("log keys %q, want one log file", keys)
		}
		frame := logFramesOf(t, keys[0]).append(nil, 4, &indexLogRecord{Put: []Image{{ID: NewID(), Name: "never acknowledged", Blob: testBlob(t, st, uh)}}})
		if err := st.Append(ctx, keys[0], tail.b(frame)); err != nil {
			t.Fatal(err)
		}

		after := soleService(t, st) // a server started after the crash
		ix, _, err := after.loadIndex(ctx, uh)
		if err != nil {
			t.Fatalf("%s: %v", tail.name, err)
		}
		if got := names(ix.Images); !slices.Equal(got, []string{"0", "1", "2"}) {
			t.Fatalf("%s: list %q, want 0 1 2", tail.name, got)
		}
		if err := after.updateIndex(ctx, uh, addImage(t, after, uh, "3")); err != nil {
			t.Fatal(err)
		}
		ix, _, err = soleService(t, st).loadIndex(ctx, uh)
		if err != nil {
			t.Fatalf("%s, after a write: %v", tail.name, err)
		}
		if got := names(ix.Images); !slices.Equal(got, []string{"0", "1", "2", "3"}) {
			t.Fatalf("%s: after a write, a fresh server reads %q, want 0 1 2 3", tail.name, got)
		}
		if got := logRecords(t, st, uh); len(got) != 1 || got[0] == keys[0] {
			t.Errorf("%s: log keys %q after the write, want a new, empty log", tail.name, got)
		}
	}
}

// TestIndexLogUpgrade: records stored as keys of their own (a data folder
// written before logs were files) are read, then the records appended
// after them, and a compaction removes both.
func TestIndexLogUpgrade(t *testing.T) {
	ctx := t.Context()
	mem := memstore.New()
	uh := userHashOf("upgrade")
	before := soleService(t, &indexPuts{Store: mem})
	var want []string
	add := func(svc *Service) {
		t.Helper()
		name := fmt.Sprint(len(want))
		if err := svc.updateIndex(ctx, uh, addImage(t, svc, uh, name)); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	for range 5 {
		add(before)
	}
	now := soleService(t, mem)
	for range 3 {
		add(now)
	}
	keys := logRecords(t, mem, uh)
	if logs := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return !strings.HasSuffix(k, ".log") }); len(keys) != 5 || len(logs) != 1 {
		t.Fatalf("log keys %q, want 4 records and a log file", keys)
	}
	ix, _, err := soleService(t, mem).loadIndex(ctx, uh)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(ix.Images); !slices.Equal(got, want) {
		t.Fatalf("a fresh server reads %q, want %q", got, want)
	}
	for len(want) < 80 { // past a compaction
		add(now)
	}
	keys = logRecords(t, mem, uh)
	if len(keys) != 1 || !strings.HasSuffix(keys[0], ".log") {
		t.Fatalf("log keys %q after a compaction, want one log file", keys)
	}
	ix, _, err = soleService(t, mem).loadIndex(ctx, uh)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(ix.Images); !slices.Equal(got, want) {
		t.Fatalf("after a compaction, a fresh server reads %q, want %q", got, want)
	}
}

// TestIndexLogFromWholeList: a list written whole (by servers sharing a
// bucket, or before the log existed) goes on with a log once a server
// that owns the store writes it, and records found beside a list without
// a log are never applied to it.
func TestIndexLogFromWholeList(t *testing.T) {
	ctx := t.Context()
	st := memstore.New()
	shared, err := New(st, DefaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	uh := userHashOf("upgraded")
	for _, name := range []string{"a", "b"} {
		if err := shared.updateIndex(ctx, uh, addImage(t, shared, uh, name)); err != nil {
			t.Fatal(err)
		}
	}
	if got := logRecords(t, st, uh); len(got) != 0 {
		t.Fatalf("servers sharing a store wrote log records: %q", got)
	}
	// A stray record, as if left by hand.
	stray := indexLogRecord{Put: []Image{{ID: NewID(), Name: "stray", Blob: newBlobName()}}}
	if err := shared.putIndexLog(ctx, uh, 0, 1, &stray); err != nil {
		t.Fatal(err)
	}
	sole := soleService(t, st)
	if err := sole.updateIndex(ctx, uh, addImage(t, sole, uh, "c")); err != nil {
		t.Fatal(err)
	}
	if err := sole.updateIndex(ctx, uh, addImage(t, sole, uh, "d")); err != nil {
		t.Fatal(err)
	}
	ix, _, err := soleService(t, st).loadIndex(ctx, uh)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(ix.Images); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Fatalf("list %q, want a b c d", got)
	}
	if got := logRecords(t, st, uh); len(got) != 1 {
		t.Errorf("log records %q, want the one of d", got)
	}
}

// TestIndexLogReadDuringCompaction: a read that misses the cache while
// writes go on, compactions and their removals included, returns a list
// with every change acknowledged before it began, in order.
func TestIndexLogReadDuringCompaction(t *testing.T) {
	ctx := t.Context()
	svc := soleService(t, slowLists{memstore.New()})
	uh := userHashOf("busy")
	const writes = 600
	var acked atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range writes {
			if err := svc.updateIndex(ctx, uh, addImage(t, svc, uh, fmt.Sprint(i))); err != nil {
				t.Error(err)
				return
			}
			acked.Store(int64(i + 1))
		}
	})
	for range 4 {
		wg.Go(func() {
			for acked.Load() < writes && !t.Failed() {
				before := acked.Load()
				svc.indexes.forget(uh)
				ix, _, err := svc.loadIndex(ctx, uh)
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				if int64(len(ix.Images)) < before {
					t.Errorf("read %d images after %d were acknowledged", len(ix.Images), before)
					return
				}
				for i, img := range ix.Images {
					if img.Name != fmt.Sprint(i) {
						t.Errorf("image %d is %q", i, img.Name)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// slowLists reads whole lists and removes log records slowly, so that
// reads of the log land amid a compaction's removals.
type slowLists struct{ storage.Store }

func (s slowLists) Get(ctx context.Context, key string) (io.ReadCloser, storage.Attrs, error) {
	if strings.HasPrefix(key, "index/") {
		time.Sleep(500 * time.Microsecond)
	}
	return s.Store.Get(ctx, key)
}

func (s slowLists) Delete(ctx context.Context, key string) error {
	if strings.HasPrefix(key, "indexlog/") {
		time.Sleep(100 * time.Microsecond)
	}
	return s.Store.Delete(ctx, key)
}

// TestIndexChanges: whatever a batch adds, changes and removes, its
// record gives back the list the batch made, from the list before it; and
// the lists before and after, sharing their array, each keep their images
// and find them by id and name.
func TestIndexChanges(t *testing.T) {
	img := func(name string) Image { return Image{ID: NewID(), Name: name, Blob: newBlobName()} }
	var imgs []Image
	for i := range 40 { // more than minLookupMaps
		imgs = append(imgs, img(fmt.Sprint(i)))
	}
	old := index{Images: imgs}.frozen()
	oldNames := names(old.Images)
	for _, tc := range []struct {
		name  string
		batch func(ix *index)
	}{
		{"add", func(ix *index) { ix.add(img("new")); ix.add(img("newer")) }},
		{"set", func(ix *index) { b := ix.Images[3]; b.Name = "renamed"; ix.set(3, b) }},
		{"remove", func(ix *index) { ix.remove(0); ix.remove(ix.byID(imgs[20].ID)) }},
		{"add then remove it", func(ix *index) { n := img("brief"); ix.add(n); ix.add(img("stays")); ix.remove(ix.byID(n.ID)) }},
		{"add then change it", func(ix *index) { n := img("n"); ix.add(n); n.Name = "n2"; ix.set(ix.byID(n.ID), n) }},
		{"change then remove", func(ix *index) { b := ix.Images[5]; b.Name = "x"; ix.set(5, b); ix.remove(5) }},
		{"everything", func(ix *index) {
			ix.add(img("a1"))
			ix.remove(7)
			b := ix.Images[1]
			b.Blob = newBlobName()
			ix.set(1, b)
			ix.add(img("a2"))
			ix.remove(ix.byName("a1"))
		}},
	} {
		w := old.working()
		tc.batch(&w)
		if added, removed := w.netChange(); len(w.Images) != len(old.Images)+added-removed {
			t.Errorf("%s: %d images, counted %d", tc.name, len(w.Images), len(old.Images)+added-removed)
		}
		if got := w.rec.apply(slices.Clone(old.Images), nil); !slices.Equal(got, w.Images) {
			t.Errorf("%s: the record gives\n%q\nthe batch made\n%q", tc.name, names(got), names(w.Images))
		}
		next := w.frozen()
		if got := names(old.Images); !slices.Equal(got, oldNames) {
			t.Fatalf("%s: the list before the batch changed: %q", tc.name, got)
		}
		for i, im := range next.Images {
			if next.byID(im.ID) != i || next.Images[next.byName(im.Name)].Name != im.Name {
				t.Errorf("%s: image %d (%s) not found where it is", tc.name, i, im.Name)
			}
		}
		for i, im := range old.Images {
			if old.byID(im.ID) != i || old.byName(im.Name) != i {
				t.Errorf("%s: the list before: image %d (%s) not found where it is", tc.name, i, im.Name)
			}
		}
		if next.byID("nope") != -1 || next.byName("nope") != -1 {
			t.Errorf("%s: found what is not there", tc.name)
		}
	}
	// A long chain of batches of additions, each list still finding all
	// of its images and none of the later ones.
	lists := []index{old}
	cur := old
	for b := range 3 * maxLookupDepth {
		w := cur.working()
		w.add(img(fmt.Sprintf("chain-%d", b)))
		if w.byName(fmt.Sprintf("chain-%d", b)) != len(w.Images)-1 {
			t.Fatalf("batch %d: a working copy does not find its own addition", b)
		}
		cur = w.frozen()
		lists = append(lists, cur)
	}
	for k, l := range lists {
		for i, im := range l.Images {
			if l.byID(im.ID) != i || l.byName(im.Name) != i {
				t.Fatalf("list %d: image %d not found where it is", k, i)
			}
		}
		if k+1 < len(lists) {
			later := lists[len(lists)-1].Images[len(l.Images)]
			if l.byID(later.ID) != -1 || l.byName(later.Name) != -1 {
				t.Fatalf("list %d finds an image added after it", k)
			}
		}
	}
}

// TestLookupChainsStayShort: a list that grows by one image per batch, as
// uploads into one user do, keeps a chain of lookups about log2 of its
// length long, and builds a whole lookup again only about as often:
// never every few batches, whose cost grows with the list.
func TestLookupChainsStayShort(t *testing.T) {
	cur := index{}.frozen()
	roots := map[*lookup]bool{}
	const n = 5000
	for b := range n {
		w := cur.working()
		w.add(Image{ID: fmt.Sprintf("id-%d", b), Name: fmt.Sprintf("name-%d", b)})
		cur = w.frozen()
		depth, l := 0, cur.lk
		for ; l.parent != nil; l = l.parent {
			depth++
		}
		roots[l] = true
		if depth > 13 { // log2(5000) is 12.3
			t.Fatalf("batch %d: a chain of %d lookups for %d images", b, depth+1, len(cur.Images))
		}
	}
	// A whole lookup grows by half at least each time it is made again:
	// log1.5(5000) is 21. Every 32 batches would be 156 times.
	if len(roots) > 23 {
		t.Errorf("a whole lookup made %d times over %d additions", len(roots), n)
	}
	for i, im := range cur.Images {
		if cur.byID(im.ID) != i || cur.byName(im.Name) != i {
			t.Fatalf("image %d not found where it is", i)
		}
	}
}

// failingLogRemovals fails the removal of log records while fail is set.
type failingLogRemovals struct {
	storage.Store
	fail atomic.Bool
}

func (s *failingLogRemovals) Delete(ctx context.Context, key string) error {
	if s.fail.Load() && strings.HasPrefix(key, "indexlog/") {
		return errors.New("injected: removal failed")
	}
	return s.Store.Delete(ctx, key)
}

// TestIndexLogAfterWholeRewrite: a list with a log, then written whole by
// a server sharing the store (as check or migrate --overwrite may), keeps
// the log's records; when the owner writes it again, they are never
// applied, even if removing them fails, and no gap comes of them.
func TestIndexLogAfterWholeRewrite(t *testing.T) {
	for _, writes := range []int{3, 70} { // records from 2, or above a compaction
		t.Run(fmt.Sprint(writes), func(t *testing.T) {
			ctx := t.Context()
			st := &failingLogRemovals{Store: memstore.New()}
			uh := userHashOf("rewritten")
			sole := soleService(t, st)
			var want []string
			for i := range writes {
				if err := sole.updateIndex(ctx, uh, addImage(t, sole, uh, fmt.Sprint(i))); err != nil {
					t.Fatal(err)
				}
				want = append(want, fmt.Sprint(i))
			}
			shared, err := New(st, DefaultConfig)
			if err != nil {
				t.Fatal(err)
			}
			if err := shared.updateIndex(ctx, uh, func(ix *index) error { ix.remove(ix.byName("1")); return nil }); err != nil {
				t.Fatal(err)
			}
			want = slices.DeleteFunc(want, func(n string) bool { return n == "1" })
			if len(logRecords(t, st, uh)) == 0 {
				t.Fatal("no records left beside the whole list: nothing tested")
			}
			st.fail.Store(true)
			again := soleService(t, st)
			for _, n := range []string{"new", "newer"} {
				if err := again.updateIndex(ctx, uh, addImage(t, again, uh, n)); err != nil {
					t.Fatal(err)
				}
				want = append(want, n)
			}
			ix, _, err := soleService(t, st).loadIndex(ctx, uh)
			if err != nil {
				t.Fatalf("after a restart: %v", err)
			}
			if got := names(ix.Images); !slices.Equal(got, want) {
				t.Fatalf("after a restart:\n%q\nwant\n%q", got, want)
			}
		})
	}
}

// TestIndexLogStaleBaseSeesGap: a reader holding the whole list from
// before a compaction meets a gap, even while the records the compaction
// folded in are still there (their removal failed, or has not run yet):
// it never applies a later record without the batch the compaction held.
func TestIndexLogStaleBaseSeesGap(t *testing.T) {
	ctx := t.Context()
	st := &failingLogRemovals{Store: memstore.New()}
	uh := userHashOf("stale")
	svc := soleService(t, st)
	for i := range maxIndexLog + 1 { // a whole list and a full log
		if err := svc.updateIndex(ctx, uh, addImage(t, svc, uh, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	var old index
	if _, err := svc.getJSON(ctx, indexKey(uh), &old); err != nil {
		t.Fatal(err)
	}
	st.fail.Store(true)
	for _, n := range []string{"compacted", "next"} {
		if err := svc.updateIndex(ctx, uh, addImage(t, svc, uh, n)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.readIndexLog(ctx, uh, old.Seq, &old, func() bool { return false }); !errors.Is(err, errIndexLogGap) {
		t.Fatalf("a reader of the whole list before the compaction: %v, want errIndexLogGap", err)
	}
}

// TestIndexChangeMustFailClean: a change that fails after changing the
// list (a bug) fails its whole batch, as a panic does, rather than have
// the list written with what it left.
func TestIndexChangeMustFailClean(t *testing.T) {
	ctx := t.Context()
	svc := soleService(t, memstore.New())
	uh := userHashOf("sloppy")
	if err := svc.updateIndex(ctx, uh, addImage(t, svc, uh, "a")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("refused")
	half := addImage(t, svc, uh, "half")
	err := svc.updateIndex(ctx, uh, func(ix *index) error { half(ix); return boom })
	if !errors.Is(err, errNotWritten) {
		t.Fatalf("a change that failed after adding: %v, want errNotWritten", err)
	}
	ix, _, _ := soleService(t, svc.store).loadIndex(ctx, uh)
	if got := names(ix.Images); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("list %q, want a", got)
	}
}

// TestIndexLogDropsUnpublishedUploads: a crash can leave an upload's log
// record durable while its blob's name is not (see pendingBlob). A server
// reading the list afresh leaves such an image out, keeps every other one
// (one added and since replaced too), and the image stays out once the
// list is written whole.
func TestIndexLogDropsUnpublishedUploads(t *testing.T) {
	ctx := t.Context()
	st := memstore.New()
	svc := soleService(t, st)
	uh := userHashOf("crashed")
	for _, n := range []string{"a", "b"} {
		if err := svc.updateIndex(ctx, uh, addImage(t, svc, uh, n)); err != nil {
			t.Fatal(err)
		}
	}
	// "lost": its record is there, its blob never made it.
	lost := Image{ID: NewID(), Name: "lost", Blob: newBlobName(), Created: time.Now().UTC()}
	if err := svc.updateIndex(ctx, uh, func(ix *index) error { ix.add(lost); return nil }); err != nil {
		t.Fatal(err)
	}
	// "replaced": added with a blob lost too, then replaced by one stored
	// (a client may replace an image it saw listed before its upload was
	// acknowledged): the replacement stands.
	replaced := Image{ID: NewID(), Name: "replaced", Blob: newBlobName(), Created: time.Now().UTC()}
	if err := svc.updateIndex(ctx, uh, func(ix *index) error { ix.add(replaced); return nil }); err != nil {
		t.Fatal(err)
	}
	replaced.Blob = testBlob(t, st, uh)
	if err := svc.updateIndex(ctx, uh, func(ix *index) error { ix.set(ix.byID(replaced.ID), replaced); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := svc.updateIndex(ctx, uh, addImage(t, svc, uh, "c")); err != nil {
		t.Fatal(err)
	}
	want := []string{"a", "b", "replaced", "c"}

	fresh := soleService(t, st)
	ix, _, err := fresh.loadIndex(ctx, uh)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(ix.Images); !slices.Equal(got, want) {
		t.Fatalf("a fresh server reads %q, want %q", got, want)
	}
	// check keeps it, to report it.
	cfg := DefaultConfig
	cfg.SoleWriter, cfg.KeepUnpublished = true, true
	checker, err := New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ix, _, err = checker.loadIndex(ctx, uh)
	if err != nil {
		t.Fatal(err)
	}
	if got, all := names(ix.Images), []string{"a", "b", "lost", "replaced", "c"}; !slices.Equal(got, all) {
		t.Fatalf("with KeepUnpublished: %q, want %q", got, all)
	}
	// Writes go on from the list without it, through a compaction.
	for i := range maxIndexLog {
		if err := fresh.updateIndex(ctx, uh, addImage(t, fresh, uh, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprint(i))
	}
	c, err := soleService(t, st).loadIndexState(ctx, uh)
	if err != nil {
		t.Fatal(err)
	}
	if c.baseSeq <= 1 {
		t.Fatalf("the list's base is still the first (seq %d): nothing compacted", c.baseSeq)
	}
	if got := names(c.ix.Images); !slices.Equal(got, want) {
		t.Fatalf("after a compaction a fresh server reads %q, want %q", got, want)
	}
}

// gatedRecordReads holds the first read of a log record, once armed,
// until gate is closed, and closes held when it does. Other reads pass.
type gatedRecordReads struct {
	storage.Store
	armed      atomic.Bool
	held, gate chan struct{}
}

func (g *gatedRecordReads) Get(ctx context.Context, key string) (io.ReadCloser, storage.Attrs, error) {
	if strings.HasPrefix(key, "indexlog/") && g.armed.CompareAndSwap(true, false) {
		close(g.held)
		<-g.gate
	}
	return g.Store.Get(ctx, key)
}

// TestIndexLogReadRacingReplacement: a reader that listed the log's
// records, then finds the bytes of an image they add missing because a
// replacement written meanwhile removed them, reads again instead of
// leaving the image out.
func TestIndexLogReadRacingReplacement(t *testing.T) {
	ctx := t.Context()
	st := &gatedRecordReads{Store: memstore.New(), held: make(chan struct{}), gate: make(chan struct{})}
	svc := soleService(t, st)
	uh := userHashOf("raced")
	for _, n := range []string{"a", "b"} {
		if err := svc.updateIndex(ctx, uh, addImage(t, svc, uh, n)); err != nil {
			t.Fatal(err)
		}
	}
	if len(logRecords(t, st, uh)) == 0 {
		t.Fatal("b was not added by a log record: nothing tested")
	}
	ix, _, _ := svc.loadIndex(ctx, uh)
	b := ix.Images[ix.byName("b")]

	svc.indexes.forget(uh)
	st.armed.Store(true)
	type result struct {
		ix  index
		err error
	}
	read := make(chan result, 1)
	go func() {
		ix, _, err := svc.loadIndex(ctx, uh)
		read <- result{ix, err}
	}()
	<-st.held // the reader has listed the records and reads them
	replaced := b
	replaced.Blob = testBlob(t, st, uh)
	if err := svc.updateIndex(ctx, uh, func(ix *index) error { ix.set(ix.byID(b.ID), replaced); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, blobKey(uh, b.Blob)); err != nil {
		t.Fatal(err)
	}
	close(st.gate)
	r := <-read
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := names(r.ix.Images); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("the reader got %q, want a and b", got)
	}
	if i := r.ix.byName("b"); r.ix.Images[i].Blob != replaced.Blob {
		t.Fatalf("b's blob is %s, want the replacement's %s", r.ix.Images[i].Blob, replaced.Blob)
	}
}

// unsureListWrites makes the next write of a whole list, once armed, fail
// after it was made, as a failed fsync after the rename does.
type unsureListWrites struct {
	storage.Store
	armed atomic.Bool
}

func (u *unsureListWrites) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	a, err := u.Store.Put(ctx, key, r, cond)
	if err == nil && strings.HasPrefix(key, "index/") && u.armed.CompareAndSwap(true, false) {
		return storage.Attrs{}, errors.New("fsync failed (injected)")
	}
	return a, err
}

// TestIndexLogAfterUnsureWholeWrite: after a whole list's write failed
// perhaps after it was made, the next write is whole too, never a record
// that a crash could leave after a whole list that did not survive it.
func TestIndexLogAfterUnsureWholeWrite(t *testing.T) {
	ctx := t.Context()
	st := &unsureListWrites{Store: memstore.New()}
	svc := soleService(t, st)
	uh := userHashOf("unsure")
	st.armed.Store(true)
	if err := svc.updateIndex(ctx, uh, addImage(t, svc, uh, "a")); err == nil {
		t.Fatal("the failed write of the first whole list succeeded")
	}
	if err := svc.updateIndex(ctx, uh, addImage(t, svc, uh, "b")); err != nil {
		t.Fatal(err)
	}
	if got := logRecords(t, st, uh); len(got) != 0 {
		t.Fatalf("the write after an unsure one made log records %q, want a whole list", got)
	}
	if err := svc.updateIndex(ctx, uh, addImage(t, svc, uh, "c")); err != nil {
		t.Fatal(err)
	}
	if got := logRecords(t, st, uh); len(got) != 1 {
		t.Fatalf("once a whole list was written, the next write made records %q, want one", got)
	}
	ix, _, err := soleService(t, st).loadIndex(ctx, uh)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(ix.Images); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("a fresh server reads %q", got)
	}
}

// TestLogReplay: a log's records applied together (logReplay) give the
// list that applying them one at a time over the whole list gives, for
// random records of removals, replacements, additions, and removals and
// additions of one id in one record or in later ones.
func TestLogReplay(t *testing.T) {
	// oneAtATime is a record's meaning, spelled out.
	oneAtATime := func(imgs []Image, rec *indexLogRecord, added map[string]bool) []Image {
		imgs = slices.DeleteFunc(imgs, func(img Image) bool { return slices.Contains(rec.Del, img.ID) })
		for _, img := range rec.Put {
			if i := slices.IndexFunc(imgs, func(m Image) bool { return m.ID == img.ID }); i >= 0 {
				imgs[i] = img
			} else {
				imgs = append(imgs, img)
				added[img.ID] = true
			}
		}
		return imgs
	}
	rng := rand.New(rand.NewPCG(3, 4))
	id := func() string { return fmt.Sprintf("id%d", rng.IntN(60)) } // few ids: they meet again
	for round := range 300 {
		var base []Image
		for i := range rng.IntN(30) {
			img := Image{ID: fmt.Sprintf("id%d", i), Name: fmt.Sprintf("base-%d", i)}
			if !slices.ContainsFunc(base, func(m Image) bool { return m.ID == img.ID }) {
				base = append(base, img)
			}
		}
		want := slices.Clone(base)
		wantAdded := map[string]bool{}
		replay := newLogReplay(slices.Clone(base))
		gotAdded := map[string]bool{}
		for r := range rng.IntN(12) + 1 {
			var rec indexLogRecord
			for range rng.IntN(4) {
				rec.Del = append(rec.Del, id())
			}
			seen := map[string]bool{}
			for k := range rng.IntN(5) {
				img := Image{ID: id(), Name: fmt.Sprintf("r%d-%d-%d", round, r, k)}
				if !seen[img.ID] { // a record puts an id once
					seen[img.ID] = true
					rec.Put = append(rec.Put, img)
				}
			}
			want = oneAtATime(want, &rec, wantAdded)
			replay.apply(&rec, gotAdded)
		}
		got := replay.result()
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: replayed\n%q\nwant\n%q", round, names(got), names(want))
		}
		if !maps.Equal(gotAdded, wantAdded) {
			t.Fatalf("round %d: added %v, want %v", round, gotAdded, wantAdded)
		}
	}
}

// BenchmarkReadLongIndexLog: loading a list whose log is full (one record
// per 8 images, each adding one image) costs in proportion to the list's
// length, not its square.
func BenchmarkReadLongIndexLog(b *testing.B) {
	for _, n := range []int{10_000, 80_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := b.Context()
			st := memstore.New()
			cfg := DefaultConfig
			cfg.SoleWriter, cfg.KeepUnpublished = true, true
			svc, err := New(st, cfg)
			if err != nil {
				b.Fatal(err)
			}
			uh := userHashOf("long")
			records := int(indexLogLimit(n)) - 1
			first := make([]Image, 0, n-records)
			for i := range n - records {
				first = append(first, Image{ID: fmt.Sprintf("i%07d", i), Name: fmt.Sprintf("n%d", i), Blob: "b"})
			}
			if err := svc.updateIndex(ctx, uh, func(ix *index) error {
				for _, img := range first {
					ix.add(img)
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			for i := n - records; i < n; i++ {
				img := Image{ID: fmt.Sprintf("i%07d", i), Name: fmt.Sprintf("n%d", i), Blob: "b"}
				if err := svc.updateIndex(ctx, uh, func(ix *index) error { ix.add(img); return nil }); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				fresh, err := New(st, cfg)
				if err != nil {
					b.Fatal(err)
				}
				ix, _, err := fresh.loadIndex(ctx, uh)
				if err != nil || len(ix.Images) != n {
					b.Fatalf("%d images, %v", len(ix.Images), err)
				}
			}
		})
	}
}
