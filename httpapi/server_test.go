package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/httpapi"
	"github.com/imagestore/imagestore/storage/memstore"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is an API server over a memory store.
type testServer struct {
	t     *testing.T
	srv   *httptest.Server
	store *memstore.Store
	log   *lockedBuffer
}

func newTestServer(t *testing.T, opts httpapi.Options) *testServer {
	t.Helper()
	store := memstore.New()
	svc, err := domain.New(store, domain.DefaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &lockedBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv := httptest.NewServer(httpapi.NewServer(svc, opts))
	t.Cleanup(srv.Close)
	return &testServer{t: t, srv: srv, store: store, log: logBuf}
}

// do sends a request and returns the response with its whole body.
func (s *testServer) do(method, path, contentType string, body io.Reader) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	// These tests are about the uploaded bytes as they are; gzip
	// pass-through has its own tests.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp, b
}

func (s *testServer) generateToken(username string) string {
	s.t.Helper()
	resp, body := s.do("GET", "/imageapi/generate-token/"+username+"/", "", nil)
	if resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("generate-token %s: got %d %s, want 201", username, resp.StatusCode, body)
	}
	var v map[string]string
	if err := json.Unmarshal(body, &v); err != nil {
		s.t.Fatal(err)
	}
	return v["token"]
}

// blobCount is the number of image blobs in the store.
func (s *testServer) blobCount() int {
	s.t.Helper()
	n := 0
	for _, err := range s.store.List(context.Background(), "blobs/") {
		if err != nil {
			s.t.Fatal(err)
		}
		n++
	}
	return n
}

// part is one part of a multipart form.
type part struct {
	field, filename string // a text field if filename is ""
	data            []byte
}

func multipartForm(t *testing.T, parts ...part) (contentType string, body []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		var w io.Writer
		var err error
		if p.filename == "" {
			w, err = mw.CreateFormField(p.field)
		} else {
			w, err = mw.CreateFormFile(p.field, p.filename)
		}
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.data)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), buf.Bytes()
}

func fileForm(t *testing.T, filename string, data []byte) (string, []byte) {
	t.Helper()
	return multipartForm(t, part{field: "file", filename: filename, data: data})
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../imagetype/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// noisePNG returns a PNG of random pixels: it does not compress, so its
// size is about 4*w*h bytes.
func noisePNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(1, 2))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(rng.Uint32()), uint8(rng.Uint32()), uint8(rng.Uint32()), uint8(rng.Uint32())})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decodeJSON(t *testing.T, body []byte) map[string]string {
	t.Helper()
	var v map[string]string
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return v
}

// ---- the access log

type logLine struct {
	Msg      string   `json:"msg"`
	Method   string   `json:"method"`
	Route    string   `json:"route"`
	Status   *int     `json:"status"`
	Bytes    *int64   `json:"bytes"`
	Duration *float64 `json:"duration"`
}

func TestAccessLog(t *testing.T) {
	s := newTestServer(t, httpapi.Options{MaxUploadBytes: 20000})
	const username = "Zorglub_User_77"
	const otherUser = "Unknown_Person_88"

	type want struct {
		method, route string
		status        int
		bytes         int64 // -1: the body's length
	}
	var wants []want
	var sent []int64
	do := func(method, path, contentType string, body []byte, route string, status int) (*http.Response, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		resp, b := s.do(method, path, contentType, rd)
		if resp.StatusCode != status {
			t.Fatalf("%s %s: got status %d (%s), want %d", method, route, resp.StatusCode, b, status)
		}
		wants = append(wants, want{method, route, status, -1})
		n := int64(len(b))
		if method == "HEAD" {
			n = 0 // get-image writes no body for HEAD
		}
		sent = append(sent, n)
		return resp, b
	}

	_, b := do("GET", "/imageapi/generate-token/"+username+"/", "", nil, "/imageapi/generate-token/{username}/", 201)
	token := decodeJSON(t, b)["token"]
	if len(token) != 10 {
		t.Fatalf("token %q: got length %d, want 10", token, len(token))
	}
	do("GET", "/imageapi/generate-token/"+username, "", nil, "/imageapi/generate-token/{username}/", 409)
	do("GET", "/imageapi/retrieve-token/"+username+"/", "", nil, "/imageapi/retrieve-token/{username}/", 200)
	do("GET", "/imageapi/retrieve-token/"+otherUser+"/", "", nil, "/imageapi/retrieve-token/{username}/", 404)

	pngData := readFixture(t, "png-rgb.png")
	ct, form := fileForm(t, "a.png", pngData)
	_, b = do("POST", "/imageapi/token/"+token+"/upload-image/", ct, form, "/imageapi/token/{token}/upload-image/", 201)
	id := decodeJSON(t, b)["File ID"]
	do("POST", "/imageapi/token/"+token+"/upload-image", ct, form, "/imageapi/token/{token}/upload-image/", 409)
	ct2, form2 := fileForm(t, "b.png", []byte("not an image at all"))
	do("POST", "/imageapi/token/"+token+"/upload-image/", ct2, form2, "/imageapi/token/{token}/upload-image/", 406)
	ct3, form3 := fileForm(t, "big.png", noisePNG(t, 100, 100))
	do("POST", "/imageapi/token/"+token+"/upload-image/", ct3, form3, "/imageapi/token/{token}/upload-image/", 413)
	do("POST", "/imageapi/token/"+token+"/upload-image/", "text/plain", []byte("hello"), "/imageapi/token/{token}/upload-image/", 204)
	do("POST", "/imageapi/token/"+token+"/upload-image/", "multipart/form-data; boundary=xyz", []byte("garbage"), "/imageapi/token/{token}/upload-image/", 400)

	do("GET", "/imageapi/token/"+token+"/get-image/"+id+"/", "", nil, "/imageapi/token/{token}/get-image/{id}/", 200)
	do("HEAD", "/imageapi/token/"+token+"/get-image/"+id, "", nil, "/imageapi/token/{token}/get-image/{id}/", 200)
	do("GET", "/imageapi/token/"+token+"/get-image/zzzz/", "", nil, "/imageapi/token/{token}/get-image/{id}/", 404)
	do("GET", "/imageapi/token/"+token+"/get-image-list/", "", nil, "/imageapi/token/{token}/get-image-list/", 200)

	jpgData := readFixture(t, "jpeg-baseline.jpg")
	ct4, form4 := fileForm(t, "c.jpg", jpgData)
	do("PATCH", "/imageapi/token/"+token+"/update-image/"+id+"/", ct4, form4, "/imageapi/token/{token}/update-image/{id}/", 200)
	do("PATCH", "/imageapi/token/"+token+"/update-image/zzzz/", ct4, form4, "/imageapi/token/{token}/update-image/{id}/", 404)
	do("PUT", "/imageapi/token/"+token+"/update-image/"+id+"/", ct4, form4, "/imageapi/token/{token}/update-image/{id}/", 405)
	do("DELETE", "/imageapi/token/"+token+"/delete-image/"+id+"/", "", nil, "/imageapi/token/{token}/delete-image/{id}/", 200)
	do("DELETE", "/imageapi/token/"+token+"/delete-image/"+id+"/", "", nil, "/imageapi/token/{token}/delete-image/{id}/", 404)
	do("GET", "/imageapi/token/"+token+"/get-image-list/", "", nil, "/imageapi/token/{token}/get-image-list/", 404)

	// Failing requests: a token of the right form that is not known, one
	// of the wrong form, and paths that name no route at all.
	do("GET", "/imageapi/token/AAAAAAAAAA/get-image-list/", "", nil, "/imageapi/token/{token}/get-image-list/", 401)
	do("GET", "/imageapi/token/..%2Frefsite/get-image-list/", "", nil, "/imageapi/token/{token}/get-image-list/", 401)
	do("POST", "/imageapi/token/AAAAAAAAAA/upload-image/", ct, form, "/imageapi/token/{token}/upload-image/", 401)
	do("GET", "/imageapi/token/"+token+"/nothing-here/", "", nil, "unmatched", 404)
	do("GET", "/imageapi/retrieve-token/"+username+"/extra/", "", nil, "unmatched", 404)
	do("GET", "/imageapi/generate-token//", "", nil, "unmatched", 404)

	s.srv.Close() // waits for the handlers, and so for their log lines

	logText := s.log.String()
	for _, secret := range []string{token, username, otherUser, strings.ToLower(username), strings.ToLower(otherUser)} {
		if strings.Contains(logText, secret) {
			t.Errorf("the log holds %q; want it never logged. Log:\n%s", secret, logText)
		}
	}

	var got []logLine
	sc := bufio.NewScanner(strings.NewReader(logText))
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		if l.Msg == "request" {
			got = append(got, l)
		}
	}
	if len(got) != len(wants) {
		t.Fatalf("access log: got %d request lines, want %d (one per request). Log:\n%s", len(got), len(wants), logText)
	}
	for i, w := range wants {
		l := got[i]
		if l.Method != w.method || l.Route != w.route {
			t.Errorf("access log line %d: got %s %s, want %s %s", i, l.Method, l.Route, w.method, w.route)
		}
		if l.Status == nil || *l.Status != w.status {
			t.Errorf("access log line %d (%s %s): got status %v, want %d", i, w.method, w.route, deref(l.Status), w.status)
		}
		if l.Bytes == nil || *l.Bytes != sent[i] {
			t.Errorf("access log line %d (%s %s): got bytes %v, want %d", i, w.method, w.route, deref(l.Bytes), sent[i])
		}
		if l.Duration == nil || *l.Duration < 0 {
			t.Errorf("access log line %d (%s %s): got duration %v, want a non-negative duration", i, w.method, w.route, deref(l.Duration))
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return "(missing)"
	}
	return *p
}

// ---- the upload size limit

func TestUploadTooLargeContentLength(t *testing.T) {
	s := newTestServer(t, httpapi.Options{MaxUploadBytes: 1000})
	token := s.generateToken("big")
	img := noisePNG(t, 35, 35)
	if len(img) < 4500 {
		t.Fatalf("test image: got %d bytes, want about 5000", len(img))
	}
	ct, form := fileForm(t, "big.png", img)
	for _, method := range []string{"POST", "PATCH"} {
		path := "/imageapi/token/" + token + "/upload-image/"
		if method == "PATCH" {
			path = "/imageapi/token/" + token + "/update-image/abcd/"
		}
		resp, body := s.do(method, path, ct, bytes.NewReader(form))
		if got, want := resp.StatusCode, http.StatusRequestEntityTooLarge; got != want {
			t.Errorf("%s of %d bytes: got status %d (%s), want %d", method, len(form), got, body, want)
		}
		if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
			t.Errorf("%s: got Content-Type %q, want %q", method, got, want)
		}
		if !json.Valid(body) {
			t.Errorf("%s: got body %q, want JSON", method, body)
		}
	}
	resp, body := s.do("GET", "/imageapi/token/"+token+"/get-image-list/", "", nil)
	if got, want := resp.StatusCode, http.StatusNotFound; got != want {
		t.Errorf("list after a refused upload: got status %d (%s), want %d", got, body, want)
	}
	if got, want := s.blobCount(), 0; got != want {
		t.Errorf("blobs in the store: got %d, want %d", got, want)
	}
}

// onlyReader hides every method but Read, so that the client cannot learn
// the body's length and sends it chunked.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestUploadTooLargeChunked(t *testing.T) {
	s := newTestServer(t, httpapi.Options{MaxUploadBytes: 1000})
	token := s.generateToken("chunky")
	img := noisePNG(t, 35, 35)

	t.Run("reader", func(t *testing.T) {
		ct, form := fileForm(t, "big.png", img)
		req, err := http.NewRequest("POST", s.srv.URL+"/imageapi/token/"+token+"/upload-image/", onlyReader{bytes.NewReader(form)})
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ct)
		if req.ContentLength != 0 {
			t.Fatalf("request ContentLength: got %d, want 0 (unknown)", req.ContentLength)
		}
		resp, err := s.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got, want := resp.StatusCode, http.StatusRequestEntityTooLarge; got != want {
			t.Errorf("chunked upload of %d bytes: got status %d (%s), want %d", len(form), got, body, want)
		}
		if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
			t.Errorf("got Content-Type %q, want %q", got, want)
		}
		if !json.Valid(body) {
			t.Errorf("got body %q, want JSON", body)
		}
	})

	t.Run("pipe", func(t *testing.T) {
		pr, pw := io.Pipe()
		mw := multipart.NewWriter(pw)
		go func() {
			fw, err := mw.CreateFormFile("file", "big2.png")
			if err == nil {
				_, err = fw.Write(img)
			}
			if err == nil {
				err = mw.Close()
			}
			pw.CloseWithError(err)
		}()
		req, err := http.NewRequest("POST", s.srv.URL+"/imageapi/token/"+token+"/upload-image/", pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", mw.FormDataContentType())
		resp, err := s.srv.Client().Do(req)
		pr.CloseWithError(io.ErrClosedPipe) // unblock the writer if the server stopped reading
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got, want := resp.StatusCode, http.StatusRequestEntityTooLarge; got != want {
			t.Errorf("piped upload: got status %d (%s), want %d", got, body, want)
		}
		if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
			t.Errorf("got Content-Type %q, want %q", got, want)
		}
	})

	t.Run("text field too large", func(t *testing.T) {
		ct, form := multipartForm(t, part{field: "note", data: bytes.Repeat([]byte("x"), 5000)}, part{field: "file", filename: "small.png", data: readFixture(t, "png-palette.png")})
		req, _ := http.NewRequest("POST", s.srv.URL+"/imageapi/token/"+token+"/upload-image/", onlyReader{bytes.NewReader(form)})
		req.Header.Set("Content-Type", ct)
		resp, err := s.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got, want := resp.StatusCode, http.StatusRequestEntityTooLarge; got != want {
			t.Errorf("chunked form with a large text field: got status %d (%s), want %d", got, body, want)
		}
	})

	resp, body := s.do("GET", "/imageapi/token/"+token+"/get-image-list/", "", nil)
	if got, want := resp.StatusCode, http.StatusNotFound; got != want {
		t.Errorf("list after refused uploads: got status %d (%s), want %d", got, body, want)
	}
	if got, want := s.blobCount(), 0; got != want {
		t.Errorf("blobs in the store: got %d, want %d", got, want)
	}
}

// TestUploadLimitBoundary checks that a body of exactly the limit is
// accepted, and one byte more is not. When the body's length is unknown,
// the server reads nothing after the file part, so what counts is whether
// the bytes up to the end of the file fit.
func TestUploadLimitBoundary(t *testing.T) {
	img := readFixture(t, "png-rgb.png")
	ct, form := fileForm(t, "edge.png", img)
	_, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Fatal(err)
	}
	fileEnd := bytes.LastIndex(form, []byte("\r\n--"+params["boundary"]))
	if fileEnd < len(img) || !bytes.Equal(form[fileEnd-len(img):fileEnd], img) {
		t.Fatalf("cannot find the end of the file in the form")
	}
	tests := []struct {
		chunked bool
		limit   int64
		status  int
	}{
		{false, int64(len(form)), http.StatusCreated},
		{false, int64(len(form)) - 1, http.StatusRequestEntityTooLarge},
		{true, int64(len(form)), http.StatusCreated},
		{true, int64(fileEnd) - 1, http.StatusRequestEntityTooLarge},
		{true, int64(fileEnd) - int64(len(img)), http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		s := newTestServer(t, httpapi.Options{MaxUploadBytes: tt.limit})
		token := s.generateToken("edge")
		var body io.Reader = bytes.NewReader(form)
		if tt.chunked {
			body = onlyReader{body}
		}
		resp, b := s.do("POST", "/imageapi/token/"+token+"/upload-image/", ct, body)
		if got, want := resp.StatusCode, tt.status; got != want {
			t.Errorf("chunked=%v, body of %d bytes (file ends at %d), limit %d: got status %d (%s), want %d", tt.chunked, len(form), fileEnd, tt.limit, got, b, want)
		}
		if tt.status != http.StatusCreated {
			if got, want := s.blobCount(), 0; got != want {
				t.Errorf("chunked=%v, limit %d: got %d blobs in the store, want %d", tt.chunked, tt.limit, got, want)
			}
		}
	}
}

// ---- multipart forms

func TestUploadSkipsTextFieldsBeforeTheFile(t *testing.T) {
	s := newTestServer(t, httpapi.Options{})
	token := s.generateToken("forms")
	img := readFixture(t, "png-rgb.png")
	ct, form := multipartForm(t,
		part{field: "comment", data: []byte("a text field first")},
		part{field: "other", data: []byte("and another")},
		part{field: "image", filename: "first.png", data: img},
		part{field: "image2", filename: "second.png", data: readFixture(t, "jpeg-baseline.jpg")},
	)
	resp, body := s.do("POST", "/imageapi/token/"+token+"/upload-image/", ct, bytes.NewReader(form))
	if got, want := resp.StatusCode, http.StatusCreated; got != want {
		t.Fatalf("upload: got status %d (%s), want %d", got, body, want)
	}
	id := decodeJSON(t, body)["File ID"]

	resp, body = s.do("GET", "/imageapi/token/"+token+"/get-image-list/", "", nil)
	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Fatalf("list: got status %d (%s), want %d", got, body, want)
	}
	if got, want := string(body), `{"first.png":"`+id+`"}`; got != want {
		t.Errorf("list: got %s, want %s", got, want)
	}
	resp, body = s.do("GET", "/imageapi/token/"+token+"/get-image/"+id+"/", "", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, img) {
		t.Errorf("get-image: got status %d and %d bytes, want 200 and the first file's %d bytes", resp.StatusCode, len(body), len(img))
	}
}

func TestUploadWithoutFile(t *testing.T) {
	s := newTestServer(t, httpapi.Options{})
	token := s.generateToken("nofile")
	textOnlyCT, textOnly := multipartForm(t, part{field: "a", data: []byte("1")}, part{field: "b", data: []byte("2")})
	emptyCT, empty := multipartForm(t)
	tests := []struct {
		name        string
		contentType string
		body        []byte
	}{
		{"text fields only", textOnlyCT, textOnly},
		{"empty form", emptyCT, empty},
		{"JSON body", "application/json", []byte(`{"file":"x"}`)},
		{"plain text", "text/plain", []byte("hello")},
		{"no content type", "", []byte("hello")},
		{"form-urlencoded", "application/x-www-form-urlencoded", []byte("file=x.png")},
		{"no body", "", nil},
	}
	for _, tt := range tests {
		for _, method := range []string{"POST", "PATCH"} {
			path := "/imageapi/token/" + token + "/upload-image/"
			if method == "PATCH" {
				continue // PATCH checks the id first: see TestUpdateWithoutFile
			}
			var body io.Reader
			if tt.body != nil {
				body = bytes.NewReader(tt.body)
			}
			resp, b := s.do(method, path, tt.contentType, body)
			if got, want := resp.StatusCode, http.StatusNoContent; got != want {
				t.Errorf("%s, %s: got status %d (%s), want %d", tt.name, method, got, b, want)
			}
			if len(b) != 0 {
				t.Errorf("%s, %s: got body %q, want none", tt.name, method, b)
			}
		}
	}
	resp, body := s.do("GET", "/imageapi/token/"+token+"/get-image-list/", "", nil)
	if got, want := resp.StatusCode, http.StatusNotFound; got != want {
		t.Errorf("list: got status %d (%s), want %d", got, body, want)
	}
}

func TestUpdateWithoutFile(t *testing.T) {
	s := newTestServer(t, httpapi.Options{})
	token := s.generateToken("nofilepatch")
	img := readFixture(t, "png-rgb.png")
	ct, form := fileForm(t, "keep.png", img)
	resp, body := s.do("POST", "/imageapi/token/"+token+"/upload-image/", ct, bytes.NewReader(form))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: got %d (%s), want 201", resp.StatusCode, body)
	}
	id := decodeJSON(t, body)["File ID"]
	ct, textOnly := multipartForm(t, part{field: "a", data: []byte("1")})
	resp, body = s.do("PATCH", "/imageapi/token/"+token+"/update-image/"+id+"/", ct, bytes.NewReader(textOnly))
	if got, want := resp.StatusCode, http.StatusNoContent; got != want {
		t.Errorf("PATCH with text fields only: got status %d (%s), want %d", got, body, want)
	}
	if len(body) != 0 {
		t.Errorf("PATCH with text fields only: got body %q, want none", body)
	}
	resp, body = s.do("GET", "/imageapi/token/"+token+"/get-image/"+id+"/", "", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, img) {
		t.Errorf("get-image after an empty PATCH: got status %d and %d bytes, want 200 and the original %d bytes", resp.StatusCode, len(body), len(img))
	}
}

func TestUploadMalformedMultipart(t *testing.T) {
	s := newTestServer(t, httpapi.Options{})
	token := s.generateToken("malformed")
	tests := []struct {
		name        string
		contentType string
		body        string
	}{
		{"garbage body", "multipart/form-data; boundary=xyz", "this is not a multipart body at all"},
		{"garbage lines", "multipart/form-data; boundary=xyz", "line one\r\nline two\r\n\r\n"},
		{"no boundary parameter", "multipart/form-data", "--xyz\r\n\r\n"},
		{"broken part header", "multipart/form-data; boundary=xyz", "--xyz\r\nthis is no header\r\n\r\ndata\r\n--xyz--\r\n"},
		{"file part without its closing boundary", "multipart/form-data; boundary=xyz",
			"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.png\"\r\n\r\n" + string(readFixture(t, "png-rgb.png"))},
		{"text field without its closing boundary", "multipart/form-data; boundary=xyz",
			"--xyz\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nsome text"},
	}
	for _, tt := range tests {
		resp, body := s.do("POST", "/imageapi/token/"+token+"/upload-image/", tt.contentType, strings.NewReader(tt.body))
		if got, want := resp.StatusCode, http.StatusBadRequest; got != want {
			t.Errorf("%s: got status %d (%s), want %d", tt.name, got, body, want)
		}
		if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
			t.Errorf("%s: got Content-Type %q, want %q", tt.name, got, want)
		}
		if !json.Valid(body) {
			t.Errorf("%s: got body %q, want JSON", tt.name, body)
		}
	}
	if got, want := s.blobCount(), 0; got != want {
		t.Errorf("blobs in the store: got %d, want %d", got, want)
	}
}

// ---- get-image

func TestGetImage(t *testing.T) {
	s := newTestServer(t, httpapi.Options{})
	token := s.generateToken("getter")
	tests := []struct {
		fixture, name, mime string
	}{
		{"png-rgb.png", "photo.png", "image/png"},
		{"jpeg-baseline.jpg", "holiday.jpg", "image/jpeg"},
		{"gif-still.gif", "my pic; x=1.gif", "image/gif"},
		{"png-palette.png", `a "quoted" name.png`, "image/png"},
		{"webp-lossy.webp", "café ☕.webp", "image/webp"},
		{"jpeg-progressive.jpg", "日本.jpg", "image/jpeg"},
		// The stored name is the file part's, with the path removed, as
		// the original's (Django's) was: a backslash is a separator too.
		{"png-16bit.png", "dir/sub/../deep.png", "image/png"},
		{"png-interlaced.png", `C:\Users\me\win dows.png`, "image/png"},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			data := readFixture(t, tt.fixture)
			ct, form := fileForm(t, tt.name, data)
			resp, body := s.do("POST", "/imageapi/token/"+token+"/upload-image/", ct, bytes.NewReader(form))
			if got, want := resp.StatusCode, http.StatusCreated; got != want {
				t.Fatalf("upload: got status %d (%s), want %d", got, body, want)
			}
			id := decodeJSON(t, body)["File ID"]
			wantName := tt.name[strings.LastIndexAny(tt.name, `/\`)+1:]

			for _, method := range []string{"GET", "HEAD"} {
				resp, body = s.do(method, "/imageapi/token/"+token+"/get-image/"+id+"/", "", nil)
				if got, want := resp.StatusCode, http.StatusOK; got != want {
					t.Fatalf("%s get-image: got status %d (%s), want %d", method, got, body, want)
				}
				if got, want := resp.Header.Get("Content-Type"), tt.mime; got != want {
					t.Errorf("%s: got Content-Type %q, want %q", method, got, want)
				}
				if got, want := resp.Header.Get("X-Content-Type-Options"), "nosniff"; got != want {
					t.Errorf("%s: got X-Content-Type-Options %q, want %q", method, got, want)
				}
				if got, want := resp.ContentLength, int64(len(data)); got != want {
					t.Errorf("%s: got Content-Length %d, want %d", method, got, want)
				}
				cd := resp.Header.Get("Content-Disposition")
				disp, params, err := mime.ParseMediaType(cd)
				if err != nil {
					t.Fatalf("%s: Content-Disposition %q: %v", method, cd, err)
				}
				if got, want := disp, "attachment"; got != want {
					t.Errorf("%s: got disposition %q, want %q", method, got, want)
				}
				if got, want := params["filename"], wantName; got != want {
					t.Errorf("%s: got filename %q (from %q), want %q", method, got, cd, want)
				}
				if method == "HEAD" {
					if len(body) != 0 {
						t.Errorf("HEAD: got %d body bytes, want none", len(body))
					}
					continue
				}
				if !bytes.Equal(body, data) {
					t.Errorf("GET: got %d bytes, want the %d bytes uploaded, identical", len(body), len(data))
				}
			}
		})
	}
}

// TestUploadFilenameStar checks that a file part naming itself with
// filename* (RFC 7578 / 2231) is stored under the decoded name.
func TestUploadFilenameStar(t *testing.T) {
	s := newTestServer(t, httpapi.Options{})
	token := s.generateToken("starname")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename*=UTF-8''caf%C3%A9.png`)
	h.Set("Content-Type", "image/png")
	w, err := mw.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(readFixture(t, "png-rgb.png"))
	mw.Close()
	resp, body := s.do("POST", "/imageapi/token/"+token+"/upload-image/", mw.FormDataContentType(), &buf)
	if got, want := resp.StatusCode, http.StatusCreated; got != want {
		t.Fatalf("upload: got status %d (%s), want %d", got, body, want)
	}
	id := decodeJSON(t, body)["File ID"]
	_, body = s.do("GET", "/imageapi/token/"+token+"/get-image-list/", "", nil)
	if got, want := string(body), `{"café.png":"`+id+`"}`; got != want {
		t.Errorf("list: got %s, want %s", got, want)
	}
}
