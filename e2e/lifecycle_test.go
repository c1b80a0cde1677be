package e2e

import (
	"bytes"
	be "encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// uniquePNG returns a small valid PNG whose bytes differ with seed: a
// private text chunk carries it.
func uniquePNG(t *testing.T, seed string) []byte {
	t.Helper()
	base := fixture(t, "png-palette.png")
	chunk := func(typ string, data []byte) []byte {
		var b bytes.Buffer
		be.Write(&b, be.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		be.Write(&b, be.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
		return b.Bytes()
	}
	// After the signature and IHDR (8 + 25 bytes).
	out := append([]byte{}, base[:33]...)
	out = append(out, chunk("tEXt", []byte("seed\x00"+seed))...)
	return append(out, base[33:]...)
}

// TestConcurrentRequests checks the invariants under many simultaneous
// requests to the real server: one token per username, one image per name,
// unique ids, nothing lost.
func TestConcurrentRequests(t *testing.T) {
	s := start(t, t.TempDir())

	t.Run("generate-token", func(t *testing.T) {
		var wg sync.WaitGroup
		statuses := make([]int, 20)
		bodies := make([]string, 20)
		for i := range 20 {
			wg.Go(func() {
				r := s.get("/imageapi/generate-token/racer/")
				statuses[i], bodies[i] = r.status, string(r.body)
			})
		}
		wg.Wait()
		created := 0
		var token string
		for i, st := range statuses {
			switch {
			case st == 201:
				created++
				fmt.Sscanf(bodies[i], `{"token":%q}`, &token)
			case st == 409 && bodies[i] == userExists:
			default:
				t.Errorf("generate-token: %d %s", st, bodies[i])
			}
		}
		if created != 1 {
			t.Fatalf("%d of 20 parallel generate-token succeeded, want exactly 1", created)
		}
		wantJSON(t, "retrieve-token", s.get("/imageapi/retrieve-token/racer/"), 200, `{"racer":"`+token+`"}`)
	})

	tok := s.newUser("parallel")
	t.Run("distinct uploads", func(t *testing.T) {
		const n = 50
		var wg sync.WaitGroup
		ids := make([]string, n)
		images := make([][]byte, n)
		for i := range n {
			images[i] = uniquePNG(t, fmt.Sprint("distinct", i))
			wg.Go(func() {
				r := s.upload(tok, fmt.Sprintf("img%02d.png", i), images[i])
				if r.status != 201 {
					t.Errorf("upload %d: %v", i, r)
					return
				}
				var v map[string]string
				json.Unmarshal(r.body, &v)
				ids[i] = v["File ID"]
			})
		}
		wg.Wait()
		list := s.list(tok)
		if len(list) != n {
			t.Fatalf("%d images listed, want %d", len(list), n)
		}
		seen := map[string]bool{}
		for i := range n {
			if seen[ids[i]] {
				t.Errorf("id %s given twice", ids[i])
			}
			seen[ids[i]] = true
			r := s.get("/imageapi/token/" + tok + "/get-image/" + ids[i] + "/")
			if !bytes.Equal(r.body, images[i]) {
				t.Errorf("image %d came back different (%d)", i, r.status)
			}
		}
	})

	t.Run("one name", func(t *testing.T) {
		const n = 50
		var wg sync.WaitGroup
		var mu sync.Mutex
		created, conflicts := 0, 0
		for i := range n {
			img := uniquePNG(t, fmt.Sprint("same", i))
			wg.Go(func() {
				r := s.upload(tok, "same.png", img)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case r.status == 201:
					created++
				case r.status == 409 && string(r.body) == fileExists:
					conflicts++
				default:
					t.Errorf("upload: %v", r)
				}
			})
		}
		wg.Wait()
		if created != 1 || conflicts != n-1 {
			t.Fatalf("%d created, %d conflicts; want 1 and %d", created, conflicts, n-1)
		}
		count := 0
		for _, p := range s.list(tok) {
			if p[0] == "same.png" {
				count++
			}
		}
		if count != 1 {
			t.Fatalf("same.png listed %d times", count)
		}
	})

	t.Run("patch races", func(t *testing.T) {
		target := s.uploadID(tok, "target.png", uniquePNG(t, "target"))
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				// Half try a name that is taken (must change nothing),
				// half a fresh one.
				name := fmt.Sprintf("patched%d.png", i)
				if i%2 == 0 {
					name = "img00.png"
				}
				r := s.sendForm("PATCH", "/imageapi/token/"+tok+"/update-image/"+target+"/", formPart{"f", name, uniquePNG(t, name)})
				if r.status != 200 && !(r.status == 409 && string(r.body) == patchExists) {
					t.Errorf("patch: %v", r)
				}
			})
		}
		wg.Wait()
		list := s.list(tok)
		names := map[string]int{}
		for _, p := range list {
			names[p[0]]++
		}
		for n, c := range names {
			if c != 1 {
				t.Errorf("name %s listed %d times", n, c)
			}
		}
		// The target still holds exactly the bytes its name says.
		i := slices.IndexFunc(list, func(p [2]string) bool { return p[1] == target })
		if i < 0 {
			t.Fatal("the patched image vanished")
		}
		r := s.get("/imageapi/token/" + tok + "/get-image/" + target + "/")
		if !bytes.Equal(r.body, uniquePNG(t, list[i][0])) {
			t.Errorf("the patched image's bytes do not match its name %s", list[i][0])
		}
	})
}

// TestRestart: what one process stored, the next serves identically.
func TestRestart(t *testing.T) {
	data := t.TempDir()
	s := start(t, data)
	tok := s.newUser("persist")
	imgs := map[string][]byte{}
	for _, f := range []string{"png-rgb.png", "jpeg-progressive.jpg", "webp-lossy.webp", "tiff-lzw.tif"} {
		imgs[s.uploadID(tok, f, fixture(t, f))] = fixture(t, f)
	}
	list := s.list(tok)
	s.stop()

	s2 := start(t, data)
	wantJSON(t, "retrieve-token after restart", s2.get("/imageapi/retrieve-token/persist/"), 200, `{"persist":"`+tok+`"}`)
	if got := s2.list(tok); !slices.Equal(got, list) {
		t.Fatalf("list after restart = %v, want %v", got, list)
	}
	for id, want := range imgs {
		if r := s2.get("/imageapi/token/" + tok + "/get-image/" + id + "/"); !bytes.Equal(r.body, want) {
			t.Errorf("image %s differs after restart", id)
		}
	}
	wantJSON(t, "generate-token after restart", s2.get("/imageapi/generate-token/persist/"), 409, userExists)
}

// TestOneProcessPerDataFolder: a second server on the same folder is
// refused with a clear message; after a crash (SIGKILL) the folder is free.
func TestOneProcessPerDataFolder(t *testing.T) {
	data := t.TempDir()
	s := start(t, data)
	out, err := exec.Command(binary, "--addr", "127.0.0.1:0", "--data", data).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another imagestore process") {
		t.Fatalf("second server: %v\n%s", err, out)
	}
	tok := s.newUser("crash")
	s.kill()
	s2 := start(t, data)
	wantJSON(t, "after a crash", s2.get("/imageapi/retrieve-token/crash/"), 200, `{"crash":"`+tok+`"}`)
}

// TestGracefulShutdown: SIGTERM lets an upload in flight finish, refuses
// new connections, and the process exits cleanly.
func TestGracefulShutdown(t *testing.T) {
	data := t.TempDir()
	s := start(t, data)
	tok := s.newUser("slow")
	img := fixture(t, "png-rgb.png")
	body, ct := form(formPart{"f", "slow.png", img})

	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", s.url+"/imageapi/token/"+tok+"/upload-image/", pr)
	req.Header.Set("Content-Type", ct)
	req.ContentLength = int64(len(body))
	result := make(chan response, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			result <- response{status: -1, body: []byte(err.Error())}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- response{resp.StatusCode, resp.Header, b}
	}()
	pw.Write(body[:len(body)/2])
	time.Sleep(200 * time.Millisecond) // the request is in flight
	s.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	// New connections are refused while the upload finishes.
	if _, err := http.Get(s.url + "/healthz"); err == nil {
		t.Error("a new connection was accepted during shutdown")
	}
	pw.Write(body[len(body)/2:])
	pw.Close()
	r := <-result
	if r.status != 201 {
		t.Fatalf("upload in flight during shutdown: %v", r)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not exit")
	}
	// Nothing partial remains, even before a restart cleans up.
	if left := tempFiles(t, data); len(left) > 0 {
		t.Errorf("temporary files after a graceful shutdown: %v", left)
	}
	s2 := start(t, data)
	if got := s2.list(tok); len(got) != 1 || got[0][0] != "slow.png" {
		t.Fatalf("after restart: %v", got)
	}
}

// TestLogsHoldNoSecrets: the access log has one line per request with the
// route pattern, and no token ever appears in the server's output.
func TestLogsHoldNoSecrets(t *testing.T) {
	s := start(t, t.TempDir(), "--log-format", "json")
	tok := s.newUser("secretive")
	id := s.uploadID(tok, "a.png", fixture(t, "png-rgb.png"))
	s.get("/imageapi/retrieve-token/secretive/")
	s.get("/imageapi/token/" + tok + "/get-image/" + id + "/")
	s.get("/imageapi/token/" + tok + "/get-image-list")
	s.sendForm("PATCH", "/imageapi/token/"+tok+"/update-image/"+id+"/", formPart{"f", "b.png", fixture(t, "png-rgb.png")})
	s.do("DELETE", "/imageapi/token/"+tok+"/delete-image/"+id+"/", nil, nil)
	wrong := "WrongTok3n"
	s.get("/imageapi/token/" + wrong + "/get-image-list/")
	s.stop()

	out := s.stderr.String()
	for _, secret := range []string{tok, wrong} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains a token %q:\n%s", secret, out)
		}
	}
	var lines int
	for _, line := range strings.Split(out, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "request" {
			continue
		}
		lines++
		for _, k := range []string{"method", "route", "status", "bytes", "duration"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("access log line without %s: %s", k, line)
			}
		}
	}
	if lines < 8 {
		t.Errorf("%d access log lines, want one per request (8)", lines)
	}
	if !regexp.MustCompile(`"route":"/imageapi/token/\{token\}/get-image/\{id\}/"`).MatchString(out) {
		t.Errorf("no access log line names the get-image route pattern:\n%s", out)
	}
}

// TestSeedHttpieCommands runs the seed's own httpie commands against the
// server. The project's test script installs httpie; without it the test
// says so and skips.
func TestSeedHttpieCommands(t *testing.T) {
	httpie, err := exec.LookPath("http")
	if err != nil {
		t.Skip("httpie is not installed (scripts/test.sh installs it): the seed's commands were not run")
	}
	s := start(t, t.TempDir())
	host := strings.TrimPrefix(s.url, "http://")
	dir := t.TempDir()
	somefile := dir + "/somefile.png"
	if err := os.WriteFile(somefile, fixture(t, "png-rgb.png"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := dir + "/other.jpg"
	os.WriteFile(other, fixture(t, "jpeg-baseline.jpg"), 0o644)
	run := func(args ...string) (string, int) {
		t.Helper()
		// --ignore-stdin: httpie reads standard input when it is not a
		// terminal, as under "go test"; the commands are otherwise the
		// seed's, word for word.
		cmd := exec.Command(httpie, append([]string{"--ignore-stdin", "--print=hb"}, args...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("http %v: %v\n%s", args, err, out)
		}
		m := regexp.MustCompile(`HTTP/1.1 (\d+)`).FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("http %v: no status line\n%s", args, out)
		}
		var status int
		fmt.Sscan(m[1], &status)
		return string(out), status
	}
	out, st := run("http://" + host + "/imageapi/generate-token/seeduser/")
	token := regexp.MustCompile(`"token":"([^"]+)"`).FindStringSubmatch(out)
	if st != 201 || token == nil {
		t.Fatalf("generate-token: %d\n%s", st, out)
	}
	tok := token[1]
	if out, st = run("http://" + host + "/imageapi/retrieve-token/seeduser/"); st != 200 || !strings.Contains(out, tok) {
		t.Fatalf("retrieve-token: %d\n%s", st, out)
	}
	out, st = run("-f", "POST", "http://"+host+"/imageapi/token/"+tok+"/upload-image/", "somename@somefile.png")
	idm := regexp.MustCompile(`"File ID":"([^"]+)"`).FindStringSubmatch(out)
	if st != 201 || idm == nil {
		t.Fatalf("upload-image: %d\n%s", st, out)
	}
	id := idm[1]
	if out, st = run("http://" + host + "/imageapi/token/" + tok + "/get-image/" + id + "/"); st != 200 || !strings.Contains(out, "image/png") {
		t.Fatalf("get-image: %d\n%s", st, out)
	}
	if out, st = run("http://" + host + "/imageapi/token/" + tok + "/get-image-list/"); st != 200 || !strings.Contains(out, `{"somefile.png":"`+id+`"}`) {
		t.Fatalf("get-image-list: %d\n%s", st, out)
	}
	if out, st = run("-f", "PATCH", "http://"+host+"/imageapi/token/"+tok+"/update-image/"+id+"/", "somename@other.jpg"); st != 200 {
		t.Fatalf("update-image: %d\n%s", st, out)
	}
	if out, st = run("http://" + host + "/imageapi/token/" + tok + "/get-image-list/"); !strings.Contains(out, `{"other.jpg":"`+id+`"}`) {
		t.Fatalf("get-image-list after patch: %d\n%s", st, out)
	}
	if out, st = run("-f", "DELETE", "http://"+host+"/imageapi/token/"+tok+"/delete-image/"+id+"/"); st != 200 {
		t.Fatalf("delete-image: %d\n%s", st, out)
	}
	if out, st = run("http://" + host + "/imageapi/token/" + tok + "/get-image-list/"); st != 404 {
		t.Fatalf("get-image-list after delete: %d\n%s", st, out)
	}
}

// TestRestartSweepsOrphans: bytes a crash left without an index entry are
// removed after a restart; listed images are untouched.
func TestRestartSweepsOrphans(t *testing.T) {
	data := t.TempDir()
	s := start(t, data)
	tok := s.newUser("orphans")
	png := fixture(t, "png-rgb.png")
	id := s.uploadID(tok, "kept.png", png)
	s.kill()

	blobs, _ := filepath.Glob(filepath.Join(data, "objects", "blobs", "*", "*.gz"))
	if len(blobs) != 1 {
		t.Fatalf("%d blobs, want 1", len(blobs))
	}
	orphan := filepath.Join(filepath.Dir(blobs[0]), "0123456789abcdef0123456789abcdef.gz")
	if err := os.WriteFile(orphan, []byte("left by a crash"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	os.Chtimes(orphan, old, old)

	s2 := start(t, data)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(orphan); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the orphan was not removed:\n%s", s2.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := s2.get("/imageapi/token/" + tok + "/get-image/" + id + "/"); !bytes.Equal(r.body, png) {
		t.Fatalf("the listed image changed: %d", r.status)
	}
}

// The profiler is served on its own listener when asked for, never on the
// API's.
func TestDebugListener(t *testing.T) {
	s := start(t, t.TempDir(), "--debug-addr", "127.0.0.1:0")
	if r := s.get("/debug/pprof/"); r.status != 404 {
		t.Errorf("API listener serves the profiler: %v", r)
	}
	m := regexp.MustCompile(`msg"?[=:]"?"?serving the profiler"? "?addr"?[=:]"?([0-9.:]+)`).FindStringSubmatch(s.stderr.String())
	if m == nil {
		t.Fatalf("no profiler address logged:\n%s", s.stderr.String())
	}
	resp, err := http.Get("http://" + m[1] + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "goroutine profile") {
		t.Errorf("profiler: %d %.200s", resp.StatusCode, body)
	}
}
