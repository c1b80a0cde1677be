package e2e

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestHostilePaths sends path traversal in every segment of every route and
// checks that each is refused, nothing is written outside the data folder,
// and the data folder holds only names the server made itself.
func TestHostilePaths(t *testing.T) {
	root := t.TempDir()
	data := filepath.Join(root, "data")
	s := start(t, data)
	tok := s.newUser("mallory")
	id := s.uploadID(tok, "a.png", fixture(t, "png-rgb.png"))
	png := fixture(t, "png-rgb.png")

	evil := []string{
		"..", "../..", "..%2F..%2F..%2Fetc", "%2e%2e", "%2e%2e%2f%2e%2e%2fdata", "..%5C..%5Cwindows", `..\..`,
		"%00", "a%00b", "..%00", "%2F", "%252e%252e%252f", "....//....//",
		"imagestore.lock", "objects", "users", "index",
	}
	for _, e := range evil {
		paths := []string{
			"/imageapi/token/" + e + "/get-image-list/",
			"/imageapi/token/" + e + "/get-image/" + id + "/",
			"/imageapi/token/" + tok + "/get-image/" + e + "/",
		}
		// Names of the data folder's own files are fine usernames: they
		// name nothing on disk.
		if !regexp.MustCompile(`^\w+$`).MatchString(e) {
			paths = append(paths, "/imageapi/generate-token/"+e+"/", "/imageapi/retrieve-token/"+e+"/")
		}
		for _, p := range paths {
			r := rawGet(t, s, p)
			if r.status != 401 && r.status != 404 && r.status != 400 {
				t.Errorf("GET %s: %v, want 401, 404 or 400", p, r)
			}
		}
		if r := rawDo(t, s, "DELETE", "/imageapi/token/"+tok+"/delete-image/"+e+"/", nil, ""); r.status != 404 && r.status != 400 {
			t.Errorf("DELETE of %s: %v, want 404 or 400", e, r)
		}
		for _, p := range []string{
			"/imageapi/token/" + e + "/upload-image/",
			"/imageapi/token/" + tok + "/update-image/" + e + "/",
		} {
			body, ct := form(formPart{"f", "x.png", png})
			for _, m := range []string{"POST", "PATCH"} {
				r := rawDo(t, s, m, p, body, ct)
				if r.status < 400 || r.status >= 500 {
					t.Errorf("%s %s: %v, want a 4xx", m, p, r)
				}
			}
		}
	}
	// Filenames are data, never paths: they are stored as the original did
	// (the part after the last slash) and come back quoted correctly.
	names := map[string]string{
		`../../../../etc/passwd.png`:      "passwd.png",
		`..\..\boot.ini.png`:              "boot.ini.png",
		`quote"semi;colon.png`:            `quote"semi;colon.png`,
		`café ☕ 日本.png`:                   `café ☕ 日本.png`,
		`%2e%2e%2fencoded.png`:            `%2e%2e%2fencoded.png`,
		`attachment; filename=x.png`:      `attachment; filename=x.png`,
		"tab\tname.png":                   "tab_name.png",
		strings.Repeat("x", 300) + ".png": strings.Repeat("x", 251) + ".png",
	}
	for raw, want := range names {
		id := s.uploadID(tok, raw, png)
		r := s.get("/imageapi/token/" + tok + "/get-image/" + id + "/")
		_, params, err := mime.ParseMediaType(r.header.Get("Content-Disposition"))
		if err != nil || params["filename"] != want {
			t.Errorf("upload as %q: Content-Disposition %q gives %q (%v), want %q", raw, r.header.Get("Content-Disposition"), params["filename"], err, want)
		}
		found := false
		for _, p := range s.list(tok) {
			found = found || p == [2]string{want, id}
		}
		if !found {
			t.Errorf("upload as %q: %q not in the list", raw, want)
		}
	}

	// Nothing but the data folder was written, and every name in it is one
	// the server made: hex digests and random hex, never user input.
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 {
		t.Errorf("the data folder's parent holds %d entries, want only the data folder", len(entries))
	}
	serverNames := regexp.MustCompile(`^([0-9a-f]{64}(\.json)?|[0-9a-f]{32}\.gz|[0-9a-f]{16}\.(json|log)|objects|users|tokens|index|indexlog|blobs|idem|health|imagestore\.lock)$`)
	filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if p != data && !serverNames.MatchString(d.Name()) {
			t.Errorf("unexpected name in the data folder: %s", p)
		}
		return nil
	})
}

// rawGet and rawDo send a request line exactly as given: Go's client would
// otherwise clean or re-escape the path.
func rawGet(t *testing.T, s *server, path string) response {
	return rawDo(t, s, "GET", path, nil, "")
}

func rawDo(t *testing.T, s *server, method, path string, body []byte, ct string) response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n", method, path, len(body))
	if ct != "" {
		fmt.Fprintf(conn, "Content-Type: %s\r\n", ct)
	}
	fmt.Fprintf(conn, "\r\n")
	conn.Write(body)
	resp, err := http.ReadResponse(bufioReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %q: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

// TestUploadLimit checks the upload size limit, with and without a
// Content-Length, and that the server's memory is not the limit's hostage.
func TestUploadLimit(t *testing.T) {
	s := start(t, t.TempDir(), "--max-upload", "100KiB")
	tok := s.newUser("big")
	// A valid image larger than the limit, and a body of junk.
	big := append(fixture(t, "png-rgb.png"), bytes.Repeat([]byte{0}, 300<<10)...)
	r := s.upload(tok, "big.png", big)
	if r.status != 413 || r.header.Get("Content-Type") != "application/json" || !strings.Contains(string(r.body), "102400") {
		t.Errorf("oversized upload: %v, want 413 with a JSON body naming the limit", r)
	}
	// Without a length (chunked), the limit is enforced while streaming.
	body, ct := form(formPart{"f", "big.png", big})
	req, _ := http.NewRequest("POST", s.url+"/imageapi/token/"+tok+"/upload-image/", io.MultiReader(bytes.NewReader(body)))
	req.Header.Set("Content-Type", ct)
	req.ContentLength = -1
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("oversized chunked upload: %d %q, want 413", resp.StatusCode, b)
	}
	// Text fields before the file count against the limit too.
	r = s.sendForm("POST", "/imageapi/token/"+tok+"/upload-image/", formPart{"junk", "", big}, formPart{"f", "a.png", fixture(t, "png-rgb.png")})
	if r.status != 413 {
		t.Errorf("oversized text field: %v, want 413", r)
	}
	// Under the limit all is well, and nothing refused was stored.
	s.uploadID(tok, "small.png", fixture(t, "png-rgb.png"))
	if got := s.list(tok); len(got) != 1 {
		t.Errorf("list = %v, want only small.png", got)
	}
}
