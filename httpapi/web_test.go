package httpapi_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/httpapi"
	"github.com/imagestore/imagestore/storage/memstore"
)

// The web gallery's files: the page at /, the rest under /assets/.

func newWebServer(t *testing.T) *httptest.Server {
	t.Helper()
	svc, err := domain.New(memstore.New(), domain.DefaultConfig)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(httpapi.NewServer(svc, httpapi.Options{}))
	t.Cleanup(srv.Close)
	return srv
}

func webRequest(t *testing.T, srv *httptest.Server, method, target string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// webFiles lists httpapi/web/ on disk, with the path each is served at.
func webFiles(t *testing.T) map[string]string {
	t.Helper()
	entries, err := os.ReadDir("web")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		if e.IsDir() {
			t.Errorf("web/%s: a folder; the gallery's files are all at the top", e.Name())
			continue
		}
		target := "/assets/" + e.Name()
		if e.Name() == "index.html" {
			target = "/"
		}
		files[e.Name()] = target
	}
	if _, ok := files["index.html"]; !ok {
		t.Fatal("web/index.html is missing")
	}
	return files
}

var webContentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// checkWebHeaders checks what every answer of the gallery carries.
func checkWebHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "img-src 'self' blob:", "script-src 'self'", "style-src 'self'", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !slices.Contains(strings.Split(csp, "; "), want) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", what, csp, want)
		}
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*", "data:", "http:", "https:"} {
		if strings.Contains(csp, bad) {
			t.Errorf("%s: Content-Security-Policy %q allows %s", what, csp, bad)
		}
	}
	for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %s %q, want %q", what, k, got, want)
		}
	}
}

func TestWebServesEveryFile(t *testing.T) {
	srv := newWebServer(t)
	etags := map[string]string{}
	for name, target := range webFiles(t) {
		want, err := os.ReadFile(filepath.Join("web", name))
		if err != nil {
			t.Fatal(err)
		}
		ct, ok := webContentTypes[path.Ext(name)]
		if !ok {
			t.Errorf("web/%s: a kind of file the test does not know", name)
			continue
		}
		resp, body := webRequest(t, srv, http.MethodGet, target, nil)
		what := "GET " + target
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
			t.Errorf("%s: %d, %d bytes; want 200 and the %d bytes of web/%s", what, resp.StatusCode, len(body), len(want), name)
		}
		checkWebHeaders(t, what, resp.Header)
		h := resp.Header
		if got := h.Get("Content-Type"); got != ct {
			t.Errorf("%s: Content-Type %q, want %q", what, got, ct)
		}
		// Revalidated on every use, never kept stale: no-cache with a
		// strong ETag, and nothing that would let a cache skip asking.
		if got := h.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("%s: Cache-Control %q, want no-cache", what, got)
		}
		etag := h.Get("Etag")
		if !regexp.MustCompile(`^"[0-9a-f]{32}"$`).MatchString(etag) {
			t.Errorf("%s: ETag %q, want a strong tag of the content", what, etag)
		}
		if other, dup := etags[etag]; dup {
			t.Errorf("%s: the same ETag %s as %s", what, etag, other)
		}
		etags[etag] = name
		for _, k := range []string{"Expires", "Last-Modified", "Set-Cookie", "Access-Control-Allow-Origin"} {
			if v := h.Get(k); v != "" {
				t.Errorf("%s: %s: %q, want none", what, k, v)
			}
		}

		// HEAD: the same headers, no body.
		head, hb := webRequest(t, srv, http.MethodHead, target, nil)
		if head.StatusCode != http.StatusOK || len(hb) != 0 || head.ContentLength != int64(len(want)) {
			t.Errorf("HEAD %s: %d, Content-Length %d, %d bytes of body; want 200, %d, none", target, head.StatusCode, head.ContentLength, len(hb), len(want))
		}
		checkWebHeaders(t, "HEAD "+target, head.Header)
		if head.Header.Get("Etag") != etag || head.Header.Get("Content-Type") != ct {
			t.Errorf("HEAD %s: ETag %q, Content-Type %q; GET said %q, %q", target, head.Header.Get("Etag"), head.Header.Get("Content-Type"), etag, ct)
		}

		// Revalidation: an unchanged file costs a 304.
		nm, nb := webRequest(t, srv, http.MethodGet, target, map[string]string{"If-None-Match": etag})
		if nm.StatusCode != http.StatusNotModified || len(nb) != 0 {
			t.Errorf("GET %s If-None-Match %s: %d with %d bytes, want 304 and none", target, etag, nm.StatusCode, len(nb))
		}
		checkWebHeaders(t, "304 for "+target, nm.Header)
		if other, _ := webRequest(t, srv, http.MethodGet, target, map[string]string{"If-None-Match": `"0000"`}); other.StatusCode != http.StatusOK {
			t.Errorf("GET %s with another ETag: %d, want 200", target, other.StatusCode)
		}
	}
}

// TestWebReferences checks that the page names every asset, and that every
// address the page names is served: no file is dead, no link is broken,
// and nothing is fetched from elsewhere.
func TestWebReferences(t *testing.T) {
	srv := newWebServer(t)
	page, err := os.ReadFile(filepath.Join("web", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, m := range regexp.MustCompile(`\b(?:href|src)="([^"]*)"`).FindAllStringSubmatch(string(page), -1) {
		refs = append(refs, m[1])
	}
	for name, target := range webFiles(t) {
		if target != "/" && !slices.Contains(refs, strings.TrimPrefix(target, "/")) {
			t.Errorf("web/%s is not referenced by index.html (as %q)", name, strings.TrimPrefix(target, "/"))
		}
	}
	for _, ref := range refs {
		if strings.HasPrefix(ref, "#") {
			if !strings.Contains(string(page), `id="`+ref[1:]+`"`) {
				t.Errorf("index.html links to %s, which it does not have", ref)
			}
			continue
		}
		if strings.Contains(ref, ":") || strings.HasPrefix(ref, "/") {
			t.Errorf("index.html refers to %q: the page's own files are named relative to it", ref)
			continue
		}
		if resp, _ := webRequest(t, srv, http.MethodGet, "/"+ref, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("index.html refers to %q, which answers %d", ref, resp.StatusCode)
		}
	}

	// No file names another origin (an SVG's XML namespace is a name, not
	// an address that is fetched).
	for name := range webFiles(t) {
		b, err := os.ReadFile(filepath.Join("web", name))
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), `xmlns="http://www.w3.org/2000/svg"`, "")
		if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`).FindString(text); m != "" {
			t.Errorf("web/%s names %q: the page uses nothing from elsewhere", name, m)
		}
	}
}

// TestWebNoInlineCode checks what the Content-Security-Policy would refuse
// anyway: no inline script, no inline event handler, no style attribute.
func TestWebNoInlineCode(t *testing.T) {
	page, err := os.ReadFile(filepath.Join("web", "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	for _, m := range regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script>`).FindAllStringSubmatch(html, -1) {
		if !strings.Contains(m[1], `src="`) || strings.TrimSpace(m[2]) != "" {
			t.Errorf("an inline script: %.80q", m[0])
		}
	}
	if m := regexp.MustCompile(`(?i)\s(on[a-z]+|style)\s*=`).FindString(html); m != "" {
		t.Errorf("index.html has an inline %q attribute", strings.TrimSpace(m))
	}
	if strings.Contains(strings.ToLower(html), "javascript:") {
		t.Error("index.html has a javascript: URL")
	}
	if !strings.Contains(html, `<meta name="viewport" content="width=device-width, initial-scale=1">`) {
		t.Error("index.html has no viewport meta for phones")
	}
	if !strings.Contains(html, `<html lang="`) {
		t.Error("index.html does not say its language")
	}
}

func TestWebUnknownAssets(t *testing.T) {
	srv := newWebServer(t)
	for _, target := range []string{
		"/assets/nope.js",
		"/assets/index.html", // the page is served at / only
		"/assets/app.js.map",
		"/assets/APP.JS",
		"/assets/%2e%2e%2fweb.go",
		"/assets/..%2F..%2Fgo.mod",
		"/assets/web%2Fapp.js",
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, _ := webRequest(t, srv, method, target, nil)
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s %s: %d, want 404", method, target, resp.StatusCode)
			}
			checkWebHeaders(t, method+" "+target, resp.Header)
			if cc := resp.Header.Get("Cache-Control"); cc != "" {
				t.Errorf("%s %s: Cache-Control %q on a 404", method, target, cc)
			}
		}
	}
	// Paths around the gallery's are not its files either.
	for _, target := range []string{"/index.html", "/assets", "/assets/", "/app.js", "/style.css", "/assets/app.js/x", "//"} {
		if resp, _ := webRequest(t, srv, http.MethodGet, target, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", target, resp.StatusCode)
		}
	}
}

func TestWebMethods(t *testing.T) {
	srv := newWebServer(t)
	for _, target := range []string{"/", "/assets/app.js", "/assets/nope.js"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			resp, _ := webRequest(t, srv, method, target, nil)
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD, OPTIONS" {
				t.Errorf("%s %s: %d, Allow %q; want 405, GET, HEAD, OPTIONS", method, target, resp.StatusCode, resp.Header.Get("Allow"))
			}
		}
	}
	// The page's query (such as ?page_size=) does not change what is served.
	resp, body := webRequest(t, srv, http.MethodGet, "/?page_size=3", nil)
	want, _ := os.ReadFile(filepath.Join("web", "index.html"))
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Errorf("GET /?page_size=3: %d, want 200 and the page", resp.StatusCode)
	}
}
