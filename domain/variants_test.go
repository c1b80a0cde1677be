package domain_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage"
)

// ---- images for the tests

// gradient is an opaque image whose every pixel differs from its
// neighbours, so that a resize shows.
func gradient(w, h int, seed uint8) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x*255/w) ^ seed, uint8(y*255/h) + seed, uint8(x+y) * 3, 255})
		}
	}
	return m
}

func encodeJPEG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encodePNG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// openVariant reads a variant whole.
func openVariant(t testing.TB, svc *domain.Service, u domain.User, id string, p domain.VariantParams) (domain.Variant, []byte) {
	t.Helper()
	v, err := svc.OpenVariant(t.Context(), u, id, p)
	if err != nil {
		t.Fatalf("OpenVariant(%s, %+v): %v", id, p, err)
	}
	defer v.Body.Close()
	b, err := io.ReadAll(v.Body)
	if err != nil {
		t.Fatalf("reading variant %+v: %v", p, err)
	}
	if int64(len(b)) != v.Size {
		t.Fatalf("variant %+v: %d bytes, Size says %d", p, len(b), v.Size)
	}
	return v, b
}

// decodeAs decodes b, which must be of the format.
func decodeAs(t testing.TB, b []byte, format string) image.Image {
	t.Helper()
	m, got, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("decode the variant: %v", err)
	}
	if got != format {
		t.Fatalf("variant is %s, want %s", got, format)
	}
	return m
}

// ---- variants

// TestVariantSizes: each fit gives the size it promises, never larger than
// the image, in the format asked for or the image's own.
func TestVariantSizes(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "sizes")
		wide := upload(t, e.svc, u, "wide.jpg", encodeJPEG(t, gradient(400, 300, 0)))
		tall := upload(t, e.svc, u, "tall.png", encodePNG(t, gradient(300, 400, 0)))
		still := upload(t, e.svc, u, "still.gif", fixture(t, "gif-animated.gif"))
		for _, c := range []struct {
			img          domain.Image
			p            domain.VariantParams
			w, h         int
			format, mime string
		}{
			{wide, domain.VariantParams{Width: 100}, 100, 75, "jpeg", "image/jpeg"},
			{wide, domain.VariantParams{Height: 100}, 133, 100, "jpeg", "image/jpeg"},
			{wide, domain.VariantParams{Width: 100, Height: 100}, 100, 75, "jpeg", "image/jpeg"},
			{wide, domain.VariantParams{Width: 100, Height: 100, Fit: domain.FitCover}, 100, 100, "jpeg", "image/jpeg"},
			{wide, domain.VariantParams{Width: 100, Height: 50, Fit: domain.FitFill}, 100, 50, "jpeg", "image/jpeg"},
			{wide, domain.VariantParams{Width: 100, Format: "png"}, 100, 75, "png", "image/png"},
			{wide, domain.VariantParams{Width: 2000}, 400, 300, "jpeg", "image/jpeg"},                                  // never larger
			{wide, domain.VariantParams{Width: 800, Height: 100, Fit: domain.FitCover}, 400, 50, "jpeg", "image/jpeg"}, // the box's shape, no larger
			{wide, domain.VariantParams{Width: 1000, Height: 100, Fit: domain.FitFill}, 400, 100, "jpeg", "image/jpeg"},
			{tall, domain.VariantParams{Width: 150}, 150, 200, "png", "image/png"},
			{tall, domain.VariantParams{Width: 64, Height: 64, Fit: domain.FitCover, Format: "jpeg"}, 64, 64, "jpeg", "image/jpeg"},
			{tall, domain.VariantParams{Width: 100, Height: 100}, 75, 100, "png", "image/png"},
			{still, domain.VariantParams{Width: 10}, 10, 6, "png", "image/png"}, // a GIF's first frame, as a PNG
		} {
			v, b := openVariant(t, e.svc, u, c.img.ID, c.p)
			m := decodeAs(t, b, c.format)
			if got := m.Bounds().Size(); got != image.Pt(c.w, c.h) {
				t.Errorf("%s %+v: %v, want %dx%d", c.img.Name, c.p, got, c.w, c.h)
			}
			if v.MIME() != c.mime || v.Params.Format != c.format {
				t.Errorf("%s %+v: MIME %s, format %s; want %s", c.img.Name, c.p, v.MIME(), v.Params.Format, c.mime)
			}
			if v.Image.ID != c.img.ID || v.Image.SHA256 != c.img.SHA256 {
				t.Errorf("%s %+v: made of image %s", c.img.Name, c.p, v.Image.ID)
			}
		}
	})
}

// TestVariantLooksLikeTheImage: a variant is the image made smaller, not
// something else: its pixels are close to those of the image at the same
// places.
func TestVariantLooksLikeTheImage(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "looks")
		src := gradient(400, 200, 0)
		img := upload(t, e.svc, u, "g.png", encodePNG(t, src))
		_, b := openVariant(t, e.svc, u, img.ID, domain.VariantParams{Width: 100})
		m := decodeAs(t, b, "png")
		for _, pt := range []image.Point{{10, 10}, {50, 25}, {90, 40}} {
			got := color.NRGBAModel.Convert(m.At(pt.X, pt.Y)).(color.NRGBA)
			want := src.NRGBAAt(pt.X*4+2, pt.Y*4+2)
			if diff(got.R, want.R) > 12 || diff(got.G, want.G) > 12 {
				t.Errorf("pixel %v: %v, the image has %v there", pt, got, want)
			}
		}
	})
}

func diff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}

// TestVariantTransparentToJPEG: a transparent PNG's JPEG variant is laid
// on white.
func TestVariantTransparentToJPEG(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "alpha")
		m := image.NewNRGBA(image.Rect(0, 0, 40, 40)) // all transparent
		for x := 0; x < 20; x++ {
			for y := 0; y < 40; y++ {
				m.SetNRGBA(x, y, color.NRGBA{0, 0, 255, 255}) // the left half blue
			}
		}
		img := upload(t, e.svc, u, "a.png", encodePNG(t, m))
		_, b := openVariant(t, e.svc, u, img.ID, domain.VariantParams{Width: 20, Format: "jpeg"})
		v := decodeAs(t, b, "jpeg")
		r, g, bl, _ := v.At(17, 10).RGBA()
		if r>>8 < 240 || g>>8 < 240 || bl>>8 < 240 {
			t.Errorf("a transparent pixel became %d,%d,%d, want white", r>>8, g>>8, bl>>8)
		}
		if r, _, bl, _ := v.At(2, 10).RGBA(); r>>8 > 30 || bl>>8 < 200 {
			t.Errorf("a blue pixel became %d,_,%d", r>>8, bl>>8)
		}
	})
}

// TestVariantKeptInTheStore: the first request makes the variant and keeps
// it under a key of its own; the next reads it back, the same bytes; the
// counts say so.
func TestVariantKeptInTheStore(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "kept")
		img := upload(t, e.svc, u, "k.jpg", encodeJPEG(t, gradient(200, 100, 0)))
		p := domain.VariantParams{Width: 50}
		first, b1 := openVariant(t, e.svc, u, img.ID, p)
		if first.Cached {
			t.Error("the first variant came from the store")
		}
		ks := keys(t, e.store, "variants/")
		if len(ks) != 1 || !strings.HasSuffix(ks[0], "/"+img.Blob+".50x0-contain.jpeg") || !storage.ValidKey(ks[0]) {
			t.Fatalf("variant keys: %q, want one ending in /%s.50x0-contain.jpeg", ks, img.Blob)
		}
		rc, _, err := e.store.Get(t.Context(), ks[0])
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(stored, b1) {
			t.Error("the stored variant is not the one served (variants are stored as they are served)")
		}
		second, b2 := openVariant(t, e.svc, u, img.ID, p)
		if !second.Cached || !bytes.Equal(b1, b2) {
			t.Errorf("second request: cached %v, same bytes %v; want true, true", second.Cached, bytes.Equal(b1, b2))
		}
		// Asked differently, the same variant: one side only, any fit.
		third, _ := openVariant(t, e.svc, u, img.ID, domain.VariantParams{Width: 50, Fit: domain.FitCover, Format: "jpeg"})
		if !third.Cached {
			t.Error("w=50&fit=cover&format=jpeg is w=50: it should have come from the store")
		}
		st := e.svc.VariantStats()
		if st.Hits != 2 || st.Misses != 1 || st.Failures != 0 || st.GenerationSeconds <= 0 {
			t.Errorf("stats %+v, want 2 hits, 1 miss, no failure, some time", st)
		}
	})
}

// TestVariantsFollowTheImage: a replacement's variants are of the new
// content, and the old ones are gone; a deletion takes the variants with
// the image.
func TestVariantsFollowTheImage(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "follow")
		img := upload(t, e.svc, u, "f.png", encodePNG(t, gradient(100, 100, 0)))
		other := upload(t, e.svc, u, "other.png", encodePNG(t, gradient(100, 100, 7)))
		p := domain.VariantParams{Width: 20}
		_, before := openVariant(t, e.svc, u, img.ID, p)
		openVariant(t, e.svc, u, img.ID, domain.VariantParams{Width: 30, Format: "jpeg"})
		openVariant(t, e.svc, u, other.ID, p)
		if n := len(keys(t, e.store, "variants/")); n != 3 {
			t.Fatalf("%d variants kept, want 3", n)
		}

		replaced, err := e.svc.Replace(t.Context(), u, img.ID, "", bytes.NewReader(encodePNG(t, gradient(100, 100, 99))))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys(t, e.store, "variants/") {
			if strings.Contains(k, img.Blob) {
				t.Errorf("variant %s of the replaced content is still there", k)
			}
		}
		v, after := openVariant(t, e.svc, u, img.ID, p)
		if v.Cached || bytes.Equal(before, after) || v.Image.SHA256 != replaced.SHA256 {
			t.Errorf("after the replacement: cached %v, same bytes as before %v; want a new variant of the new content", v.Cached, bytes.Equal(before, after))
		}

		if err := e.svc.Delete(t.Context(), u, img.ID); err != nil {
			t.Fatal(err)
		}
		ks := keys(t, e.store, "variants/")
		if len(ks) != 1 || !strings.Contains(ks[0], other.Blob) {
			t.Errorf("after the deletion: variants %q, want only the other image's", ks)
		}
		if _, err := e.svc.OpenVariant(t.Context(), u, img.ID, p); !errors.Is(err, domain.ErrImageNotFound) {
			t.Errorf("variant of a deleted image: %v, want ErrImageNotFound", err)
		}
	})
}

// TestVariantErrors: what cannot be made is refused with the right error,
// and counted where a variant was tried.
func TestVariantErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "errs")
		jpg := upload(t, e.svc, u, "e.jpg", encodeJPEG(t, gradient(64, 64, 0)))
		ppm := upload(t, e.svc, u, "e.ppm", fixture(t, "ppm-raw.ppm"))
		rle := upload(t, e.svc, u, "rle.bmp", fixture(t, "bmp-rle.bmp"))
		ctx := t.Context()
		if _, err := e.svc.OpenVariant(ctx, u, jpg.ID, domain.VariantParams{Width: 10, Format: "webp"}); !errors.Is(err, domain.ErrVariantFormat) {
			t.Errorf("webp: %v, want ErrVariantFormat", err)
		}
		if _, err := e.svc.OpenVariant(ctx, u, ppm.ID, domain.VariantParams{Width: 10}); !errors.Is(err, domain.ErrVariantUnavailable) {
			t.Errorf("a PPM: %v, want ErrVariantUnavailable", err)
		}
		if _, err := e.svc.OpenVariant(ctx, u, "zzzz", domain.VariantParams{Width: 10}); !errors.Is(err, domain.ErrImageNotFound) {
			t.Errorf("unknown id: %v, want ErrImageNotFound", err)
		}
		for _, p := range []domain.VariantParams{{}, {Width: -1}, {Height: 2049}, {Width: 10, Fit: "squash"}, {Width: 10, Format: "gif"}} {
			if _, err := e.svc.OpenVariant(ctx, u, jpg.ID, p); err == nil || errors.Is(err, domain.ErrVariantUnavailable) {
				t.Errorf("%+v: %v, want a plain error", p, err)
			}
		}
		if st := e.svc.VariantStats(); st.Failures != 0 {
			t.Errorf("refusals before any decoding counted as %d failures", st.Failures)
		}
		// Go's BMP decoder does not do run-length encoding: tried, failed.
		var unavailable *domain.VariantUnavailableError
		if _, err := e.svc.OpenVariant(ctx, u, rle.ID, domain.VariantParams{Width: 10}); !errors.As(err, &unavailable) {
			t.Errorf("a run-length BMP: %v, want a *VariantUnavailableError", err)
		}
		if st := e.svc.VariantStats(); st.Failures != 1 {
			t.Errorf("%d failures, want 1", st.Failures)
		}
		if len(keys(t, e.store, "variants/")) != 0 {
			t.Error("a failure left a variant behind")
		}
	})
}

// TestVariantPixelLimit: an image over the pixel limit is not decoded,
// whatever the limit was when it was stored.
func TestVariantPixelLimit(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "bomb")
		img := upload(t, e.svc, u, "big.png", encodePNG(t, gradient(200, 200, 0)))
		cfg := domain.DefaultConfig
		cfg.MaxPixels = 100 * 100
		strict := newService(t, e.store, cfg)
		_, err := strict.OpenVariant(t.Context(), u, img.ID, domain.VariantParams{Width: 10})
		var unavailable *domain.VariantUnavailableError
		if !errors.As(err, &unavailable) || !strings.Contains(unavailable.Reason, "40000 pixels") {
			t.Errorf("over the limit: %v, want a *VariantUnavailableError naming 40000 pixels", err)
		}
		if st := strict.VariantStats(); st.Failures != 1 || st.Misses != 0 {
			t.Errorf("stats %+v, want 1 failure", st)
		}
	})
}

// TestVariantLimitPerImage: at most 32 variants of one image are kept;
// more are made and served all the same.
func TestVariantLimitPerImage(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "many")
		img := upload(t, e.svc, u, "m.png", encodePNG(t, gradient(64, 64, 0)))
		for w := 1; w <= 34; w++ {
			openVariant(t, e.svc, u, img.ID, domain.VariantParams{Width: w})
		}
		if n := len(keys(t, e.store, "variants/")); n != 32 {
			t.Errorf("%d variants kept, want 32", n)
		}
		if v, _ := openVariant(t, e.svc, u, img.ID, domain.VariantParams{Width: 34}); v.Cached {
			t.Error("the 34th variant came from the store")
		}
	})
}

// TestVariantConcurrent: requests for one variant arriving together all
// get the same bytes, and one variant is kept.
func TestVariantConcurrent(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "together")
		img := upload(t, e.svc, u, "t.jpg", encodeJPEG(t, gradient(300, 200, 0)))
		p := domain.VariantParams{Width: 40, Height: 40, Fit: domain.FitCover}
		const n = 8
		results := make([][]byte, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				v, err := e.svc.OpenVariant(t.Context(), u, img.ID, p)
				if err != nil {
					t.Error(err)
					return
				}
				results[i], _ = io.ReadAll(v.Body)
				v.Body.Close()
			})
		}
		wg.Wait()
		for i := 1; i < n; i++ {
			if !bytes.Equal(results[i], results[0]) || len(results[0]) == 0 {
				t.Fatalf("request %d got other bytes", i)
			}
		}
		if ks := keys(t, e.store, "variants/"); len(ks) != 1 {
			t.Errorf("variant keys %q, want one", ks)
		}
		if st := e.svc.VariantStats(); st.Misses < 1 || st.Misses+st.Hits > n {
			t.Errorf("stats %+v for %d requests", st, n)
		}
	})
}

// TestVariantSweepAndCheck: variants whose blob no list names (a crash
// between the removals) go with the orphan sweep, and are found and
// repaired by Check.
func TestVariantSweepAndCheck(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "sweep")
		img := upload(t, e.svc, u, "s.png", encodePNG(t, gradient(50, 50, 0)))
		openVariant(t, e.svc, u, img.ID, domain.VariantParams{Width: 10})
		kept := keys(t, e.store, "variants/")[0]
		stray := kept[:strings.LastIndexByte(kept, '/')+1] + "0123456789abcdef0123456789abcdef.10x0-contain.png"
		put := func() {
			if _, err := e.store.Put(t.Context(), stray, strings.NewReader("stray"), storage.Cond{}); err != nil {
				t.Fatal(err)
			}
		}
		put()
		if _, err := e.svc.SweepOrphans(t.Context(), time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		if len(keys(t, e.store, "variants/")) != 2 {
			t.Error("a recent stray variant was swept")
		}
		if _, err := e.svc.SweepOrphans(t.Context(), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if ks := keys(t, e.store, "variants/"); len(ks) != 1 || ks[0] != kept {
			t.Errorf("after the sweep: %q, want only %s", ks, kept)
		}

		put()
		rep, err := e.svc.Check(t.Context(), false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(rep.Orphans) != fmt.Sprint([]string{stray}) {
			t.Errorf("check: orphans %q, want the stray variant", rep.Orphans)
		}
		if rep, err = e.svc.Check(t.Context(), true, nil); err != nil || rep.Repaired != 1 {
			t.Errorf("check --repair: %+v, %v; want 1 repaired", rep, err)
		}
		if ks := keys(t, e.store, "variants/"); len(ks) != 1 || ks[0] != kept {
			t.Errorf("after the repair: %q, want only %s", ks, kept)
		}
	})
}

// ---- metadata stripping

// exifSegment is an APP1 Exif segment with a GPS IFD, as a phone writes.
func exifSegment() []byte {
	be := binary.BigEndian
	t := []byte("Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08")
	entry := func(tag, typ uint16, count, value uint32) {
		t = be.AppendUint16(t, tag)
		t = be.AppendUint16(t, typ)
		t = be.AppendUint32(t, count)
		t = be.AppendUint32(t, value)
	}
	t = be.AppendUint16(t, 1)
	entry(0x8825, 4, 1, 26) // GPSInfo IFD
	t = be.AppendUint32(t, 0)
	t = be.AppendUint16(t, 2)
	entry(0x0001, 2, 2, 'N'<<24)
	entry(0x0002, 5, 3, 56)
	t = be.AppendUint32(t, 0)
	for _, r := range []uint32{48, 1, 51, 1, 2958, 100} {
		t = be.AppendUint32(t, r)
	}
	seg := []byte{0xff, 0xe1, 0, 0}
	be.PutUint16(seg[2:], uint16(len(t)+2))
	return append(seg, t...)
}

// withExif inserts exifSegment after the JPEG's APP0.
func withExif(t testing.TB, jpg []byte) []byte {
	t.Helper()
	if jpg[2] != 0xff || jpg[3] != 0xe0 {
		t.Fatal("no APP0")
	}
	end := 4 + int(binary.BigEndian.Uint16(jpg[4:]))
	return append(append(append([]byte{}, jpg[:end]...), exifSegment()...), jpg[end:]...)
}

// TestStripMetadataOnUpload: with StripMetadata, an upload's and a
// replacement's Exif is gone from the stored bytes, and the size and
// SHA-256 recorded are those of the stripped file, whose pixels are the
// original's; without it, the bytes are kept as sent. An idempotent
// upload's retry is recognised either way.
func TestStripMetadataOnUpload(t *testing.T) {
	base := fixture(t, fixtureJPEG)
	withGPS := withExif(t, base)
	if !bytes.Contains(withGPS, []byte("Exif")) {
		t.Fatal("the test JPEG has no Exif")
	}
	basePixels, err := jpeg.Decode(bytes.NewReader(base))
	if err != nil {
		t.Fatal(err)
	}
	eachStore(t, func(t *testing.T, e *env) {
		cfg := e.svc.Config()
		cfg.StripMetadata = true
		stripping := newService(t, e.store, cfg)
		u := newUser(t, stripping, "private")

		img := upload(t, stripping, u, "gps.jpg", withGPS)
		_, got := openBytes(t, stripping, u, img.ID)
		if !bytes.Equal(got, base) {
			t.Errorf("stored %d bytes, want the %d of the JPEG without its Exif", len(got), len(base))
		}
		if img.Size != int64(len(base)) || img.SHA256 != sha(base) {
			t.Errorf("recorded size %d, SHA-256 %s; want those of the stripped file", img.Size, img.SHA256)
		}
		pixels, err := jpeg.Decode(bytes.NewReader(got))
		if err != nil || !samePixels(pixels, basePixels) {
			t.Errorf("the stripped file does not decode to the same pixels (%v)", err)
		}
		other := upload(t, stripping, u, "plain.png", fixture(t, fixturePNG))
		if _, b := openBytes(t, stripping, u, other.ID); !bytes.Equal(b, fixture(t, fixturePNG)) {
			t.Error("a PNG was changed")
		}
		replaced, err := stripping.Replace(t.Context(), u, other.ID, "gps2.jpg", bytes.NewReader(withGPS))
		if err != nil || replaced.SHA256 != sha(base) {
			t.Errorf("replacement: %v, SHA-256 %s; want the stripped file's", err, replaced.SHA256)
		}
		if _, _, err := stripping.UploadOnce(t.Context(), u, "k1", "idem.jpg", bytes.NewReader(withGPS)); err != nil {
			t.Fatal(err)
		}
		if _, replayed, err := stripping.UploadOnce(t.Context(), u, "k1", "idem.jpg", bytes.NewReader(withGPS)); err != nil || !replayed {
			t.Errorf("retry of an idempotent upload: replayed %v, %v; want true, nil", replayed, err)
		}
		// A name taken is still a name taken, a non-image still refused.
		if _, err := stripping.Upload(t.Context(), u, "gps.jpg", bytes.NewReader(withGPS)); !errors.Is(err, domain.ErrNameTaken) {
			t.Errorf("a taken name: %v", err)
		}
		if _, err := stripping.Upload(t.Context(), u, "broken.jpg", bytes.NewReader(withGPS[:len(withGPS)-40])); !errors.Is(err, domain.ErrNotImage) {
			t.Errorf("a truncated JPEG: %v, want ErrNotImage", err)
		}

		// Off (the default): the bytes as sent.
		u2 := newUser(t, e.svc, "keeper")
		kept := upload(t, e.svc, u2, "gps.jpg", withGPS)
		if _, b := openBytes(t, e.svc, u2, kept.ID); !bytes.Equal(b, withGPS) {
			t.Error("without StripMetadata, the upload was changed")
		}
	})
}

func samePixels(a, b image.Image) bool {
	if a.Bounds() != b.Bounds() {
		return false
	}
	for y := a.Bounds().Min.Y; y < a.Bounds().Max.Y; y++ {
		for x := a.Bounds().Min.X; x < a.Bounds().Max.X; x++ {
			if a.At(x, y) != b.At(x, y) {
				return false
			}
		}
	}
	return true
}

var _ = gif.Decode // the GIF decoder is registered for image.Decode
