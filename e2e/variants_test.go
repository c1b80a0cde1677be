package e2e

// End-to-end tests of image variants (GET /api/v1/images/{id}?w=&h=&fit=
// &format=), of --strip-metadata and of the ShareX uploader, against the
// real binary. Every exchange is validated against the OpenAPI document by
// the harness's client.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	endian "encoding/binary"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"mime/multipart"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// v1User creates a user through /api/v1 and returns its bearer header.
func v1User(t *testing.T, s *server, name string) map[string]string {
	t.Helper()
	r := s.do("POST", "/api/v1/users", strings.NewReader(`{"username":"`+name+`"}`), map[string]string{"Content-Type": "application/json"})
	if r.status != 201 {
		t.Fatalf("create user %s: %v", name, r)
	}
	var v map[string]string
	json.Unmarshal(r.body, &v)
	return map[string]string{"Authorization": "Bearer " + v["token"]}
}

// with returns the headers h and more (pairs of name and value).
func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// v1Upload stores data as a raw body and returns the image's description.
func v1Upload(t *testing.T, s *server, auth map[string]string, name string, data []byte) map[string]any {
	t.Helper()
	r := s.do("POST", "/api/v1/images?name="+name, bytes.NewReader(data), auth)
	if r.status != 201 {
		t.Fatalf("upload %s: %v", name, r)
	}
	var v map[string]any
	json.Unmarshal(r.body, &v)
	return v
}

// photo is an opaque image whose pixels all differ from their neighbours.
func photo(w, h int, seed uint8) image.Image {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x*255/w) ^ seed, uint8(y*255/h) + seed, uint8(x*y) + seed, 255})
		}
	}
	return m
}

func encode(t *testing.T, m image.Image, format string) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	if format == "jpeg" {
		err = jpeg.Encode(&buf, m, &jpeg.Options{Quality: 90})
	} else {
		err = png.Encode(&buf, m)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// variantFiles lists the files under the data folder's objects/variants,
// relative to it.
func variantFiles(t *testing.T, data string) []string {
	t.Helper()
	root := filepath.Join(data, "objects", "variants")
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && p == root {
				return fs.SkipAll
			}
			return err
		}
		if !d.IsDir() && !strings.HasPrefix(d.Name(), ".") {
			rel, _ := filepath.Rel(root, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

// metric returns the value of a metric without labels from /metrics.
func metric(t *testing.T, s *server, name string) float64 {
	t.Helper()
	r := s.get("/metrics")
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// TestVariantSizesAndFits: variants of a JPEG and a PNG at several sizes
// and fits decode to the sizes promised, in the format asked or the
// image's own, with the headers of a download.
func TestVariantSizesAndFits(t *testing.T) {
	s := start(t, t.TempDir())
	auth := v1User(t, s, "fits")
	jpg := v1Upload(t, s, auth, "wide.jpg", encode(t, photo(640, 480, 0), "jpeg"))
	pngImg := v1Upload(t, s, auth, "tall.png", encode(t, photo(300, 500, 0), "png"))
	gif := v1Upload(t, s, auth, "anim.gif", fixture(t, "gif-animated.gif"))
	for _, c := range []struct {
		img         map[string]any
		query       string
		w, h        int
		format, ext string
	}{
		{jpg, "w=320", 320, 240, "jpeg", "jpg"},
		{jpg, "h=120", 160, 120, "jpeg", "jpg"},
		{jpg, "w=100&h=100", 100, 75, "jpeg", "jpg"},
		{jpg, "w=100&h=100&fit=contain", 100, 75, "jpeg", "jpg"},
		{jpg, "w=100&h=100&fit=cover", 100, 100, "jpeg", "jpg"},
		{jpg, "w=100&h=30&fit=fill", 100, 30, "jpeg", "jpg"},
		{jpg, "w=200&format=png", 200, 150, "png", "png"},
		{jpg, "w=2000", 640, 480, "jpeg", "jpg"}, // never larger than the image
		{jpg, "w=2000&h=100&fit=cover", 640, 32, "jpeg", "jpg"},
		{pngImg, "w=150", 150, 250, "png", "png"},
		{pngImg, "w=64&h=64&fit=cover&format=jpeg", 64, 64, "jpeg", "jpg"},
		{pngImg, "h=1000&fit=fill", 300, 500, "png", "png"},
		{gif, "w=10", 10, 6, "png", "png"}, // the first frame, as a PNG
	} {
		path := "/api/v1/images/" + c.img["id"].(string) + "?" + c.query
		r := s.do("GET", path, nil, auth)
		if r.status != 200 {
			t.Errorf("%s: %v", c.query, r)
			continue
		}
		m, format, err := image.Decode(bytes.NewReader(r.body))
		if err != nil || format != c.format || m.Bounds().Size() != image.Pt(c.w, c.h) {
			t.Errorf("%s %s: %v %s %v, want a %dx%d %s", c.img["name"], c.query, err, format, m.Bounds().Size(), c.w, c.h, c.format)
			continue
		}
		if ct := r.header.Get("Content-Type"); ct != "image/"+c.format {
			t.Errorf("%s: Content-Type %s", c.query, ct)
		}
		if cl := r.header.Get("Content-Length"); cl != strconv.Itoa(len(r.body)) {
			t.Errorf("%s: Content-Length %s for %d bytes", c.query, cl, len(r.body))
		}
		if etag := r.header.Get("Etag"); !strings.HasPrefix(etag, `"`+c.img["sha256"].(string)+"-") {
			t.Errorf("%s: ETag %s is not the image's SHA-256 and the variant", c.query, etag)
		}
		if cd := r.header.Get("Content-Disposition"); !strings.Contains(cd, "."+c.ext+`"`) {
			t.Errorf("%s: Content-Disposition %s, want the .%s extension", c.query, cd, c.ext)
		}
		h := s.do("HEAD", path, nil, auth)
		if h.status != 200 || len(h.body) != 0 || h.header.Get("Etag") != r.header.Get("Etag") || h.header.Get("Content-Length") != r.header.Get("Content-Length") {
			t.Errorf("HEAD %s: %d, Etag %s, Content-Length %s", c.query, h.status, h.header.Get("Etag"), h.header.Get("Content-Length"))
		}
		nm := s.do("GET", path, nil, with(auth, "If-None-Match", r.header.Get("Etag")))
		if nm.status != 304 || len(nm.body) != 0 {
			t.Errorf("If-None-Match %s: %v, want 304", c.query, nm)
		}
	}
}

// TestVariantCachedReplacedDeleted: a variant is made once and kept under
// objects/variants/; the second request reads it back (same file, same
// bytes, a hit in the metrics); a replacement's variant is of the new
// content and the old file is gone; a deletion leaves no variant file.
func TestVariantCachedReplacedDeleted(t *testing.T) {
	data := t.TempDir()
	s := start(t, data)
	auth := v1User(t, s, "cached")
	img := v1Upload(t, s, auth, "c.jpg", encode(t, photo(400, 300, 0), "jpeg"))
	other := v1Upload(t, s, auth, "other.png", encode(t, photo(50, 50, 1), "png"))
	path := "/api/v1/images/" + img["id"].(string) + "?w=100&h=100&fit=cover"
	if files := variantFiles(t, data); len(files) != 0 {
		t.Fatalf("variant files before any variant: %q", files)
	}

	first := s.do("GET", path, nil, auth)
	files := variantFiles(t, data)
	if first.status != 200 || len(files) != 1 || !strings.HasSuffix(files[0], ".100x100-cover.jpeg") {
		t.Fatalf("after the first request: %d, files %q; want one ending in .100x100-cover.jpeg", first.status, files)
	}
	file := filepath.Join(data, "objects", "variants", filepath.FromSlash(files[0]))
	stored, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(stored, first.body) {
		t.Fatalf("the file %s does not hold the variant served (%v)", files[0], err)
	}
	before, _ := os.Stat(file)
	hits, misses := metric(t, s, "imagestore_variant_cache_hits_total"), metric(t, s, "imagestore_variant_cache_misses_total")

	second := s.do("GET", path, nil, auth)
	after, _ := os.Stat(file)
	if !bytes.Equal(second.body, first.body) || !after.ModTime().Equal(before.ModTime()) || !slices.Equal(variantFiles(t, data), files) {
		t.Error("the second request did not read the same stored variant back")
	}
	if h, m := metric(t, s, "imagestore_variant_cache_hits_total"), metric(t, s, "imagestore_variant_cache_misses_total"); h != hits+1 || m != misses {
		t.Errorf("second request: hits %v→%v, misses %v→%v; want one more hit, no more misses", hits, h, misses, m)
	}
	s.do("GET", "/api/v1/images/"+other["id"].(string)+"?w=10", nil, auth)
	if n := len(variantFiles(t, data)); n != 2 {
		t.Fatalf("%d variant files, want 2", n)
	}

	// A replacement: new bytes, a new variant; the old one's file is gone.
	newBytes := encode(t, photo(400, 300, 200), "jpeg")
	if r := s.do("PUT", "/api/v1/images/"+img["id"].(string), bytes.NewReader(newBytes), auth); r.status != 200 {
		t.Fatalf("replace: %v", r)
	}
	if slices.Contains(variantFiles(t, data), files[0]) {
		t.Error("the replaced content's variant file is still there")
	}
	third := s.do("GET", path, nil, auth)
	if third.status != 200 || bytes.Equal(third.body, first.body) || third.header.Get("Etag") == first.header.Get("Etag") {
		t.Errorf("after the replacement: %d, same bytes %v, same ETag %v; want a new variant",
			third.status, bytes.Equal(third.body, first.body), third.header.Get("Etag") == first.header.Get("Etag"))
	}
	stale := s.do("GET", path, nil, with(auth, "If-None-Match", first.header.Get("Etag")))
	if stale.status != 200 {
		t.Errorf("the old variant's ETag after the replacement: %d, want 200", stale.status)
	}
	if n := len(variantFiles(t, data)); n != 2 {
		t.Errorf("%d variant files after the replacement, want 2", n)
	}

	// Deletions take the variants with the images.
	for _, id := range []string{img["id"].(string), other["id"].(string)} {
		if r := s.do("DELETE", "/api/v1/images/"+id, nil, auth); r.status != 204 {
			t.Fatalf("delete: %v", r)
		}
	}
	if files := variantFiles(t, data); len(files) != 0 {
		t.Errorf("variant files after the deletions: %q", files)
	}
	if r := s.do("GET", path, nil, auth); r.status != 404 {
		t.Errorf("variant of a deleted image: %v", r)
	}
}

// TestVariantLimits: out-of-bounds parameters are 400 problems naming the
// parameter (with the operator's limit), WebP a 422 saying there is no
// encoder, a format no variant is made of a 422.
func TestVariantLimits(t *testing.T) {
	s := start(t, t.TempDir(), "--variant-max-size", "256")
	auth := v1User(t, s, "limits")
	id := v1Upload(t, s, auth, "l.png", encode(t, photo(300, 300, 0), "png"))["id"].(string)
	ppm := v1Upload(t, s, auth, "l.ppm", fixture(t, "ppm-raw.ppm"))["id"].(string)
	var limits map[string]any
	json.Unmarshal(s.get("/api/v1/limits").body, &limits)
	if limits["max_variant_size"] != float64(256) {
		t.Errorf("limits: %v, want max_variant_size 256", limits)
	}
	for query, param := range map[string]string{
		"w=0": "w", "w=-1": "w", "w=ten": "w", "w=257": "w", "h=0": "h", "h=257&w=5": "h",
		"w=5&fit=stretch": "fit", "w=5&format=bmp": "format", "fit=cover": "w",
	} {
		r := s.do("GET", "/api/v1/images/"+id+"?"+query, nil, auth)
		var p map[string]any
		json.Unmarshal(r.body, &p)
		if r.status != 400 || p["type"] != "urn:imagestore:problem:bad-query" || p["limit"] != param {
			t.Errorf("?%s: %v, want a 400 bad-query naming %s", query, r, param)
		}
	}
	if r := s.do("GET", "/api/v1/images/"+id+"?w=256", nil, auth); r.status != 200 {
		t.Errorf("w at the limit: %v", r)
	}
	r := s.do("GET", "/api/v1/images/"+id+"?w=64&format=webp", nil, auth)
	var p map[string]any
	json.Unmarshal(r.body, &p)
	if detail, _ := p["detail"].(string); r.status != 422 || p["type"] != "urn:imagestore:problem:variant-format-unavailable" || !strings.Contains(detail, "WebP encoder") {
		t.Errorf("format=webp: %v, want 422 saying no WebP encoder is available", r)
	}
	r = s.do("GET", "/api/v1/images/"+ppm+"?w=64", nil, auth)
	json.Unmarshal(r.body, &p)
	if r.status != 422 || p["type"] != "urn:imagestore:problem:variant-unavailable" {
		t.Errorf("a variant of a PPM: %v, want 422 variant-unavailable", r)
	}
}

// TestVariantMetrics: /metrics exposes the variants' counts and time.
func TestVariantMetrics(t *testing.T) {
	s := start(t, t.TempDir())
	auth := v1User(t, s, "metered")
	id := v1Upload(t, s, auth, "m.jpg", encode(t, photo(200, 200, 0), "jpeg"))["id"].(string)
	rle := v1Upload(t, s, auth, "rle.bmp", fixture(t, "bmp-rle.bmp"))["id"].(string)
	s.do("GET", "/api/v1/images/"+id+"?w=50", nil, auth)
	s.do("GET", "/api/v1/images/"+id+"?w=50", nil, auth)
	s.do("GET", "/api/v1/images/"+id+"?w=60", nil, auth)
	if r := s.do("GET", "/api/v1/images/"+rle+"?w=5", nil, auth); r.status != 422 {
		t.Errorf("a run-length BMP, which Go cannot decode: %v, want 422", r)
	}
	for name, want := range map[string]float64{
		"imagestore_variant_cache_hits_total":   1,
		"imagestore_variant_cache_misses_total": 2,
		"imagestore_variant_failures_total":     1,
	} {
		if got := metric(t, s, name); got != want {
			t.Errorf("%s %v, want %v", name, got, want)
		}
	}
	if sec := metric(t, s, "imagestore_variant_generation_seconds_total"); sec <= 0 {
		t.Errorf("imagestore_variant_generation_seconds_total %v, want some time", sec)
	}
}

// TestVariantOrphansSweptAndChecked: a variant file no image names (as a
// crash between the removal of an image's bytes and of its variants
// leaves) is removed by the sweep at start-up, and reported and repaired
// by imagestore check.
func TestVariantOrphansSweptAndChecked(t *testing.T) {
	data := t.TempDir()
	s := start(t, data)
	auth := v1User(t, s, "orphans")
	id := v1Upload(t, s, auth, "o.png", encode(t, photo(80, 80, 0), "png"))["id"].(string)
	s.do("GET", "/api/v1/images/"+id+"?w=20", nil, auth)
	kept := variantFiles(t, data)
	if len(kept) != 1 {
		t.Fatalf("variant files %q, want one", kept)
	}
	s.stop()
	stray := filepath.Join(data, "objects", "variants", filepath.Dir(filepath.FromSlash(kept[0])), "0123456789abcdef0123456789abcdef.20x0-contain.png")
	plant := func() {
		if err := os.WriteFile(stray, []byte("stray"), 0o600); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Hour)
		os.Chtimes(stray, old, old)
	}
	plant()
	out, code := runCheck(t, data)
	if code != 1 || !strings.Contains(out, "0123456789abcdef0123456789abcdef.20x0-contain.png") {
		t.Errorf("check: exit %d, want 1 and the stray variant named:\n%s", code, out)
	}
	if out, code = runCheck(t, data, "--repair"); code != 0 {
		t.Errorf("check --repair: exit %d\n%s", code, out)
	}
	if files := variantFiles(t, data); !slices.Equal(files, kept) {
		t.Errorf("after the repair: %q, want %q", files, kept)
	}

	plant()
	s = start(t, data)
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(variantFiles(t, data), kept) {
		if time.Now().After(deadline) {
			t.Fatalf("the start-up sweep left %q, want %q", variantFiles(t, data), kept)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := s.do("GET", "/api/v1/images/"+id+"?w=20", nil, auth); r.status != 200 {
		t.Errorf("the kept variant after the restart: %v", r)
	}
}

// ---- metadata stripping

// exifGPSSegment is an APP1 Exif segment whose GPS IFD holds a latitude
// and a longitude, as a phone writes one.
func exifGPSSegment() []byte {
	be := endian.BigEndian
	t := []byte("Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08")
	entry := func(tag, typ uint16, count, value uint32) {
		t = be.AppendUint16(t, tag)
		t = be.AppendUint16(t, typ)
		t = be.AppendUint32(t, count)
		t = be.AppendUint32(t, value)
	}
	t = be.AppendUint16(t, 1)
	entry(0x8825, 4, 1, 26) // GPSInfo IFD, at 26
	t = be.AppendUint32(t, 0)
	t = be.AppendUint16(t, 4)
	entry(0x0001, 2, 2, 'N'<<24)
	entry(0x0002, 5, 3, 80)
	entry(0x0003, 2, 2, 'E'<<24)
	entry(0x0004, 5, 3, 104)
	t = be.AppendUint32(t, 0)
	for _, r := range []uint32{48, 1, 51, 1, 2958, 100, 2, 1, 17, 1, 4012, 100} {
		t = be.AppendUint32(t, r)
	}
	seg := be.AppendUint16([]byte{0xff, 0xe1}, uint16(len(t)+2))
	return append(seg, t...)
}

// withGPS inserts the Exif GPS segment into the JPEG after its APP0, and
// an XMP one and a comment for good measure.
func withGPS(t *testing.T, jpg []byte) []byte {
	t.Helper()
	if jpg[2] != 0xff || jpg[3] != 0xe0 {
		t.Fatal("no APP0")
	}
	end := 4 + int(endian.BigEndian.Uint16(jpg[4:]))
	xmp := []byte("http://ns.adobe.com/xap/1.0/\x00<rdf:Description exif:GPSLatitude='48,51.49N'/>")
	meta := append(exifGPSSegment(), endian.BigEndian.AppendUint16([]byte{0xff, 0xe1}, uint16(len(xmp)+2))...)
	meta = append(meta, xmp...)
	meta = append(meta, 0xff, 0xfe, 0, 8, 'S', 'e', 'c', 'r', 'e', 't')
	return append(append(append([]byte{}, jpg[:end]...), meta...), jpg[end:]...)
}

// segmentsBeforeScan lists the markers of a JPEG's segments up to its
// first scan.
func segmentsBeforeScan(t *testing.T, b []byte) []byte {
	t.Helper()
	var markers []byte
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xff {
			t.Fatalf("no marker at %d", i)
		}
		m := b[i+1]
		if m == 0xda {
			return markers
		}
		markers = append(markers, m)
		i += 2 + int(endian.BigEndian.Uint16(b[i+2:]))
	}
	t.Fatal("no scan")
	return nil
}

// TestStripMetadataUpload: with --strip-metadata, a JPEG with an Exif GPS
// block uploaded through either API is stored and served without its
// APP1 segments or comment, decoding to the same pixels, with the size
// and ETag of what is served; without it, the bytes are served as sent.
func TestStripMetadataUpload(t *testing.T) {
	base := fixture(t, "jpeg-baseline.jpg")
	gps := withGPS(t, base)
	want, err := jpeg.Decode(bytes.NewReader(base))
	if err != nil {
		t.Fatal(err)
	}

	data := t.TempDir()
	s := start(t, data, "--strip-metadata")
	tok := s.newUser("private")
	seedID := s.uploadID(tok, "seed.jpg", gps)
	auth := map[string]string{"Authorization": "Bearer " + tok}
	img := v1Upload(t, s, auth, "v1.jpg", gps)
	if img["size"] != float64(len(base)) {
		t.Errorf("recorded size %v, want %d (the stripped file's)", img["size"], len(base))
	}
	for what, path := range map[string]string{
		"seed": "/imageapi/token/" + tok + "/get-image/" + seedID + "/",
		"v1":   "/api/v1/images/" + img["id"].(string),
	} {
		r := s.do("GET", path, nil, with(auth, "Accept-Encoding", "identity"))
		if r.status != 200 {
			t.Fatalf("%s download: %v", what, r)
		}
		for _, m := range segmentsBeforeScan(t, r.body) {
			if m == 0xe1 || m == 0xfe {
				t.Errorf("%s: a segment 0x%02x is left", what, m)
			}
		}
		if bytes.Contains(r.body, []byte("Exif")) || bytes.Contains(r.body, []byte("GPSLatitude")) || bytes.Contains(r.body, []byte("Secret")) {
			t.Errorf("%s: metadata is left in the download", what)
		}
		got, err := jpeg.Decode(bytes.NewReader(r.body))
		if err != nil || got.Bounds() != want.Bounds() {
			t.Fatalf("%s: %v", what, err)
		}
		for y := got.Bounds().Min.Y; y < got.Bounds().Max.Y; y++ {
			for x := got.Bounds().Min.X; x < got.Bounds().Max.X; x++ {
				if got.At(x, y) != want.At(x, y) {
					t.Fatalf("%s: pixel %d,%d differs from the original's", what, x, y)
				}
			}
		}
	}
	// On disk too: the stored gzip stream holds the stripped file.
	blobs, _ := filepath.Glob(filepath.Join(data, "objects", "blobs", "*", "*.gz"))
	for _, b := range blobs {
		f, _ := os.Open(b)
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(zr)
		f.Close()
		if bytes.Contains(plain, []byte("Exif")) {
			t.Errorf("the stored %s holds Exif", b)
		}
	}
	// A replacement is stripped as well.
	if r := s.do("PUT", "/api/v1/images/"+img["id"].(string), bytes.NewReader(gps), auth); r.status != 200 || bytes.Contains(r.body, []byte(`"size":`+strconv.Itoa(len(gps)))) {
		t.Errorf("replace: %v", r)
	}

	plain := start(t, t.TempDir())
	ptok := plain.newUser("open")
	pid := plain.uploadID(ptok, "gps.jpg", gps)
	r := plain.do("GET", "/imageapi/token/"+ptok+"/get-image/"+pid+"/", nil, map[string]string{"Accept-Encoding": "identity"})
	if !bytes.Equal(r.body, gps) {
		t.Errorf("without --strip-metadata: %d bytes served, want the %d uploaded, identical", len(r.body), len(gps))
	}
}

// ---- ShareX

// TestShareXConfigE2E: the ShareX uploader names this server, the user's
// token and the fields of the upload's answer, and works as ShareX would
// use it.
func TestShareXConfigE2E(t *testing.T) {
	s := start(t, t.TempDir())
	auth := v1User(t, s, "sharex")
	r := s.do("GET", "/api/v1/sharex.sxcu", nil, auth)
	if r.status != 200 {
		t.Fatalf("sharex.sxcu: %v", r)
	}
	if cd := r.header.Get("Content-Disposition"); cd != `attachment; filename="imagestore.sxcu"` {
		t.Errorf("Content-Disposition %q", cd)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store (the file holds the token)", cc)
	}
	var cfg struct {
		Version, Name, DestinationType, RequestMethod, RequestURL string
		Headers                                                   map[string]string
		Body, FileFormName, URL, ErrorMessage                     string
	}
	if err := json.Unmarshal(r.body, &cfg); err != nil {
		t.Fatalf("%s: %v", r.body, err)
	}
	if cfg.DestinationType != "ImageUploader" || cfg.RequestMethod != "POST" || cfg.Body != "MultipartFormData" || cfg.FileFormName != "file" ||
		cfg.RequestURL != s.url+"/api/v1/images" || cfg.URL != s.url+"{json:url}" || cfg.Headers["Authorization"] != auth["Authorization"] ||
		!strings.Contains(cfg.ErrorMessage, "{json:detail}") || cfg.Version == "" || cfg.Name == "" {
		t.Errorf("configuration %s", r.body)
	}
	behind := s.do("GET", "/api/v1/sharex.sxcu", nil, with(auth, "X-Forwarded-Proto", "https"))
	if !bytes.Contains(behind.body, []byte(`"RequestURL": "https://`)) {
		t.Errorf("behind a TLS proxy: %s", behind.body)
	}

	// As ShareX: the capture as a form, then the link from the answer.
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile(cfg.FileFormName, "capture.png")
	capture := fixture(t, "png-rgb.png")
	fw.Write(capture)
	mw.Close()
	up := s.do(cfg.RequestMethod, strings.TrimPrefix(cfg.RequestURL, s.url), &form, with(cfg.Headers, "Content-Type", mw.FormDataContentType()))
	var answer map[string]any
	json.Unmarshal(up.body, &answer)
	if up.status != 201 {
		t.Fatalf("upload as ShareX does: %v", up)
	}
	link := strings.ReplaceAll(cfg.URL, "{json:url}", answer["url"].(string))
	got := s.do("GET", strings.TrimPrefix(link, s.url), nil, cfg.Headers)
	if got.status != 200 || !bytes.Equal(got.body, capture) {
		t.Errorf("the link %s: %d, %d bytes", link, got.status, len(got.body))
	}
	if r := s.do("GET", "/api/v1/sharex.sxcu", nil, nil); r.status != 401 {
		t.Errorf("without a token: %v", r)
	}
}
