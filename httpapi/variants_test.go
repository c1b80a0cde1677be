package httpapi_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/httpapi"
	"github.com/imagestore/imagestore/storage/memstore"
)

// v1Server is an API server over a memory store, with a domain
// configuration of the test's choosing.
type v1Server struct {
	t   *testing.T
	srv *httptest.Server
	svc *domain.Service
}

func newV1Server(t *testing.T, cfg domain.Config) *v1Server {
	t.Helper()
	svc, err := domain.New(memstore.New(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.NewServer(svc, httpapi.Options{Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	return &v1Server{t: t, srv: srv, svc: svc}
}

// do sends a request with the headers given (pairs of name and value).
func (s *v1Server) do(method, path string, body []byte, header ...string) (*http.Response, []byte) {
	s.t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.srv.URL+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp, b
}

// user creates a user and returns its token.
func (s *v1Server) user(name string) string {
	s.t.Helper()
	resp, body := s.do("POST", "/api/v1/users", []byte(`{"username":"`+name+`"}`), "Content-Type", "application/json")
	if resp.StatusCode != 201 {
		s.t.Fatalf("create user: %d %s", resp.StatusCode, body)
	}
	var v map[string]string
	json.Unmarshal(body, &v)
	return v["token"]
}

// upload stores data as a raw body and returns the image's description.
func (s *v1Server) upload(token, name string, data []byte) map[string]any {
	s.t.Helper()
	resp, body := s.do("POST", "/api/v1/images?name="+name, data, "Authorization", "Bearer "+token)
	if resp.StatusCode != 201 {
		s.t.Fatalf("upload %s: %d %s", name, resp.StatusCode, body)
	}
	var v map[string]any
	json.Unmarshal(body, &v)
	return v
}

// problem decodes a problem document and checks its status and type.
func problem(t *testing.T, resp *http.Response, body []byte, status int, slug string) map[string]any {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("%d %q: not JSON: %v", resp.StatusCode, body, err)
	}
	if resp.StatusCode != status || p["type"] != "urn:imagestore:problem:"+slug || p["status"] != float64(status) ||
		resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("got %d %s, want %d %s", resp.StatusCode, body, status, slug)
	}
	return p
}

func testPhoto(w, h int) *image.NRGBA {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			m.SetNRGBA(x, y, color.NRGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	return m
}

func jpegOf(t *testing.T, m image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func pngOf(t *testing.T, m image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestV1Variant: a variant is served with its media type, length, ETag
// of the image and the variant, Cache-Control: private and an inline
// disposition under the variant format's extension; never compressed;
// HEAD, 304 and 412 as for downloads.
func TestV1Variant(t *testing.T) {
	s := newV1Server(t, domain.DefaultConfig)
	tok := s.user("variants")
	img := s.upload(tok, "holiday.png", pngOf(t, testPhoto(400, 300)))
	path := "/api/v1/images/" + img["id"].(string)
	auth := []string{"Authorization", "Bearer " + tok}
	wantTag := `"` + img["sha256"].(string) + `-120x0-contain.jpeg"`

	for _, method := range []string{"GET", "HEAD"} {
		resp, body := s.do(method, path+"?w=120&format=jpeg", nil, append(auth, "Accept-Encoding", "gzip")...)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", method, resp.StatusCode, body)
		}
		h := resp.Header
		for name, want := range map[string]string{
			"Content-Type": "image/jpeg", "Etag": wantTag, "Cache-Control": "private",
			"X-Content-Type-Options": "nosniff", "Content-Encoding": "", "Vary": "", "Accept-Ranges": "",
		} {
			if got := h.Get(name); got != want {
				t.Errorf("%s: %s %q, want %q", method, name, got, want)
			}
		}
		disp, params, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
		if disp != "inline" || params["filename"] != "holiday.jpg" {
			t.Errorf("%s: Content-Disposition %q, want inline, holiday.jpg", method, h.Get("Content-Disposition"))
		}
		if method == "HEAD" {
			if len(body) != 0 || resp.ContentLength <= 0 {
				t.Errorf("HEAD: %d body bytes, Content-Length %d", len(body), resp.ContentLength)
			}
			continue
		}
		if resp.ContentLength != int64(len(body)) {
			t.Errorf("Content-Length %d for %d bytes", resp.ContentLength, len(body))
		}
		m, format, err := image.Decode(bytes.NewReader(body))
		if err != nil || format != "jpeg" || m.Bounds().Size() != image.Pt(120, 90) {
			t.Fatalf("variant: %v %s %v, want a 120x90 JPEG", err, format, m.Bounds())
		}
	}

	// Conditional requests, from the ETag and the image's time alone.
	resp, body := s.do("GET", path+"?w=120&format=jpeg", nil, append(auth, "If-None-Match", wantTag)...)
	if resp.StatusCode != 304 || len(body) != 0 || resp.Header.Get("Etag") != wantTag {
		t.Errorf("If-None-Match: %d %q Etag %q, want 304", resp.StatusCode, body, resp.Header.Get("Etag"))
	}
	resp, _ = s.do("GET", path+"?w=120", nil, append(auth, "If-None-Match", wantTag)...)
	if resp.StatusCode != 200 {
		t.Errorf("another variant's ETag: %d, want 200", resp.StatusCode)
	}
	resp, _ = s.do("GET", path+"?w=120", nil, append(auth, "If-Match", `"`+img["sha256"].(string)+`"`)...)
	if resp.StatusCode != 412 {
		t.Errorf("If-Match of the image, not the variant: %d, want 412", resp.StatusCode)
	}
	resp, _ = s.do("GET", path+"?w=120&format=jpeg", nil, append(auth, "If-Match", wantTag)...)
	if resp.StatusCode != 200 {
		t.Errorf("If-Match of the variant: %d, want 200", resp.StatusCode)
	}
	resp, _ = s.do("GET", path+"?w=120", nil, append(auth, "If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")...)
	if resp.StatusCode != 304 {
		t.Errorf("If-Modified-Since later: %d, want 304", resp.StatusCode)
	}
	resp, _ = s.do("GET", path+"?w=120", nil, append(auth, "If-Unmodified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")...)
	if resp.StatusCode != 412 {
		t.Errorf("If-Unmodified-Since earlier: %d, want 412", resp.StatusCode)
	}
	// A Range is ignored: the variant is sent whole.
	resp, body = s.do("GET", path+"?w=120", nil, append(auth, "Range", "bytes=0-9")...)
	if resp.StatusCode != 200 || len(body) <= 10 {
		t.Errorf("Range: %d, %d bytes; want 200 and the whole variant", resp.StatusCode, len(body))
	}
	// Without variant parameters, the image itself, as before.
	resp, _ = s.do("GET", path, nil, append(auth, "Accept-Encoding", "identity")...)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" || resp.Header.Get("Etag") != `"`+img["sha256"].(string)+`"` {
		t.Errorf("the image: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Etag"))
	}
	if st := s.svc.VariantStats(); st.Misses != 2 || st.Hits < 3 {
		t.Errorf("stats %+v: want 2 variants made, the others read back", st)
	}
}

// TestV1VariantRefusals: each bad parameter is a 400 naming it; WebP is a
// 422 saying there is no encoder; an image of a format variants are not
// made of is a 422 saying why.
func TestV1VariantRefusals(t *testing.T) {
	cfg := domain.DefaultConfig
	cfg.MaxVariantSize = 500
	s := newV1Server(t, cfg)
	tok := s.user("refused")
	auth := []string{"Authorization", "Bearer " + tok}
	jpg := s.upload(tok, "a.jpg", jpegOf(t, testPhoto(64, 64)))["id"].(string)
	ppm := s.upload(tok, "a.ppm", readFixture(t, "ppm-raw.ppm"))["id"].(string)

	for query, param := range map[string]string{
		"w=0": "w", "w=-5": "w", "w=abc": "w", "w=": "w", "w=501": "w", "w=1.5": "w", "w=99999999999999999999": "w",
		"h=0": "h", "w=10&h=9999": "h", "h=x&w=10": "h",
		"fit=cover":            "w", // neither w nor h
		"format=png":           "w",
		"w=10&fit=zoom":        "fit",
		"w=10&fit=":            "fit",
		"w=10&format=gif":      "format",
		"w=10&format=JPEG":     "format",
		"w=10&format=../etc":   "format",
		"w=10&format=webp&h=0": "h",
	} {
		resp, body := s.do("GET", "/api/v1/images/"+jpg+"?"+query, nil, auth...)
		p := problem(t, resp, body, 400, "bad-query")
		if p["limit"] != param {
			t.Errorf("?%s: limit %v, want %s (%s)", query, p["limit"], param, body)
		}
		if param == "w" || param == "h" {
			if a, _ := p["allowed"].(string); !strings.Contains(a, "500") {
				t.Errorf("?%s: allowed %q does not say the limit", query, a)
			}
		}
	}
	for _, method := range []string{"GET", "HEAD"} {
		resp, body := s.do(method, "/api/v1/images/"+jpg+"?w=10&format=webp", nil, auth...)
		if method == "HEAD" {
			if resp.StatusCode != 422 {
				t.Errorf("HEAD webp: %d, want 422", resp.StatusCode)
			}
			continue
		}
		p := problem(t, resp, body, 422, "variant-format-unavailable")
		if d, _ := p["detail"].(string); !strings.Contains(d, "WebP encoder") || p["limit"] != "format" {
			t.Errorf("webp: %s, want a detail about the WebP encoder", body)
		}
	}
	resp, body := s.do("GET", "/api/v1/images/"+ppm+"?w=10", nil, auth...)
	p := problem(t, resp, body, 422, "variant-unavailable")
	if d, _ := p["detail"].(string); !strings.Contains(d, "image/x-portable-pixmap") {
		t.Errorf("PPM: detail %q, want it to name the image's type", d)
	}
	resp, body = s.do("GET", "/api/v1/images/zzzz?w=10", nil, auth...)
	problem(t, resp, body, 404, "image-not-found")
	resp, body = s.do("GET", "/api/v1/images/"+jpg+"?w=10", nil)
	problem(t, resp, body, 401, "unauthorized")

	resp, body = s.do("GET", "/api/v1/limits", nil)
	var limits map[string]any
	json.Unmarshal(body, &limits)
	if resp.StatusCode != 200 || limits["max_variant_size"] != float64(500) {
		t.Errorf("limits: %s, want max_variant_size 500", body)
	}
}

// exifJPEG is the JPEG with an APP1 Exif segment holding a GPS IFD
// inserted after its APP0.
func exifJPEG(t *testing.T, jpg []byte) []byte {
	t.Helper()
	be := binary.BigEndian
	tiff := []byte("Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01\x88\x25\x00\x04\x00\x00\x00\x01\x00\x00\x00\x1a\x00\x00\x00\x00" +
		"\x00\x01\x00\x01\x00\x02\x00\x00\x00\x02N\x00\x00\x00\x00\x00\x00\x00")
	seg := be.AppendUint16([]byte{0xff, 0xe1}, uint16(len(tiff)+2))
	seg = append(seg, tiff...)
	end := 4 + int(be.Uint16(jpg[4:]))
	return append(append(append([]byte{}, jpg[:end]...), seg...), jpg[end:]...)
}

// TestV1StripMetadata: with the option on, the download of a JPEG sent
// with Exif has none, and the answer's size and ETag are the stripped
// file's.
func TestV1StripMetadata(t *testing.T) {
	base := readFixture(t, "jpeg-baseline.jpg")
	withExif := exifJPEG(t, base)
	cfg := domain.DefaultConfig
	cfg.StripMetadata = true
	s := newV1Server(t, cfg)
	tok := s.user("stripped")
	img := s.upload(tok, "gps.jpg", withExif)
	if img["size"] != float64(len(base)) {
		t.Errorf("size %v, want %d", img["size"], len(base))
	}
	resp, body := s.do("GET", "/api/v1/images/"+img["id"].(string), nil, "Authorization", "Bearer "+tok, "Accept-Encoding", "identity")
	if resp.StatusCode != 200 || !bytes.Equal(body, base) || bytes.Contains(body, []byte("Exif")) {
		t.Errorf("download: %d, %d bytes, want the %d bytes without Exif", resp.StatusCode, len(body), len(base))
	}
}
