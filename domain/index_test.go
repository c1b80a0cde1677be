package domain_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/memstore"
)

// slowIndexWrites makes every write of an index record take a while and
// counts them, so that changes arriving meanwhile have to wait.
type slowIndexWrites struct {
	storage.Store
	delay  time.Duration
	writes atomic.Int64
}

func (s *slowIndexWrites) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	if strings.HasPrefix(key, "index/") {
		s.writes.Add(1)
		time.Sleep(s.delay)
	}
	return s.Store.Put(ctx, key, r, cond)
}

// TestIndexGroupCommit: changes of one user's list that arrive while it
// is being written are written together, each still judged on the state
// the ones before it left: of two uploads of one name in one batch, one
// wins.
func TestIndexGroupCommit(t *testing.T) {
	for _, sole := range []bool{false, true} {
		t.Run(fmt.Sprintf("sole=%v", sole), func(t *testing.T) {
			st := &slowIndexWrites{Store: memstore.New(), delay: 20 * time.Millisecond}
			cfg := domain.DefaultConfig
			cfg.SoleWriter = sole
			svc := newService(t, st, cfg)
			u := newUser(t, svc, "grouped")
			const n = 40
			var (
				wg   sync.WaitGroup
				errs = make([]error, n)
			)
			for i := range n {
				name := fmt.Sprintf("f%d.png", i)
				if i >= n-4 {
					name = "same.png" // four uploads of one name
				}
				wg.Go(func() {
					_, errs[i] = svc.Upload(t.Context(), u, name, bytes.NewReader(uniquePNG(t, i)))
				})
			}
			wg.Wait()
			taken := 0
			for i, err := range errs {
				switch {
				case errors.Is(err, domain.ErrNameTaken) && i >= n-4:
					taken++
				case err != nil:
					t.Errorf("upload %d: %v", i, err)
				}
			}
			if taken != 3 {
				t.Errorf("uploads of one name refused: %d, want 3", taken)
			}
			if got := len(list(t, svc, u)); got != n-3 {
				t.Errorf("listed %d images, want %d", got, n-3)
			}
			if w := st.writes.Load(); w > n/2 {
				t.Errorf("%d uploads took %d index writes: changes were not batched", n, w)
			}
			t.Logf("%d uploads, %d index writes", n, st.writes.Load())
		})
	}
}

// TestIndexBatchOutlivesItsLeader: the request whose write carries other
// requests' changes can go away without failing them. One upload holds
// the list's turn (its write is slow); the next to queue leads the batch
// after it, and is cancelled while it waits; the ones queued behind it,
// in its batch, must still be written (the store refuses writes whose
// context is done).
func TestIndexBatchOutlivesItsLeader(t *testing.T) {
	st := &slowIndexWrites{Store: memstore.New(), delay: 100 * time.Millisecond}
	svc := newService(t, st, domain.DefaultConfig)
	u := newUser(t, svc, "leader")
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		c := t.Context()
		if i == 1 {
			c = ctx // the leader of the second batch
		}
		wg.Go(func() {
			// 0 takes the turn, 1 queues first, the rest behind it.
			time.Sleep(time.Duration(min(i, 2)) * 20 * time.Millisecond)
			_, errs[i] = svc.Upload(c, u, fmt.Sprintf("l%d.png", i), bytes.NewReader(uniquePNG(t, i)))
		})
	}
	time.Sleep(60 * time.Millisecond) // all queued; the first write goes on
	cancel()
	wg.Wait()
	for i, err := range errs {
		if i != 1 && err != nil {
			t.Errorf("upload %d failed with its batch's leader gone: %v", i, err)
		}
	}
	want := 9
	if errs[1] == nil {
		want = 10 // the leader's own change went in its batch's write
	}
	if got := len(list(t, svc, u)); got != want {
		t.Errorf("listed %d images, want %d", got, want)
	}
	// The first upload, then one batch of the rest (a third write only if
	// a loaded machine let an upload arrive after that batch began).
	if w := st.writes.Load(); w > 3 {
		t.Errorf("%d index writes for 10 uploads queued behind one: they were not batched", w)
	}
}

// countingStore counts reads of each kind of record.
type countingStore struct {
	storage.Store
	mu    sync.Mutex
	reads map[string]int // by the key's first folder
}

func (c *countingStore) count(key string) {
	c.mu.Lock()
	if c.reads == nil {
		c.reads = map[string]int{}
	}
	c.reads[strings.SplitN(key, "/", 2)[0]]++
	c.mu.Unlock()
}

func (c *countingStore) Get(ctx context.Context, key string) (io.ReadCloser, storage.Attrs, error) {
	c.count(key)
	return c.Store.Get(ctx, key)
}

func (c *countingStore) Stat(ctx context.Context, key string) (storage.Attrs, error) {
	c.count(key)
	return c.Store.Stat(ctx, key)
}

func (c *countingStore) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.reads {
		if k != "blobs" {
			n += v
		}
	}
	return n
}

// TestSoleWriterReadsFromMemory: the only writer of a store answers
// authentication and lookups without reading records again, and still
// sees each of its own changes at once: a rotated token fails, a deleted
// image is gone, a new one is there.
func TestSoleWriterReadsFromMemory(t *testing.T) {
	ctx := t.Context()
	st := &countingStore{Store: memstore.New()}
	cfg := domain.DefaultConfig
	cfg.SoleWriter = true
	svc := newService(t, st, cfg)
	tok, err := svc.GenerateToken(ctx, "solo")
	if err != nil {
		t.Fatal(err)
	}
	u, err := svc.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	img := upload(t, svc, u, "a.png", uniquePNG(t, 1))
	before := st.total()
	for range 100 {
		if _, err := svc.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Image(ctx, u, img.ID); err != nil {
			t.Fatal(err)
		}
	}
	if got := st.total() - before; got != 0 {
		t.Errorf("100 authentications and lookups read %d records, want 0", got)
	}
	u2, err := svc.RotateToken(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, tok); !errors.Is(err, domain.ErrUnauthorized) {
		t.Errorf("old token after rotation: got %v, want ErrUnauthorized", err)
	}
	if _, err := svc.Authenticate(ctx, u2.Token); err != nil {
		t.Errorf("new token: %v", err)
	}
	if err := svc.Delete(ctx, u2, img.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Image(ctx, u2, img.ID); !errors.Is(err, domain.ErrImageNotFound) {
		t.Errorf("deleted image: got %v, want ErrImageNotFound", err)
	}
	b := upload(t, svc, u2, "b.png", uniquePNG(t, 2))
	if got, err := svc.Image(ctx, u2, b.ID); err != nil || got.Name != "b.png" {
		t.Errorf("new image: got %+v, %v", got, err)
	}
}

// TestSoleWriterCacheRace: reads that miss the cache while tokens are
// rotated never put an old version back in it. After each rotation the
// token before fails, however the reads interleaved.
func TestSoleWriterCacheRace(t *testing.T) {
	ctx := t.Context()
	cfg := domain.DefaultConfig
	cfg.SoleWriter = true
	svc := newService(t, &slowUserReads{Store: memstore.New()}, cfg)
	tok, err := svc.GenerateToken(ctx, "racer")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := svc.Authenticate(ctx, tok)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					svc.User(ctx, "racer")
				}
			}
		})
	}
	old := []string{}
	for range 100 {
		old = append(old, u.Token)
		if _, err := svc.Authenticate(ctx, u.Token); err != nil { // remembered
			t.Fatal(err)
		}
		if u, err = svc.RotateToken(ctx, u); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // for the reads in flight to end
		if _, err := svc.Authenticate(ctx, old[len(old)-1]); !errors.Is(err, domain.ErrUnauthorized) {
			t.Fatalf("token of before the rotation: got %v, want ErrUnauthorized", err)
		}
	}
	close(stop)
	wg.Wait()
	for _, tok := range old {
		if _, err := svc.Authenticate(ctx, tok); !errors.Is(err, domain.ErrUnauthorized) {
			t.Fatalf("an old token authenticates: %v", err)
		}
	}
}

// slowUserReads returns user records a little late, as a loaded disk
// would: a write can then end between a read and its caching.
type slowUserReads struct{ storage.Store }

func (s *slowUserReads) Get(ctx context.Context, key string) (io.ReadCloser, storage.Attrs, error) {
	rc, attrs, err := s.Store.Get(ctx, key)
	if strings.HasPrefix(key, "users/") {
		time.Sleep(200 * time.Microsecond)
	}
	return rc, attrs, err
}
