package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/imagestore/imagestore/client"
)

// result is what one run of the command did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %q\nstderr: %q", r.code, r.stdout, r.stderr)
}

// session runs the command against one server, as one user, and checks
// that no secret ever appears in what it printed.
type session struct {
	t       *testing.T
	env     map[string]string
	secrets []string // tokens: in no output but where a command prints one
	outputs []string
}

func newSession(t *testing.T, url string) *session {
	s := &session{t: t, env: map[string]string{"IMAGESTORE_URL": url}}
	t.Cleanup(func() {
		for _, out := range s.outputs {
			for _, secret := range s.secrets {
				if strings.Contains(out, secret) {
					t.Errorf("a token is in the output %q", out)
				}
			}
		}
	})
	return s
}

// run runs the command with args and the session's environment.
func (s *session) run(args ...string) result { return s.runIn("", args...) }

// runIn runs the command with stdin as its standard input.
func (s *session) runIn(stdin string, args ...string) result {
	s.t.Helper()
	var stdout, stderr bytes.Buffer
	getenv := func(k string) string { return s.env[k] }
	code := run(s.t.Context(), args, getenv, strings.NewReader(stdin), &stdout, &stderr)
	r := result{code, stdout.String(), stderr.String()}
	s.outputs = append(s.outputs, r.stdout, r.stderr)
	return r
}

// want checks a run's exit code, and that its standard error says
// something if and only if it failed (or warns).
func (s *session) want(what string, r result, code int) {
	s.t.Helper()
	if r.code != code {
		s.t.Errorf("%s: %v\nwant exit %d", what, r, code)
	}
	if code != 0 && !strings.HasPrefix(r.stderr, "imagestore-cli: ") {
		s.t.Errorf("%s: stderr %q, want an imagestore-cli: message", what, r.stderr)
	}
}

// login creates the user and makes the session use its token.
func (s *session) login(username string) string {
	s.t.Helper()
	r := s.run("user", "create", username)
	s.outputs = s.outputs[:len(s.outputs)-2] // the token is the point here
	tok := strings.TrimSpace(r.stdout)
	if r.code != 0 || !regexp.MustCompile(`^[A-Za-z0-9_-]{10}\n$`).MatchString(r.stdout) || r.stderr != "" {
		s.t.Fatalf("user create %s: %v", username, r)
	}
	s.env["IMAGESTORE_TOKEN"] = tok
	s.secrets = append(s.secrets, tok)
	return tok
}

// listJSON returns the images as ls --json prints them.
func (s *session) listJSON() []client.Image {
	s.t.Helper()
	r := s.run("ls", "--json")
	if r.code != 0 || r.stderr != "" {
		s.t.Fatalf("ls --json: %v", r)
	}
	var imgs []client.Image
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		var img client.Image
		if err := json.Unmarshal(sc.Bytes(), &img); err != nil {
			s.t.Fatalf("ls --json: line %q: %v", sc.Text(), err)
		}
		imgs = append(imgs, img)
	}
	return imgs
}

// writeFile writes data to dir/name, making the folders.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// uploadedIDs maps each file of upload's output to its id.
func uploadedIDs(t *testing.T, stdout string) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for line := range strings.Lines(stdout) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(f) < 2 || len(f[0]) != 4 {
			t.Fatalf("upload printed %q", line)
		}
		ids[f[1]] = f[0]
	}
	return ids
}

func TestUsersAndTokens(t *testing.T) {
	s := newSession(t, startServer(t))
	tok := s.login("alice")

	r := s.run("user", "create", "alice")
	s.want("same username", r, exitConflict)
	if !strings.Contains(r.stderr, "User exists") || r.stdout != "" {
		t.Errorf("same username: %v", r)
	}
	s.want("invalid username", s.run("user", "create", "not valid"), exitFailed)

	r = s.runIn("a good password\n", "user", "create", "carol", "--password-stdin", "--json")
	var created struct{ Username, Token string }
	if err := json.Unmarshal([]byte(r.stdout), &created); r.code != 0 || err != nil || created.Username != "carol" || len(created.Token) != 10 {
		t.Errorf("user create --password-stdin --json: %v", r)
	}
	s.secrets = append(s.secrets, created.Token)
	s.outputs = s.outputs[:len(s.outputs)-2]
	s.want("empty password", s.runIn("", "user", "create", "dave", "--password-stdin"), exitUsage)
	s.want("short password", s.runIn("short\n", "user", "create", "dave", "--password-stdin"), exitFailed)

	r = s.run("whoami")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "username  alice\ncreated   ") || !strings.Contains(r.stdout, "password  no\n") {
		t.Errorf("whoami: %v", r)
	}
	r = s.run("whoami", "--json")
	var me client.User
	if err := json.Unmarshal([]byte(r.stdout), &me); err != nil || me.Username != "alice" || me.HasPassword {
		t.Errorf("whoami --json: %v", r)
	}
	s.env["IMAGESTORE_TOKEN"] = created.Token
	if r := s.run("whoami", "--json"); !strings.Contains(r.stdout, `"has_password":true`) {
		t.Errorf("whoami --json for carol: %v", r)
	}
	s.env["IMAGESTORE_TOKEN"] = tok

	// token rotate prints the new token, and the old one stops working.
	r = s.run("token", "rotate")
	s.outputs = s.outputs[:len(s.outputs)-2]
	newTok := strings.TrimSpace(r.stdout)
	if r.code != 0 || len(newTok) != 10 || newTok == tok || r.stderr != "" {
		t.Fatalf("token rotate: %v", r)
	}
	s.secrets = append(s.secrets, newTok)
	r = s.run("whoami")
	s.want("whoami with the old token", r, exitAuth)
	if !strings.Contains(r.stderr, "Token not recognized") || r.stdout != "" {
		t.Errorf("whoami with the old token: %v", r)
	}
	s.env["IMAGESTORE_TOKEN"] = newTok
	r = s.run("token", "rotate", "--json")
	s.outputs = s.outputs[:len(s.outputs)-2]
	var rotated struct{ Username, Token string }
	if err := json.Unmarshal([]byte(r.stdout), &rotated); err != nil || rotated.Username != "alice" || len(rotated.Token) != 10 {
		t.Errorf("token rotate --json: %v", r)
	}
	s.secrets = append(s.secrets, rotated.Token)
	s.env["IMAGESTORE_TOKEN"] = rotated.Token
	if r := s.run("whoami"); r.code != 0 {
		t.Errorf("whoami with the rotated token: %v", r)
	}

	// limits needs no token.
	delete(s.env, "IMAGESTORE_TOKEN")
	r = s.run("limits")
	if r.code != 0 || !regexp.MustCompile(`max upload +32.0 MiB \(33554432 bytes\)`).MatchString(r.stdout) ||
		!regexp.MustCompile(`max variant size +2048 pixels`).MatchString(r.stdout) || !strings.Contains(r.stdout, "image/png") {
		t.Errorf("limits: %v", r)
	}
	r = s.run("limits", "--json")
	var l client.Limits
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || l.MaxUploadBytes != 32<<20 {
		t.Errorf("limits --json: %v", r)
	}
	// Everything else does.
	for _, args := range [][]string{{"whoami"}, {"ls"}, {"token", "rotate"}, {"get", "abcd"}, {"rm", "abcd"}} {
		r := s.run(args...)
		s.want(strings.Join(args, " ")+" without a token", r, exitAuth)
		if !strings.Contains(r.stderr, "IMAGESTORE_TOKEN") {
			t.Errorf("%s without a token: %v", args, r)
		}
	}
}

func TestImages(t *testing.T) {
	s := newSession(t, startServer(t))
	s.login("alice")
	pngBytes, jpg, gif, webp, tif := fixture(t, "png-palette.png"), fixture(t, "jpeg-baseline.jpg"),
		fixture(t, "gif-still.gif"), fixture(t, "webp-lossy.webp"), fixture(t, "tiff-be.tif")

	// A folder with a nested folder, a file that is not an image, and a
	// hidden folder; and a file given by itself.
	dir := t.TempDir()
	writeFile(t, dir, "photos/png-palette.png", pngBytes)
	writeFile(t, dir, "photos/jpeg-baseline.JPG", jpg)
	writeFile(t, dir, "photos/nested/gif-still.gif", gif)
	writeFile(t, dir, "photos/nested/deeper/webp-lossy.webp", webp)
	writeFile(t, dir, "photos/notes.txt", []byte("not an image"))
	writeFile(t, dir, "photos/.thumbnails/thumb.png", pngBytes)
	single := writeFile(t, dir, "single/tiff-be.tif", tif)
	r := s.run("upload", "--jobs", "2", filepath.Join(dir, "photos"), single)
	s.want("upload", r, 0)
	ids := uploadedIDs(t, r.stdout)
	wantFiles := map[string][]byte{
		filepath.Join(dir, "photos/png-palette.png"):               pngBytes,
		filepath.Join(dir, "photos/jpeg-baseline.JPG"):             jpg,
		filepath.Join(dir, "photos/nested/gif-still.gif"):          gif,
		filepath.Join(dir, "photos/nested/deeper/webp-lossy.webp"): webp,
		single: tif,
	}
	if len(ids) != len(wantFiles) {
		t.Errorf("upload printed %q, want a line for each of %d files", r.stdout, len(wantFiles))
	}
	for f := range wantFiles {
		if ids[f] == "" {
			t.Errorf("upload: no id for %s in %q", f, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "5 uploaded") || !strings.Contains(r.stderr, "1 skipped") || strings.Contains(r.stderr, "failed") {
		t.Errorf("upload summary: %q", r.stderr)
	}

	// ls: a table, and JSON Lines.
	r = s.run("ls")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != 0 || r.stderr != "" || len(lines) != 6 {
		t.Fatalf("ls: %v", r)
	}
	if f := strings.Fields(lines[0]); !slices.Equal(f, []string{"ID", "NAME", "TYPE", "SIZE", "DIMENSIONS", "CREATED"}) {
		t.Errorf("ls header %q", lines[0])
	}
	col := strings.Index(lines[0], "NAME")
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 8 || strings.Index(l, f[1]) != col || !slices.Contains(slices.Collect(maps.Values(ids)), f[0]) || f[5] != "37x23" {
			t.Errorf("ls row %q (fields %q), name not at column %d", l, f, col)
		}
	}
	if !regexp.MustCompile(`\n[A-Za-z0-9_-]{4}  png-palette.png +image/png +672 B +37x23 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n`).MatchString(r.stdout) {
		t.Errorf("ls:\n%s", r.stdout)
	}
	imgs := s.listJSON()
	if len(imgs) != 5 {
		t.Fatalf("ls --json: %d images", len(imgs))
	}
	byName := map[string]client.Image{}
	for _, img := range imgs {
		byName[img.Name] = img
	}
	png := byName["png-palette.png"]
	if png.ID != ids[filepath.Join(dir, "photos/png-palette.png")] || png.Size != int64(len(pngBytes)) || png.ContentType != "image/png" || png.Width != 37 {
		t.Errorf("ls --json: %+v", png)
	}

	// get: to standard output, byte for byte, and nothing else there.
	for f, data := range wantFiles {
		r := s.run("get", ids[f], "-o", "-")
		if r.code != 0 || r.stdout != string(data) || r.stderr != "" {
			t.Errorf("get %s -o -: exit %d, %d bytes (want %d), stderr %q", ids[f], r.code, len(r.stdout), len(data), r.stderr)
		}
	}
	// To a file, to a folder, refusing to overwrite without --force.
	out := filepath.Join(t.TempDir(), "out.png")
	r = s.run("get", png.ID, "-o", out)
	if got, _ := os.ReadFile(out); r.code != 0 || r.stdout != out+"\n" || !bytes.Equal(got, pngBytes) {
		t.Errorf("get -o FILE: %v", r)
	}
	r = s.run("get", png.ID, "-o", out)
	s.want("get over an existing file", r, exitFailed)
	if !strings.Contains(r.stderr, "--force") {
		t.Errorf("get over an existing file: %v", r)
	}
	os.WriteFile(out, []byte("old"), 0o644)
	r = s.run("get", "-o", out, "--force", png.ID)
	if got, _ := os.ReadFile(out); r.code != 0 || !bytes.Equal(got, pngBytes) {
		t.Errorf("get --force: %v", r)
	}
	outDir := t.TempDir()
	r = s.run("get", png.ID, "-o", outDir+"/")
	if got, _ := os.ReadFile(filepath.Join(outDir, "png-palette.png")); r.code != 0 || !bytes.Equal(got, pngBytes) {
		t.Errorf("get -o FOLDER/: %v", r)
	}
	r = s.run("get", "zzzz", "-o", filepath.Join(outDir, "nothing.png"))
	s.want("get an unknown id", r, exitNotFound)
	if _, err := os.Stat(filepath.Join(outDir, "nothing.png")); !errors.Is(err, os.ErrNotExist) || !strings.Contains(r.stderr, "Image not found") {
		t.Errorf("a failed get left a file, or said %q", r.stderr)
	}

	// info shows the ETag.
	r = s.run("info", png.ID)
	if r.code != 0 || !strings.Contains(r.stdout, "etag        \""+png.SHA256+"\"") || !strings.Contains(r.stdout, "dimensions  37x23") {
		t.Errorf("info: %v", r)
	}
	s.want("info of an unknown id", s.run("info", "zzzz"), exitNotFound)

	// replace: If-Match, names.
	newFile := writeFile(t, t.TempDir(), "new-cat.jpg", jpg)
	r = s.run("replace", png.ID, newFile, "--if-match", byName["gif-still.gif"].ETag())
	s.want("replace with a stale ETag", r, exitConflict)
	if !strings.Contains(r.stderr, "The image changed") {
		t.Errorf("replace with a stale ETag: %v", r)
	}
	r = s.run("replace", png.ID, newFile, "--if-match", png.SHA256) // a bare SHA-256 will do
	if r.code != 0 || r.stdout != png.ID+"\tnew-cat.jpg\n" {
		t.Errorf("replace: %v", r)
	}
	if r := s.run("get", png.ID, "-o", "-"); r.stdout != string(jpg) {
		t.Errorf("get after replace: %v", r)
	}
	r = s.run("replace", png.ID, single, "--keep-name", "--json")
	var replaced client.Image
	if err := json.Unmarshal([]byte(r.stdout), &replaced); err != nil || replaced.Name != "new-cat.jpg" || replaced.ContentType != "image/tiff" {
		t.Errorf("replace --keep-name --json: %v", r)
	}
	r = s.run("replace", png.ID, single, "--name", "jpeg-baseline.JPG")
	s.want("replace to a taken name", r, exitConflict)
	r = s.run("replace", "zzzz", single)
	s.want("replace an unknown id", r, exitNotFound)
	s.want("replace with a missing file", s.run("replace", png.ID, filepath.Join(dir, "missing.png")), exitFailed)

	// Uploading a name already there is a conflict; not an image is refused.
	r = s.run("upload", filepath.Join(dir, "photos/jpeg-baseline.JPG"))
	s.want("upload of a name taken", r, exitConflict)
	if !strings.Contains(r.stderr, "jpeg-baseline.JPG: An image of that name exists") || r.stdout != "" {
		t.Errorf("upload of a name taken: %v", r)
	}
	r = s.run("upload", filepath.Join(dir, "photos/notes.txt"))
	s.want("upload of a text file", r, exitRefused)
	r = s.run("upload", "--all", filepath.Join(dir, "photos"))
	s.want("upload --all: conflicts and a text file", r, exitFailed)
	s.want("upload of a missing file", s.run("upload", filepath.Join(dir, "missing.png")), exitFailed)

	// rm: If-Match, several ids, unknown ids.
	gifImg := byName["gif-still.gif"]
	s.want("rm with a stale ETag", s.run("rm", gifImg.ID, "--if-match", png.ETag()), exitConflict)
	if r := s.run("rm", gifImg.ID, "--if-match", gifImg.ETag()); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("rm --if-match: %v", r)
	}
	r = s.run("rm", gifImg.ID, "zzzz")
	s.want("rm of unknown ids", r, exitNotFound)
	if strings.Count(r.stderr, "Image not found") != 2 {
		t.Errorf("rm of unknown ids: %v", r)
	}
	webpID, tifID := byName["webp-lossy.webp"].ID, byName["tiff-be.tif"].ID
	if r := s.run("rm", webpID, tifID); r.code != 0 {
		t.Errorf("rm of two ids: %v", r)
	}
	s.want("rm of an unknown and a bad id", s.run("rm", webpID, "../x"), exitNotFound)
	// png-palette.png (whose name was free again) and thumb.png came with
	// upload --all.
	var names []string
	for _, img := range s.listJSON() {
		names = append(names, img.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"jpeg-baseline.JPG", "new-cat.jpg", "png-palette.png", "thumb.png"}) {
		t.Errorf("images left: %q", names)
	}
}

// TestGetDefaultName: without -o, get writes the image's name, made safe,
// in the current folder.
func TestGetDefaultName(t *testing.T) {
	url := startServer(t)
	s := newSession(t, url)
	tok := s.login("alice")
	c := client.New(url, tok)
	data := fixture(t, "png-palette.png")
	for _, name := range []string{"cat.png", ".bashrc", "x\x1b[31m.png"} {
		if _, err := c.Upload(t.Context(), name, bytes.NewReader(data), int64(len(data)), nil); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	t.Chdir(dir)
	for img, err := range c.All(t.Context(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		r := s.run("get", img.ID)
		want := safeName(img.Name, img.ID)
		if got, _ := os.ReadFile(filepath.Join(dir, want)); r.code != 0 || r.stdout != want+"\n" || !bytes.Equal(got, data) {
			t.Errorf("get %q: %v, want %s", img.Name, r, want)
		}
		s.want("get again", s.run("get", img.ID), exitFailed)
		if r := s.run("get", img.ID, "--force"); r.code != 0 {
			t.Errorf("get --force: %v", r)
		}
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"_bashrc", "cat.png", "x_[31m.png"}) {
		t.Errorf("files written: %q", names)
	}
}

func TestSafeName(t *testing.T) {
	for name, want := range map[string]string{
		"cat.png":            "cat.png",
		"../../etc/passwd":   "passwd",
		`..\..\evil.exe`:     "evil.exe",
		"/abs/path.png":      "path.png",
		".profile":           "_profile",
		"..":                 "_.",
		".":                  "_",
		"":                   "ID_1",
		"dir/":               "ID_1",
		"  spaced.png ":      "spaced.png",
		"bell\a.png":         "bell_.png",
		"new\nline.png":      "new_line.png",
		"bad\xffutf8.png":    "bad_utf8.png",
		"ünïcödé.png":        "ünïcödé.png",
		"a/b/../.hidden.png": "_hidden.png",
	} {
		if got := safeName(name, "ID_1"); got != want {
			t.Errorf("safeName(%q) = %q, want %q", name, got, want)
		}
	}
	if got := safeName("", "../.."); got != "_." {
		t.Errorf("safeName with a hostile id: %q", got)
	}
}

func TestIdempotentRerun(t *testing.T) {
	s := newSession(t, startServer(t))
	s.login("alice")
	dir := t.TempDir()
	for _, f := range []string{"png-palette.png", "jpeg-baseline.jpg", "gif-still.gif", "png-rgb.png"} {
		writeFile(t, dir, "nested/"+f, fixture(t, f))
	}
	// A file of the same bytes and name in another folder is the same image.
	writeFile(t, dir, "copy/png-rgb.png", fixture(t, "png-rgb.png"))

	r := s.run("upload", "--idempotent", "--json", dir)
	s.want("first run", r, 0)
	first := map[string]string{}
	for line := range strings.Lines(r.stdout) {
		var v struct {
			File     string
			ID       string
			Replayed bool
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil || v.ID == "" {
			t.Fatalf("upload --json line %q: %v", line, err)
		}
		first[v.File] = v.ID
	}
	if len(first) != 5 || first[filepath.Join(dir, "copy/png-rgb.png")] != first[filepath.Join(dir, "nested/png-rgb.png")] {
		t.Errorf("first run: %v", r)
	}
	if !strings.Contains(r.stderr, "4 uploaded") || !strings.Contains(r.stderr, "1 already uploaded") {
		t.Errorf("first run's summary: %q", r.stderr)
	}

	// Again: nothing new is stored, every file is accounted for.
	r = s.run("upload", "--idempotent", dir)
	s.want("second run", r, 0)
	again := uploadedIDs(t, r.stdout)
	if !maps.Equal(again, first) || strings.Count(r.stdout, "(already uploaded)") != 5 || !strings.Contains(r.stderr, "0 uploaded (0 B), 5 already uploaded") {
		t.Errorf("second run: %v", r)
	}
	if n := len(s.listJSON()); n != 4 {
		t.Errorf("%d images stored, want 4", n)
	}
	// Without --idempotent, the names are taken.
	s.want("a run without --idempotent", s.run("upload", dir), exitConflict)
	// A changed file under the same name is another upload: a conflict.
	writeFile(t, dir, "nested/png-rgb.png", fixture(t, "png-16bit.png"))
	s.want("a changed file", s.run("upload", "--idempotent", dir), exitConflict)
	if n := len(s.listJSON()); n != 4 {
		t.Errorf("%d images stored, want 4", n)
	}
}

// bigPNG is a valid PNG of more than 64 KiB.
func bigPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 160, 160))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = byte(r.Uint32())
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTooLarge(t *testing.T) {
	s := newSession(t, startServer(t, "--max-upload", "64KiB"))
	s.login("alice")
	dir := t.TempDir()
	big := writeFile(t, dir, "big.png", bigPNG(t))
	small := writeFile(t, dir, "small.png", fixture(t, "png-palette.png"))
	r := s.run("upload", big, small)
	s.want("upload too large", r, exitRefused)
	if !strings.Contains(r.stderr, "big.png: Upload too large") || !strings.Contains(r.stderr, "1 uploaded") || !strings.Contains(r.stderr, "1 failed") {
		t.Errorf("upload too large: %v", r)
	}
	id := uploadedIDs(t, r.stdout)[small]
	s.want("replace too large", s.run("replace", id, big), exitRefused)
	r = s.run("limits")
	if !strings.Contains(r.stdout, "64.0 KiB (65536 bytes)") {
		t.Errorf("limits: %v", r)
	}
}

func TestServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	s := newSession(t, down)
	s.env["IMAGESTORE_TOKEN"] = "AAAAAAAAAA"
	s.secrets = append(s.secrets, "AAAAAAAAAA")
	f := writeFile(t, t.TempDir(), "a.png", fixture(t, "png-palette.png"))
	for _, args := range [][]string{{"whoami"}, {"ls"}, {"limits"}, {"get", "abcd", "-o", "-"}, {"upload", f}, {"rm", "abcd"}, {"user", "create", "bob"}} {
		r := s.run(args...)
		s.want(strings.Join(args, " ")+" with the server down", r, exitUnavailable)
		if !strings.Contains(r.stderr, "connection refused") {
			t.Errorf("%s: %v", args, r)
		}
	}
}

func TestConfiguration(t *testing.T) {
	url := startServer(t)
	s := newSession(t, url)
	tok := s.login("alice")

	// Flags override the environment, before or after the command.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + ln.Addr().String()
	ln.Close()
	s.env["IMAGESTORE_URL"] = down
	s.want("IMAGESTORE_URL of a server down", s.run("whoami"), exitUnavailable)
	for _, args := range [][]string{{"--server", url, "whoami"}, {"whoami", "--server", url}, {"-server=" + url, "whoami"}} {
		if r := s.run(args...); r.code != 0 || !strings.Contains(r.stdout, "alice") {
			t.Errorf("%q: %v", args, r)
		}
	}
	// Without IMAGESTORE_URL nor --server: the default address.
	delete(s.env, "IMAGESTORE_URL")
	if e := (&env{getenv: func(string) string { return "" }}); e.configure() != nil || e.server != defaultServer {
		t.Errorf("the default server is %q", e.server)
	}
	s.env["IMAGESTORE_URL"] = url

	// A token given as a flag works, with a warning that does not show it.
	delete(s.env, "IMAGESTORE_TOKEN")
	r := s.run("--token", tok, "whoami")
	if r.code != 0 || !strings.Contains(r.stdout, "alice") || !strings.Contains(r.stderr, "warning: a token given with --token") {
		t.Errorf("--token: %v", r)
	}
	s.env["IMAGESTORE_TOKEN"] = "AAAAAAAAAA"
	s.secrets = append(s.secrets, "AAAAAAAAAA")
	if r := s.run("whoami", "--token", tok); r.code != 0 {
		t.Errorf("--token over IMAGESTORE_TOKEN: %v", r)
	}
	s.want("a bad token", s.run("whoami"), exitAuth)
	s.want("a bad token", s.run("ls"), exitAuth)
	// The help never shows the token.
	if r := s.run("whoami", "--token", tok, "-h"); r.code != 0 || !strings.Contains(r.stdout, "-token token") {
		t.Errorf("whoami -h: %v", r)
	}

	for _, bad := range []string{"ftp://host", "127.0.0.1:8000", "http://", "http://host/?q=1"} {
		s.env["IMAGESTORE_URL"] = bad
		s.want("server "+bad, s.run("limits"), exitUsage)
	}
}

func TestUsage(t *testing.T) {
	s := newSession(t, startServer(t))
	s.login("alice")
	for _, args := range [][]string{
		{}, {"nope"}, {"--nope", "ls"}, {"ls", "--nope"}, {"ls", "extra"}, {"user"}, {"user", "delete", "x"},
		{"token"}, {"user", "create"}, {"user", "create", "a", "b"}, {"get"}, {"get", "a", "b"},
		{"upload"}, {"upload", "--jobs", "0", "x"}, {"replace", "abcd"}, {"replace", "abcd", "f", "--name", "x", "--keep-name"},
		{"rm"}, {"rm", "--if-match", "x", "abcd", "efgh"}, {"info"}, {"whoami", "x"}, {"help", "nope"},
	} {
		r := s.run(args...)
		s.want(fmt.Sprintf("%q", args), r, exitUsage)
		if r.stdout != "" {
			t.Errorf("%q: usage error on stdout: %v", args, r)
		}
	}
	// Help, on standard output.
	for args, want := range map[string]string{
		"-h": "Exit codes:", "--help": "Commands:", "help": "IMAGESTORE_TOKEN",
		"help upload": "Usage: imagestore-cli upload", "upload -h": "--idempotent", "user create -h": "--password-stdin",
		"user -h": "user create", "token --help": "token rotate", "help get": "-o", "ls -h": "JSON Lines",
		"help replace": "--if-match", "rm -h": "ID...", "whoami -h": "whoami", "limits -h": "limits",
		"token rotate -h": "old one", "info -h": "ETag",
	} {
		r := s.run(strings.Fields(args)...)
		if r.code != 0 || !strings.Contains(r.stdout, want) || r.stderr != "" {
			t.Errorf("%s: %v, want %q in stdout", args, r, want)
		}
	}
}

// TestBinary runs the built command, for real exit codes and separate
// standard output and error.
func TestBinary(t *testing.T) {
	url := startServer(t)
	tok, err := client.New(url, "").CreateUser(t.Context(), "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + ln.Addr().String()
	ln.Close()
	data := fixture(t, "jpeg-baseline.jpg")
	file := writeFile(t, t.TempDir(), "photo.jpg", data)

	exe := func(env []string, args ...string) result {
		t.Helper()
		cmd := exec.Command(cliBinary, args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		r := result{cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()}
		if strings.Contains(r.stdout+r.stderr, tok) {
			t.Errorf("%q: the token is in the output: %v", args, r)
		}
		return r
	}
	good := []string{"IMAGESTORE_URL=" + url, "IMAGESTORE_TOKEN=" + tok}

	r := exe(good, "upload", file)
	id, _, _ := strings.Cut(r.stdout, "\t")
	if r.code != 0 || r.stdout != id+"\t"+file+"\n" || !strings.Contains(r.stderr, "1 uploaded") {
		t.Fatalf("upload: %v", r)
	}
	if r := exe(good, "get", id, "-o", "-"); r.code != 0 || r.stdout != string(data) || r.stderr != "" {
		t.Errorf("get -o -: exit %d, %d bytes, stderr %q", r.code, len(r.stdout), r.stderr)
	}
	if r := exe(good, "ls"); r.code != 0 || !strings.Contains(r.stdout, id+"  photo.jpg") || r.stderr != "" {
		t.Errorf("ls: %v", r)
	}
	for _, c := range []struct {
		env  []string
		args []string
		code int
		msg  string
	}{
		{nil, nil, exitUsage, "Usage:"},
		{good, []string{"get", "zzzz"}, exitNotFound, "imagestore-cli: zzzz: Image not found"},
		{good, []string{"upload", file}, exitConflict, "An image of that name exists"},
		{[]string{"IMAGESTORE_URL=" + url, "IMAGESTORE_TOKEN=AAAAAAAAAA"}, []string{"ls"}, exitAuth, "Token not recognized"},
		{[]string{"IMAGESTORE_URL=" + down, "IMAGESTORE_TOKEN=" + tok}, []string{"whoami"}, exitUnavailable, "connection refused"},
		{good, []string{"rm", id, id}, exitNotFound, "Image not found"},
	} {
		r := exe(c.env, c.args...)
		if r.code != c.code || r.stdout != "" || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("%q: %v\nwant exit %d and %q on stderr only", c.args, r, c.code, c.msg)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for status, want := range map[int]int{
		400: exitFailed, 401: exitAuth, 403: exitAuth, 404: exitNotFound, 406: exitRefused, 408: exitFailed,
		409: exitConflict, 412: exitConflict, 413: exitRefused, 415: exitRefused, 422: exitFailed,
		429: exitRateLimited, 500: exitUnavailable, 502: exitUnavailable, 503: exitUnavailable, 507: exitUnavailable,
	} {
		err := fmt.Errorf("doing something: %w", &client.Error{StatusCode: status})
		if got := exitCode(err); got != want {
			t.Errorf("status %d: exit %d, want %d", status, got, want)
		}
	}
	for err, want := range map[error]int{
		nil:                        exitOK,
		errors.New("disk on fire"): exitFailed,
		fmt.Errorf("%w: dial tcp: connection refused", client.ErrUnavailable): exitUnavailable,
		fmt.Errorf("%w: %q is not an image id", client.ErrNotFound, ".."):     exitNotFound,
		errNoToken: exitAuth,
	} {
		if got := exitCode(err); got != want {
			t.Errorf("%v: exit %d, want %d", err, got, want)
		}
	}
	for _, c := range []struct {
		codes []int
		want  int
	}{{nil, 0}, {[]int{5}, 5}, {[]int{6, 6}, 6}, {[]int{6, 5}, 1}} {
		if got := combine(c.codes); got != c.want {
			t.Errorf("combine(%v) = %d, want %d", c.codes, got, c.want)
		}
	}
	e := &client.Error{StatusCode: 429, Title: "Too many requests", RetryAfter: 30e9}
	if got := describe("ls", e); got != "ls: Too many requests (HTTP 429); retry after 30s" {
		t.Errorf("describe: %q", got)
	}
}

func TestRenderBar(t *testing.T) {
	for _, c := range []struct {
		files, total int
		bytes, size  int64
		want         string
	}{
		{0, 4, 0, 4096, "[          ]   0%  0/4 files  0 B / 4.0 KiB"},
		{2, 4, 2048, 4096, "[#####     ]  50%  2/4 files  2.0 KiB / 4.0 KiB"},
		{4, 4, 5000, 4096, "[##########] 100%  4/4 files  4.0 KiB / 4.0 KiB"},
		{0, 0, 0, 0, "[##########] 100%  0/0 files  0 B / 0 B"},
	} {
		if got := renderBar(10, c.files, c.total, c.bytes, c.size); got != c.want {
			t.Errorf("renderBar = %q, want %q", got, c.want)
		}
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	e := &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	for _, c := range []struct {
		args      []string
		pos       []string
		out       string
		force, ok bool
	}{
		{[]string{"-abc", "-o", "-", "--force"}, []string{"-abc"}, "-", true, true},
		{[]string{"--force", "a-_b", "-o=x", "--", "-o", "--force"}, []string{"a-_b", "-o", "--force"}, "x", true, true},
		{[]string{"-o", "-abc", "--xy"}, []string{"--xy"}, "-abc", false, true},
		{[]string{"--xy", "-", "-server", "http://h"}, []string{"--xy", "-"}, "", false, true},
		{[]string{"-abcd"}, nil, "", false, false}, // not an id: an unknown flag
		{[]string{"-o"}, nil, "", false, false},
	} {
		fs := e.flagSet("get", helpText(""))
		fs.ids = true
		out := fs.String("o", "", "")
		force := fs.Bool("force", false, "")
		pos, _, ok := e.parse(fs, c.args)
		if ok != c.ok || (ok && (!slices.Equal(pos, c.pos) || *out != c.out || *force != c.force)) {
			t.Errorf("parse(%q): %q, -o %q, --force %v, ok %v", c.args, pos, *out, *force, ok)
		}
	}
}
