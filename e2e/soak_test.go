package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rssKiB reads a process's resident memory from /proc.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return -1
}

// TestSoak runs a mixed workload from many clients for a while, in rounds,
// and checks: no errors, every image verified at the end, and server
// memory that does not grow from round to round. IMAGESTORE_SOAK_DURATION
// (default 12s; 5m for a real soak) and IMAGESTORE_SOAK_CLIENTS (default
// 64) set its size.
func TestSoak(t *testing.T) {
	duration := 12 * time.Second
	if d, err := time.ParseDuration(os.Getenv("IMAGESTORE_SOAK_DURATION")); err == nil && d > 0 {
		duration = d
	}
	clients := 64
	if n, err := strconv.Atoi(os.Getenv("IMAGESTORE_SOAK_CLIENTS")); err == nil && n > 0 {
		clients = n
	}
	s := start(t, t.TempDir())
	const rounds = 3
	var ops, errs atomic.Int64
	var mu sync.Mutex
	var firstErrs []string
	type owned struct {
		token string
		imgs  map[string][]byte
	}
	users := make([]*owned, clients)
	for i := range users {
		users[i] = &owned{token: s.newUser(fmt.Sprintf("soak%d", i)), imgs: map[string][]byte{}}
	}
	var rss []int64
	began := time.Now()
	for round := range rounds {
		deadline := time.Now().Add(duration / rounds)
		var wg sync.WaitGroup
		for i, u := range users {
			wg.Go(func() {
				w := &crashWorker{}
				r := rand.New(rand.NewPCG(uint64(i), uint64(round)))
				seq := 0
				fail := func(f string, a ...any) {
					errs.Add(1)
					mu.Lock()
					if len(firstErrs) < 10 {
						firstErrs = append(firstErrs, fmt.Sprintf(f, a...))
					}
					mu.Unlock()
				}
				for time.Now().Before(deadline) {
					seq++
					ops.Add(1)
					ids := make([]string, 0, len(u.imgs))
					for id := range u.imgs {
						ids = append(ids, id)
					}
					switch p := r.IntN(10); {
					case p < 3 && len(u.imgs) < 20 || len(ids) == 0:
						img := uniquePNGFor(i*10_000_000 + round*1_000_000 + seq)
						body, ct := form(formPart{"f", fmt.Sprintf("s%d-%d.png", round, seq), img})
						st, b, err := w.request(s.url, "POST", "/imageapi/token/"+u.token+"/upload-image/", body, ct)
						if err != nil || st != 201 {
							fail("upload: %d %v %s", st, err, b)
							continue
						}
						var v map[string]string
						json.Unmarshal(b, &v)
						u.imgs[v["File ID"]] = img
					case p < 7:
						id := ids[r.IntN(len(ids))]
						st, b, err := w.request(s.url, "GET", "/imageapi/token/"+u.token+"/get-image/"+id+"/", nil, "")
						if err != nil || st != 200 || !bytes.Equal(b, u.imgs[id]) {
							fail("get: %d %v", st, err)
						}
					case p < 8:
						if st, _, err := w.request(s.url, "GET", "/imageapi/token/"+u.token+"/get-image-list/", nil, ""); err != nil || st != 200 {
							fail("list: %d %v", st, err)
						}
					case p < 9:
						id := ids[r.IntN(len(ids))]
						img := uniquePNGFor(-(i*10_000_000 + round*1_000_000 + seq))
						body, ct := form(formPart{"f", fmt.Sprintf("s%d-p%d.png", round, seq), img})
						st, b, err := w.request(s.url, "PATCH", "/imageapi/token/"+u.token+"/update-image/"+id+"/", body, ct)
						if err != nil || st != 200 {
							fail("patch: %d %v %s", st, err, b)
							continue
						}
						u.imgs[id] = img
					default:
						id := ids[r.IntN(len(ids))]
						if st, _, err := w.request(s.url, "DELETE", "/imageapi/token/"+u.token+"/delete-image/"+id+"/", nil, ""); err != nil || st != 200 {
							fail("delete: %d %v", st, err)
							continue
						}
						delete(u.imgs, id)
					}
				}
			})
		}
		wg.Wait()
		rss = append(rss, rssKiB(s.cmd.Process.Pid))
	}
	elapsed := time.Since(began)
	// Every image, verified.
	verified := 0
	for _, u := range users {
		list := s.list(u.token)
		if len(list) != len(u.imgs) {
			errs.Add(1)
			firstErrs = append(firstErrs, fmt.Sprintf("listed %d images, want %d", len(list), len(u.imgs)))
		}
		for id, want := range u.imgs {
			if r := s.get("/imageapi/token/" + u.token + "/get-image/" + id + "/"); !bytes.Equal(r.body, want) {
				errs.Add(1)
			}
			verified++
		}
	}
	t.Logf("soak: %d clients, %v, %d operations (%.0f/s), %d errors, %d images verified, server RSS by round: %v KiB",
		clients, elapsed.Round(time.Millisecond), ops.Load(), float64(ops.Load())/elapsed.Seconds(), errs.Load(), verified, rss)
	fmt.Printf("soak: clients=%d duration=%v operations=%d errors=%d verified=%d rss_kib=%v\n", clients, elapsed.Round(time.Second), ops.Load(), errs.Load(), verified, rss)
	if errs.Load() > 0 {
		t.Errorf("%d errors; first: %v", errs.Load(), firstErrs)
	}
	// Memory does not grow round over round: the last round may not take
	// more than half again what the first one took.
	if rss[0] > 0 && rss[rounds-1] > rss[0]*3/2 {
		t.Errorf("server memory grew from %d KiB to %d KiB over the rounds", rss[0], rss[rounds-1])
	}
}
