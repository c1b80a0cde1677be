package domain

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/memstore"
)

// BenchmarkWriteBlob measures the CPU an upload's bytes cost on their way
// to a store (the image check, SHA-256, gzip's framing, the copies), with
// no disk: the store reads them as a file store does, into a 128 KiB
// buffer, and keeps nothing.
func BenchmarkWriteBlob(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	img := image.NewRGBA(image.Rect(0, 0, 360, 360))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.Uint32())
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80}); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	svc, err := New(discardStore{memstore.New()}, DefaultConfig)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		blob, err := svc.writeBlob(context.Background(), "u", bytes.NewReader(data), false)
		if err != nil {
			b.Fatal(err)
		}
		svc.writing.Delete(blobKey("u", blob.name)) // as its callers do
	}
}

// discardStore reads what is put as a file store does, and keeps nothing.
type discardStore struct{ storage.Store }

var discardBuf = make([]byte, 128<<10)

func (discardStore) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, r, discardBuf)
	return storage.Attrs{Size: n}, err
}
