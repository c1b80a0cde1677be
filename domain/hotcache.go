package domain

import (
	"bytes"
	"container/list"
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
)

// hotCache keeps the decompressed bytes of the images read most recently,
// up to a total size, so that serving a popular image to a client without
// gzip does not decompress it each time, and their stored bytes, which a
// client taking gzip gets in one write. Entries are keyed by blob, and a
// blob never changes (a replacement writes a new one), so an entry is
// never stale; one whose blob is removed is dropped.
type hotCache struct {
	max, maxItem int64

	mu    sync.Mutex
	size  int64
	lru   *list.List // of *hotEntry, most recent first
	byKey map[string]*list.Element

	hits, misses atomic.Int64

	// The keys asked for most recently that the cache did not take (see
	// seenBefore): each one's slot in a ring of them in arrival order.
	seen     map[string]int
	seenRing []string
	seenNext int
}

// seenKeys is how many recent keys seenBefore remembers.
const seenKeys = 1024

type hotEntry struct {
	key  string
	data []byte
}

func newHotCache(max int64) *hotCache {
	if max <= 0 {
		return nil
	}
	// One image may take an eighth of the cache: a few large ones must
	// not push out everything else.
	return &hotCache{max: max, maxItem: min(max/8, 32<<20), lru: list.New(), byKey: map[string]*list.Element{}}
}

// seenBefore reports whether key was passed to seenBefore among the last
// seenKeys other keys, and remembers it otherwise. It lets the cache take
// an entry on its second request only: a key asked for once in a while
// (requests spread over many more images than the cache holds) then never
// pushes out one asked for often.
func (c *hotCache) seenBefore(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if slot, ok := c.seen[key]; ok {
		delete(c.seen, key)
		c.seenRing[slot] = ""
		return true
	}
	if c.seen == nil {
		c.seen = make(map[string]int, seenKeys)
		c.seenRing = make([]string, seenKeys)
	}
	if old := c.seenRing[c.seenNext]; old != "" {
		delete(c.seen, old)
	}
	c.seenRing[c.seenNext] = key
	c.seen[key] = c.seenNext
	c.seenNext = (c.seenNext + 1) % seenKeys
	return false
}

func (c *hotCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(e)
	return e.Value.(*hotEntry).data, true
}

func (c *hotCache) put(key string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[key]; ok {
		return
	}
	c.byKey[key] = c.lru.PushFront(&hotEntry{key: key, data: data})
	c.size += int64(len(data))
	for c.size > c.max {
		c.removeElement(c.lru.Back())
	}
}

func (c *hotCache) remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[key]; ok {
		c.removeElement(e)
	}
}

func (c *hotCache) removeElement(e *list.Element) {
	he := c.lru.Remove(e).(*hotEntry)
	delete(c.byKey, he.key)
	c.size -= int64(len(he.data))
}

// HotCacheStats describes the memory cache of images.
type HotCacheStats struct {
	Hits, Misses   int64 // reads served from the cache, and reads that filled it
	Bytes, Entries int64 // what it holds now
	Capacity       int64 // Config.HotCacheBytes
}

// HotCacheStats returns the figures of the memory cache of images
// (all zero when it is off).
func (s *Service) HotCacheStats() HotCacheStats {
	c := s.hot
	if c == nil {
		return HotCacheStats{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return HotCacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Bytes: c.size, Entries: int64(len(c.byKey)), Capacity: c.max}
}

// Cached returns the user's image with that id and, only if the cache of
// hot images holds them, its stored gzip stream (gz) or its bytes as
// uploaded: it never reads the store's blobs, so a caller that must not
// wait for them (see httpapi's fast lane) can fall back to OpenStored or
// Content. ok is false when the image is not found, not cached, or the
// cache is off.
func (s *Service) Cached(ctx context.Context, u User, id string, gz bool) (img Image, data []byte, ok bool) {
	c := s.hot
	if c == nil {
		return Image{}, nil, false
	}
	img, err := s.Image(ctx, u, id)
	if err != nil {
		return Image{}, nil, false
	}
	uh := s.userHash(u.Name)
	key := contentCacheKey(uh, img.Blob)
	if gz {
		key = storedCacheKey(blobKey(uh, img.Blob))
	}
	if data, ok = c.get(key); !ok {
		return Image{}, nil, false
	}
	c.hits.Add(1)
	return img, data, true
}

// Content returns the user's image with that id and its bytes as
// uploaded, from the cache of hot images, filling it on a miss. It returns
// nil bytes (and no error) for an image too large to be cached, or when
// the cache is off: the caller then streams it with Open. A damaged blob
// is an error, found before anything is served.
func (s *Service) Content(ctx context.Context, u User, id string) (Image, []byte, error) {
	img, err := s.Image(ctx, u, id)
	if err != nil {
		return Image{}, nil, err
	}
	c := s.hot
	if c == nil || img.Size > c.maxItem {
		return img, nil, nil
	}
	uh := s.userHash(u.Name)
	if data, ok := c.get(contentCacheKey(uh, img.Blob)); ok {
		c.hits.Add(1)
		return img, data, nil
	}
	img, rc, _, err := s.openStored(ctx, u, id, cacheNever) // again: it may have been replaced
	if err != nil {
		return Image{}, nil, err
	}
	defer rc.Close()
	if img.Size > c.maxItem {
		return img, nil, nil
	}
	data, err := gunzipAll(rc, img.Size)
	if err != nil {
		return Image{}, nil, fmt.Errorf("image %s: %w: %w", id, ErrDamaged, err)
	}
	c.misses.Add(1)
	c.put(contentCacheKey(uh, img.Blob), data)
	return img, data, nil
}

var gzipReaders sync.Pool // of *gzip.Reader

// gunzipAll decompresses a whole gzip stream that must hold exactly size
// bytes; reading it to its end checks its CRC and length.
func gunzipAll(r io.Reader, size int64) ([]byte, error) {
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(r)
	} else {
		err = zr.Reset(r)
	}
	if err != nil {
		return nil, err
	}
	defer gzipReaders.Put(zr)
	data := make([]byte, size)
	if _, err := io.ReadFull(zr, data); err != nil {
		return nil, err
	}
	var one [1]byte
	if n, err := zr.Read(one[:]); n != 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("more than the %d bytes listed", size)
		}
		return nil, err
	}
	return data, nil
}

// maxStoredCacheItem is the largest blob whose stored bytes are cached: a
// miss reads the blob whole into memory before serving it, which only a
// small one may cost; a large one's transfer outweighs asking the bucket,
// or the sendfile of a local file.
const maxStoredCacheItem = 1 << 20

// storedCacheKey is the hot cache's key for a blob's stored (compressed)
// bytes (see OpenStored); contentCacheKey for its decompressed bytes (see
// Content).
func storedCacheKey(blobKey string) string { return "stored/" + blobKey }

func contentCacheKey(userHash, blob string) string { return userHash + "/" + blob }

// memBlob is a blob's stored bytes served from memory. It keeps
// *bytes.Reader's Len and WriteTo visible (io.NopCloser would hide Len), so
// that a writer can send them in one piece.
type memBlob struct{ *bytes.Reader }

func (memBlob) Close() error { return nil }
