// Package e2e holds black-box tests of the real imagestore binary: each test
// builds nothing itself, starts the server built by TestMain on a free
// loopback port with a temporary data folder, and talks HTTP to it.
package e2e

import (
	"bytes"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	userExists     = `"User exists"`
	userNotFound   = `"User does not exists"`
	badToken       = `"Token not recognized"`
	notImage       = `"Unrecognized file type"`
	fileExists     = `"File exists"`
	patchExists    = `"Cannot patch. File exists."`
	imageNotFound  = `"Image[s] not found on the server"`
	notFoundDetail = `{"detail":"Not found."}`
)

// withAndWithoutSlash runs f for a route path ending in "/" and for the
// same path without it: the original's clients use both.
func withAndWithoutSlash(t *testing.T, path string, f func(t *testing.T, path string)) {
	t.Run("slash", func(t *testing.T) { f(t, path) })
	t.Run("noslash", func(t *testing.T) { f(t, trimSlash(path)) })
}

// TestCompatTokens drives the rows of generate-token and retrieve-token.
func TestCompatTokens(t *testing.T) {
	s := start(t, t.TempDir())
	withAndWithoutSlash(t, "/imageapi/generate-token/alice/", func(t *testing.T, path string) {
		user := "alice"
		if !strings.HasSuffix(path, "/") {
			user = "alice_noslash"
		}
		path = strings.Replace(path, "alice", user, 1)
		r := s.get(path)
		if r.status != 201 || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("generate-token: %v", r)
		}
		var tok string
		if _, err := fmt.Sscanf(string(r.body), `{"token":%q}`, &tok); err != nil || !tokenRe.MatchString(tok) {
			t.Fatalf("generate-token body %q: token %q %v", r.body, tok, err)
		}
		wantJSON(t, "generate-token again", s.get(path), 409, userExists)

		rpath := strings.Replace(path, "generate-token", "retrieve-token", 1)
		wantJSON(t, "retrieve-token", s.get(rpath), 200, `{"`+user+`":"`+tok+`"}`)
		wantJSON(t, "retrieve-token of a stranger", s.get(strings.Replace(rpath, user, "nobody", 1)), 404, userNotFound)
	})
	// Usernames outside [A-Za-z0-9_] did not match the original's routes.
	for _, bad := range []string{"a-b", "a.b", "%C3%A9", "a%2Fb", "..", "a%00"} {
		for _, route := range []string{"generate-token", "retrieve-token"} {
			r := s.get("/imageapi/" + route + "/" + bad + "/")
			if r.status != 404 {
				t.Errorf("%s/%s: %v, want 404", route, bad, r)
			}
		}
	}
}

// TestCompatImages drives every row of the image routes, in the order the
// original checked for errors.
func TestCompatImages(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.newUser("bob")
	png, jpg, gif := fixture(t, "png-rgb.png"), fixture(t, "jpeg-baseline.jpg"), fixture(t, "gif-still.gif")
	base := "/imageapi/token/" + tok

	// An empty list is a 404, as in the original.
	wantJSON(t, "empty list", s.get(base+"/get-image-list/"), 404, imageNotFound)
	wantJSON(t, "empty list, no slash", s.get(base+"/get-image-list"), 404, imageNotFound)

	// Upload, in error order: bad token, no file, not an image, name taken.
	wantJSON(t, "upload, bad token", s.upload("AAAAAAAAAA", "a.png", png), 401, badToken)
	wantJSON(t, "upload, bad token and no file", s.sendForm("POST", "/imageapi/token/AAAAAAAAAA/upload-image/"), 401, badToken)
	wantEmpty(t, "upload, no file", s.sendForm("POST", base+"/upload-image/", formPart{"name", "", []byte("x")}), 204)
	wantEmpty(t, "upload, not a form", s.do("POST", base+"/upload-image/", strings.NewReader("{}"), map[string]string{"Content-Type": "application/json"}), 204)
	wantJSON(t, "upload, text file", s.upload(tok, "notes.txt", []byte("BM but not a bitmap at all")), 406, notImage)

	ids := map[string]string{}
	withAndWithoutSlash(t, base+"/upload-image/", func(t *testing.T, path string) {
		name := "pic-noslash.png"
		if strings.HasSuffix(path, "/") {
			name = "pic-slash.png"
		}
		r := s.sendForm("POST", path, formPart{"somename", name, png})
		if r.status != 201 {
			t.Fatalf("upload: %v", r)
		}
		var id string
		if _, err := fmt.Sscanf(string(r.body), `{"File ID":%q}`, &id); err != nil || !idRe.MatchString(id) {
			t.Fatalf("upload body %q: id %q %v", r.body, id, err)
		}
		ids[name] = id
		wantJSON(t, "upload, same name", s.sendForm("POST", path, formPart{"other", name, jpg}), 409, fileExists)
		// A non-image under a taken name: 406 comes first.
		wantJSON(t, "upload, same name, not an image", s.sendForm("POST", path, formPart{"f", name, []byte("plain text")}), 406, notImage)
	})
	idJPG := s.uploadID(tok, "photo.jpg", jpg)

	// The list maps names to ids in upload order.
	want := [][2]string{{"pic-slash.png", ids["pic-slash.png"]}, {"pic-noslash.png", ids["pic-noslash.png"]}, {"photo.jpg", idJPG}}
	if got := s.list(tok); !slices.Equal(got, want) {
		t.Fatalf("list = %v, want %v", got, want)
	}

	// Get: the original bytes, typed and named.
	withAndWithoutSlash(t, base+"/get-image/"+idJPG+"/", func(t *testing.T, path string) {
		// A client that does not take gzip gets the bytes as uploaded.
		r := s.do("GET", path, nil, map[string]string{"Accept-Encoding": "identity"})
		if r.status != 200 || !bytes.Equal(r.body, jpg) {
			t.Fatalf("get-image: %d, %d bytes, want 200 and the %d uploaded bytes", r.status, len(r.body), len(jpg))
		}
		if got := r.header.Get("Content-Type"); got != "image/jpeg" {
			t.Errorf("Content-Type %q, want image/jpeg", got)
		}
		if got := r.header.Get("Content-Length"); got != strconv.Itoa(len(jpg)) {
			t.Errorf("Content-Length %q, want %d", got, len(jpg))
		}
		disp, params, err := mime.ParseMediaType(r.header.Get("Content-Disposition"))
		if err != nil || disp != "attachment" || params["filename"] != "photo.jpg" {
			t.Errorf("Content-Disposition %q: %s %v %v", r.header.Get("Content-Disposition"), disp, params, err)
		}
	})
	wantJSON(t, "get-image, bad token", s.get("/imageapi/token/AAAAAAAAAA/get-image/"+idJPG+"/"), 401, badToken)
	wantJSON(t, "get-image, unknown id", s.get(base+"/get-image/zzzz/"), 404, imageNotFound)
	wantJSON(t, "get-image, malformed id", s.get(base+"/get-image/toolong/"), 404, imageNotFound)
	wantJSON(t, "list, bad token", s.get("/imageapi/token/AAAAAAAAAA/get-image-list/"), 401, badToken)

	// Another user's token does not reach these images.
	other := s.newUser("eve")
	wantJSON(t, "get-image with another user's token", s.get("/imageapi/token/"+other+"/get-image/"+idJPG+"/"), 404, imageNotFound)

	// Patch, in error order: bad token, no file, unknown id, not an image,
	// name used by another image.
	patch := base + "/update-image/" + idJPG + "/"
	wantJSON(t, "patch, bad token", s.sendForm("PATCH", "/imageapi/token/AAAAAAAAAA/update-image/"+idJPG+"/", formPart{"f", "x.gif", gif}), 401, badToken)
	wantEmpty(t, "patch, no file", s.sendForm("PATCH", patch, formPart{"name", "", []byte("x")}), 204)
	wantEmpty(t, "patch, no file, unknown id", s.sendForm("PATCH", base+"/update-image/zzzz/", formPart{"name", "", []byte("x")}), 204)
	wantJSON(t, "patch, unknown id", s.sendForm("PATCH", base+"/update-image/zzzz/", formPart{"f", "x.gif", gif}), 404, imageNotFound)
	wantJSON(t, "patch, unknown id and not an image", s.sendForm("PATCH", base+"/update-image/zzzz/", formPart{"f", "x.txt", []byte("text")}), 404, imageNotFound)
	wantJSON(t, "patch, not an image", s.sendForm("PATCH", patch, formPart{"f", "x.txt", []byte("text")}), 406, notImage)
	before := s.list(tok)
	wantJSON(t, "patch, name of another image", s.sendForm("PATCH", patch, formPart{"f", "pic-slash.png", gif}), 409, patchExists)
	// A refused patch changes nothing (the original lost the image here).
	if got := s.list(tok); !slices.Equal(got, before) {
		t.Fatalf("list after a refused patch = %v, want %v", got, before)
	}
	if r := s.get(base + "/get-image/" + idJPG + "/"); !bytes.Equal(r.body, jpg) {
		t.Fatalf("image changed by a refused patch: %v", r.status)
	}

	withAndWithoutSlash(t, patch, func(t *testing.T, path string) {
		wantEmpty(t, "patch", s.sendForm("PATCH", path, formPart{"f", "anim.gif", gif}), 200)
	})
	// The id serves the new file and name, in the same place in the list.
	r := s.get(base + "/get-image/" + idJPG + "/")
	if !bytes.Equal(r.body, gif) || r.header.Get("Content-Type") != "image/gif" {
		t.Fatalf("after patch: %d bytes of %s, want the GIF", len(r.body), r.header.Get("Content-Type"))
	}
	want[2] = [2]string{"anim.gif", idJPG}
	if got := s.list(tok); !slices.Equal(got, want) {
		t.Fatalf("list after patch = %v, want %v", got, want)
	}
	// Patching an image with its own name is fine.
	wantEmpty(t, "patch, same name", s.sendForm("PATCH", patch, formPart{"f", "anim.gif", gif}), 200)

	// Delete.
	wantJSON(t, "delete, bad token", s.do("DELETE", "/imageapi/token/AAAAAAAAAA/delete-image/"+idJPG+"/", nil, nil), 401, badToken)
	wantJSON(t, "delete, unknown id", s.do("DELETE", base+"/delete-image/zzzz/", nil, nil), 404, imageNotFound)
	wantEmpty(t, "delete", s.do("DELETE", base+"/delete-image/"+idJPG+"/", nil, nil), 200)
	wantJSON(t, "delete again", s.do("DELETE", base+"/delete-image/"+idJPG, nil, nil), 404, imageNotFound)
	wantJSON(t, "get deleted", s.get(base+"/get-image/"+idJPG+"/"), 404, imageNotFound)
	wantEmpty(t, "delete, no slash", s.do("DELETE", base+"/delete-image/"+ids["pic-noslash.png"], nil, nil), 200)
	if got := s.list(tok); !slices.Equal(got, want[:1]) {
		t.Fatalf("list after deletes = %v, want %v", got, want[:1])
	}
	// A deleted name can be used again.
	s.uploadID(tok, "photo.jpg", jpg)
}

// TestCompatMethodNotAllowed checks the 405 of every route for the methods
// it does not serve.
func TestCompatMethodNotAllowed(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.newUser("carol")
	routes := map[string]string{
		"/imageapi/generate-token/dave/":               "GET",
		"/imageapi/retrieve-token/carol/":              "GET",
		"/imageapi/token/" + tok + "/upload-image/":    "POST",
		"/imageapi/token/" + tok + "/get-image/abcd/":  "GET",
		"/imageapi/token/" + tok + "/get-image-list/":  "GET",
		"/imageapi/token/" + tok + "/delete-image/ab/": "DELETE",
		"/imageapi/token/" + tok + "/update-image/ab/": "PATCH",
	}
	for path, allowed := range routes {
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			if m == allowed {
				continue
			}
			for _, p := range []string{path, trimSlash(path)} {
				r := s.do(m, p, nil, nil)
				wantJSON(t, m+" "+p, r, 405, `{"detail":"Method \"`+m+`\" not allowed."}`)
				if allow := r.header.Get("Allow"); !strings.Contains(allow, allowed) || strings.Contains(allow, m) {
					t.Errorf("%s %s: Allow %q", m, p, allow)
				}
			}
		}
	}
}

// TestCompatJSONWhateverTheAcceptHeader: the original once answered HTML
// to a browser and then to everyone; every response here is JSON.
func TestCompatJSONWhateverTheAcceptHeader(t *testing.T) {
	s := start(t, t.TempDir())
	for _, accept := range []string{"text/html", "text/html,application/xhtml+xml", "*/*", ""} {
		r := s.do("GET", "/imageapi/retrieve-token/nobody/", nil, map[string]string{"Accept": accept})
		wantJSON(t, "Accept "+accept, r, 404, userNotFound)
	}
	r := s.get("/no/such/route")
	wantJSON(t, "unknown route", r, http.StatusNotFound, notFoundDetail)
}
