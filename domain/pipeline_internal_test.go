package domain

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/filestore"
)

// watchedStager passes every call to a real store, and checks the order
// that makes the overlapped writes of an upload safe (see pendingBlob):
// a log record is appended (or published) only once every blob it adds
// is published; a whole list is written only after a flush of the user's
// blobs that followed their publication; and an upload returns only after
// a flush of its blob's folder (and of its record's, for a record
// published as a key of its own) that followed their publication.
type watchedStager struct {
	storage.Stager
	t *testing.T

	mu        sync.Mutex
	staged    map[storage.Staged][]byte // a record's bytes, by its staged value
	pending   map[string]bool           // published, not yet flushed (by key)
	published map[string]bool           // published (by key)
	flushes   int                       // flushes that found something pending
	appended  int                       // records appended to logs
}

type watchedStaged struct {
	storage.Staged
	w   *watchedStager
	key string
}

func (w *watchedStager) Stage(ctx context.Context, key string, r io.Reader) (storage.Staged, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	st, err := w.Stager.Stage(ctx, key, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.staged[st] = b
	w.mu.Unlock()
	return &watchedStaged{Staged: st, w: w, key: key}, nil
}

func (w *watchedStager) StageNew(ctx context.Context, key string, r io.Reader) (storage.Staged, error) {
	st, err := w.Stager.StageNew(ctx, key, r)
	if err != nil {
		return nil, err
	}
	return &watchedStaged{Staged: st, w: w, key: key}, nil
}

func (s *watchedStaged) Publish(ctx context.Context) (storage.Attrs, error) {
	w := s.w
	if strings.HasPrefix(s.key, "indexlog/") {
		w.mu.Lock()
		b := w.staged[s.Staged]
		w.mu.Unlock()
		var rec indexLogRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			w.t.Errorf("record %s: %v", s.key, err)
		}
		uh := strings.Split(s.key, "/")[1]
		for _, img := range rec.Put {
			if _, err := w.Stager.Stat(ctx, blobKey(uh, img.Blob)); err != nil {
				w.t.Errorf("record %s published before the blob of %q: %v", s.key, img.Name, err)
			}
		}
	}
	if strings.HasPrefix(s.key, "blobs/") {
		// A slow disk: a record that does not wait for its blob's
		// publication would be appended first.
		time.Sleep(2 * time.Millisecond)
	}
	a, err := s.Staged.Publish(ctx)
	if err == nil {
		w.mu.Lock()
		w.pending[s.key] = true
		w.published[s.key] = true
		w.mu.Unlock()
	}
	return a, err
}

func (w *watchedStager) Append(ctx context.Context, key string, p []byte) error {
	uh := strings.Split(key, "/")[1]
	base, _, _ := indexLogName(key)
	frames := framesOf(uh, base)
	for b := p; len(b) > 0; {
		seq, data, rest, whole := frames.next(b)
		if !whole {
			w.t.Errorf("append to %s: not whole records", key)
			break
		}
		var rec indexLogRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			w.t.Errorf("record %d of %s: %v", seq, key, err)
		}
		w.mu.Lock()
		w.appended++
		for _, img := range rec.Put {
			// Not a Stat: a blob is under its name from the start.
			if !w.published[blobKey(uh, img.Blob)] {
				w.t.Errorf("record %d appended to %s before the blob of %q was published", seq, key, img.Name)
			}
		}
		w.mu.Unlock()
		b = rest
	}
	return w.Stager.Append(ctx, key, p)
}

func (w *watchedStager) Flush(ctx context.Context, folder string) error {
	w.mu.Lock()
	var covered []string
	for key := range w.pending {
		if strings.HasPrefix(key, folder) && !strings.Contains(key[len(folder):], "/") {
			covered = append(covered, key)
		}
	}
	w.mu.Unlock()
	if strings.HasPrefix(folder, "blobs/") {
		// A slow disk: the writes that go on meanwhile must not count
		// on this flush.
		time.Sleep(2 * time.Millisecond)
	}
	err := w.Stager.Flush(ctx, folder)
	if err == nil {
		w.mu.Lock()
		for _, key := range covered {
			delete(w.pending, key)
		}
		if len(covered) > 0 {
			w.flushes++
		}
		w.mu.Unlock()
	}
	return err
}

func (w *watchedStager) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	if strings.HasPrefix(key, "index/") {
		b, err := io.ReadAll(r)
		if err != nil {
			return storage.Attrs{}, err
		}
		r = bytes.NewReader(b)
		var ix index
		if err := json.Unmarshal(b, &ix); err != nil {
			w.t.Errorf("list %s: %v", key, err)
		}
		uh := strings.TrimSuffix(strings.TrimPrefix(key, "index/"), ".json")
		w.mu.Lock()
		for _, img := range ix.Images {
			if w.pending[blobKey(uh, img.Blob)] {
				w.t.Errorf("the whole list %s names %q, whose blob is not flushed", key, img.Name)
			}
		}
		w.mu.Unlock()
	}
	return w.Stager.Put(ctx, key, r, cond)
}

// unflushed returns the keys published and not flushed among keys.
func (w *watchedStager) unflushed(keys ...string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, k := range keys {
		if w.pending[k] {
			out = append(out, k)
		}
	}
	return out
}

// TestUploadsOverlapTheirWrites uploads from many clients at once into one
// user, through compactions of the list's log, on a real data folder
// watched by watchedStager.
func TestUploadsOverlapTheirWrites(t *testing.T) {
	fs, err := filestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	w := &watchedStager{Stager: fs, t: t, staged: map[storage.Staged][]byte{}, pending: map[string]bool{}, published: map[string]bool{}}
	svc := soleService(t, w)
	if svc.stager == nil {
		t.Fatal("the service does not stage its uploads")
	}
	ctx := t.Context()
	u, err := svc.CreateUser(ctx, "overlap", "")
	if err != nil {
		t.Fatal(err)
	}
	uh := userHashOf(u.Name)
	const clients, each = 8, 20 // 160 uploads: more than two full logs
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				img, err := svc.Upload(ctx, u, fmt.Sprintf("%d-%d.png", c, i), bytes.NewReader(tinyPNG(t, c*each+i)))
				if err != nil {
					t.Error(err)
					return
				}
				if left := w.unflushed(blobKey(uh, img.Blob)); len(left) > 0 {
					t.Errorf("upload %s returned before its blob's name was flushed", img.Name)
				}
			}
		})
	}
	wg.Wait()
	if left := w.unflushed(slicesOfKeys(w)...); len(left) > 0 {
		t.Errorf("published and never flushed: %q", left)
	}
	if w.flushes == 0 || w.appended == 0 {
		t.Fatalf("%d flushes and %d appended records watched: nothing tested", w.flushes, w.appended)
	}
	imgs, err := soleService(t, fs).List(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != clients*each {
		t.Fatalf("a fresh server lists %d images, want %d", len(imgs), clients*each)
	}
}

func slicesOfKeys(w *watchedStager) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var keys []string
	for k := range w.pending {
		keys = append(keys, k)
	}
	return keys
}

// tinyPNG returns a distinct small PNG for each n.
func tinyPNG(t *testing.T, n int) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, 4, 4))
	img.Set(0, 0, color.Gray{Y: uint8(n)})
	img.Set(1, 0, color.Gray{Y: uint8(n >> 8)})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// sweepingStager runs an orphan sweep, with a cut-off an hour ahead (a
// clock set back since the start), just before each new blob is
// published, and again just before each record is appended.
type sweepingStager struct {
	storage.Stager
	svc   *Service
	swept atomic.Int32
}

type sweptStaged struct {
	storage.Staged
	s *sweepingStager
}

func (w *sweepingStager) sweep(ctx context.Context) {
	if _, err := w.svc.SweepOrphans(ctx, time.Now().Add(time.Hour)); err == nil {
		w.swept.Add(1)
	}
}

func (w *sweepingStager) StageNew(ctx context.Context, key string, r io.Reader) (storage.Staged, error) {
	st, err := w.Stager.StageNew(ctx, key, r)
	if err != nil {
		return nil, err
	}
	return &sweptStaged{Staged: st, s: w}, nil
}

func (s *sweptStaged) Publish(ctx context.Context) (storage.Attrs, error) {
	s.s.sweep(ctx)
	return s.Staged.Publish(ctx)
}

func (w *sweepingStager) Append(ctx context.Context, key string, p []byte) error {
	w.sweep(ctx)
	return w.Stager.Append(ctx, key, p)
}

// TestSweepSparesUploadsInProgress: the start-up sweep of blobs no list
// names runs while uploads are served, and spares theirs however its
// time cut-off falls: a new blob is under its own name before any list
// names it.
func TestSweepSparesUploadsInProgress(t *testing.T) {
	fs, err := filestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	w := &sweepingStager{Stager: fs}
	svc := soleService(t, w)
	w.svc = svc
	ctx := t.Context()
	u, err := svc.CreateUser(ctx, "swept", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := svc.Upload(ctx, u, fmt.Sprintf("%d.png", i), bytes.NewReader(tinyPNG(t, i))); err != nil {
			t.Fatal(err)
		}
	}
	if w.swept.Load() == 0 {
		t.Fatal("no sweep ran: nothing tested")
	}
	imgs, err := soleService(t, fs).List(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 3 {
		t.Fatalf("a fresh server lists %d images, want 3", len(imgs))
	}
	for _, img := range imgs {
		_, rc, err := svc.Open(ctx, u, img.ID)
		if err != nil {
			t.Fatalf("image %s: %v", img.Name, err)
		}
		rc.Close()
	}
}
