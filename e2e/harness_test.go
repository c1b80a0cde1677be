package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagestore/imagestore/internal/servertest"
	"github.com/imagestore/imagestore/storage/s3store/miniotest"
)

// binary is the server built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imagestore-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "imagestore")
	build := exec.Command("go", "build", "-o", binary, "../cmd/imagestore")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the server:", err)
		os.Exit(1)
	}
	code := m.Run()
	miniotest.StopShared()
	// Every request sent through client was validated against the OpenAPI
	// document (see openapi_test.go): a mismatch fails the run.
	if !oaReport(os.Stdout) && code == 0 {
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one running imagestore process.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	data   string
	stderr *servertest.Buffer
	done   chan error
}

// listenRe finds the listening address in a text or JSON log line.
var listenRe = regexp.MustCompile(`msg"?[=:]"?listening"?[ ,]"?addr"?[=:]"?([0-9.:]+)`)

// start runs the server on a free loopback port over the data folder and
// waits until it answers /healthz.
func start(t *testing.T, data string, args ...string) *server {
	t.Helper()
	s, err := tryStart(t, data, args...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tryStart(t *testing.T, data string, args ...string) (*server, error) {
	t.Helper()
	return tryStartEnv(t, data, nil, args...)
}

// tryStartEnv is tryStart with more environment variables for the server.
func tryStartEnv(t *testing.T, data string, env []string, args ...string) (*server, error) {
	t.Helper()
	s := &server{t: t, data: data, stderr: &servertest.Buffer{}, done: make(chan error, 1)}
	// Tests that are not about rate limits must not meet them: they send
	// many requests, and bad tokens on purpose, from one address.
	// Nor the free-space reserve: the machine's disk may be small.
	defaults := []string{"--addr", "127.0.0.1:0", "--data", data, "--account-rate", "0", "--auth-failure-rate", "0", "--min-free", "0"}
	s.cmd = exec.Command(binary, append(defaults, args...)...)
	s.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...) // no IMAGESTORE_* from outside
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() { s.kill() })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.done <- err
			return nil, fmt.Errorf("server exited: %v\n%s", err, s.stderr.String())
		default:
		}
		if m := listenRe.FindStringSubmatch(s.stderr.String()); m != nil {
			s.url = "http://" + m[1]
			if resp, err := http.Get(s.url + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return s, nil
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil, fmt.Errorf("server did not start:\n%s", s.stderr.String())
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Fatalf("server exited with %v\n%s", err, s.stderr.String())
		}
	case <-time.After(15 * time.Second):
		s.t.Fatal("server did not stop after SIGTERM")
	}
}

// kill ends the process with SIGKILL, as a crash would.
func (s *server) kill() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		select {
		case err := <-s.done:
			s.done <- err
		case <-time.After(5 * time.Second):
		}
	}
}

// client never follows redirects: the seed's routes must answer directly.
// Its transport validates every exchange against the OpenAPI document (see
// openapi_test.go).
var client = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       60 * time.Second,
	Transport:     oaClientTransport(),
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %q", r.status, r.body) }

func (s *server) do(method, path string, body io.Reader, header map[string]string) response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (s *server) get(path string) response { return s.do("GET", path, nil, nil) }

// form builds a multipart body: parts are written in order; a part with a
// filename is a file part.
type formPart struct {
	field, filename string
	data            []byte
}

var quoteEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

func form(parts ...formPart) (body []byte, contentType string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		if p.filename != "" {
			h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="%s"; filename="%s"`, p.field, quoteEscaper.Replace(p.filename)))
			h.Set("Content-Type", "application/octet-stream")
		} else {
			h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q`, p.field))
		}
		w, _ := mw.CreatePart(h)
		w.Write(p.data)
	}
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

func (s *server) sendForm(method, path string, parts ...formPart) response {
	s.t.Helper()
	body, ct := form(parts...)
	return s.do(method, path, bytes.NewReader(body), map[string]string{"Content-Type": ct})
}

func (s *server) upload(token, filename string, data []byte) response {
	s.t.Helper()
	return s.sendForm("POST", "/imageapi/token/"+token+"/upload-image/", formPart{"file", filename, data})
}

// newUser generates a token for username and returns it.
func (s *server) newUser(username string) string {
	s.t.Helper()
	r := s.get("/imageapi/generate-token/" + username + "/")
	if r.status != 201 {
		s.t.Fatalf("generate-token %s: %v", username, r)
	}
	var v map[string]string
	if err := json.Unmarshal(r.body, &v); err != nil {
		s.t.Fatal(err)
	}
	return v["token"]
}

// uploadID uploads and returns the new image's id.
func (s *server) uploadID(token, filename string, data []byte) string {
	s.t.Helper()
	r := s.upload(token, filename, data)
	if r.status != 201 {
		s.t.Fatalf("upload %s: %v", filename, r)
	}
	var v map[string]string
	if err := json.Unmarshal(r.body, &v); err != nil {
		s.t.Fatal(err)
	}
	return v["File ID"]
}

// list returns the user's images as ordered (name, id) pairs.
func (s *server) list(token string) [][2]string {
	s.t.Helper()
	r := s.get("/imageapi/token/" + token + "/get-image-list/")
	if r.status == 404 {
		return nil
	}
	if r.status != 200 {
		s.t.Fatalf("list: %v", r)
	}
	return orderedPairs(s.t, r.body)
}

// orderedPairs decodes a JSON object keeping its key order.
func orderedPairs(t *testing.T, b []byte) [][2]string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %q", b)
	}
	var pairs [][2]string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v string
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, [2]string{k.(string), v})
	}
	return pairs
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "imagetype", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantJSON checks a response's status, JSON content type and exact body.
func wantJSON(t *testing.T, what string, r response, status int, body string) {
	t.Helper()
	if r.status != status || string(r.body) != body {
		t.Errorf("%s: got %d %s, want %d %s", what, r.status, r.body, status, body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
}

// wantEmpty checks a status with an empty body.
func wantEmpty(t *testing.T, what string, r response, status int) {
	t.Helper()
	if r.status != status || len(r.body) != 0 {
		t.Errorf("%s: got %d %q, want %d and an empty body", what, r.status, r.body, status)
	}
}

var tokenRe = regexp.MustCompile(`^[A-Za-z0-9_-]{10}$`)
var idRe = regexp.MustCompile(`^[A-Za-z0-9_-]{4}$`)

func trimSlash(p string) string { return strings.TrimSuffix(p, "/") }

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }
