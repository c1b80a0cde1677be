package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Black-box tests of the /api/v1 resource API over the real binary.

// v1Image is an image as /api/v1 describes it.
type v1Image struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	StoredSize  int64     `json:"stored_size"`
	Width       int64     `json:"width"`
	Height      int64     `json:"height"`
	SHA256      string    `json:"sha256"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	URL         string    `json:"url"`
}

// v1Page is one page of GET /api/v1/images.
type v1Page struct {
	Images     []v1Image `json:"images"`
	NextCursor string    `json:"next_cursor"`
}

// withT returns the server as seen from another (sub)test, so that its
// helpers report failures on that test.
func (s *server) withT(t *testing.T) *server {
	c := *s
	c.t = t
	return &c
}

// tryDo is s.do for goroutines other than the test's: it returns errors
// rather than failing the test. It uses the harness's client.
func (s *server) tryDo(method, path string, body []byte, header map[string]string) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		return response{}, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{resp.StatusCode, resp.Header, b}, nil
}

// bearer returns the headers authenticating as tok, plus the pairs given.
func bearer(tok string, kv ...string) map[string]string {
	h := map[string]string{"Authorization": "Bearer " + tok}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

// v1CreateUser creates a user through /api/v1/users and returns its token.
func (s *server) v1CreateUser(username, password string) string {
	s.t.Helper()
	body, _ := json.Marshal(map[string]string{"username": username, "password": password})
	r := s.do("POST", "/api/v1/users", bytes.NewReader(body), map[string]string{"Content-Type": "application/json"})
	if r.status != 201 {
		s.t.Fatalf("POST /api/v1/users %s: got %v, want 201", username, r)
	}
	var v map[string]string
	if err := json.Unmarshal(r.body, &v); err != nil {
		s.t.Fatalf("POST /api/v1/users: %v: %q", err, r.body)
	}
	if v["username"] != username || !tokenRe.MatchString(v["token"]) {
		s.t.Fatalf("POST /api/v1/users: got %s, want username %q and a token", r.body, username)
	}
	return v["token"]
}

// v1Raw sends data as a raw body to method path (?name= already in path).
func (s *server) v1Raw(method, path, tok string, data []byte, kv ...string) response {
	s.t.Helper()
	h := bearer(tok, append([]string{"Content-Type", "application/octet-stream"}, kv...)...)
	return s.do(method, path, bytes.NewReader(data), h)
}

// v1Upload uploads data as a raw body named name and returns the image.
func (s *server) v1Upload(tok, name string, data []byte, kv ...string) v1Image {
	s.t.Helper()
	r := s.v1Raw("POST", "/api/v1/images?name="+url.QueryEscape(name), tok, data, kv...)
	if r.status != 201 {
		s.t.Fatalf("POST /api/v1/images %s: got %v, want 201", name, r)
	}
	return decodeImage(s.t, r)
}

func decodeImage(t *testing.T, r response) v1Image {
	t.Helper()
	var img v1Image
	if err := json.Unmarshal(r.body, &img); err != nil {
		t.Fatalf("image JSON: %v: %q", err, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("image JSON: Content-Type got %q, want application/json", ct)
	}
	return img
}

// v1List pages through the user's images with the given page size.
func (s *server) v1List(tok string, limit int) (all []v1Image, pages int) {
	s.t.Helper()
	cursor := ""
	for {
		path := "/api/v1/images?limit=" + strconv.Itoa(limit)
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		r := s.do("GET", path, nil, bearer(tok))
		if r.status != 200 {
			s.t.Fatalf("GET %s: got %v, want 200", path, r)
		}
		var p v1Page
		if err := json.Unmarshal(r.body, &p); err != nil {
			s.t.Fatalf("GET %s: %v: %q", path, err, r.body)
		}
		pages++
		if len(p.Images) > limit {
			s.t.Fatalf("GET %s: got %d images, want at most %d", path, len(p.Images), limit)
		}
		all = append(all, p.Images...)
		if p.NextCursor == "" {
			return all, pages
		}
		if pages > 1000 {
			s.t.Fatalf("more than 1000 pages: the cursor does not advance")
		}
		cursor = p.NextCursor
	}
}

// wantProblem checks an RFC 9457 problem answer: status, media type and the
// type, title and status members. slug, if given, is the problem type's
// last part. It returns the decoded body.
func wantProblem(t *testing.T, what string, r response, status int, slug string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: got status %d %s, want %d", what, r.status, r.body, status)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("%s: Content-Type got %q, want application/problem+json", what, ct)
	}
	var p map[string]any
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Errorf("%s: body is not JSON: %v: %q", what, err, r.body)
		return nil
	}
	if typ, _ := p["type"].(string); typ == "" {
		t.Errorf("%s: problem type got %v, want a URI", what, p["type"])
	} else if slug != "" && !strings.HasSuffix(typ, ":"+slug) && !strings.HasSuffix(typ, "/"+slug) {
		t.Errorf("%s: problem type got %q, want one ending in %q", what, typ, slug)
	}
	if title, _ := p["title"].(string); title == "" {
		t.Errorf("%s: problem title got %v, want a text", what, p["title"])
	}
	if st, _ := p["status"].(float64); int(st) != status {
		t.Errorf("%s: problem status member got %v, want %d", what, p["status"], status)
	}
	return p
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// TestV1Users covers POST /api/v1/users and GET /api/v1/users/me.
func TestV1Users(t *testing.T) {
	s := start(t, t.TempDir())
	jsonCT := map[string]string{"Content-Type": "application/json"}
	post := func(body string) response {
		return s.do("POST", "/api/v1/users", strings.NewReader(body), jsonCT)
	}

	r := post(`{"username":"alice","password":"correct horse"}`)
	if r.status != 201 {
		t.Fatalf("create alice: got %v, want 201", r)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("create alice: Content-Type got %q, want application/json", ct)
	}
	var created map[string]string
	if err := json.Unmarshal(r.body, &created); err != nil {
		t.Fatal(err)
	}
	if created["username"] != "alice" || !tokenRe.MatchString(created["token"]) || len(created) != 2 {
		t.Errorf("create alice: got %s, want {username: alice, token: <10 characters>}", r.body)
	}
	alice := created["token"]

	// Without a password, a user can be created too.
	bob := s.v1CreateUser("bob", "")

	t.Run("duplicate", func(t *testing.T) {
		r := s.withT(t).do("POST", "/api/v1/users", strings.NewReader(`{"username":"alice","password":"another password"}`), jsonCT)
		wantProblem(t, "duplicate user", r, 409, "user-exists")
		// The seed's generate-token sees the same user.
		wantJSON(t, "seed generate-token of a v1 user", s.withT(t).get("/imageapi/generate-token/alice/"), 409, `"User exists"`)
	})
	t.Run("invalid username", func(t *testing.T) {
		for _, name := range []string{"", "no spaces", "dash-ed", "a/b", strings.Repeat("x", 151), "ünï"} {
			body, _ := json.Marshal(map[string]string{"username": name, "password": "longenough"})
			r := s.withT(t).do("POST", "/api/v1/users", bytes.NewReader(body), jsonCT)
			wantProblem(t, fmt.Sprintf("username %q", name), r, 422, "invalid-username")
		}
	})
	t.Run("weak password", func(t *testing.T) {
		for _, pw := range []string{"short", "1234567", strings.Repeat("p", 73)} {
			body, _ := json.Marshal(map[string]string{"username": "weak" + strconv.Itoa(len(pw)), "password": pw})
			r := s.withT(t).do("POST", "/api/v1/users", bytes.NewReader(body), jsonCT)
			p := wantProblem(t, fmt.Sprintf("password of %d bytes", len(pw)), r, 422, "weak-password")
			if p["limit"] != "password_length" {
				t.Errorf("password of %d bytes: limit got %v, want password_length", len(pw), p["limit"])
			}
			if a, _ := p["allowed"].(string); !strings.Contains(a, "8") || !strings.Contains(a, "72") {
				t.Errorf("password of %d bytes: allowed got %v, want 8-72", len(pw), p["allowed"])
			}
			if strings.Contains(string(r.body), pw) {
				t.Errorf("password of %d bytes: the problem body echoes the password: %s", len(pw), r.body)
			}
		}
		// No user was made by a refused request.
		wantJSON(t, "retrieve a refused user", s.withT(t).get("/imageapi/retrieve-token/weak5/"), 404, `"User does not exists"`)
		// The bounds themselves are accepted.
		s.withT(t).v1CreateUser("eight", "12345678")
		s.withT(t).v1CreateUser("seventytwo", strings.Repeat("p", 72))
	})
	t.Run("malformed JSON", func(t *testing.T) {
		for _, body := range []string{`{"username":"carol"`, `not json`, `{"username":"carol","password":12345678}`, `{"username":"carol","extra":true}`, ``} {
			r := s.withT(t).do("POST", "/api/v1/users", strings.NewReader(body), jsonCT)
			wantProblem(t, fmt.Sprintf("body %q", body), r, 400, "")
		}
		wantJSON(t, "carol was not created", s.withT(t).get("/imageapi/retrieve-token/carol/"), 404, `"User does not exists"`)
	})
	t.Run("me", func(t *testing.T) {
		for _, c := range []struct {
			tok, name   string
			hasPassword bool
		}{{alice, "alice", true}, {bob, "bob", false}} {
			r := s.withT(t).do("GET", "/api/v1/users/me", nil, bearer(c.tok))
			if r.status != 200 {
				t.Fatalf("me as %s: got %v, want 200", c.name, r)
			}
			var me map[string]any
			if err := json.Unmarshal(r.body, &me); err != nil {
				t.Fatal(err)
			}
			if me["username"] != c.name || me["has_password"] != c.hasPassword {
				t.Errorf("me as %s: got %s, want username %s, has_password %v", c.name, r.body, c.name, c.hasPassword)
			}
			if strings.Contains(string(r.body), c.tok) || strings.Contains(string(r.body), "hash") {
				t.Errorf("me as %s: got %s, want neither the token nor a password hash", c.name, r.body)
			}
		}
	})
}

// TestV1BearerAuth: /api/v1 wants Authorization: Bearer, and a token works
// on both APIs whichever made it.
func TestV1BearerAuth(t *testing.T) {
	s := start(t, t.TempDir())
	png := fixture(t, "png-rgb.png")

	t.Run("missing or wrong", func(t *testing.T) {
		s := s.withT(t)
		for _, c := range []struct {
			what   string
			header map[string]string
		}{
			{"no Authorization", nil},
			{"Basic scheme", map[string]string{"Authorization": "Basic YWxpY2U6c2VjcmV0"}},
			{"Bearer without a token", map[string]string{"Authorization": "Bearer"}},
		} {
			r := s.do("GET", "/api/v1/images", nil, c.header)
			wantProblem(t, c.what, r, 401, "")
			if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("%s: WWW-Authenticate got %q, want a Bearer challenge", c.what, got)
			}
		}
		for _, tok := range []string{"WrongTok3n", "short", strings.Repeat("x", 200)} {
			r := s.do("GET", "/api/v1/images", nil, bearer(tok))
			wantProblem(t, "wrong token "+tok, r, 401, "unauthorized")
			if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("wrong token: WWW-Authenticate got %q, want a Bearer challenge", got)
			}
		}
		// Every /api/v1 route that needs a token refuses without one.
		for _, rt := range [][2]string{{"GET", "/api/v1/users/me"}, {"POST", "/api/v1/users/me/token"}, {"POST", "/api/v1/images?name=a.png"},
			{"GET", "/api/v1/images/abcd"}, {"GET", "/api/v1/images/abcd/meta"}, {"PUT", "/api/v1/images/abcd"}, {"DELETE", "/api/v1/images/abcd"}} {
			r := s.do(rt[0], rt[1], nil, nil)
			wantProblem(t, rt[0]+" "+rt[1]+" without a token", r, 401, "")
		}
	})

	t.Run("seed token on v1", func(t *testing.T) {
		s := s.withT(t)
		tok := s.newUser("seeduser")
		id := s.uploadID(tok, "seed.png", png)
		r := s.do("GET", "/api/v1/images/"+id+"/meta", nil, bearer(tok))
		if r.status != 200 {
			t.Fatalf("v1 meta with a seed token: got %v, want 200", r)
		}
		if img := decodeImage(t, r); img.ID != id || img.Name != "seed.png" {
			t.Errorf("v1 meta: got %+v, want id %s named seed.png", img, id)
		}
		v1img := s.v1Upload(tok, "v1.png", png)
		if got := s.list(tok); !slices.Equal(got, [][2]string{{"seed.png", id}, {"v1.png", v1img.ID}}) {
			t.Errorf("seed list: got %v, want seed.png then v1.png", got)
		}
		// The bearer scheme's name is case-insensitive (RFC 9110 11.1).
		if r := s.do("GET", "/api/v1/users/me", nil, map[string]string{"Authorization": "bearer " + tok}); r.status != 200 {
			t.Errorf("lower-case bearer: got %v, want 200", r)
		}
	})

	t.Run("v1 token on seed", func(t *testing.T) {
		s := s.withT(t)
		tok := s.v1CreateUser("v1user", "")
		img := s.v1Upload(tok, "first.png", png)
		r := s.get("/imageapi/token/" + tok + "/get-image/" + img.ID + "/")
		if r.status != 200 || !bytes.Equal(r.body, png) {
			t.Errorf("seed get-image with a v1 token: got %d (%d bytes), want 200 and the image", r.status, len(r.body))
		}
		wantJSON(t, "seed retrieve-token of a v1 user", s.get("/imageapi/retrieve-token/v1user/"), 200, `{"v1user":"`+tok+`"}`)
		id := s.uploadID(tok, "second.png", png)
		all, _ := s.v1List(tok, 10)
		if len(all) != 2 || all[0].ID != img.ID || all[1].ID != id {
			t.Errorf("v1 list: got %+v, want first.png then second.png", all)
		}
	})
}

// TestV1Images covers uploads, downloads and metadata.
func TestV1Images(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.v1CreateUser("imager", "")
	png := fixture(t, "png-rgb.png")
	jpg := fixture(t, "jpeg-baseline.jpg")

	checkImage := func(t *testing.T, what string, r response, name, contentType string, data []byte) v1Image {
		t.Helper()
		if r.status != 201 {
			t.Fatalf("%s: got %v, want 201", what, r)
		}
		img := decodeImage(t, r)
		var fields map[string]any
		json.Unmarshal(r.body, &fields)
		for _, k := range []string{"id", "name", "content_type", "size", "stored_size", "width", "height", "sha256", "created", "updated", "url"} {
			if _, ok := fields[k]; !ok {
				t.Errorf("%s: no %q in %s", what, k, r.body)
			}
		}
		if !idRe.MatchString(img.ID) || img.Name != name || img.ContentType != contentType || img.Size != int64(len(data)) ||
			img.StoredSize <= 0 || img.Width <= 0 || img.Height <= 0 || img.SHA256 != sha256Hex(data) ||
			img.Created.IsZero() || !img.Updated.Equal(img.Created) || img.URL != "/api/v1/images/"+img.ID {
			t.Errorf("%s: got %s, want id, name %s, %s, size %d, sha256 %s, url /api/v1/images/<id>", what, r.body, name, contentType, len(data), sha256Hex(data))
		}
		if time.Since(img.Created) > time.Minute || time.Until(img.Created) > time.Minute {
			t.Errorf("%s: created got %v, want about now", what, img.Created)
		}
		if got, want := r.header.Get("Location"), "/api/v1/images/"+img.ID; got != want && !strings.HasSuffix(got, want) {
			t.Errorf("%s: Location got %q, want %q", what, got, want)
		}
		if got, want := r.header.Get("ETag"), `"`+sha256Hex(data)+`"`; got != want {
			t.Errorf("%s: ETag got %q, want %q", what, got, want)
		}
		return img
	}

	body, ct := form(formPart{"comment", "", []byte("skipped")}, formPart{"file", "cat.png", png})
	r := s.do("POST", "/api/v1/images", bytes.NewReader(body), bearer(tok, "Content-Type", ct))
	multi := checkImage(t, "multipart upload", r, "cat.png", "image/png", png)

	r = s.v1Raw("POST", "/api/v1/images?name="+url.QueryEscape("dog photo.jpg"), tok, jpg)
	rawImg := checkImage(t, "raw upload", r, "dog photo.jpg", "image/jpeg", jpg)
	if rawImg.ID == multi.ID {
		t.Errorf("two uploads share id %s", rawImg.ID)
	}

	t.Run("refused uploads", func(t *testing.T) {
		s := s.withT(t)
		r := s.v1Raw("POST", "/api/v1/images", tok, png)
		wantProblem(t, "raw upload without a name", r, 400, "")
		r = s.v1Raw("POST", "/api/v1/images?name=", tok, png)
		wantProblem(t, "raw upload with an empty name", r, 400, "")
		r = s.v1Raw("POST", "/api/v1/images?name=notes.png", tok, []byte("just some text, not an image at all"))
		wantProblem(t, "text as an image", r, 406, "not-an-image")
		r = s.v1Raw("POST", "/api/v1/images?name=cut.png", tok, png[:len(png)/2])
		wantProblem(t, "truncated PNG", r, 406, "not-an-image")
		r = s.v1Raw("POST", "/api/v1/images?name=cat.png", tok, jpg)
		wantProblem(t, "a taken name", r, 409, "name-taken")

		bomb := fixture(t, "bombs/bomb.png")
		r = s.v1Raw("POST", "/api/v1/images?name=bomb.png", tok, bomb)
		p := wantProblem(t, "pixel bomb", r, 413, "too-many-pixels")
		if p["limit"] != "max_pixels" {
			t.Errorf("pixel bomb: limit got %v, want max_pixels", p["limit"])
		}
		allowed, _ := p["allowed"].(float64)
		actual, _ := p["actual"].(float64)
		if allowed != 100_000_000 || actual <= allowed {
			t.Errorf("pixel bomb: allowed %v actual %v, want allowed 100000000 and a larger actual", p["allowed"], p["actual"])
		}
		body, ct := form(formPart{"file", "bomb.png", bomb})
		r = s.do("POST", "/api/v1/images", bytes.NewReader(body), bearer(tok, "Content-Type", ct))
		wantProblem(t, "pixel bomb, multipart", r, 413, "too-many-pixels")

		// A multipart form without a file part.
		body, ct = form(formPart{"comment", "", []byte("no file here")})
		r = s.do("POST", "/api/v1/images", bytes.NewReader(body), bearer(tok, "Content-Type", ct))
		wantProblem(t, "form without a file", r, 400, "")

		all, _ := s.v1List(tok, 100)
		if len(all) != 2 {
			t.Errorf("after refused uploads: got %d images, want 2", len(all))
		}
	})

	t.Run("download", func(t *testing.T) {
		s := s.withT(t)
		for _, c := range []struct {
			img  v1Image
			data []byte
		}{{multi, png}, {rawImg, jpg}} {
			r := s.do("GET", "/api/v1/images/"+c.img.ID, nil, bearer(tok))
			if r.status != 200 || !bytes.Equal(r.body, c.data) {
				t.Errorf("GET %s: got %d (%d bytes), want 200 and the %d bytes uploaded", c.img.Name, r.status, len(r.body), len(c.data))
			}
			if got := r.header.Get("Content-Type"); got != c.img.ContentType {
				t.Errorf("GET %s: Content-Type got %q, want %q", c.img.Name, got, c.img.ContentType)
			}
			if got := r.header.Get("Content-Disposition"); !strings.HasPrefix(got, "inline") || !strings.Contains(got, "filename") {
				t.Errorf("GET %s: Content-Disposition got %q, want inline with the file name", c.img.Name, got)
			}
			// Without transparent gzip, the ETag is the content's hash.
			r = s.do("GET", "/api/v1/images/"+c.img.ID, nil, bearer(tok, "Accept-Encoding", "identity"))
			if r.status != 200 || !bytes.Equal(r.body, c.data) || r.header.Get("Etag") != `"`+c.img.SHA256+`"` {
				t.Errorf("identity GET %s: got %d, %d bytes, ETag %q, want 200, the bytes, ETag %q", c.img.Name, r.status, len(r.body), r.header.Get("Etag"), `"`+c.img.SHA256+`"`)
			}
		}
		r := s.do("GET", "/api/v1/images/zzzz", nil, bearer(tok))
		wantProblem(t, "unknown id", r, 404, "image-not-found")
		r = s.do("GET", "/api/v1/images/not-an-id", nil, bearer(tok))
		wantProblem(t, "malformed id", r, 404, "")
		// Another user's image is not found.
		other := s.v1CreateUser("other", "")
		r = s.do("GET", "/api/v1/images/"+multi.ID, nil, bearer(other))
		wantProblem(t, "another user's image", r, 404, "image-not-found")
		r = s.do("GET", "/api/v1/images/"+multi.ID+"/meta", nil, bearer(other))
		wantProblem(t, "another user's image's meta", r, 404, "image-not-found")
	})

	t.Run("meta", func(t *testing.T) {
		s := s.withT(t)
		r := s.do("GET", "/api/v1/images/"+rawImg.ID+"/meta", nil, bearer(tok))
		if r.status != 200 {
			t.Fatalf("meta: got %v, want 200", r)
		}
		got := decodeImage(t, r)
		if got.ID != rawImg.ID || got.Name != rawImg.Name || got.SHA256 != rawImg.SHA256 || got.Size != rawImg.Size ||
			got.Width != rawImg.Width || got.Height != rawImg.Height || !got.Created.Equal(rawImg.Created) {
			t.Errorf("meta: got %+v, want %+v", got, rawImg)
		}
		etag := r.header.Get("ETag")
		if etag != `"`+rawImg.SHA256+`"` {
			t.Errorf("meta: ETag got %q, want %q", etag, `"`+rawImg.SHA256+`"`)
		}
		r = s.do("GET", "/api/v1/images/"+rawImg.ID+"/meta", nil, bearer(tok, "If-None-Match", etag))
		if r.status != 304 || len(r.body) != 0 {
			t.Errorf("meta with If-None-Match of the current ETag: got %v, want 304 and no body", r)
		}
		r = s.do("GET", "/api/v1/images/"+rawImg.ID+"/meta", nil, bearer(tok, "If-None-Match", `"`+strings.Repeat("0", 64)+`"`))
		if r.status != 200 {
			t.Errorf("meta with If-None-Match of another ETag: got %v, want 200", r)
		}
	})
}

// TestV1UploadTooLarge: --max-upload is enforced on /api/v1 with a problem
// naming the limit.
func TestV1UploadTooLarge(t *testing.T) {
	s := start(t, t.TempDir(), "--max-upload", "100KiB")
	tok := s.v1CreateUser("big", "")
	big := append(fixture(t, "png-rgb.png"), bytes.Repeat([]byte{0}, 150<<10)...)

	check := func(what string, r response) {
		t.Helper()
		p := wantProblem(t, what, r, 413, "upload-too-large")
		if p["limit"] != "max_upload_bytes" {
			t.Errorf("%s: limit got %v, want max_upload_bytes", what, p["limit"])
		}
		if a, _ := p["allowed"].(float64); a != 102400 {
			t.Errorf("%s: allowed got %v, want 102400", what, p["allowed"])
		}
	}
	check("raw", s.v1Raw("POST", "/api/v1/images?name=big.png", tok, big))
	body, ct := form(formPart{"file", "big.png", big})
	check("multipart", s.do("POST", "/api/v1/images", bytes.NewReader(body), bearer(tok, "Content-Type", ct)))

	// Without a Content-Length, the limit is enforced while streaming.
	req, _ := http.NewRequest("POST", s.url+"/api/v1/images?name=chunked.png", io.MultiReader(bytes.NewReader(big)))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/octet-stream")
	req.ContentLength = -1
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	check("raw chunked", response{resp.StatusCode, resp.Header, b})

	// Under the limit all is well, and the limit is published.
	small := s.v1Upload(tok, "small.png", fixture(t, "png-rgb.png"))
	img := s.v1Raw("PUT", "/api/v1/images/"+small.ID, tok, big)
	check("replacement", img)
	all, _ := s.v1List(tok, 10)
	if len(all) != 1 || all[0].SHA256 != small.SHA256 {
		t.Errorf("after refused uploads: got %+v, want only small.png unchanged", all)
	}
	r := s.get("/api/v1/limits")
	var lim map[string]any
	if err := json.Unmarshal(r.body, &lim); err != nil || lim["max_upload_bytes"] != float64(102400) {
		t.Errorf("limits: got %v, want max_upload_bytes 102400", r)
	}
}

// TestV1Limits: GET /api/v1/limits publishes the server's limits.
func TestV1Limits(t *testing.T) {
	s := start(t, t.TempDir(), "--max-pixels", "5000000")
	r := s.get("/api/v1/limits")
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("limits: got %v (%s), want 200 JSON", r, r.header.Get("Content-Type"))
	}
	var lim struct {
		MaxUploadBytes *int64   `json:"max_upload_bytes"`
		MaxPixels      *int64   `json:"max_pixels"`
		AcceptedTypes  []string `json:"accepted_types"`
	}
	if err := json.Unmarshal(r.body, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.MaxUploadBytes == nil || *lim.MaxUploadBytes != 32<<20 {
		t.Errorf("max_upload_bytes: got %s, want %d (the default)", r.body, 32<<20)
	}
	if lim.MaxPixels == nil || *lim.MaxPixels != 5000000 {
		t.Errorf("max_pixels: got %s, want 5000000", r.body)
	}
	for _, want := range []string{"image/png", "image/jpeg", "image/gif", "image/bmp", "image/tiff", "image/webp"} {
		if !slices.Contains(lim.AcceptedTypes, want) {
			t.Errorf("accepted_types: got %v, want %s among them", lim.AcceptedTypes, want)
		}
	}
	// The limit applies: a 100000x100000 bomb is refused, naming the
	// configured limit.
	tok := s.v1CreateUser("lim", "")
	p := wantProblem(t, "bomb", s.v1Raw("POST", "/api/v1/images?name=b.png", tok, fixture(t, "bombs/bomb.png")), 413, "too-many-pixels")
	if p["allowed"] != float64(5000000) {
		t.Errorf("bomb: allowed got %v, want 5000000", p["allowed"])
	}
}

// TestV1Pagination: pages through next_cursor, in upload order, each image
// once; bad parameters are refused.
func TestV1Pagination(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.v1CreateUser("pager", "")
	var ids []string
	for i := range 25 {
		ids = append(ids, s.v1Upload(tok, fmt.Sprintf("img-%02d.png", i), uniquePNG(t, strconv.Itoa(i))).ID)
	}

	all, pages := s.v1List(tok, 10)
	if pages != 3 {
		t.Errorf("limit=10 over 25 images: got %d pages, want 3", pages)
	}
	var got []string
	for _, img := range all {
		got = append(got, img.ID)
	}
	if !slices.Equal(got, ids) {
		t.Errorf("ids over the pages:\ngot  %v\nwant %v", got, ids)
	}

	// The first page says where the next starts, in the body and in Link.
	r := s.do("GET", "/api/v1/images?limit=10", nil, bearer(tok))
	var p v1Page
	json.Unmarshal(r.body, &p)
	if len(p.Images) != 10 || p.NextCursor == "" {
		t.Errorf("first page: got %d images, cursor %q, want 10 and a cursor", len(p.Images), p.NextCursor)
	}
	if link := r.header.Get("Link"); !strings.Contains(link, `rel="next"`) || !strings.Contains(link, url.QueryEscape(p.NextCursor)) {
		t.Errorf("first page: Link got %q, want a rel=\"next\" link with the cursor", link)
	}
	// Exactly the images left: the last page has no cursor and no Link.
	r = s.do("GET", "/api/v1/images?limit=5&cursor="+url.QueryEscape(p.NextCursor), nil, bearer(tok))
	var p2 v1Page
	json.Unmarshal(r.body, &p2)
	if len(p2.Images) != 5 || p2.Images[0].ID != ids[10] {
		t.Errorf("page after the first 10 with limit=5: got %s, want images 10 to 14", r.body)
	}
	r = s.do("GET", "/api/v1/images?limit=25", nil, bearer(tok))
	var whole v1Page
	json.Unmarshal(r.body, &whole)
	if len(whole.Images) != 25 || whole.NextCursor != "" || r.header.Get("Link") != "" {
		t.Errorf("limit=25 over 25 images: got %d images, cursor %q, Link %q, want 25 and neither", len(whole.Images), whole.NextCursor, r.header.Get("Link"))
	}
	// Without a limit, every one of the 25 fits the default page.
	r = s.do("GET", "/api/v1/images", nil, bearer(tok))
	var def v1Page
	json.Unmarshal(r.body, &def)
	if r.status != 200 || len(def.Images) != 25 {
		t.Errorf("default page: got %d with %d images, want 200 with 25", r.status, len(def.Images))
	}
	// A user without images has an empty page, not a 404.
	empty := s.v1CreateUser("empty", "")
	r = s.do("GET", "/api/v1/images", nil, bearer(empty))
	if r.status != 200 || !strings.Contains(string(r.body), `"images":[]`) {
		t.Errorf("no images: got %v, want 200 with an empty list", r)
	}

	t.Run("bad parameters", func(t *testing.T) {
		s := s.withT(t)
		for _, q := range []string{"limit=0", "limit=5000", "limit=1001", "limit=-1", "limit=ten", "cursor=garbage!", "cursor=" + url.QueryEscape("bm90IGEgY3Vyc29y"), "cursor=" + url.QueryEscape(p.NextCursor[:len(p.NextCursor)/2])} {
			r := s.do("GET", "/api/v1/images?"+q, nil, bearer(tok))
			wantProblem(t, q, r, 400, "")
		}
		// The bounds are accepted.
		for _, q := range []string{"limit=1", "limit=1000"} {
			if r := s.do("GET", "/api/v1/images?"+q, nil, bearer(tok)); r.status != 200 {
				t.Errorf("%s: got %v, want 200", q, r)
			}
		}
	})
}

// TestV1PaginationWithConcurrentInserts: while a client pages, uploads go
// on; every image that existed when paging began is seen exactly once.
func TestV1PaginationWithConcurrentInserts(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.v1CreateUser("busy", "")
	var before []string
	for i := range 25 {
		before = append(before, s.v1Upload(tok, fmt.Sprintf("old-%02d.png", i), uniquePNG(t, "old"+strconv.Itoa(i))).ID)
	}
	png := fixture(t, "png-rgb.png")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var added []string
	var errs []string
	for w := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if i >= 30 {
					return
				}
				r, err := s.tryDo("POST", fmt.Sprintf("/api/v1/images?name=new-%d-%02d.png", w, i), png, bearer(tok, "Content-Type", "application/octet-stream"))
				mu.Lock()
				if err != nil || r.status != 201 {
					errs = append(errs, fmt.Sprintf("upload: %v %v", r, err))
				} else {
					var img v1Image
					json.Unmarshal(r.body, &img)
					added = append(added, img.ID)
				}
				mu.Unlock()
			}
		})
	}

	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		path := "/api/v1/images?limit=4"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		r := s.do("GET", path, nil, bearer(tok))
		if r.status != 200 {
			t.Fatalf("GET %s: got %v, want 200", path, r)
		}
		var p v1Page
		json.Unmarshal(r.body, &p)
		for _, img := range p.Images {
			seen = append(seen, img.ID)
		}
		if p.NextCursor == "" || pages > 500 {
			break
		}
		cursor = p.NextCursor
		time.Sleep(2 * time.Millisecond) // let the uploads interleave
	}
	close(stop)
	wg.Wait()
	for _, e := range errs {
		t.Error(e)
	}

	count := map[string]int{}
	for _, id := range seen {
		count[id]++
		if count[id] == 2 {
			t.Errorf("image %s seen more than once while paging", id)
		}
	}
	for _, id := range before {
		if count[id] != 1 {
			t.Errorf("image %s, there before paging began: seen %d times, want 1", id, count[id])
		}
	}
	if len(seen) < len(before) || !slices.Equal(seen[:len(before)], before) {
		t.Errorf("the old images were not first, in upload order: got %v, want %v first", seen, before)
	}
	for _, id := range seen[min(len(before), len(seen)):] {
		if !slices.Contains(added, id) {
			t.Errorf("image %s seen while paging was neither old nor added", id)
		}
	}
	t.Logf("%d images seen, %d added during paging", len(seen), len(added))
}

// TestV1PaginationWithDeletions: a client pages while the image its cursor
// names is deleted; the next page resumes right after it, so every image
// that existed before paging began (and was not deleted) is seen exactly
// once.
func TestV1PaginationWithDeletions(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.v1CreateUser("deleter", "")
	png := fixture(t, "png-rgb.png")

	t.Run("sequential uploads", func(t *testing.T) {
		s := s.withT(t)
		var ids []string
		for i := range 12 {
			ids = append(ids, s.v1Upload(tok, fmt.Sprintf("seq-%02d.png", i), png).ID)
		}
		var seen []string
		cursor := ""
		for {
			path := "/api/v1/images?limit=4"
			if cursor != "" {
				path += "&cursor=" + url.QueryEscape(cursor)
			}
			r := s.do("GET", path, nil, bearer(tok))
			var p v1Page
			if r.status != 200 || json.Unmarshal(r.body, &p) != nil {
				t.Fatalf("GET %s: got %v, want 200", path, r)
			}
			for _, img := range p.Images {
				seen = append(seen, img.ID)
			}
			if p.NextCursor == "" {
				break
			}
			// Delete the image the cursor names before the next page.
			last := p.Images[len(p.Images)-1].ID
			if r := s.do("DELETE", "/api/v1/images/"+last, nil, bearer(tok)); r.status != 204 {
				t.Fatalf("DELETE %s: got %v, want 204", last, r)
			}
			cursor = p.NextCursor
		}
		if !slices.Equal(seen, ids) {
			t.Errorf("paging while deleting each page's last image:\ngot  %v\nwant %v", seen, ids)
		}
		for _, id := range ids {
			s.do("DELETE", "/api/v1/images/"+id, nil, bearer(tok))
		}
	})

	t.Run("concurrent uploads", func(t *testing.T) {
		// Uploads racing each other are listed in the order they were
		// committed; the cursor must not assume that this is the order of
		// their creation times.
		var wg sync.WaitGroup
		for i := range 300 {
			wg.Go(func() {
				s.tryDo("POST", fmt.Sprintf("/api/v1/images?name=con-%03d.png", i), png, bearer(tok, "Content-Type", "application/octet-stream"))
			})
		}
		wg.Wait()
		s := s.withT(t)
		all, _ := s.v1List(tok, 1000)
		if len(all) != 300 {
			t.Fatalf("after 300 concurrent uploads: got %d images, want 300", len(all))
		}
		inv := -1
		for i := 1; i < len(all); i++ {
			if all[i].Created.Before(all[i-1].Created) {
				inv = i
				break
			}
		}
		if inv < 0 {
			t.Logf("the list happens to be in creation order: nothing to show this time")
			return
		}
		// Page up to the image just before the inversion, delete it, and
		// ask for the rest.
		r := s.do("GET", "/api/v1/images?limit="+strconv.Itoa(inv), nil, bearer(tok))
		var p v1Page
		if r.status != 200 || json.Unmarshal(r.body, &p) != nil || p.NextCursor == "" {
			t.Fatalf("first page: got %v, want 200 with a cursor", r)
		}
		cursorImg := all[inv-1]
		if r := s.do("DELETE", "/api/v1/images/"+cursorImg.ID, nil, bearer(tok)); r.status != 204 {
			t.Fatalf("DELETE: got %v, want 204", r)
		}
		r = s.do("GET", "/api/v1/images?limit=1000&cursor="+url.QueryEscape(p.NextCursor), nil, bearer(tok))
		var rest v1Page
		if r.status != 200 || json.Unmarshal(r.body, &rest) != nil {
			t.Fatalf("second page: got %v, want 200", r)
		}
		var got, want []string
		for _, img := range rest.Images {
			got = append(got, img.ID)
		}
		for _, img := range all[inv:] {
			want = append(want, img.ID)
		}
		if !slices.Equal(got, want) {
			missing := 0
			for _, id := range want {
				if !slices.Contains(got, id) {
					missing++
				}
			}
			t.Errorf("after deleting the cursor's image %s (created %s), the next page skipped %d image(s) that existed all along, starting with %s (created %s, listed right after it): got %d images, want %d",
				cursorImg.ID, cursorImg.Created.Format(time.RFC3339Nano), missing, all[inv].ID, all[inv].Created.Format(time.RFC3339Nano), len(got), len(want))
		}
	})
}

// TestV1Idempotency: a POST retried with the same Idempotency-Key stores
// one image and replays the first answer.
func TestV1Idempotency(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.v1CreateUser("idem", "")
	png := fixture(t, "png-rgb.png")
	count := func(t *testing.T) int {
		all, _ := s.withT(t).v1List(tok, 1000)
		return len(all)
	}

	t.Run("same key twice", func(t *testing.T) {
		s := s.withT(t)
		first := s.v1Raw("POST", "/api/v1/images?name=once.png", tok, png, "Idempotency-Key", "key-1")
		second := s.v1Raw("POST", "/api/v1/images?name=once.png", tok, png, "Idempotency-Key", "key-1")
		if first.status != 201 || second.status != 201 {
			t.Fatalf("same key twice: got %v then %v, want 201 both", first, second)
		}
		if !bytes.Equal(first.body, second.body) {
			t.Errorf("same key twice: bodies differ:\n%s\n%s", first.body, second.body)
		}
		if got := first.header.Get("Idempotent-Replayed"); got != "" {
			t.Errorf("first request: Idempotent-Replayed got %q, want none", got)
		}
		if got := second.header.Get("Idempotent-Replayed"); got != "true" {
			t.Errorf("second request: Idempotent-Replayed got %q, want true", got)
		}
		if first.header.Get("Location") != second.header.Get("Location") || first.header.Get("ETag") != second.header.Get("ETag") {
			t.Errorf("replay headers: Location %q/%q, ETag %q/%q, want the same", first.header.Get("Location"), second.header.Get("Location"), first.header.Get("ETag"), second.header.Get("ETag"))
		}
		// A retry as a multipart form, with the same key, replays too.
		body, ct := form(formPart{"file", "once.png", png})
		third := s.do("POST", "/api/v1/images", bytes.NewReader(body), bearer(tok, "Content-Type", ct, "Idempotency-Key", "key-1"))
		if third.status != 201 || !bytes.Equal(third.body, first.body) {
			t.Errorf("multipart retry: got %v, want 201 and the first body", third)
		}
		// The key reused for another upload: 422, nothing stored.
		other := s.v1Raw("POST", "/api/v1/images?name=once.png", tok, fixture(t, "gif-still.gif"), "Idempotency-Key", "key-1")
		wantProblem(t, "key reused with other bytes", other, 422, "idempotency-key-reused")
		if got := count(t); got != 1 {
			t.Errorf("images stored: got %d, want 1", got)
		}
	})

	t.Run("different keys", func(t *testing.T) {
		s := s.withT(t)
		a := s.v1Upload(tok, "a.png", png, "Idempotency-Key", "key-a")
		b := s.v1Upload(tok, "b.png", png, "Idempotency-Key", "key-b")
		if a.ID == b.ID {
			t.Errorf("different keys: got the same id %s, want two images", a.ID)
		}
		if got := count(t); got != 3 {
			t.Errorf("images stored: got %d, want 3", got)
		}
	})

	t.Run("keys are per user", func(t *testing.T) {
		s := s.withT(t)
		other := s.v1CreateUser("idem2", "")
		mine := s.v1Upload(other, "once.png", png, "Idempotency-Key", "key-1")
		all, _ := s.v1List(other, 10)
		if len(all) != 1 || all[0].ID != mine.ID {
			t.Errorf("another user's first use of key-1: got %+v, want its own new image", all)
		}
	})

	t.Run("a failed request frees its key", func(t *testing.T) {
		s := s.withT(t)
		r := s.v1Raw("POST", "/api/v1/images?name=later.png", tok, []byte("not an image"), "Idempotency-Key", "key-retry")
		wantProblem(t, "not an image", r, 406, "")
		r = s.v1Raw("POST", "/api/v1/images?name=later.png", tok, png, "Idempotency-Key", "key-retry")
		if r.status != 201 || r.header.Get("Idempotent-Replayed") != "" {
			t.Errorf("retry after a failure: got %v (replayed %q), want a fresh 201", r, r.header.Get("Idempotent-Replayed"))
		}
	})

	t.Run("invalid key", func(t *testing.T) {
		s := s.withT(t)
		r := s.v1Raw("POST", "/api/v1/images?name=badkey.png", tok, png, "Idempotency-Key", strings.Repeat("k", 256))
		wantProblem(t, "256-character key", r, 400, "bad-idempotency-key")
	})

	t.Run("concurrent same key", func(t *testing.T) {
		before := count(t)
		const n = 12
		results := make([]response, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		startLine := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-startLine
				results[i], errs[i] = s.tryDo("POST", "/api/v1/images?name=race.png", png,
					bearer(tok, "Content-Type", "application/octet-stream", "Idempotency-Key", "race-key"))
			})
		}
		close(startLine)
		wg.Wait()
		var id string
		created, replayed, inProgress := 0, 0, 0
		for i, r := range results {
			if errs[i] != nil {
				t.Errorf("request %d: %v", i, errs[i])
				continue
			}
			switch r.status {
			case 201:
				img := decodeImage(t, r)
				if id == "" {
					id = img.ID
				} else if img.ID != id {
					t.Errorf("request %d: got id %s, want %s like the others", i, img.ID, id)
				}
				if r.header.Get("Idempotent-Replayed") == "true" {
					replayed++
				} else {
					created++
				}
			case 409:
				wantProblem(t, fmt.Sprintf("request %d", i), r, 409, "idempotency-in-progress")
				inProgress++
			default:
				t.Errorf("request %d: got %v, want 201 or 409", i, r)
			}
		}
		if created != 1 {
			t.Errorf("concurrent same key: %d answers were not replays, want exactly 1", created)
		}
		if got := count(t); got != before+1 {
			t.Errorf("images stored: got %d, want %d (one more)", got, before+1)
		}
		t.Logf("created %d, replayed %d, in progress %d", created, replayed, inProgress)
	})
}

// TestV1ConditionalRequests: If-Match on PUT and DELETE, renames.
func TestV1ConditionalRequests(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.v1CreateUser("cond", "")
	png, jpg, gif := fixture(t, "png-rgb.png"), fixture(t, "jpeg-baseline.jpg"), fixture(t, "gif-still.gif")
	img := s.v1Upload(tok, "pic.png", png)
	other := s.v1Upload(tok, "other.png", uniquePNG(t, "other"))
	path := "/api/v1/images/" + img.ID
	meta := func(t *testing.T) v1Image {
		r := s.withT(t).do("GET", path+"/meta", nil, bearer(tok))
		if r.status != 200 {
			t.Fatalf("meta: got %v, want 200", r)
		}
		return decodeImage(t, r)
	}
	content := func(t *testing.T) []byte {
		r := s.withT(t).do("GET", path, nil, bearer(tok))
		if r.status != 200 {
			t.Fatalf("GET: got %v, want 200", r)
		}
		return r.body
	}
	staleTag := `"` + sha256Hex(png) + `"`

	// PUT with the current ETag, without a name: new content, same name.
	r := s.v1Raw("PUT", path, tok, jpg, "If-Match", `"`+img.SHA256+`"`)
	if r.status != 200 {
		t.Fatalf("PUT with the current ETag: got %v, want 200", r)
	}
	put := decodeImage(t, r)
	if put.ID != img.ID || put.Name != "pic.png" || put.ContentType != "image/jpeg" || put.SHA256 != sha256Hex(jpg) ||
		!put.Created.Equal(img.Created) || !put.Updated.After(img.Updated) {
		t.Errorf("PUT: got %s, want id %s still named pic.png, now image/jpeg, created unchanged, updated later", r.body, img.ID)
	}
	if got, want := r.header.Get("ETag"), `"`+sha256Hex(jpg)+`"`; got != want {
		t.Errorf("PUT: ETag got %q, want %q", got, want)
	}
	if got := content(t); !bytes.Equal(got, jpg) {
		t.Errorf("after PUT: got %d bytes, want the new %d", len(got), len(jpg))
	}

	t.Run("stale If-Match", func(t *testing.T) {
		s := s.withT(t)
		r := s.v1Raw("PUT", path+"?name=renamed.gif", tok, gif, "If-Match", staleTag)
		wantProblem(t, "PUT with a stale ETag", r, 412, "changed")
		if m := meta(t); m.SHA256 != sha256Hex(jpg) || m.Name != "pic.png" {
			t.Errorf("after a refused PUT: got %+v, want pic.png with the JPEG", m)
		}
		if got := content(t); !bytes.Equal(got, jpg) {
			t.Errorf("after a refused PUT: the content changed")
		}
		r = s.do("DELETE", path, nil, bearer(tok, "If-Match", staleTag))
		wantProblem(t, "DELETE with a stale ETag", r, 412, "changed")
		if m := meta(t); m.ID != img.ID {
			t.Errorf("after a refused DELETE: got %+v, want the image still there", m)
		}
	})

	t.Run("If-Match list", func(t *testing.T) {
		// RFC 9110 13.1.1: the condition holds if any listed tag matches.
		s := s.withT(t)
		cur := `"` + sha256Hex(jpg) + `"`
		r := s.v1Raw("PUT", path, tok, jpg, "If-Match", staleTag+", "+cur)
		if r.status != 200 {
			t.Errorf("PUT with If-Match: <stale>, <current>: got %v, want 200", r)
		}
	})

	t.Run("rename", func(t *testing.T) {
		s := s.withT(t)
		r := s.v1Raw("PUT", path+"?name=new.gif", tok, gif)
		if r.status != 200 {
			t.Fatalf("PUT ?name=new.gif: got %v, want 200", r)
		}
		if got := decodeImage(t, r); got.Name != "new.gif" || got.ContentType != "image/gif" || got.ID != img.ID {
			t.Errorf("PUT ?name=new.gif: got %s, want new.gif, image/gif, same id", r.body)
		}
		// The name of another image: refused, nothing changed.
		r = s.v1Raw("PUT", path+"?name=other.png", tok, png)
		wantProblem(t, "PUT to another image's name", r, 409, "name-taken")
		if m := meta(t); m.Name != "new.gif" || m.SHA256 != sha256Hex(gif) {
			t.Errorf("after a refused rename: got %+v, want new.gif unchanged", m)
		}
		// Its own name is fine; so is a multipart form naming the file.
		if r := s.v1Raw("PUT", path+"?name=new.gif", tok, gif); r.status != 200 {
			t.Errorf("PUT to its own name: got %v, want 200", r)
		}
		body, ct := form(formPart{"file", "form.png", png})
		r = s.do("PUT", path, bytes.NewReader(body), bearer(tok, "Content-Type", ct))
		if got := decodeImage(t, r); r.status != 200 || got.Name != "form.png" || got.SHA256 != sha256Hex(png) {
			t.Errorf("multipart PUT: got %v, want 200 naming form.png", r)
		}
		all, _ := s.v1List(tok, 10)
		if len(all) != 2 || all[0].ID != img.ID || all[1].ID != other.ID {
			t.Errorf("list after replacements: got %+v, want the image still first", all)
		}
		// Not an image: refused, nothing changed.
		r = s.v1Raw("PUT", path, tok, []byte("plain text"))
		wantProblem(t, "PUT of text", r, 406, "")
		if m := meta(t); m.SHA256 != sha256Hex(png) {
			t.Errorf("after a refused PUT: got %+v, want the PNG", m)
		}
		r = s.v1Raw("PUT", "/api/v1/images/zzzz", tok, png)
		wantProblem(t, "PUT of an unknown id", r, 404, "")
	})

	t.Run("delete", func(t *testing.T) {
		s := s.withT(t)
		cur := meta(t)
		r := s.do("DELETE", path, nil, bearer(tok, "If-Match", `"`+cur.SHA256+`"`))
		if r.status != 204 || len(r.body) != 0 {
			t.Fatalf("DELETE with the current ETag: got %v, want 204", r)
		}
		r = s.do("GET", path, nil, bearer(tok))
		wantProblem(t, "GET after DELETE", r, 404, "image-not-found")
		r = s.do("GET", path+"/meta", nil, bearer(tok))
		wantProblem(t, "meta after DELETE", r, 404, "image-not-found")
		r = s.do("DELETE", path, nil, bearer(tok))
		wantProblem(t, "DELETE again", r, 404, "image-not-found")
		// Unconditional DELETE works too.
		if r := s.do("DELETE", "/api/v1/images/"+other.ID, nil, bearer(tok)); r.status != 204 {
			t.Errorf("unconditional DELETE: got %v, want 204", r)
		}
		if all, _ := s.v1List(tok, 10); len(all) != 0 {
			t.Errorf("after deleting both: got %+v, want none", all)
		}
	})
}

// TestV1TokenRotation: a new token replaces the old one at once, on both
// APIs.
func TestV1TokenRotation(t *testing.T) {
	s := start(t, t.TempDir())
	old := s.v1CreateUser("rotor", "a good password")
	id := s.uploadID(old, "kept.png", fixture(t, "png-rgb.png"))

	r := s.do("POST", "/api/v1/users/me/token", nil, bearer(old))
	if r.status != 200 {
		t.Fatalf("rotate: got %v, want 200", r)
	}
	var v map[string]string
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	fresh := v["token"]
	if !tokenRe.MatchString(fresh) || fresh == old || v["username"] != "rotor" {
		t.Fatalf("rotate: got %s, want username rotor and a new token", r.body)
	}
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("rotate: Cache-Control got %q, want no-store", cc)
	}

	// The old token fails at once, on both APIs.
	wantProblem(t, "v1 with the old token", s.do("GET", "/api/v1/users/me", nil, bearer(old)), 401, "unauthorized")
	wantProblem(t, "v1 images with the old token", s.do("GET", "/api/v1/images", nil, bearer(old)), 401, "unauthorized")
	wantJSON(t, "seed with the old token", s.get("/imageapi/token/"+old+"/get-image-list/"), 401, `"Token not recognized"`)
	wantProblem(t, "rotating the old token again", s.do("POST", "/api/v1/users/me/token", nil, bearer(old)), 401, "")

	// The new one works on both, with the images kept.
	r = s.do("GET", "/api/v1/users/me", nil, bearer(fresh))
	var me map[string]any
	json.Unmarshal(r.body, &me)
	if r.status != 200 || me["username"] != "rotor" || me["has_password"] != true {
		t.Errorf("me with the new token: got %v, want rotor with has_password true", r)
	}
	if got := s.list(fresh); !slices.Equal(got, [][2]string{{"kept.png", id}}) {
		t.Errorf("seed list with the new token: got %v, want kept.png", got)
	}
	// retrieve-token hands out the new one (the user has a password).
	r = s.do("GET", "/imageapi/retrieve-token/rotor/", nil, map[string]string{"Authorization": basicAuth("rotor", "a good password")})
	wantJSON(t, "retrieve-token after rotation", r, 200, `{"rotor":"`+fresh+`"}`)

	// Rotations race: one wins, the other token is refused; exactly one
	// token works afterwards.
	var wg sync.WaitGroup
	results := make([]response, 4)
	for i := range results {
		wg.Go(func() { results[i], _ = s.tryDo("POST", "/api/v1/users/me/token", nil, bearer(fresh)) })
	}
	wg.Wait()
	var winners []string
	for _, r := range results {
		if r.status == 200 {
			var v map[string]string
			json.Unmarshal(r.body, &v)
			winners = append(winners, v["token"])
		} else if r.status != 401 {
			t.Errorf("concurrent rotation: got %v, want 200 or 401", r)
		}
	}
	working := 0
	for _, tok := range append(winners, fresh) {
		if s.do("GET", "/api/v1/users/me", nil, bearer(tok)).status == 200 {
			working++
		}
	}
	if len(winners) != 1 || working != 1 {
		t.Errorf("concurrent rotation: %d rotations succeeded and %d tokens work, want 1 and 1", len(winners), working)
	}
}

// basicAuth is an Authorization header value for HTTP Basic.
func basicAuth(user, password string) string {
	req, _ := http.NewRequest("GET", "http://x/", nil)
	req.SetBasicAuth(user, password)
	return req.Header.Get("Authorization")
}

// metricSum sums a metric's samples whose labels include those given.
func metricSum(text, name string, labels map[string]string) (sum float64, found bool) {
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		metric, labelText, _ := strings.Cut(series, "{")
		if metric != name {
			continue
		}
		have := map[string]string{}
		for _, m := range labelRe.FindAllStringSubmatch(labelText, -1) {
			have[m[1]] = m[2]
		}
		match := true
		for k, v := range labels {
			if have[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		sum, found = sum+f, true
	}
	return sum, found
}

var labelRe = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)
