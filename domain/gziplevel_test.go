package domain_test

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"

	"golang.org/x/image/bmp"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage/memstore"
)

// flatImages returns a large single-colour image as JPEG, uncompressed PNG
// and BMP: data that deflate shrinks a lot, whatever the format.
func flatImages(t *testing.T) map[string][]byte {
	img := image.NewRGBA(image.Rect(0, 0, 256, 256))
	for i := range img.Pix {
		img.Pix[i] = 0x80
	}
	img.Set(0, 0, color.RGBA{1, 2, 3, 255})
	out := map[string][]byte{}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	out["flat.jpg"] = bytes.Clone(b.Bytes())
	b.Reset()
	if err := (&png.Encoder{CompressionLevel: png.NoCompression}).Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	out["flat.png"] = bytes.Clone(b.Bytes())
	b.Reset()
	if err := bmp.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	out["flat.bmp"] = bytes.Clone(b.Bytes())
	return out
}

// TestCompressedFormatsAreStored: JPEG, PNG and WebP, whose data is
// compressed already, go into gzip's stored blocks (never deflated again,
// even where deflate would shrink them), other formats are deflated, and
// with GzipAll everything is; every image reads back whole.
func TestCompressedFormatsAreStored(t *testing.T) {
	flat := flatImages(t)
	flat["webp-lossy.webp"] = fixture(t, "webp-lossy.webp")
	for _, all := range []bool{false, true} {
		cfg := domain.DefaultConfig
		cfg.GzipAll = all
		svc := newService(t, memstore.New(), cfg)
		u := newUser(t, svc, "gzip")
		for name, data := range flat {
			img := upload(t, svc, u, name, data)
			assertBytes(t, svc, u, img.ID, data)
			storedBlocks := img.StoredSize > img.Size // stored blocks only add framing
			switch {
			case name == "flat.bmp" || all && name != "webp-lossy.webp":
				if img.StoredSize > img.Size/2 {
					t.Errorf("GzipAll %v, %s: %d bytes stored for %d: not deflated", all, name, img.StoredSize, img.Size)
				}
			case !all:
				if !storedBlocks || img.StoredSize > img.Size+64 {
					t.Errorf("%s: %d bytes stored for %d: want stored blocks, gzip's framing only", name, img.StoredSize, img.Size)
				}
			}
		}
	}
}

// TestShortUploadsCompress: streams shorter than the bytes that choose the
// gzip level are refused by the image check, and nothing goes wrong on the
// way.
func TestShortUploadsCompress(t *testing.T) {
	svc := newService(t, memstore.New(), domain.DefaultConfig)
	u := newUser(t, svc, "short")
	for _, data := range [][]byte{nil, []byte("\xff\xd8"), []byte("GIF8")} {
		if _, err := svc.Upload(t.Context(), u, "x.jpg", bytes.NewReader(data)); err == nil {
			t.Errorf("upload of %q succeeded", data)
		}
	}
}
