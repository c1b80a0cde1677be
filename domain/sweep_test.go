package domain_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/filestore"
	"github.com/imagestore/imagestore/storage/memstore"
)

// TestSweepOrphans: blobs no index names, older than the cut-off, go;
// listed images and recent blobs (uploads in progress) stay.
func TestSweepOrphans(t *testing.T) {
	fs, err := filestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	for name, store := range map[string]storage.Store{"memstore": memstore.New(), "filestore": fs} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			svc, _ := domain.New(store, domain.DefaultConfig)
			token, _ := svc.GenerateToken(ctx, "sweeper")
			u, _ := svc.Authenticate(ctx, token)
			png := fixture(t, "png-rgb.png")
			img, err := svc.Upload(ctx, u, "kept.png", bytes.NewReader(png))
			if err != nil {
				t.Fatal(err)
			}
			// An orphan beside the listed blob, as a crash leaves one.
			var folder string
			for key, err := range store.List(ctx, "blobs/") {
				if err != nil {
					t.Fatal(err)
				}
				folder = key[:strings.LastIndexByte(key, '/')+1]
			}
			orphan := folder + "0123456789abcdef0123456789abcdef.gz"
			if _, err := store.Put(ctx, orphan, bytes.NewReader([]byte("partial")), storage.Cond{}); err != nil {
				t.Fatal(err)
			}

			// A cut-off before the orphan was written spares it.
			if n, err := svc.SweepOrphans(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
				t.Fatalf("sweep with an old cut-off: removed %d, %v; want 0", n, err)
			}
			if n, err := svc.SweepOrphans(ctx, time.Now().Add(time.Second)); err != nil || n != 1 {
				t.Fatalf("sweep: removed %d, %v; want 1", n, err)
			}
			if _, err := store.Stat(ctx, orphan); err == nil {
				t.Fatal("the orphan is still there")
			}
			assertBytes(t, svc, u, img.ID, png)
			if n, _ := svc.SweepOrphans(ctx, time.Now().Add(time.Second)); n != 0 {
				t.Fatalf("a second sweep removed %d", n)
			}
		})
	}
}
