package domain_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/memstore"
)

// commitThenFail is a real store whose Puts under a prefix take effect and
// then report an error, as a write whose answer was lost does (a timeout
// after an S3 commit, a failed fsync after a rename).
type commitThenFail struct {
	storage.Store
	prefix string
	on     atomic.Bool
}

var errLostAnswer = errors.New("the answer to a committed write was lost")

func (c *commitThenFail) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	a, err := c.Store.Put(ctx, key, r, cond)
	if err == nil && c.on.Load() && strings.HasPrefix(key, c.prefix) {
		return storage.Attrs{}, errLostAnswer
	}
	return a, err
}

// TestUncertainIndexWriteKeepsTheBytes: when the index write reports an
// error but took effect, the image it lists must keep its bytes. The error
// stands: whether such a write is durable is unknown (a failed fsync).
func TestUncertainIndexWriteKeepsTheBytes(t *testing.T) {
	ctx := context.Background()
	store := &commitThenFail{Store: memstore.New(), prefix: "index/"}
	svc, err := domain.New(store, domain.DefaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	token, err := svc.GenerateToken(ctx, "unsure")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := svc.Authenticate(ctx, token)
	png, jpg := fixture(t, "png-rgb.png"), fixture(t, "jpeg-baseline.jpg")

	store.on.Store(true)
	if _, err := svc.Upload(ctx, u, "a.png", bytes.NewReader(png)); !errors.Is(err, errLostAnswer) {
		t.Fatalf("Upload: got %v, want the store's error", err)
	}
	store.on.Store(false)
	imgs, err := svc.List(ctx, u)
	if err != nil || len(imgs) != 1 {
		t.Fatalf("List: got %d images, %v; want the committed one", len(imgs), err)
	}
	assertBytes(t, svc, u, imgs[0].ID, png)

	store.on.Store(true)
	if _, err := svc.Replace(ctx, u, imgs[0].ID, "b.jpg", bytes.NewReader(jpg)); !errors.Is(err, errLostAnswer) {
		t.Fatalf("Replace: got %v, want the store's error", err)
	}
	store.on.Store(false)
	assertBytes(t, svc, u, imgs[0].ID, jpg)

	// A write that failed for real still leaves no blob behind.
	failing := &failingIndexStore{Store: store}
	svc2, _ := domain.New(failing, domain.DefaultConfig)
	if _, err := svc2.Upload(ctx, u, "c.png", bytes.NewReader(png)); err == nil {
		t.Fatal("Upload through a failing index write succeeded")
	}
	n := 0
	for _, err := range store.List(ctx, "blobs/") {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d blobs stored, want 1 (the listed image's)", n)
	}
}

// TestUncertainUserWriteKeepsTheToken: a user record written despite an
// error must keep a working token.
func TestUncertainUserWriteKeepsTheToken(t *testing.T) {
	ctx := context.Background()
	store := &commitThenFail{Store: memstore.New(), prefix: "users/"}
	store.on.Store(true)
	svc, _ := domain.New(store, domain.DefaultConfig)
	if _, err := svc.GenerateToken(ctx, "maybe"); !errors.Is(err, errLostAnswer) {
		t.Fatalf("GenerateToken: got %v, want the store's error", err)
	}
	u, err := svc.User(ctx, "maybe")
	if err != nil {
		t.Fatalf("User: %v; the user record was committed", err)
	}
	if _, err := svc.Authenticate(ctx, u.Token); err != nil {
		t.Fatalf("the committed user's token does not authenticate: %v", err)
	}
}

// failingIndexStore refuses every index write, for real.
type failingIndexStore struct{ storage.Store }

func (f *failingIndexStore) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	if strings.HasPrefix(key, "index/") {
		return storage.Attrs{}, errors.New("disk on fire")
	}
	return f.Store.Put(ctx, key, r, cond)
}

func assertBytes(t *testing.T, svc *domain.Service, u domain.User, id string, want []byte) {
	t.Helper()
	_, rc, err := svc.Open(context.Background(), u, id)
	if err != nil {
		t.Fatalf("Open(%s): %v", id, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Open(%s): %d bytes, %v; want the %d committed bytes", id, len(got), err, len(want))
	}
}

// commitThenRefuse is a real store whose next index write takes effect and
// then reports a failed condition: what an object store's client that sent
// a conditional write again, after losing the answer to the first, reports
// (the first attempt changed the ETag the second one names).
type commitThenRefuse struct {
	storage.Store
	armed atomic.Bool
}

func (c *commitThenRefuse) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	a, err := c.Store.Put(ctx, key, r, cond)
	if err == nil && strings.HasPrefix(key, "index/") && c.armed.CompareAndSwap(true, false) {
		return storage.Attrs{}, fmt.Errorf("sent again: %w", storage.ErrPrecondition)
	}
	return a, err
}

// TestRetriedWriteRefusedByItself: an upload, a replacement and a deletion
// whose list write happened but was reported as a failed condition succeed,
// once, without being refused by their own first attempt (a name taken by
// the upload itself) or losing bytes.
func TestRetriedWriteRefusedByItself(t *testing.T) {
	ctx := context.Background()
	store := &commitThenRefuse{Store: memstore.New()}
	svc, err := domain.New(store, domain.DefaultConfig) // not a sole writer: as on a bucket
	if err != nil {
		t.Fatal(err)
	}
	token, err := svc.GenerateToken(ctx, "retried")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := svc.Authenticate(ctx, token)
	png, jpg := fixture(t, "png-rgb.png"), fixture(t, "jpeg-baseline.jpg")
	blobs := func() int {
		n := 0
		for _, err := range store.List(ctx, "blobs/") {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		return n
	}

	store.armed.Store(true)
	img, err := svc.Upload(ctx, u, "a.png", bytes.NewReader(png))
	if err != nil {
		t.Fatalf("Upload: %v, want success", err)
	}
	if imgs, _ := svc.List(ctx, u); len(imgs) != 1 || imgs[0].ID != img.ID {
		t.Fatalf("List after the upload: %v, want just %s", imgs, img.ID)
	}
	assertBytes(t, svc, u, img.ID, png)

	store.armed.Store(true)
	if _, err := svc.Replace(ctx, u, img.ID, "b.jpg", bytes.NewReader(jpg)); err != nil {
		t.Fatalf("Replace: %v, want success", err)
	}
	assertBytes(t, svc, u, img.ID, jpg)
	if n := blobs(); n != 1 {
		t.Fatalf("%d blobs after the replacement, want 1 (the new bytes)", n)
	}

	store.armed.Store(true)
	if err := svc.Delete(ctx, u, img.ID); err != nil {
		t.Fatalf("Delete: %v, want success", err)
	}
	if imgs, _ := svc.List(ctx, u); len(imgs) != 0 {
		t.Fatalf("List after the deletion: %v, want none", imgs)
	}
	if n := blobs(); n != 0 {
		t.Fatalf("%d blobs after the deletion, want 0", n)
	}
}
