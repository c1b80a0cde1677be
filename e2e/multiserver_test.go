package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imagestore/imagestore/storage/s3store/miniotest"
)

// cluster starts n server processes over one fresh bucket of the shared
// MinIO server, as several servers behind a load balancer would run.
func cluster(t *testing.T, n int) (servers []*server, restart func(i int) *server) {
	t.Helper()
	srv := miniotest.Shared(t)
	bucket, err := srv.NewBucket(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	spec := "s3://" + bucket + "/imagestore?path-style=true"
	startOne := func() *server {
		s, err := tryStartEnv(t, t.TempDir(), srv.Env(), "--store", spec)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for range n {
		servers = append(servers, startOne())
	}
	return servers, func(i int) *server { servers[i] = startOne(); return servers[i] }
}

// TestSharedBucketOneImagePerName uploads one filename through every server
// at once: exactly one upload is created, the others are told the name is
// taken, and every server lists exactly the one image.
func TestSharedBucketOneImagePerName(t *testing.T) {
	servers, _ := cluster(t, 3)
	token := servers[0].newUser("shared")
	png := fixture(t, "png-palette.png")
	for round := range 5 {
		name := fmt.Sprintf("same-%d.png", round)
		var created, taken atomic.Int32
		var wg sync.WaitGroup
		for i := range 24 {
			s := servers[i%len(servers)]
			wg.Go(func() {
				body, ct := form(formPart{"file", name, png})
				st, b, err := (&crashWorker{}).request(s.url, "POST", "/imageapi/token/"+token+"/upload-image/", body, ct)
				switch {
				case err != nil:
					t.Errorf("upload through %s: %v", s.url, err)
				case st == 201:
					created.Add(1)
				case st == 409:
					taken.Add(1)
				default:
					t.Errorf("upload through %s: %d %s", s.url, st, b)
				}
			})
		}
		wg.Wait()
		if created.Load() != 1 || taken.Load() != 23 {
			t.Fatalf("round %d: %d created and %d refused as taken, want 1 and 23", round, created.Load(), taken.Load())
		}
	}
	for _, s := range servers {
		if got := s.list(token); len(got) != 5 {
			t.Errorf("%s lists %d images, want 5: %v", s.url, len(got), got)
		}
	}
}

// TestSharedBucketOneTokenPerUser generates a token for one username
// through every server at once: exactly one is created, and it works on
// every server.
func TestSharedBucketOneTokenPerUser(t *testing.T) {
	servers, _ := cluster(t, 3)
	for round := range 3 {
		user := fmt.Sprintf("racer%d", round)
		var mu sync.Mutex
		var tokens []string
		var exists atomic.Int32
		var wg sync.WaitGroup
		for i := range 24 {
			s := servers[i%len(servers)]
			wg.Go(func() {
				st, b, err := (&crashWorker{}).request(s.url, "GET", "/imageapi/generate-token/"+user+"/", nil, "")
				switch {
				case err != nil:
					t.Errorf("generate-token through %s: %v", s.url, err)
				case st == 201:
					var v map[string]string
					json.Unmarshal(b, &v)
					mu.Lock()
					tokens = append(tokens, v["token"])
					mu.Unlock()
				case st == 409:
					exists.Add(1)
				default:
					t.Errorf("generate-token through %s: %d %s", s.url, st, b)
				}
			})
		}
		wg.Wait()
		if len(tokens) != 1 || exists.Load() != 23 {
			t.Fatalf("round %d: %d tokens created and %d refused, want 1 and 23", round, len(tokens), exists.Load())
		}
		for _, s := range servers {
			if r := s.get("/imageapi/token/" + tokens[0] + "/get-image-list/"); r.status == 401 {
				t.Errorf("the token does not work on %s: %v", s.url, r)
			}
		}
	}
}

// TestSharedBucketReadYourWritesEverywhere checks that what one server
// acknowledges, every other server serves at once: an upload is readable
// and listed, a replacement serves the new bytes (even where the old ones
// were cached decompressed), and a deletion is a 404.
func TestSharedBucketReadYourWritesEverywhere(t *testing.T) {
	servers, _ := cluster(t, 3)
	a, b, c := servers[0], servers[1], servers[2]
	token := a.newUser("everywhere")
	for i := range 10 {
		img := uniquePNGFor(7_000 + i)
		name := fmt.Sprintf("img-%d.png", i)
		id := a.uploadID(token, name, img)
		// At once, through the others: the bytes, and the list entry.
		for _, s := range []*server{b, c} {
			r := s.get("/imageapi/token/" + token + "/get-image/" + id + "/")
			if r.status != 200 || !bytes.Equal(r.body, img) {
				t.Fatalf("upload %d through %s, read through %s: %d, %d bytes", i, a.url, s.url, r.status, len(r.body))
			}
			if !listed(s.list(token), name, id) {
				t.Fatalf("upload %d through %s is not listed through %s", i, a.url, s.url)
			}
		}
		// Replace through b, after c cached the old bytes.
		newImg := uniquePNGFor(8_000 + i)
		body, ct := form(formPart{"file", "new-" + name, newImg})
		if r := b.do("PATCH", "/imageapi/token/"+token+"/update-image/"+id+"/", bytes.NewReader(body), map[string]string{"Content-Type": ct}); r.status != 200 {
			t.Fatalf("replace through %s: %v", b.url, r)
		}
		for _, s := range servers {
			r := s.get("/imageapi/token/" + token + "/get-image/" + id + "/")
			if r.status != 200 || !bytes.Equal(r.body, newImg) {
				t.Fatalf("replacement %d through %s, read through %s: %d, old bytes: %v", i, b.url, s.url, r.status, bytes.Equal(r.body, img))
			}
		}
		// Delete through c: gone everywhere.
		if r := c.do("DELETE", "/imageapi/token/"+token+"/delete-image/"+id+"/", nil, nil); r.status != 200 {
			t.Fatalf("delete through %s: %v", c.url, r)
		}
		for _, s := range servers {
			if r := s.get("/imageapi/token/" + token + "/get-image/" + id + "/"); r.status != 404 {
				t.Fatalf("deleted through %s, read through %s: %v, want 404", c.url, s.url, r)
			}
			if listed(s.list(token), "new-"+name, id) {
				t.Fatalf("deleted through %s, still listed through %s", c.url, s.url)
			}
		}
	}
}

func listed(pairs [][2]string, name, id string) bool {
	for _, p := range pairs {
		if p[0] == name && p[1] == id {
			return true
		}
	}
	return false
}

// TestSharedBucketKillOneServer runs a mixed workload spread over three
// servers, kills one with SIGKILL in the middle of it, and checks through
// the survivors, and through the killed one restarted, that every
// acknowledged write and deletion holds (the operation in flight on the
// killed server may have happened or not).
func TestSharedBucketKillOneServer(t *testing.T) {
	servers, restart := cluster(t, 3)
	seed := uint64(time.Now().UnixNano())
	const nworkers = 6
	workers := make([]*crashWorker, nworkers)
	for i := range workers {
		workers[i] = &crashWorker{n: i, token: servers[i%3].newUser(fmt.Sprintf("kill%d", i)),
			images: map[string]crashImage{}, deleted: map[string]bool{}, users: map[string]string{}}
	}
	var mu sync.Mutex
	var violations []string
	var stop atomic.Bool
	var wg sync.WaitGroup
	for i, w := range workers {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		wg.Go(func() {
			for k := 0; !stop.Load(); k++ {
				// Each request goes to the next server, as a balancer
				// would send them.
				alive, err := w.step(servers[(i+k)%3].url, r)
				if err != nil {
					mu.Lock()
					violations = append(violations, fmt.Sprintf("worker %d: %v", w.n, err))
					mu.Unlock()
					return
				}
				if !alive {
					return // its request died with the server: verified below
				}
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	killed := servers[1]
	killed.cmd.Process.Signal(syscall.SIGKILL)
	<-killed.done
	time.Sleep(1500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	acked := 0
	for _, w := range workers {
		acked += w.acked
		for _, v := range w.verify(t, servers[0]) {
			violations = append(violations, "through a survivor: "+v)
		}
	}
	// The restarted server sees the same.
	again := restart(1)
	for _, w := range workers {
		for _, v := range w.verify(t, again) {
			violations = append(violations, "through the restarted server: "+v)
		}
	}
	if acked < 20 {
		t.Errorf("only %d operations were acknowledged: the workload did not run", acked)
	}
	t.Logf("%d acknowledged operations over 3 servers, one killed; %d violations; seed %d", acked, len(violations), seed)
	for _, v := range violations {
		t.Error(v)
	}
	if t.Failed() {
		t.Log(strings.Join([]string{servers[0].stderr.String(), servers[2].stderr.String()}, "\n---\n"))
	}
}
