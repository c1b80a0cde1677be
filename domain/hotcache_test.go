package domain_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/memstore"
)

// TestHotCache: Content serves an image's bytes from memory after the
// first read, follows replacements and deletions, keeps to its size, and
// never serves a damaged blob.
func TestHotCache(t *testing.T) {
	ctx := t.Context()
	st := memstore.New()
	cfg := domain.DefaultConfig
	cfg.HotCacheBytes = 8 << 10 // images of up to 1 KiB are cached
	svc := newService(t, st, cfg)
	u := newUser(t, svc, "hot")
	a := uniquePNG(t, 1)
	if len(a) > 1<<10 {
		t.Fatalf("fixture of %d bytes is too large for the test", len(a))
	}
	img := upload(t, svc, u, "a.png", a)
	for i := range 3 {
		got, data, err := svc.Content(ctx, u, img.ID)
		if err != nil || !bytes.Equal(data, a) || got.ID != img.ID {
			t.Fatalf("read %d: %v, %d bytes", i, err, len(data))
		}
	}
	if st := svc.HotCacheStats(); st.Hits != 2 || st.Misses != 1 || st.Entries != 1 || st.Bytes != int64(len(a)) {
		t.Errorf("after three reads: %+v, want 2 hits, 1 miss, 1 entry of %d bytes", st, len(a))
	}

	b := uniquePNG(t, 2)
	if _, err := svc.Replace(ctx, u, img.ID, "b.png", bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if _, data, err := svc.Content(ctx, u, img.ID); err != nil || !bytes.Equal(data, b) {
		t.Fatalf("after a replacement: %v, the old bytes: %v", err, bytes.Equal(data, a))
	}
	if st := svc.HotCacheStats(); st.Entries != 1 {
		t.Errorf("the replaced bytes are still cached: %+v", st)
	}
	if err := svc.Delete(ctx, u, img.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Content(ctx, u, img.ID); !errors.Is(err, domain.ErrImageNotFound) {
		t.Errorf("after deletion: %v, want ErrImageNotFound", err)
	}
	if st := svc.HotCacheStats(); st.Entries != 0 || st.Bytes != 0 {
		t.Errorf("a deleted image is still cached: %+v", st)
	}

	// Many images: the cache keeps to its size.
	for i := range 40 {
		img := upload(t, svc, u, "m"+string(rune('a'+i%26))+string(rune('a'+i/26))+".png", uniquePNG(t, 100+i))
		if _, data, err := svc.Content(ctx, u, img.ID); err != nil || data == nil {
			t.Fatalf("image %d: %v, cached: %v", i, err, data != nil)
		}
	}
	if st := svc.HotCacheStats(); st.Bytes > st.Capacity || st.Entries >= 40 {
		t.Errorf("after 40 images: %+v, over its capacity", st)
	}

	// Too large to cache: no bytes, the caller streams it.
	big := fixture(t, "png-rgb.png")
	if len(big) <= 1<<10 {
		t.Fatalf("fixture of %d bytes is too small for the test", len(big))
	}
	bimg := upload(t, svc, u, "big.png", big)
	if _, data, err := svc.Content(ctx, u, bimg.ID); err != nil || data != nil {
		t.Errorf("a large image: %v, %d bytes (want none)", err, len(data))
	}

	// A damaged blob: an error, nothing cached.
	d := upload(t, svc, u, "d.png", uniquePNG(t, 999))
	damage(t, ctx, st, d)
	before := svc.HotCacheStats().Entries
	if _, data, err := svc.Content(ctx, u, d.ID); !errors.Is(err, domain.ErrDamaged) || data != nil {
		t.Errorf("damaged: %v, %d bytes; want ErrDamaged", err, len(data))
	}
	if after := svc.HotCacheStats().Entries; after != before {
		t.Errorf("a damaged image was cached")
	}

	off := newService(t, memstore.New(), domain.DefaultConfig)
	ou := newUser(t, off, "cold")
	oimg := upload(t, off, ou, "a.png", a)
	if _, data, err := off.Content(ctx, ou, oimg.ID); err != nil || data != nil {
		t.Errorf("with the cache off: %v, %d bytes (want none)", err, len(data))
	}
}

// damage flips a byte in the middle of the image's stored gzip stream.
func damage(t *testing.T, ctx context.Context, st storage.Store, img domain.Image) {
	t.Helper()
	for key, err := range st.List(ctx, "blobs/") {
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(key, "/"+img.Blob+".gz") {
			continue
		}
		rc, _, err := st.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		b[len(b)-6] ^= 0xff // in the CRC
		if _, err := st.Put(ctx, key, bytes.NewReader(b), storage.Cond{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no blob for %s", img.Blob)
}

// blobGets counts the reads of blobs from a store.
type blobGets struct {
	storage.Store
	n atomic.Int64
}

func (s *blobGets) Get(ctx context.Context, key string) (io.ReadCloser, storage.Attrs, error) {
	if strings.HasPrefix(key, "blobs/") {
		s.n.Add(1)
	}
	return s.Store.Get(ctx, key)
}

// TestStoredBytesCachedOnSharedStore: on a store that other servers write
// too, a server keeps recent blobs' stored bytes in memory (a blob is never
// rewritten), and still follows what another server replaces or deletes.
func TestStoredBytesCachedOnSharedStore(t *testing.T) {
	ctx := t.Context()
	st := &blobGets{Store: memstore.New()}
	cfg := domain.DefaultConfig
	cfg.HotCacheBytes = 1 << 20
	a, b := newService(t, st, cfg), newService(t, st, cfg) // two servers
	u := newUser(t, a, "shared")
	first := uniquePNG(t, 1)
	img := upload(t, a, u, "a.png", first)
	read := func(svc *domain.Service) ([]byte, error) {
		_, rc, size, err := svc.OpenStored(ctx, u, img.ID)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		gz, err := io.ReadAll(rc)
		if err != nil || int64(len(gz)) != size {
			t.Fatalf("read %d stored bytes of %d: %v", len(gz), size, err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		return io.ReadAll(zr)
	}
	for i := range 3 {
		if got, err := read(a); err != nil || !bytes.Equal(got, first) {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if n := st.n.Load(); n != 1 {
		t.Errorf("three reads fetched the blob %d times, want once", n)
	}
	second := uniquePNG(t, 2)
	if _, err := b.Replace(ctx, u, img.ID, "b.png", bytes.NewReader(second)); err != nil {
		t.Fatal(err)
	}
	if got, err := read(a); err != nil || !bytes.Equal(got, second) {
		t.Fatalf("after another server replaced the image: %v, old bytes %v", err, bytes.Equal(got, first))
	}
	if err := b.Delete(ctx, u, img.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := read(a); !errors.Is(err, domain.ErrImageNotFound) {
		t.Fatalf("after another server deleted the image: %v, want ErrImageNotFound", err)
	}
}

// TestStoredBytesCachedOnSecondRead: on a store that is the server's alone,
// an image's stored bytes are kept in memory from its second read on, not
// its first: one read once in a while (reads spread over many images)
// never pushes out a popular one. What is served from memory is the blob
// as stored, and a replacement or deletion is followed at once.
func TestStoredBytesCachedOnSecondRead(t *testing.T) {
	ctx := t.Context()
	st := &blobGets{Store: memstore.New()}
	cfg := domain.DefaultConfig
	cfg.HotCacheBytes = 1 << 20
	cfg.SoleWriter = true
	svc := newService(t, st, cfg)
	u := newUser(t, svc, "sole")
	first := uniquePNG(t, 1)
	img := upload(t, svc, u, "a.png", first)
	read := func() []byte {
		t.Helper()
		_, rc, size, err := svc.OpenStored(ctx, u, img.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		gz, err := io.ReadAll(rc)
		if err != nil || int64(len(gz)) != size {
			t.Fatalf("read %d stored bytes of %d: %v", len(gz), size, err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for i, want := range []int64{1, 2, 2, 2} {
		if got := read(); !bytes.Equal(got, first) {
			t.Fatalf("read %d: wrong bytes", i+1)
		}
		if n := st.n.Load(); n != want {
			t.Fatalf("after %d reads the blob was fetched %d times, want %d", i+1, n, want)
		}
	}
	if hits := svc.HotCacheStats().Hits; hits != 2 {
		t.Errorf("cache hits = %d, want 2", hits)
	}

	// Another image read once between two reads of this one does not
	// stop it being kept, and is not kept itself.
	other := upload(t, svc, u, "b.png", uniquePNG(t, 3))
	second := uniquePNG(t, 2)
	if _, err := svc.Replace(ctx, u, img.ID, "a.png", bytes.NewReader(second)); err != nil {
		t.Fatal(err)
	}
	before := st.n.Load()
	if got := read(); !bytes.Equal(got, second) {
		t.Fatal("after a replacement: the old bytes")
	}
	if _, rc, _, err := svc.OpenStored(ctx, u, other.ID); err != nil {
		t.Fatal(err)
	} else {
		rc.Close()
	}
	read()
	read()
	if n := st.n.Load() - before; n != 3 {
		t.Errorf("after a replacement: %d fetches for three reads of the new blob and one of another, want 3", n)
	}
	if err := svc.Delete(ctx, u, img.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := svc.OpenStored(ctx, u, img.ID); !errors.Is(err, domain.ErrImageNotFound) {
		t.Fatalf("after a deletion: %v, want ErrImageNotFound", err)
	}
}
