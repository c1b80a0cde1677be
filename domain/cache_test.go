package domain_test

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/memstore"
)

// TestIndexCacheFollowsTheStore: reads served from the cache of decoded
// lists still see every change, including one made by another service
// over the same store (another server).
func TestIndexCacheFollowsTheStore(t *testing.T) {
	ctx := context.Background()
	st := memstore.New()
	a, b := newService(t, st, domain.DefaultConfig), newService(t, st, domain.DefaultConfig)
	tok, _ := a.GenerateToken(ctx, "cached")
	u, _ := a.Authenticate(ctx, tok)
	png := fixture(t, "png-rgb.png")
	img := upload(t, a, u, "one.png", png)
	for i := range 3 {
		if got := len(list(t, a, u)); got != i+1 {
			t.Fatalf("a lists %d images, want %d", got, i+1)
		}
		upload(t, b, u, fmt.Sprintf("b%d.png", i), uniquePNG(t, i)) // through the other server
	}
	if err := b.Delete(ctx, u, img.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Image(ctx, u, img.ID); err == nil {
		t.Fatal("a still sees an image b deleted")
	}
	// A list read many times is read from the store once.
	counting := &countingGets{Store: memstore.New()}
	c := newService(t, counting, domain.DefaultConfig)
	big := newUser(t, c, "bigger")
	for i := range 50 {
		upload(t, c, big, fmt.Sprintf("i%03d.png", i), uniquePNG(t, 1000+i))
	}
	before := counting.gets.Load()
	for range 200 {
		if _, err := c.Image(ctx, big, "zzzz"); err == nil {
			t.Fatal("found an image that does not exist")
		}
	}
	if got := counting.gets.Load() - before; got > 1 {
		t.Errorf("200 lookups read the store %d times, want at most once", got)
	}
}

// countingGets counts the reads of a store.
type countingGets struct {
	storage.Store
	gets atomic.Int64
}

func (c *countingGets) Get(ctx context.Context, key string) (io.ReadCloser, storage.Attrs, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}
