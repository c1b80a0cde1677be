// Package storetest is the conformance suite for storage.Store: every store
// runs it, with a test file of a few lines:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storage.Store { return memstore.New() })
//	}
//
// The suite states the contract of the interface as executable checks,
// concurrent conditional writes included.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/imagestore/imagestore/storage"
)

// Run runs every conformance test. newStore must return an empty store; it
// is called once per subtest.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"GetMissing", testGetMissing},
		{"PutGet", testPutGet},
		{"Overwrite", testOverwrite},
		{"LargeValue", testLargeValue},
		{"EmptyValue", testEmptyValue},
		{"IfAbsent", testIfAbsent},
		{"IfMatch", testIfMatch},
		{"ETagChangesWithContent", testETagChanges},
		{"Delete", testDelete},
		{"FailedReaderKeepsOldValue", testFailedReader},
		{"CancelledContextKeepsOldValue", testCancelled},
		{"ReaderSurvivesReplace", testReaderSurvivesReplace},
		{"List", testList},
		{"InvalidKeys", testInvalidKeys},
		{"BadConditions", testBadConds},
		{"ConcurrentIfAbsent", testConcurrentIfAbsent},
		{"ConcurrentCompareAndSwap", testConcurrentCAS},
		{"ConcurrentReadersSeeWholeValues", testAtomicReplace},
		{"StagedWrites", testStaged},
		{"StagedWriteFails", testStagedFails},
		{"ConcurrentPublish", testConcurrentPublish},
		{"StagedNewKeys", testStageNew},
		{"Appends", testAppends},
		{"AppendKeepsReaders", testAppendKeepsReaders},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

var ctx = context.Background()

func put(t *testing.T, s storage.Store, key, val string, cond storage.Cond) storage.Attrs {
	t.Helper()
	a, err := s.Put(ctx, key, bytes.NewReader([]byte(val)), cond)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	if a.Size != int64(len(val)) {
		t.Fatalf("Put(%q) size = %d, want %d", key, a.Size, len(val))
	}
	if a.ETag == "" {
		t.Fatalf("Put(%q) returned an empty ETag", key)
	}
	return a
}

func get(t *testing.T, s storage.Store, key string) (string, storage.Attrs) {
	t.Helper()
	rc, a, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	if int64(len(b)) != a.Size {
		t.Fatalf("Get(%q): read %d bytes, Attrs.Size = %d", key, len(b), a.Size)
	}
	return string(b), a
}

func wantNotFound(t *testing.T, s storage.Store, key string) {
	t.Helper()
	if rc, _, err := s.Get(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		if rc != nil {
			rc.Close()
		}
		t.Fatalf("Get(%q) error = %v, want ErrNotFound", key, err)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat(%q) error = %v, want ErrNotFound", key, err)
	}
}

func testGetMissing(t *testing.T, s storage.Store) {
	wantNotFound(t, s, "missing")
	wantNotFound(t, s, "no/such/key")
	put(t, s, "dir/child", "x", storage.Cond{})
	// A prefix of a key is not itself a key, even where it is a folder on disk.
	wantNotFound(t, s, "dir")
	wantNotFound(t, s, "dir/child/grandchild")
}

func testPutGet(t *testing.T, s storage.Store) {
	a := put(t, s, "users/abc.json", `{"a":1}`, storage.Cond{})
	got, ga := get(t, s, "users/abc.json")
	if got != `{"a":1}` {
		t.Fatalf("got %q, want %q", got, `{"a":1}`)
	}
	if ga.ETag != a.ETag {
		t.Fatalf("Get ETag %q, Put returned %q", ga.ETag, a.ETag)
	}
	st, err := s.Stat(ctx, "users/abc.json")
	if err != nil {
		t.Fatal(err)
	}
	if st.ETag != a.ETag || st.Size != 7 {
		t.Fatalf("Stat = %+v, want ETag %q size 7", st, a.ETag)
	}
	if st.ModTime.IsZero() {
		t.Fatal("Stat: zero ModTime")
	}
}

func testOverwrite(t *testing.T, s storage.Store) {
	put(t, s, "k", "first value", storage.Cond{})
	put(t, s, "k", "2nd", storage.Cond{})
	if got, _ := get(t, s, "k"); got != "2nd" {
		t.Fatalf("got %q, want %q", got, "2nd")
	}
}

func testLargeValue(t *testing.T, s storage.Store) {
	data := make([]byte, 5<<20+123)
	rand.Read(data)
	if _, err := s.Put(ctx, "big", bytes.NewReader(data), storage.Cond{}); err != nil {
		t.Fatal(err)
	}
	got, _ := get(t, s, "big")
	if !bytes.Equal([]byte(got), data) {
		t.Fatal("large value came back different")
	}
}

func testEmptyValue(t *testing.T, s storage.Store) {
	put(t, s, "empty", "", storage.Cond{})
	if got, a := get(t, s, "empty"); got != "" || a.Size != 0 {
		t.Fatalf("got %q (size %d), want empty", got, a.Size)
	}
}

func testIfAbsent(t *testing.T, s storage.Store) {
	a := put(t, s, "once", "first", storage.Cond{IfAbsent: true})
	_, err := s.Put(ctx, "once", bytes.NewReader([]byte("second")), storage.Cond{IfAbsent: true})
	if !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("second IfAbsent Put error = %v, want ErrPrecondition", err)
	}
	got, ga := get(t, s, "once")
	if got != "first" || ga.ETag != a.ETag {
		t.Fatalf("after refused Put: %q %q, want %q %q", got, ga.ETag, "first", a.ETag)
	}
	// After a delete the key is absent again.
	if err := s.Delete(ctx, "once"); err != nil {
		t.Fatal(err)
	}
	put(t, s, "once", "third", storage.Cond{IfAbsent: true})
}

func testIfMatch(t *testing.T, s storage.Store) {
	if _, err := s.Put(ctx, "cas", bytes.NewReader(nil), storage.Cond{IfMatch: "nope"}); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("IfMatch on a missing key: error = %v, want ErrPrecondition", err)
	}
	wantNotFound(t, s, "cas")
	a1 := put(t, s, "cas", "v1", storage.Cond{})
	a2 := put(t, s, "cas", "v2", storage.Cond{IfMatch: a1.ETag})
	if _, err := s.Put(ctx, "cas", bytes.NewReader([]byte("stale")), storage.Cond{IfMatch: a1.ETag}); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("IfMatch with a stale ETag: error = %v, want ErrPrecondition", err)
	}
	if got, ga := get(t, s, "cas"); got != "v2" || ga.ETag != a2.ETag {
		t.Fatalf("got %q %q, want v2 %q", got, ga.ETag, a2.ETag)
	}
	assertNoLeftovers(t, s)
}

func testETagChanges(t *testing.T, s storage.Store) {
	// Same size, new content, written back to back: a new version. (The
	// same bytes written again may keep their ETag: S3's ETags are hashes
	// of the content.)
	seen := map[string]bool{}
	for i := range 50 {
		a := put(t, s, "same", fmt.Sprintf("value-%03d", i), storage.Cond{})
		if seen[a.ETag] {
			t.Fatalf("Put #%d reused ETag %q", i, a.ETag)
		}
		seen[a.ETag] = true
		// Delete and recreate too: a recreated key must not get an old ETag.
		if i%2 == 0 {
			if err := s.Delete(ctx, "same"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func testDelete(t *testing.T, s storage.Store) {
	put(t, s, "gone/soon", "x", storage.Cond{})
	if err := s.Delete(ctx, "gone/soon"); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s, "gone/soon")
	if err := s.Delete(ctx, "gone/soon"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second Delete error = %v, want ErrNotFound", err)
	}
}

// FailingReader is a request body that breaks off: it reads N zero bytes,
// then fails with Err, as a client that goes away mid-upload does. Stores'
// own tests use it too, to fail a Put at a point of their choosing.
type FailingReader struct {
	N   int   // bytes left to read before the failure
	Err error // what Read returns once they are read
}

// Read fills p with zeros, at most N of them, then returns Err.
func (f *FailingReader) Read(p []byte) (int, error) {
	if f.N <= 0 {
		return 0, f.Err
	}
	n := min(len(p), f.N)
	clear(p[:n])
	f.N -= n
	return n, nil
}

func testFailedReader(t *testing.T, s storage.Store) {
	boom := errors.New("client went away")
	// A failing write of a new key leaves nothing.
	if _, err := s.Put(ctx, "new", &FailingReader{N: 1000, Err: boom}, storage.Cond{}); !errors.Is(err, boom) {
		t.Fatalf("Put error = %v, want the reader's error", err)
	}
	wantNotFound(t, s, "new")
	// A failing replacement leaves the old value.
	a := put(t, s, "old", "keep me", storage.Cond{})
	if _, err := s.Put(ctx, "old", &FailingReader{N: 1 << 20, Err: boom}, storage.Cond{IfMatch: a.ETag}); !errors.Is(err, boom) {
		t.Fatalf("Put error = %v, want the reader's error", err)
	}
	if got, ga := get(t, s, "old"); got != "keep me" || ga.ETag != a.ETag {
		t.Fatalf("after a failed Put: %q %q, want %q %q", got, ga.ETag, "keep me", a.ETag)
	}
	assertKeys(t, s, "", []string{"old"})
	assertNoLeftovers(t, s)
}

// assertNoLeftovers checks, for stores that can tell (an optional
// Leftovers method), that failed and refused writes left nothing behind.
func assertNoLeftovers(t *testing.T, s storage.Store) {
	t.Helper()
	if v, ok := s.(interface{ Leftovers() ([]string, error) }); ok {
		if left, err := v.Leftovers(); err != nil || len(left) > 0 {
			t.Fatalf("failed writes left files behind: %q %v", left, err)
		}
	}
}

func testCancelled(t *testing.T, s storage.Store) {
	put(t, s, "c", "before", storage.Cond{})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Put(cctx, "c", bytes.NewReader([]byte("after")), storage.Cond{}); err == nil {
		t.Fatal("Put with a cancelled context succeeded")
	}
	if got, _ := get(t, s, "c"); got != "before" {
		t.Fatalf("got %q, want %q", got, "before")
	}
	assertNoLeftovers(t, s)
}

func testReaderSurvivesReplace(t *testing.T, s storage.Store) {
	put(t, s, "r", "old version", storage.Cond{})
	rc, _, err := s.Get(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	put(t, s, "r", "new version!", storage.Cond{})
	if err := s.Delete(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "old version" {
		t.Fatalf("open reader yielded %q, want %q", b, "old version")
	}
}

func assertKeys(t *testing.T, s storage.Store, prefix string, want []string) {
	t.Helper()
	var got []string
	for k, err := range s.List(ctx, prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		got = append(got, k)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List(%q) = %q, want %q", prefix, got, want)
	}
}

func testList(t *testing.T, s storage.Store) {
	assertKeys(t, s, "", nil)
	assertKeys(t, s, "nothing/", nil)
	for _, k := range []string{"a/b", "a-b", "a/c/d", "ab", "b", "a.x"} {
		put(t, s, k, k, storage.Cond{})
	}
	assertKeys(t, s, "", []string{"a-b", "a.x", "a/b", "a/c/d", "ab", "b"})
	assertKeys(t, s, "a/", []string{"a/b", "a/c/d"})
	assertKeys(t, s, "a", []string{"a-b", "a.x", "a/b", "a/c/d", "ab"})
	assertKeys(t, s, "a/c", []string{"a/c/d"})
	assertKeys(t, s, "zzz", nil)
	// Stopping early is allowed.
	for range s.List(ctx, "") {
		break
	}
}

func testInvalidKeys(t *testing.T, s storage.Store) {
	for _, k := range []string{"", "/abs", "a//b", "../x", "a/../b", "a/./b", ".hidden", "a/.tmp-1", "UPPER", "sp ace", "a\\b", "nul\x00", "trailing/", "é"} {
		if _, err := s.Put(ctx, k, bytes.NewReader(nil), storage.Cond{}); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Put(%q) error = %v, want ErrInvalidKey", k, err)
		}
		if _, _, err := s.Get(ctx, k); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Get(%q) error = %v, want ErrInvalidKey", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Delete(%q) error = %v, want ErrInvalidKey", k, err)
		}
	}
	for _, p := range []string{"../", "/", "a//"} {
		for _, err := range s.List(ctx, p) {
			if !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("List(%q) error = %v, want ErrInvalidKey", p, err)
			}
		}
	}
}

func testBadConds(t *testing.T, s storage.Store) {
	if _, err := s.Put(ctx, "k", bytes.NewReader(nil), storage.Cond{IfAbsent: true, IfMatch: "x"}); err == nil {
		t.Error("Put with both IfAbsent and IfMatch succeeded")
	}
	put(t, s, "k", "v", storage.Cond{})
	if got, _ := get(t, s, "k"); got != "v" {
		t.Errorf("got %q after refused operations, want %q", got, "v")
	}
}

func testConcurrentIfAbsent(t *testing.T, s storage.Store) {
	const writers = 32
	for round := range 5 {
		key := "race/" + strconv.Itoa(round)
		var wins atomic.Int32
		var winner atomic.Value
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				val := fmt.Sprintf("writer-%d", i)
				_, err := s.Put(ctx, key, bytes.NewReader([]byte(val)), storage.Cond{IfAbsent: true})
				switch {
				case err == nil:
					wins.Add(1)
					winner.Store(val)
				case !errors.Is(err, storage.ErrPrecondition):
					t.Errorf("Put: %v", err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d IfAbsent writers succeeded, want exactly 1", round, wins.Load())
		}
		if got, _ := get(t, s, key); got != winner.Load().(string) {
			t.Fatalf("round %d: stored %q, but the winner wrote %q", round, got, winner.Load())
		}
	}
	assertNoLeftovers(t, s)
}

// testConcurrentCAS increments a counter from many goroutines with
// read-modify-write loops; a lost update shows as a final count too low.
func testConcurrentCAS(t *testing.T, s storage.Store) {
	const workers, increments = 8, 25
	put(t, s, "counter", "0", storage.Cond{})
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	for range workers {
		wg.Go(func() {
			for range increments {
				for {
					v, a := get(t, s, "counter")
					n, err := strconv.Atoi(v)
					if err != nil {
						t.Errorf("counter holds %q", v)
						return
					}
					_, err = s.Put(ctx, "counter", bytes.NewReader([]byte(strconv.Itoa(n+1))), storage.Cond{IfMatch: a.ETag})
					if err == nil {
						break
					}
					if !errors.Is(err, storage.ErrPrecondition) {
						t.Errorf("Put: %v", err)
						return
					}
					conflicts.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got, _ := get(t, s, "counter"); got != strconv.Itoa(workers*increments) {
		t.Fatalf("counter = %s, want %d (%d conflicts retried)", got, workers*increments, conflicts.Load())
	}
	t.Logf("%d increments, %d conflicts retried", workers*increments, conflicts.Load())
}

// testAtomicReplace checks that readers racing with writers only ever see
// complete values.
func testAtomicReplace(t *testing.T, s storage.Store) {
	val := func(c byte) []byte { return bytes.Repeat([]byte{c}, 256<<10) }
	if _, err := s.Put(ctx, "atomic", bytes.NewReader(val('a')), storage.Cond{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 2 {
		wg.Go(func() {
			c := byte('b' + i)
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Put(ctx, "atomic", bytes.NewReader(val(c+byte(j%3))), storage.Cond{}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 100 {
		got, _ := get(t, s, "atomic")
		if len(got) != 256<<10 || strings.Count(got, got[:1]) != len(got) {
			t.Errorf("reader saw a mixed or partial value (len %d)", len(got))
			break
		}
	}
	close(stop)
	wg.Wait()
}

// stager returns s as a storage.Stager, or skips the test (saying why) for
// a store that is not one.
func stager(t *testing.T, s storage.Store) storage.Stager {
	t.Helper()
	st, ok := s.(storage.Stager)
	if !ok {
		t.Skipf("%T is not a storage.Stager: writes only through Put", s)
	}
	return st
}

func testStaged(t *testing.T, s storage.Store) {
	st := stager(t, s)
	v, err := st.Stage(ctx, "dir/new", strings.NewReader("staged bytes"))
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	defer v.Close()
	if v.Size() != int64(len("staged bytes")) {
		t.Fatalf("Size = %d, want %d", v.Size(), len("staged bytes"))
	}
	// Neither staging nor syncing publishes the value.
	wantNotFound(t, s, "dir/new")
	if err := v.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	wantNotFound(t, s, "dir/new")
	assertKeys(t, s, "", nil)
	a, err := v.Publish(ctx)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if got, ga := get(t, s, "dir/new"); got != "staged bytes" || ga.ETag != a.ETag || a.Size != int64(len(got)) {
		t.Fatalf("after Publish: %q %+v, Publish said %+v", got, ga, a)
	}
	if _, err := v.Publish(ctx); err == nil {
		t.Fatal("a second Publish of one staged value succeeded")
	}
	if err := st.Flush(ctx, "dir/"); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := st.Flush(ctx, "dir"); err == nil {
		t.Fatal("Flush of a folder without its final slash succeeded")
	}
	if err := v.Close(); err != nil {
		t.Fatalf("Close after Publish: %v", err)
	}
	if got, _ := get(t, s, "dir/new"); got != "staged bytes" {
		t.Fatalf("Close after Publish changed the value: %q", got)
	}

	// Unlink removes as Delete does.
	put(t, s, "dir/old", "obsolete", storage.Cond{})
	if err := st.Unlink(ctx, "dir/old"); err != nil {
		t.Fatalf("Unlink: %v", err)
	}
	wantNotFound(t, s, "dir/old")
	if err := st.Unlink(ctx, "dir/old"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Unlink of a missing key: %v, want ErrNotFound", err)
	}
	if err := st.Flush(ctx, "dir/"); err != nil {
		t.Fatalf("Flush after Unlink: %v", err)
	}

	// Publish creates only: a key that exists keeps its value.
	put(t, s, "dir/taken", "first", storage.Cond{})
	w, err := st.Stage(ctx, "dir/taken", strings.NewReader("second"))
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	if _, err := w.Publish(ctx); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("Publish over an existing key: %v, want ErrPrecondition", err)
	}
	w.Close()
	if got, _ := get(t, s, "dir/taken"); got != "first" {
		t.Fatalf("a refused Publish changed the value: %q", got)
	}

	// A staged value closed unpublished leaves nothing.
	x, err := st.Stage(ctx, "dir/dropped", strings.NewReader("never seen"))
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	if err := x.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := x.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantNotFound(t, s, "dir/dropped")
	assertKeys(t, s, "", []string{"dir/new", "dir/taken"})
	assertNoLeftovers(t, s)
}

func testStagedFails(t *testing.T, s storage.Store) {
	st := stager(t, s)
	boom := errors.New("client went away")
	if _, err := st.Stage(ctx, "f/broken", &FailingReader{N: 100 << 10, Err: boom}); !errors.Is(err, boom) {
		t.Fatalf("Stage of a failing reader: %v, want its error", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := st.Stage(cctx, "f/cancelled", strings.NewReader("x")); err == nil {
		t.Fatal("Stage with a cancelled context succeeded")
	}
	if _, err := st.Stage(ctx, "../escape", strings.NewReader("x")); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("Stage of an invalid key: %v, want ErrInvalidKey", err)
	}
	if err := st.Flush(ctx, "../"); err == nil {
		t.Fatal("Flush of an invalid folder succeeded")
	}
	v, err := st.Stage(ctx, "f/late", strings.NewReader("x"))
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	if _, err := v.Publish(cctx); err == nil {
		t.Fatal("Publish with a cancelled context succeeded")
	}
	v.Close()
	assertKeys(t, s, "", nil)
	assertNoLeftovers(t, s)
}

// testConcurrentPublish stages one key many times over: exactly one
// Publish wins, and its bytes are the key's.
func testConcurrentPublish(t *testing.T, s storage.Store) {
	st := stager(t, s)
	const n = 16
	var wins atomic.Int32
	var winner atomic.Value
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			val := "writer " + strconv.Itoa(i)
			v, err := st.Stage(ctx, "race/key", strings.NewReader(val))
			if err != nil {
				t.Errorf("Stage: %v", err)
				return
			}
			defer v.Close()
			_, err = v.Publish(ctx)
			switch {
			case err == nil:
				wins.Add(1)
				winner.Store(val)
			case !errors.Is(err, storage.ErrPrecondition):
				t.Errorf("Publish: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d Publishes of one key succeeded, want 1", wins.Load())
	}
	if got, _ := get(t, s, "race/key"); got != winner.Load() {
		t.Fatalf("the key holds %q, the winner wrote %q", got, winner.Load())
	}
	assertNoLeftovers(t, s)
}

// testAppends: Append creates a key that is absent, adds to the end of
// one that is there (written by Put or by Append), gives the value a new
// ETag each time, and refuses a key ValidKey refuses.
func testAppends(t *testing.T, s storage.Store) {
	st := stager(t, s)
	if err := st.Append(ctx, "log/a", []byte("one;")); err != nil {
		t.Fatalf("Append to a new key: %v", err)
	}
	got, a1 := get(t, s, "log/a")
	if got != "one;" {
		t.Fatalf("after one append: %q", got)
	}
	if err := st.Append(ctx, "log/a", []byte("two;")); err != nil {
		t.Fatalf("Append: %v", err)
	}
	got, a2 := get(t, s, "log/a")
	if got != "one;two;" || a2.Size != int64(len(got)) {
		t.Fatalf("after two appends: %q, size %d", got, a2.Size)
	}
	if a1.ETag == a2.ETag {
		t.Errorf("an append kept the ETag %q", a1.ETag)
	}
	if err := st.Append(ctx, "log/a", nil); err != nil {
		t.Fatalf("Append of nothing: %v", err)
	}
	if got, _ := get(t, s, "log/a"); got != "one;two;" {
		t.Fatalf("after an append of nothing: %q", got)
	}
	if err := st.Append(ctx, "log/empty", nil); err != nil {
		t.Fatalf("Append of nothing to a new key: %v", err)
	}
	if got, a := get(t, s, "log/empty"); got != "" || a.Size != 0 {
		t.Fatalf("a key made by an append of nothing holds %q", got)
	}
	put(t, s, "log/put", "base;", storage.Cond{})
	if err := st.Append(ctx, "log/put", []byte("more;")); err != nil {
		t.Fatalf("Append to a key Put wrote: %v", err)
	}
	if got, _ := get(t, s, "log/put"); got != "base;more;" {
		t.Fatalf("Put then Append: %q", got)
	}
	for _, key := range []string{"", "../escape", "log/.hidden", "Log/Upper"} {
		if err := st.Append(ctx, key, []byte("x")); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Append(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := st.Append(cancelled, "log/a", []byte("late;")); err == nil {
		t.Errorf("Append with a cancelled context succeeded")
	}
	if got, _ := get(t, s, "log/a"); got != "one;two;" {
		t.Fatalf("after a cancelled append: %q", got)
	}
	assertKeys(t, s, "log/", []string{"log/a", "log/empty", "log/put"})
	assertNoLeftovers(t, s)
}

// testAppendKeepsReaders: a reader opened before an append reads at least
// the bytes that were there, and what it reads is a prefix of the value
// after the append (a log's reader relies on no more than this).
func testAppendKeepsReaders(t *testing.T, s storage.Store) {
	st := stager(t, s)
	if err := st.Append(ctx, "log/r", []byte("first;")); err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Get(ctx, "log/r")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := st.Append(ctx, "log/r", []byte("second;")); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != "first;" && got != "first;second;" {
		t.Fatalf("a reader opened before an append read %q", got)
	}
}

// testStageNew: StageNew refuses a key that is there, leaving it as it
// was; a value it staged and published is the key's, whole; one closed
// unpublished, or whose reader failed, leaves nothing behind.
func testStageNew(t *testing.T, s storage.Store) {
	st := stager(t, s)
	put(t, s, "n/taken", "first", storage.Cond{})
	if _, err := st.StageNew(ctx, "n/taken", strings.NewReader("second")); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("StageNew of a key that is there: %v, want ErrPrecondition", err)
	}
	if got, _ := get(t, s, "n/taken"); got != "first" {
		t.Fatalf("after a refused StageNew the key holds %q", got)
	}

	v, err := st.StageNew(ctx, "n/new", strings.NewReader("new bytes"))
	if err != nil {
		t.Fatalf("StageNew: %v", err)
	}
	if v.Size() != int64(len("new bytes")) {
		t.Errorf("Size = %d", v.Size())
	}
	a, err := v.Publish(ctx)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("Close after Publish: %v", err)
	}
	if err := st.Flush(ctx, "n/"); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	got, ga := get(t, s, "n/new")
	if got != "new bytes" || ga.ETag != a.ETag || a.Size != int64(len(got)) {
		t.Fatalf("published: %q %+v, Publish said %+v", got, ga, a)
	}
	if _, err := st.StageNew(ctx, "n/new", strings.NewReader("again")); !errors.Is(err, storage.ErrPrecondition) {
		t.Fatalf("StageNew of a key published by StageNew: %v, want ErrPrecondition", err)
	}

	v, err = st.StageNew(ctx, "n/dropped", strings.NewReader("never published"))
	if err != nil {
		t.Fatalf("StageNew: %v", err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The key written, or removed, between StageNew and Publish: the
	// other write stands, and Close leaves it.
	v, err = st.StageNew(ctx, "n/overtaken", strings.NewReader("staged"))
	if err != nil {
		t.Fatalf("StageNew: %v", err)
	}
	put(t, s, "n/overtaken", "written meanwhile", storage.Cond{})
	if _, err := v.Publish(ctx); !errors.Is(err, storage.ErrPrecondition) {
		t.Errorf("Publish after a Put of the key: %v, want ErrPrecondition", err)
	}
	v.Close()
	if got, _ := get(t, s, "n/overtaken"); got != "written meanwhile" {
		t.Errorf("after a Publish that lost to a Put: %q", got)
	}
	v, err = st.StageNew(ctx, "n/removed", strings.NewReader("staged"))
	if err != nil {
		t.Fatalf("StageNew: %v", err)
	}
	if err := s.Delete(ctx, "n/removed"); err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := v.Publish(ctx); !errors.Is(err, storage.ErrPrecondition) {
		t.Errorf("Publish after a Delete of the key: %v, want ErrPrecondition", err)
	}
	v.Close()
	if err := s.Delete(ctx, "n/overtaken"); err != nil {
		t.Fatal(err)
	}

	boom := errors.New("client went away")
	if _, err := st.StageNew(ctx, "n/broken", &FailingReader{N: 100 << 10, Err: boom}); !errors.Is(err, boom) {
		t.Fatalf("StageNew of a failing reader: %v, want its error", err)
	}
	if _, err := st.StageNew(ctx, "../escape", strings.NewReader("x")); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("StageNew of an invalid key: %v, want ErrInvalidKey", err)
	}
	assertKeys(t, s, "n/", []string{"n/new", "n/taken"})
	assertNoLeftovers(t, s)
}
