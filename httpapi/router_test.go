package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage/memstore"
)

const notFoundBody = `{"detail":"Not found."}`

func newRouterTestServer(t *testing.T) *Server {
	t.Helper()
	svc, err := domain.New(memstore.New(), domain.DefaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	return NewServer(svc, Options{})
}

// seedRouter returns the router the server really uses.
func seedRouter(t *testing.T) *router {
	t.Helper()
	rt, ok := newRouterTestServer(t).routes().(*router)
	if !ok {
		t.Fatalf("routes() is not a *router")
	}
	return rt
}

func TestRouterMatchesSeedRoutes(t *testing.T) {
	rt := seedRouter(t)
	tests := []struct {
		path    string
		pattern string
		params  map[string]string
	}{
		{"/imageapi/generate-token/alice/", "/imageapi/generate-token/{username}/", map[string]string{"username": "alice"}},
		{"/imageapi/retrieve-token/alice/", "/imageapi/retrieve-token/{username}/", map[string]string{"username": "alice"}},
		{"/imageapi/token/AbCdEfGhIj/upload-image/", "/imageapi/token/{token}/upload-image/", map[string]string{"token": "AbCdEfGhIj"}},
		{"/imageapi/token/AbCdEfGhIj/get-image/x_-9/", "/imageapi/token/{token}/get-image/{id}/", map[string]string{"token": "AbCdEfGhIj", "id": "x_-9"}},
		{"/imageapi/token/AbCdEfGhIj/get-image-list/", "/imageapi/token/{token}/get-image-list/", map[string]string{"token": "AbCdEfGhIj"}},
		{"/imageapi/token/AbCdEfGhIj/delete-image/x_-9/", "/imageapi/token/{token}/delete-image/{id}/", map[string]string{"token": "AbCdEfGhIj", "id": "x_-9"}},
		{"/imageapi/token/AbCdEfGhIj/update-image/x_-9/", "/imageapi/token/{token}/update-image/{id}/", map[string]string{"token": "AbCdEfGhIj", "id": "x_-9"}},
		// A parameter is matched by the route, whatever its form: the
		// handlers judge tokens and ids.
		{"/imageapi/token/..%2Frefsite/get-image-list/", "/imageapi/token/{token}/get-image-list/", map[string]string{"token": "../refsite"}},
		{"/imageapi/token/a%20b/get-image/%E2%98%95/", "/imageapi/token/{token}/get-image/{id}/", map[string]string{"token": "a b", "id": "☕"}},
	}
	for _, tt := range tests {
		for _, path := range []string{tt.path, strings.TrimSuffix(tt.path, "/")} {
			t.Run(path, func(t *testing.T) {
				r, params := rt.match(path)
				if r == nil {
					t.Fatalf("match(%q): got no route, want %q", path, tt.pattern)
				}
				if got, want := r.pattern, tt.pattern; got != want {
					t.Errorf("match(%q): got route %q, want %q", path, got, want)
				}
				if got, want := params, tt.params; !mapsEqual(got, want) {
					t.Errorf("match(%q): got params %q, want %q", path, got, want)
				}
			})
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestRouterNoMatch(t *testing.T) {
	rt := seedRouter(t)
	for _, path := range []string{
		"/imageapi",
		"/imageapi/",
		"/imageapi/generate-token/",
		"/imageapi/generate-token",
		"/imageapi/nope/alice/",
		"/ImageAPI/generate-token/alice/",
		"/imageapi/Generate-Token/alice/",
		"/imageapi/generate-token/alice/extra/",
		"/imageapi/generate-token/alice/extra",
		"/prefix/imageapi/generate-token/alice/",
		"/imageapi/token/AbCdEfGhIj/get-image/",
		"/imageapi/token/AbCdEfGhIj/get-image/id/more/",
		"/imageapi/token/AbCdEfGhIj/upload-image/x/",
		"/imageapi/token/upload-image/",
		// Empty segments never match, wherever they are.
		"//imageapi/generate-token/alice/",
		"/imageapi//generate-token/alice/",
		"/imageapi/generate-token//",
		"/imageapi/generate-token//alice/",
		"/imageapi/generate-token/alice//",
		"/imageapi/token//get-image-list/",
		"/imageapi/token/AbCdEfGhIj/get-image//",
		// A bad escape matches nothing.
		"/imageapi/generate-token/%zz/",
		"/imageapi/generate-token/%/",
		"/imageapi/token/AbCdEfGhIj/get-image/ab%2/",
		// An encoded slash does not split a literal segment either.
		"/imageapi%2Fgenerate-token/alice/",
		"/healthz/x",
	} {
		if r, params := rt.match(path); r != nil {
			t.Errorf("match(%q): got route %q with %q, want no match", path, r.pattern, params)
		}
	}
}

// TestRouterEncodedSlash checks that %2F stays inside its segment: the
// handler sees one parameter holding a '/', not two segments.
func TestRouterEncodedSlash(t *testing.T) {
	var gotA, gotB string
	rt := &router{}
	rt.handle("/x/{a}/y/{b}/", map[string]http.Handler{http.MethodGet: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotA, gotB = r.PathValue("a"), r.PathValue("b")
		io.WriteString(w, "ok")
	})})
	srv := httptest.NewServer(rt)
	defer srv.Close()

	tests := []struct {
		path         string
		status       int
		wantA, wantB string
	}{
		{"/x/one%2Ftwo/y/..%2F..%2Fetc/", 200, "one/two", "../../etc"},
		{"/x/one%2ftwo/y/b", 200, "one/two", "b"},
		{"/x/%2F/y/%2F%2F/", 200, "/", "//"},
		{"/x/one/two/y/b/", 404, "", ""},
		{"/x/one/y/b/c/", 404, "", ""},
	}
	for _, tt := range tests {
		gotA, gotB = "", ""
		resp, err := http.Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got, want := resp.StatusCode, tt.status; got != want {
			t.Errorf("GET %s: got status %d, want %d (body %q)", tt.path, got, want, body)
			continue
		}
		if tt.status == 404 {
			if got, want := string(body), notFoundBody; got != want {
				t.Errorf("GET %s: got body %q, want %q", tt.path, got, want)
			}
			continue
		}
		if gotA != tt.wantA || gotB != tt.wantB {
			t.Errorf("GET %s: got a=%q b=%q, want a=%q b=%q", tt.path, gotA, gotB, tt.wantA, tt.wantB)
		}
	}
}

// TestRouterNotFound checks the 404 answer through the whole server, for
// every method.
func TestRouterNotFound(t *testing.T) {
	srv := httptest.NewServer(newRouterTestServer(t))
	defer srv.Close()
	for _, path := range []string{
		"/imageapi/",
		"/imageapi/unknown/",
		"/imageapi/generate-token/alice/extra/",
		"//imageapi/generate-token/alice/",
		"/imageapi//generate-token/alice/",
		"/imageapi/generate-token//",
		"/imageapi/generate-token/alice//",
		"/imageapi/token//get-image-list/",
		"/imageapi/token/AbCdEfGhIj/get-image//",
		"/imageapi/token/AbCdEfGhIj/get-image-list//",
	} {
		for _, method := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
			req, err := http.NewRequest(method, srv.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if got, want := resp.StatusCode, http.StatusNotFound; got != want {
				t.Errorf("%s %s: got status %d, want %d", method, path, got, want)
			}
			if got, want := string(body), notFoundBody; got != want {
				t.Errorf("%s %s: got body %q, want %q", method, path, got, want)
			}
			if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
				t.Errorf("%s %s: got Content-Type %q, want %q", method, path, got, want)
			}
		}
	}
}

// TestRouterBadEscapeOverHTTP sends a path with a bad escape over a real
// connection. Such a request line is not a valid HTTP request target, and
// Go's server answers 400 before any handler runs; the router's own 404 for
// it (see TestRouterNoMatch) covers other transports. What matters here is a
// clean 4xx refusal and a server that keeps serving.
func TestRouterBadEscapeOverHTTP(t *testing.T) {
	srv := httptest.NewServer(newRouterTestServer(t))
	defer srv.Close()
	for _, path := range []string{"/imageapi/generate-token/%zz/", "/imageapi/token/%zz/get-image-list/"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n", path)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		conn.Close()
		if got, want := resp.StatusCode, http.StatusBadRequest; got != want {
			t.Errorf("GET %s: got status %d, want %d (body %q, Content-Type %q)", path, got, want, body, resp.Header.Get("Content-Type"))
		}
	}
	resp, err := http.Get(srv.URL + "/imageapi/generate-token/%41/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("after bad requests, generate-token for %%41 (\"A\") got %d, want 201", resp.StatusCode)
	}
}

func TestRouterMethodNotAllowed(t *testing.T) {
	srv := httptest.NewServer(newRouterTestServer(t))
	defer srv.Close()
	const tok = "AbCdEfGhIj"
	routes := []struct {
		path  string
		allow []string // the methods that must be allowed
	}{
		{"/imageapi/generate-token/alice/", []string{"GET"}},
		{"/imageapi/retrieve-token/alice/", []string{"GET", "HEAD"}},
		{"/imageapi/token/" + tok + "/upload-image/", []string{"POST"}},
		{"/imageapi/token/" + tok + "/get-image/abcd/", []string{"GET", "HEAD"}},
		{"/imageapi/token/" + tok + "/get-image-list/", []string{"GET", "HEAD"}},
		{"/imageapi/token/" + tok + "/delete-image/abcd/", []string{"DELETE"}},
		{"/imageapi/token/" + tok + "/update-image/abcd/", []string{"PATCH"}},
	}
	for _, rt := range routes {
		allowed := append([]string{"OPTIONS"}, rt.allow...)
		for _, method := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "TRACE", "BREW"} {
			if slices.Contains(allowed, method) {
				continue
			}
			for _, path := range []string{rt.path, strings.TrimSuffix(rt.path, "/")} {
				req, err := http.NewRequest(method, srv.URL+path, strings.NewReader("x"))
				if err != nil {
					t.Fatal(err)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if got, want := resp.StatusCode, http.StatusMethodNotAllowed; got != want {
					t.Errorf("%s %s: got status %d, want %d", method, path, got, want)
					continue
				}
				if got, want := string(body), `{"detail":"Method \"`+method+`\" not allowed."}`; got != want {
					t.Errorf("%s %s: got body %s, want %s", method, path, got, want)
				}
				if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
					t.Errorf("%s %s: got Content-Type %q, want %q", method, path, got, want)
				}
				var got []string
				for _, m := range strings.Split(resp.Header.Get("Allow"), ",") {
					got = append(got, strings.TrimSpace(m))
				}
				want := slices.Clone(allowed)
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("%s %s: got Allow %q, want the methods %q", method, path, resp.Header.Get("Allow"), want)
				}
			}
		}
	}

	// The exact body of the brief: PUT on generate-token.
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/imageapi/generate-token/alice/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := string(body), `{"detail":"Method \"PUT\" not allowed."}`; got != want {
		t.Errorf("PUT generate-token: got body %s, want %s", got, want)
	}
	if resp.Header.Get("Allow") == "" {
		t.Errorf("PUT generate-token: got no Allow header, want one")
	}
}

// TestRouterHead checks that HEAD answers wherever GET does, with GET's
// status and headers and no body.
func TestRouterHead(t *testing.T) {
	srv := httptest.NewServer(newRouterTestServer(t))
	defer srv.Close()

	// A user with one image.
	resp, body := doRequest(t, "GET", srv.URL+"/imageapi/generate-token/headuser/", "", nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("generate-token: got %d %s, want 201", resp.StatusCode, body)
	}
	var tok struct{ Token string }
	if err := json.Unmarshal(body, &tok); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile("../imagetype/testdata/png-rgb.png")
	if err != nil {
		t.Fatal(err)
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("file", "pic.png")
	fw.Write(img)
	mw.Close()
	resp, body = doRequest(t, "POST", srv.URL+"/imageapi/token/"+tok.Token+"/upload-image/", mw.FormDataContentType(), form.Bytes())
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: got %d %s, want 201", resp.StatusCode, body)
	}
	var up map[string]string
	if err := json.Unmarshal(body, &up); err != nil {
		t.Fatal(err)
	}
	id := up["File ID"]

	for _, tt := range []struct {
		path   string
		status int
	}{
		{"/imageapi/retrieve-token/headuser/", http.StatusOK},
		{"/imageapi/retrieve-token/nobody/", http.StatusNotFound},
		{"/imageapi/token/" + tok.Token + "/get-image-list/", http.StatusOK},
		{"/imageapi/token/" + tok.Token + "/get-image/" + id + "/", http.StatusOK},
		{"/imageapi/token/" + tok.Token + "/get-image/zzzz/", http.StatusNotFound},
		{"/imageapi/token/AAAAAAAAAA/get-image-list/", http.StatusUnauthorized},
		{"/healthz", http.StatusOK},
	} {
		for _, p := range []string{tt.path, strings.TrimSuffix(tt.path, "/")} {
			getResp, getBody := doRequest(t, "GET", srv.URL+p, "", nil)
			headResp, headBody := doRequest(t, "HEAD", srv.URL+p, "", nil)
			if got, want := getResp.StatusCode, tt.status; got != want {
				t.Errorf("GET %s: got status %d, want %d (body %q)", p, got, want, getBody)
			}
			if got, want := headResp.StatusCode, tt.status; got != want {
				t.Errorf("HEAD %s: got status %d, want %d", p, got, want)
			}
			if len(headBody) != 0 {
				t.Errorf("HEAD %s: got a body of %d bytes, want none", p, len(headBody))
			}
			for _, h := range []string{"Content-Type", "Content-Length", "Content-Disposition"} {
				if got, want := headResp.Header.Get(h), getResp.Header.Get(h); got != want {
					t.Errorf("HEAD %s: got %s %q, want GET's %q", p, h, got, want)
				}
			}
		}
	}

	// HEAD on generate-token would create the user and lose its token (it
	// is in the body): refused, as the original refused it, and nothing is
	// created.
	resp, _ = doRequest(t, "HEAD", srv.URL+"/imageapi/generate-token/headuser2", "", nil)
	if got, want := resp.StatusCode, http.StatusMethodNotAllowed; got != want {
		t.Errorf("HEAD generate-token: got status %d, want %d", got, want)
	}
	if resp, _ := doRequest(t, "GET", srv.URL+"/imageapi/generate-token/headuser2", "", nil); resp.StatusCode != http.StatusCreated {
		t.Errorf("GET generate-token after a HEAD: got %d, want 201 (the HEAD created nothing)", resp.StatusCode)
	}
}

func doRequest(t *testing.T, method, url, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	// These tests are about the uploaded bytes as they are; gzip
	// pass-through has its own tests.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestRouterOptions checks that OPTIONS answers with the Allow header on a
// route, and 404 elsewhere.
func TestRouterOptions(t *testing.T) {
	srv := httptest.NewServer(newRouterTestServer(t))
	defer srv.Close()
	resp, _ := doRequest(t, "OPTIONS", srv.URL+"/imageapi/token/AbCdEfGhIj/upload-image", "", nil)
	if resp.StatusCode >= 300 {
		t.Errorf("OPTIONS upload-image: got status %d, want success", resp.StatusCode)
	}
	if got := resp.Header.Get("Allow"); !strings.Contains(got, "POST") {
		t.Errorf("OPTIONS upload-image: got Allow %q, want it to hold POST", got)
	}
	resp, body := doRequest(t, "OPTIONS", srv.URL+"/imageapi/nothing/", "", nil)
	if got, want := resp.StatusCode, http.StatusNotFound; got != want {
		t.Errorf("OPTIONS unknown: got status %d, want %d", got, want)
	}
	if got, want := string(body), notFoundBody; got != want {
		t.Errorf("OPTIONS unknown: got body %q, want %q", got, want)
	}
}
