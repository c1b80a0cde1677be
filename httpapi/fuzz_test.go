package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage/memstore"
)

// fuzzLimit is the upload limit of the fuzzed server.
const fuzzLimit = 1 << 20

func newFuzzServer(f *testing.F) (*Server, *domain.Service) {
	f.Helper()
	svc, err := domain.New(memstore.New(), domain.DefaultConfig)
	if err != nil {
		f.Fatal(err)
	}
	return NewServer(svc, Options{MaxUploadBytes: fuzzLimit}), svc
}

// fuzzForm is a multipart body with the boundary "B0undary": each part is
// its raw header lines and content; closed adds the final boundary.
func fuzzForm(closed bool, parts ...[2]string) []byte {
	var b bytes.Buffer
	for _, p := range parts {
		b.WriteString("--B0undary\r\n" + p[0] + "\r\n\r\n" + p[1] + "\r\n")
	}
	if closed {
		b.WriteString("--B0undary--\r\n")
	}
	return b.Bytes()
}

// FuzzFirstFile feeds arbitrary multipart bodies and boundaries to
// firstFile: it must return within bounded time and never panic; a part it
// returns must have a name CleanName accepts, and reading it, like reading
// the body, must stop at the upload limit.
func FuzzFirstFile(f *testing.F) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00")
	file := func(name string) string {
		return `Content-Disposition: form-data; name="f"; filename="` + name + `"` + "\r\nContent-Type: image/png"
	}
	field := func(name string) string { return `Content-Disposition: form-data; name="` + name + `"` }
	seeds := [][]byte{
		// A plain upload, with text fields before and after the file.
		fuzzForm(true, [2]string{file("a.png"), string(png)}),
		fuzzForm(true, [2]string{field("title"), "hello"}, [2]string{field("x"), ""}, [2]string{file("a.png"), string(png)}, [2]string{field("after"), "bye"}),
		// Empty or unusable file names: skipped, not files.
		fuzzForm(true, [2]string{file(""), "x"}, [2]string{file(".."), "y"}, [2]string{file("dir/"), "z"}),
		fuzzForm(true, [2]string{`Content-Disposition: form-data; name="f"; filename=`, "x"}, [2]string{file("b.png"), string(png)}),
		// filename* of RFC 7578/2231, alone and with a plain filename.
		fuzzForm(true, [2]string{`Content-Disposition: form-data; name="f"; filename*=UTF-8''caf%C3%A9%2F..%2Fx.png`, string(png)}),
		fuzzForm(true, [2]string{`Content-Disposition: form-data; name="f"; filename="a.png"; filename*=utf-8'en'%E2%98%95.png`, string(png)}),
		fuzzForm(true, [2]string{`Content-Disposition: form-data; name="f"; filename*0="a"; filename*1=".png"`, string(png)}),
		// Quoted-printable content and odd header forms.
		fuzzForm(true, [2]string{file("qp.png") + "\r\nContent-Transfer-Encoding: quoted-printable", "=89PNG=0D=0A=1A=0A=\r\n=00=00"}),
		fuzzForm(true, [2]string{"content-disposition: FORM-DATA ; Name=f ; FileName=\"C:\\\\dir\\\\c.png\"", string(png)}),
		fuzzForm(true, [2]string{"Content-Disposition: attachment; filename=\"att.png\"", string(png)}),
		fuzzForm(true, [2]string{"Content-Disposition: form-data; filename=\"a\"; filename=\"b\"", string(png)}),
		// No closing boundary, a truncated part, nothing at all.
		fuzzForm(false, [2]string{file("open.png"), string(png)}),
		[]byte("--B0undary\r\n" + file("cut.png") + "\r\n\r\n\x89PN"),
		[]byte("--B0undary\r\nContent-Disposition: form-da"),
		[]byte("--B0undary--\r\n"),
		{},
		[]byte("preamble\r\n--B0undary\r\n" + file("p.png") + "\r\n\r\nxx\r\n--B0undary--\r\nepilogue"),
		// Huge part headers, many parts, and a file beyond the limit.
		fuzzForm(true, [2]string{file("h.png") + "\r\nX-Huge: " + strings.Repeat("h", 2<<20), string(png)}),
		fuzzForm(true, [2]string{strings.Repeat("X-Many: m\r\n", 20000) + file("m.png"), string(png)}),
		fuzzForm(true, append(slices.Repeat([][2]string{{field("t"), "v"}}, 3000), [2]string{file("n.png"), string(png)})...),
		fuzzForm(true, [2]string{field("big"), strings.Repeat("b", 1<<20)}, [2]string{file("late.png"), string(png)}),
		fuzzForm(true, [2]string{file("large.png"), string(png) + strings.Repeat("\x00", fuzzLimit+fuzzLimit/2)}),
	}
	for _, b := range seeds {
		f.Add(b, "B0undary")
	}
	f.Add(fuzzForm(true, [2]string{file("a.png"), string(png)}), "other")
	f.Add(fuzzForm(true, [2]string{file("a.png"), string(png)}), "")
	f.Add([]byte("--\r\n"+file("a.png")+"\r\n\r\nx\r\n----\r\n"), "")
	f.Add([]byte("--a b\r\n"+file("a.png")+"\r\n\r\nx\r\n--a b--\r\n"), "a b")
	f.Add([]byte("--"+strings.Repeat("q", 80)+"\r\n"+file("a.png")+"\r\n\r\nx\r\n"), strings.Repeat("q", 80))

	s, _ := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		ct := mime.FormatMediaType("multipart/form-data", map[string]string{"boundary": boundary})
		if ct == "" { // not a valid parameter: send it raw, as a client could
			ct = "multipart/form-data; boundary=" + boundary
		}
		in := &countingBody{ReadCloser: io.NopCloser(bytes.NewReader(body))}
		r := httptest.NewRequest("POST", "/imageapi/token/AbCdEfGhIj/upload-image/", nil)
		r.Body = in
		r.ContentLength = -1 // chunked: only the streaming limits apply
		r.Header.Set("Content-Type", ct)

		type result struct {
			name      string
			got       bool
			err, rerr error
			read      int64
			panicked  any
		}
		done := make(chan result, 1)
		go func() {
			var res result
			defer func() {
				res.panicked = recover()
				done <- res
			}()
			part, err := s.firstFile(httptest.NewRecorder(), r)
			res.err = err
			if err != nil {
				return
			}
			defer part.release()
			res.got, res.name = true, part.name
			res.read, res.rerr = io.Copy(io.Discard, part)
		}()
		var res result
		select {
		case res = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("firstFile did not return within 10s on a %d-byte body", len(body))
		}
		if res.panicked != nil {
			t.Fatalf("firstFile panicked: %v", res.panicked)
		}
		if in.n > fuzzLimit+1 {
			t.Fatalf("%d bytes of the body were read, the limit is %d", in.n, fuzzLimit)
		}
		if !res.got {
			if res.err == nil {
				t.Fatal("no part and no error")
			}
			if len(body) <= fuzzLimit {
				var tooBig *http.MaxBytesError
				if errors.As(res.err, &tooBig) {
					t.Fatalf("%d-byte body refused as too large: %v", len(body), res.err)
				}
			}
			return
		}
		if _, ok := domain.CleanName(res.name); !ok {
			t.Fatalf("returned a part named %q, which CleanName refuses", res.name)
		}
		if res.read > fuzzLimit {
			t.Fatalf("read %d bytes of the part, the limit is %d", res.read, fuzzLimit)
		}
		var tooBig *http.MaxBytesError
		if errors.As(res.rerr, &tooBig) && len(body) <= fuzzLimit {
			t.Fatalf("the part of a %d-byte body was cut as too large: %v", len(body), res.rerr)
		}
	})
}

// FuzzRouterMatch feeds arbitrary escaped paths to the server's router: it
// must never panic; a match's parameters must be the unescaped text of
// their segments, holding a '/' only where the path had %2F; and through
// the whole server, a route that takes a token answers 2xx only to the real
// token. "@TOKEN@" and "@ID@" in a path stand for a real user's token and
// image id.
func FuzzRouterMatch(f *testing.F) {
	s, svc := newFuzzServer(f)
	rt, ok := s.routes().(*router)
	if !ok {
		f.Fatal("routes() is not a *router")
	}
	ctx := context.Background()
	user, err := svc.CreateUser(ctx, "fuzzer", "")
	if err != nil {
		f.Fatal(err)
	}
	png, err := os.ReadFile("../imagetype/testdata/png-rgb.png")
	if err != nil {
		f.Fatal(err)
	}
	img, err := svc.Upload(ctx, user, "a.png", bytes.NewReader(png))
	if err != nil {
		f.Fatal(err)
	}

	values := []string{"@TOKEN@", "@ID@", "alice", "..", "%2e%2e", "..%2F..%2Fetc", "%2F", "%2f%2F", "a%2Fb", "%252F", "%zz", "%",
		"%00", "a%20b", "%E2%98%95", "%C3", "@TOKEN@%2F", "@TOKEN@%00", "%40TOKEN@", ".", "~", "a;b", "a:b"}
	for _, r := range rt.routes {
		for i, v := range values {
			p := r.pattern
			for _, name := range []string{"{username}", "{token}", "{id}"} {
				w := v
				if name == "{token}" && i%3 == 1 {
					w = "@TOKEN@"
				}
				if name == "{id}" && i%3 == 2 {
					w = "@ID@"
				}
				p = strings.ReplaceAll(p, name, w)
			}
			f.Add(p, uint8(i))
			f.Add(strings.TrimSuffix(p, "/"), uint8(i+1))
		}
	}
	for _, p := range []string{"", "/", "//", "///", "/imageapi//token/@TOKEN@/get-image-list/", "/imageapi/token/@TOKEN@/get-image-list//",
		"/imageapi%2Ftoken/@TOKEN@/get-image-list/", "/imageapi/token/@TOKEN@/get-image/@ID@/x/", "imageapi/token/@TOKEN@/get-image-list",
		"/IMAGEAPI/token/@TOKEN@/get-image-list/", "/imageapi/%74oken/@TOKEN@/get-image-list/", "/healthz?x=1", "/api/v1/images/@ID@#x"} {
		f.Add(p, uint8(0))
	}

	methods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPatch}
	f.Fuzz(func(t *testing.T, path string, m uint8) {
		path = strings.ReplaceAll(strings.ReplaceAll(path, "@TOKEN@", user.Token), "@ID@", img.ID)
		checkMatch(t, rt, path)

		// Through the whole server, as a request line would arrive.
		u, err := url.ParseRequestURI(path)
		if err != nil || !strings.HasPrefix(path, "/") {
			return
		}
		escaped := u.EscapedPath()
		route, params := checkMatch(t, rt, escaped)
		if route == nil {
			return
		}
		token, takesToken := params["token"]
		bearer := strings.HasPrefix(route.pattern, "/api/v1/") && route.pattern != "/api/v1/users" && route.pattern != "/api/v1/limits"
		if !takesToken && !bearer {
			return // not a route that needs a token
		}
		// Only methods that change nothing: an upload or a replacement
		// without a body stores nothing.
		method := methods[int(m)%len(methods)]
		req := httptest.NewRequest(method, "/", nil)
		req.URL = u
		req.RequestURI = u.RequestURI()
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code >= 200 && w.Code < 300 {
			if bearer {
				t.Fatalf("%s %q without credentials: %d %q", method, escaped, w.Code, w.Body.String())
			}
			if token != user.Token {
				t.Fatalf("%s %q with token %q (the real one is %q): %d %q", method, escaped, token, user.Token, w.Code, w.Body.String())
			}
		}
	})
}

// checkMatch matches an escaped path and checks the parameters found
// against the path's own segments.
func checkMatch(t *testing.T, rt *router, escaped string) (*route, map[string]string) {
	t.Helper()
	r, params := rt.match(escaped)
	if r == nil {
		if params != nil {
			t.Fatalf("match(%q): no route but params %q", escaped, params)
		}
		return nil, nil
	}
	segs := strings.Split(strings.TrimSuffix(strings.TrimPrefix(escaped, "/"), "/"), "/")
	if len(segs) != len(r.segments) {
		t.Fatalf("match(%q) = %q: %d segments for a pattern of %d", escaped, r.pattern, len(segs), len(r.segments))
	}
	seen := 0
	for i, want := range r.segments {
		if !strings.HasPrefix(want, "{") {
			if segs[i] != want {
				t.Fatalf("match(%q) = %q: segment %q for the literal %q", escaped, r.pattern, segs[i], want)
			}
			continue
		}
		seen++
		name := want[1 : len(want)-1]
		got, ok := params[name]
		if !ok {
			t.Fatalf("match(%q) = %q: no parameter %s in %q", escaped, r.pattern, name, params)
		}
		unescaped, err := url.PathUnescape(segs[i])
		if err != nil || got != unescaped {
			t.Fatalf("match(%q) = %q: %s = %q, the segment %q unescapes to %q (%v)", escaped, r.pattern, name, got, segs[i], unescaped, err)
		}
		if got == "" {
			t.Fatalf("match(%q) = %q: empty parameter %s", escaped, r.pattern, name)
		}
		if n, want := strings.Count(got, "/"), strings.Count(strings.ToUpper(segs[i]), "%2F"); n != want {
			t.Fatalf("match(%q) = %q: %s = %q holds %d '/' for %d %%2F in %q", escaped, r.pattern, name, got, n, want, segs[i])
		}
	}
	if seen != len(params) {
		t.Fatalf("match(%q) = %q: params %q beyond the pattern's", escaped, r.pattern, params)
	}
	return r, params
}

// FuzzContentDisposition: for any name, the header is printable ASCII,
// parses, and gives back the name itself when it is valid UTF-8.
func FuzzContentDisposition(f *testing.F) {
	for _, name := range []string{"", "a.png", `quote"semi;colon.png`, `back\slash.png`, "café ☕ 日本.png", "tab\tname", "nl\r\nX-Evil: 1",
		"%2e%2e%2f", "attachment; filename=x.png", "it's*100%.png", "\x7f\x80\xff", "\xe2\x98", "\u2028\ufeff\U0001F600", "=?utf-8?q?a?=",
		strings.Repeat("x", 300), "UTF-8''a", "\x00"} {
		f.Add(name)
	}
	f.Fuzz(func(t *testing.T, name string) {
		h := contentDisposition(name)
		for i := 0; i < len(h); i++ {
			if h[i] < 0x20 || h[i] > 0x7e {
				t.Fatalf("contentDisposition(%q) = %q: byte %#x at %d is not printable ASCII", name, h, h[i], i)
			}
		}
		disp, params, err := mime.ParseMediaType(h)
		if err != nil || disp != "attachment" {
			t.Fatalf("contentDisposition(%q) = %q: parses as %q %q, %v", name, h, disp, params, err)
		}
		if utf8.ValidString(name) && params["filename"] != name {
			t.Fatalf("contentDisposition(%q) = %q: filename parses as %q", name, h, params["filename"])
		}
		if _, ok := params["filename"]; !ok {
			t.Fatalf("contentDisposition(%q) = %q: no filename", name, h)
		}
		if len(params) != 1 {
			t.Fatalf("contentDisposition(%q) = %q: parameters %q, want only filename", name, h, params)
		}
	})
}
