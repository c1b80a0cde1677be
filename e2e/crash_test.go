package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// plain is a client without the harness's document checks: the crash
// harness cuts requests off on purpose.
var plain = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 10 * time.Second}

// crashImage is what a client knows of one of its images.
type crashImage struct {
	name string
	data []byte
}

// crashOp is an operation in flight when the server died: its outcome is
// unknown, and either outcome is acceptable.
type crashOp struct {
	kind string // "upload", "patch", "delete", "user"
	id   string
	img  crashImage
	user string
}

// crashWorker is one client: it owns a user and that user's images, and
// does one request at a time, so at most one is in flight at a kill.
type crashWorker struct {
	n       int
	token   string
	images  map[string]crashImage // acknowledged
	deleted map[string]bool       // acknowledged deletions
	users   map[string]string     // acknowledged extra users: name -> token
	pending *crashOp
	seq     int
	acked   int
}

func (w *crashWorker) request(base, method, path string, body []byte, ct string) (int, []byte, error) {
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := plain.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// step does one random operation. It returns false once the server is
// gone, leaving the operation it was doing in w.pending.
func (w *crashWorker) step(base string, r *rand.Rand) (alive bool, err error) {
	w.seq++
	ids := make([]string, 0, len(w.images))
	for id := range w.images {
		ids = append(ids, id)
	}
	pick := r.IntN(100)
	switch {
	case len(ids) == 0 || pick < 45 && len(ids) < 30 || pick < 60 && len(ids) < 3:
		img := crashImage{name: fmt.Sprintf("w%d-%d.png", w.n, w.seq), data: uniquePNGFor(w.n*1_000_000 + w.seq)}
		w.pending = &crashOp{kind: "upload", img: img}
		body, ct := form(formPart{"f", img.name, img.data})
		st, b, err := w.request(base, "POST", "/imageapi/token/"+w.token+"/upload-image/", body, ct)
		if err != nil {
			return false, nil
		}
		if st != 201 {
			return true, fmt.Errorf("upload: %d %s", st, b)
		}
		var v map[string]string
		json.Unmarshal(b, &v)
		w.images[v["File ID"]] = img
	case pick < 70:
		id := ids[r.IntN(len(ids))]
		img := crashImage{name: fmt.Sprintf("w%d-p%d.png", w.n, w.seq), data: uniquePNGFor(w.n*1_000_000 + w.seq)}
		w.pending = &crashOp{kind: "patch", id: id, img: img}
		body, ct := form(formPart{"f", img.name, img.data})
		st, b, err := w.request(base, "PATCH", "/imageapi/token/"+w.token+"/update-image/"+id+"/", body, ct)
		if err != nil {
			return false, nil
		}
		if st != 200 {
			return true, fmt.Errorf("patch: %d %s", st, b)
		}
		w.images[id] = img
	case pick < 90 || len(ids) > 30:
		id := ids[r.IntN(len(ids))]
		w.pending = &crashOp{kind: "delete", id: id}
		st, b, err := w.request(base, "DELETE", "/imageapi/token/"+w.token+"/delete-image/"+id+"/", nil, "")
		if err != nil {
			return false, nil
		}
		if st != 200 {
			return true, fmt.Errorf("delete: %d %s", st, b)
		}
		delete(w.images, id)
		w.deleted[id] = true
	case pick < 95:
		user := fmt.Sprintf("w%du%d", w.n, w.seq)
		w.pending = &crashOp{kind: "user", user: user}
		st, b, err := w.request(base, "GET", "/imageapi/generate-token/"+user+"/", nil, "")
		if err != nil {
			return false, nil
		}
		if st != 201 {
			return true, fmt.Errorf("generate-token: %d %s", st, b)
		}
		var v map[string]string
		json.Unmarshal(b, &v)
		w.users[user] = v["token"]
	default:
		w.pending = nil
		st, b, err := w.request(base, "GET", "/imageapi/token/"+w.token+"/get-image-list/", nil, "")
		if err != nil {
			return false, nil
		}
		if st != 200 && st != 404 {
			return true, fmt.Errorf("list: %d %s", st, b)
		}
	}
	w.pending = nil
	w.acked++
	return true, nil
}

// verify checks, after a restart, everything the worker was told, allowing
// either outcome for the operation in flight, and then adopts the outcome.
func (w *crashWorker) verify(t *testing.T, s *server) (violations []string) {
	fail := func(f string, args ...any) {
		violations = append(violations, fmt.Sprintf("worker %d: ", w.n)+fmt.Sprintf(f, args...))
	}
	st, b, err := w.request(s.url, "GET", "/imageapi/token/"+w.token+"/get-image-list/", nil, "")
	if err != nil || (st != 200 && st != 404) {
		fail("list: %d %v", st, err)
		return
	}
	var listed [][2]string
	if st == 200 {
		listed = orderedPairs(t, b)
	}
	byID := map[string]string{}
	names := map[string]bool{}
	for _, p := range listed {
		if names[p[0]] {
			fail("name %s listed twice", p[0])
		}
		names[p[0]] = true
		byID[p[1]] = p[0]
	}
	get := func(id string) ([]byte, bool) {
		st, b, err := w.request(s.url, "GET", "/imageapi/token/"+w.token+"/get-image/"+id+"/", nil, "")
		if err != nil || st != 200 {
			fail("listed image %s (%s) cannot be read: %d %v", id, byID[id], st, err)
			return nil, false
		}
		return b, true
	}
	p := w.pending
	for id, img := range w.images {
		name, ok := byID[id]
		switch {
		case !ok && p != nil && p.kind == "delete" && p.id == id:
			delete(w.images, id) // the delete happened
			w.deleted[id] = true
			continue
		case !ok:
			fail("acknowledged image %s (%s) is gone", id, img.name)
			continue
		}
		data, ok := get(id)
		if !ok {
			continue
		}
		switch {
		case name == img.name && bytes.Equal(data, img.data):
		case p != nil && p.kind == "patch" && p.id == id && name == p.img.name && bytes.Equal(data, p.img.data):
			w.images[id] = p.img // the patch happened
		default:
			fail("image %s: listed as %s with %d bytes, acknowledged as %s with %d", id, name, len(data), img.name, len(img.data))
		}
	}
	for id, name := range byID {
		if _, known := w.images[id]; known {
			continue
		}
		if w.deleted[id] {
			fail("deleted image %s (%s) is back", id, name)
			continue
		}
		if p == nil || p.kind != "upload" || name != p.img.name {
			fail("unknown image %s (%s) listed", id, name)
			continue
		}
		if data, ok := get(id); ok {
			if !bytes.Equal(data, p.img.data) {
				fail("the upload in flight, %s, came back with other bytes", name)
			}
			w.images[id] = p.img // the upload happened
		}
	}
	for user, token := range w.users {
		st, b, err := w.request(s.url, "GET", "/imageapi/retrieve-token/"+user+"/", nil, "")
		if err != nil || st != 200 || !strings.Contains(string(b), token) {
			fail("acknowledged user %s: retrieve-token %d %s", user, st, b)
		}
	}
	if p != nil && p.kind == "user" {
		// Either outcome; if the user exists its token must work.
		st, b, _ := w.request(s.url, "GET", "/imageapi/retrieve-token/"+p.user+"/", nil, "")
		if st == 200 {
			var v map[string]string
			json.Unmarshal(b, &v)
			if st2, _, _ := w.request(s.url, "GET", "/imageapi/token/"+v[p.user]+"/get-image-list/", nil, ""); st2 == 401 {
				fail("user %s created in flight has a token that does not work", p.user)
			}
			w.users[p.user] = v[p.user]
		}
	}
	w.pending = nil
	return violations
}

// uniquePNGFor is a small valid PNG whose bytes depend on n.
func uniquePNGFor(n int) []byte {
	base, err := os.ReadFile(filepath.Join("..", "imagetype", "testdata", "png-palette.png"))
	if err != nil {
		panic(err)
	}
	data := []byte("tEXtn\x00" + strconv.Itoa(n))
	var chunk bytes.Buffer
	l := len(data) - 4
	chunk.Write([]byte{byte(l >> 24), byte(l >> 16), byte(l >> 8), byte(l)})
	chunk.Write(data)
	crc := crcIEEE(data)
	chunk.Write([]byte{byte(crc >> 24), byte(crc >> 16), byte(crc >> 8), byte(crc)})
	out := append([]byte{}, base[:33]...)
	out = append(out, chunk.Bytes()...)
	return append(out, base[33:]...)
}

// TestCrashConsistency kills the server with SIGKILL at random moments of a
// concurrent mixed workload, restarts it on the same data folder, and checks
// that every acknowledged write survived whole, every acknowledged deletion
// stayed, nothing listed lacks its bytes, no temporary file shows, and the
// uniqueness rules hold. IMAGESTORE_CRASH_CYCLES sets the number of cycles
// (default 100); IMAGESTORE_CRASH_SEED replays a run.
func TestCrashConsistency(t *testing.T) {
	cycles := 100
	if v, err := strconv.Atoi(os.Getenv("IMAGESTORE_CRASH_CYCLES")); err == nil && v > 0 {
		cycles = v
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("IMAGESTORE_CRASH_SEED"), 10, 64); err == nil {
		seed = v
	}
	r := rand.New(rand.NewPCG(seed, 1))
	data := t.TempDir()

	s := start(t, data)
	const nworkers = 4
	workers := make([]*crashWorker, nworkers)
	for i := range workers {
		workers[i] = &crashWorker{n: i, token: s.newUser(fmt.Sprintf("crash%d", i)),
			images: map[string]crashImage{}, deleted: map[string]bool{}, users: map[string]string{}}
	}
	var violations []string
	var kills atomic.Int64
	began := time.Now()
	for cycle := range cycles {
		// Run the workload, and kill the server in the middle of it.
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i, w := range workers {
			wr := rand.New(rand.NewPCG(seed, uint64(cycle*nworkers+i+2)))
			wg.Go(func() {
				for {
					alive, err := w.step(s.url, wr)
					if err != nil {
						mu.Lock()
						violations = append(violations, fmt.Sprintf("cycle %d worker %d: %v", cycle, w.n, err))
						mu.Unlock()
						return
					}
					if !alive {
						return
					}
				}
			})
		}
		time.Sleep(time.Duration(5+r.IntN(120)) * time.Millisecond)
		s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.done
		kills.Add(1)
		wg.Wait()

		// Restart, then check.
		s = start(t, data)
		if left := tempFiles(t, data); len(left) > 0 {
			violations = append(violations, fmt.Sprintf("cycle %d: temporary files after restart: %v", cycle, left))
		}
		for _, w := range workers {
			for _, v := range w.verify(t, s) {
				violations = append(violations, fmt.Sprintf("cycle %d %s", cycle, v))
			}
		}
		if len(violations) > 0 {
			break
		}
	}
	acked, images := 0, 0
	for _, w := range workers {
		acked += w.acked
		images += len(w.images)
	}
	s.stop()
	// The last word: the offline check agrees that nothing is damaged or
	// missing (orphans of the last crash are allowed: the next start sweeps
	// them).
	out, _ := runCheck(t, data)
	if strings.Contains(out, "damaged images") || strings.Contains(out, "without their bytes") {
		violations = append(violations, "check after the run: "+out)
	}
	t.Logf("crash consistency: %d cycles (SIGKILL each), %d acknowledged operations, %d images at the end, %d violations, seed %d, %v",
		kills.Load(), acked, images, len(violations), seed, time.Since(began).Round(time.Millisecond))
	fmt.Printf("crash consistency: cycles=%d acknowledged=%d violations=%d seed=%d\n", kills.Load(), acked, len(violations), seed)
	for _, v := range violations {
		t.Error(v)
	}
}

func crcIEEE(b []byte) uint32 { return crc32.ChecksumIEEE(b) }
