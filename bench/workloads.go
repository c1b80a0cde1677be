package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// workloads lists every workload in the order they run.
func (b *bench) workloads() []workload {
	get := []string{"wrk", "nginx"}
	plain := []string{"wrk", "nginx", "fileserver"}
	return append([]workload{
		{"get-100k-gzip", get, true, func(ctx context.Context) error { return b.getFixed(ctx, "get-100k-gzip", "photo.jpg", true) }},
		{"get-100k-plain", plain, true, func(ctx context.Context) error { return b.getFixed(ctx, "get-100k-plain", "photo.jpg", false) }},
		{"get-1m-gzip", get, true, func(ctx context.Context) error { return b.getFixed(ctx, "get-1m-gzip", "big.png", true) }},
		{"get-1m-plain", plain, true, func(ctx context.Context) error { return b.getFixed(ctx, "get-1m-plain", "big.png", false) }},
		{"get-random-10k-plain", plain, true, func(ctx context.Context) error { return b.getRandom(ctx, "get-random-10k-plain", false) }},
		{"get-random-10k-gzip", get, true, func(ctx context.Context) error { return b.getRandom(ctx, "get-random-10k-gzip", true) }},
		{"upload-100k", nil, true, func(ctx context.Context) error { return b.uploads(ctx, "upload-100k", false) }},
		{"upload-100k-users", nil, true, func(ctx context.Context) error { return b.uploads(ctx, "upload-100k-users", true) }},
		{"patch-100k", nil, true, b.patches},
		{"delete", nil, true, b.deletes},
		{"list-10k", nil, true, func(ctx context.Context) error { return b.lists(ctx, "list-10k", false) }},
		{"list-10k-v1-page", nil, true, func(ctx context.Context) error { return b.lists(ctx, "list-10k-v1-page", true) }},
		{"upload-100k-10k-list", nil, true, b.uploadsIntoSet},
		{"generate-token", nil, true, b.generateTokens},
		{"big-upload-20m", nil, false, b.bigUploads},
		{"startup-100k", nil, false, b.startupRun},
	}, b.s3Workloads()...)
}

// Targets of the reference runs.
const (
	refGzipStatic = "nginx gzip_static"
	refStatic     = "nginx static"
	refGunzip     = "nginx gunzip"
	refFileServer = "go FileServer"
	refDurable    = "durable write loop"
	serverTarget  = "imagestore"
)

// newUser creates a user with a unique name on the shared server.
func (b *bench) newUser(ctx context.Context, prefix string) (string, error) {
	b.users++
	return b.srv.newUser(ctx, fmt.Sprintf("%s_%d", prefix, b.users))
}

// startProfile fetches a CPU profile of the server for the length of a
// run, if -profile was given; the returned function waits for it. run is
// the run's number in a repeated comparison (1, 2, ...), or 0.
func (b *bench) startProfile(ctx context.Context, srv *server, workload string, conc, run int) func() {
	if b.opts.profileDir == "" || srv.debugBase == "" {
		return func() {}
	}
	secs := max(1, int(b.opts.duration/time.Second))
	name := fmt.Sprintf("%s-c%d", workload, conc)
	if run > 0 && b.opts.repeat > 1 {
		name += fmt.Sprintf("-run%d", run)
	}
	path := filepath.Join(b.opts.profileDir, name+".pprof")
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", srv.debugBase, secs), nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				msg, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
				return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
			}
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, resp.Body); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		}()
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "warning: CPU profile for %s c=%d: %v\n", workload, conc, err)
		}
	}()
	return func() { <-done }
}

// serverLoad runs a Go-generated load against a server and measures it.
func (b *bench) serverLoad(ctx context.Context, srv *server, workload string, spec loadSpec) (*result, *loadStats, *errorReport, error) {
	spec.name = fmt.Sprintf("%s c=%d", workload, spec.conc)
	spec.sameAddress = b.opts.sameAddress
	waitProfile := func() {}
	if !spec.noProfile {
		waitProfile = b.startProfile(ctx, srv, workload, spec.conc, spec.run)
	}
	u := measure([]int{srv.pid()}, true)
	st, report, err := runLoad(ctx, spec)
	cpu, rss := u.stop()
	waitProfile()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := srv.alive(); err != nil {
		return nil, nil, nil, err
	}
	r := fromLoad(workload, serverTarget, "go", spec.conc, st)
	r.CPUPercent, r.PeakRSS = cpu, rss
	return r, st, report, nil
}

// serverWrk runs wrk against the shared server and measures it; rep is
// the run's index in a repeated comparison (0, 1, ...; see compare).
func (b *bench) serverWrk(ctx context.Context, workload string, rep int, run wrkRun) (*result, error) {
	waitProfile := b.startProfile(ctx, b.srv, workload, run.conc, rep+1)
	u := measure([]int{b.srv.pid()}, true)
	w, err := runWrk(ctx, run)
	cpu, rss := u.stop()
	waitProfile()
	if err != nil {
		return nil, err
	}
	if err := b.srv.alive(); err != nil {
		return nil, err
	}
	r := fromWrk(workload, serverTarget, run.conc, run.duration, w)
	r.CPUPercent, r.PeakRSS = cpu, rss
	return r, nil
}

// refWrk runs wrk against a reference, nginx or the Go file server, and
// measures it.
func (b *bench) refWrk(ctx context.Context, workload, target string, run wrkRun) (*result, error) {
	var pids []int
	if target == refFileServer {
		pids = []int{b.gofs.pid()}
	} else {
		pids = b.ng.pids()
	}
	u := measure(pids, true)
	w, err := runWrk(ctx, run)
	cpu, rss := u.stop()
	if err != nil {
		return nil, err
	}
	if target == refFileServer {
		if err := b.gofs.alive(); err != nil {
			return nil, err
		}
	}
	r := fromWrk(workload, target, run.conc, run.duration, w)
	r.CPUPercent, r.PeakRSS = cpu, rss
	return r, nil
}

// refWrkRun returns a measurement of a reference by wrk, for compare.
func (b *bench) refWrkRun(workload, target string, run wrkRun) measurement {
	return func(ctx context.Context, _ int) (*result, error) { return b.refWrk(ctx, workload, target, run) }
}

// durableRef runs the durable-write loop.
func (b *bench) durableRef(ctx context.Context, workload string, conc int) (*result, error) {
	u := measure([]int{os.Getpid()}, false)
	st, err := durableLoop(ctx, filepath.Join(b.tmp, fmt.Sprintf("durable-c%d", conc)), conc, b.opts.duration, b.fx.photo)
	cpu, _ := u.stop()
	if err != nil {
		return nil, err
	}
	r := fromLoad(workload, refDurable, "loop", conc, st)
	r.CPUPercent = cpu
	return r, nil
}

// checkGet fetches url once and compares the (decoded) body with want. It
// reports whether the response was gzip-encoded; a gzip-encoded answer to
// a client that did not accept gzip is an error.
func checkGet(ctx context.Context, url string, headers []string, want []byte) (gzipped bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	acceptsGzip := false
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		acceptsGzip = acceptsGzip || strings.EqualFold(strings.TrimSpace(k), "Accept-Encoding") && strings.Contains(v, "gzip")
	}
	resp, err := (&http.Client{Transport: newTransport(1, nil), Timeout: time.Minute}).Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s: %s", url, resp.Status, tail(string(body), 300))
	}
	if resp.Header.Get("Content-Encoding") == "gzip" {
		if !acceptsGzip {
			return true, fmt.Errorf("GET %s: a gzip-encoded answer to a client that did not accept gzip", url)
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return true, fmt.Errorf("GET %s: bad gzip: %v", url, err)
		}
		if body, err = io.ReadAll(zr); err != nil {
			return true, fmt.Errorf("GET %s: bad gzip: %v", url, err)
		}
		gzipped = true
	}
	if !bytes.Equal(body, want) {
		return gzipped, fmt.Errorf("GET %s: %d bytes that differ from the %d uploaded", url, len(body), len(want))
	}
	return gzipped, nil
}

// checkGets checks the server's and the references' answers before a GET
// workload is measured, so that no figure comes from error pages. The
// server not using gzip is worth a note; nginx not using it is a broken
// set-up.
func (b *bench) checkGets(ctx context.Context, workload, serverURL string, refURLs map[string]string, headers []string, want []byte) error {
	gz, err := checkGet(ctx, serverURL, headers, want)
	if err != nil {
		return fmt.Errorf("the server's answer: %w", err)
	}
	accepts := len(headers) > 0
	if accepts && !gz {
		b.note("%s: the server answered a client that accepts gzip without gzip", workload)
	}
	for target, u := range refURLs {
		gz, err := checkGet(ctx, u, headers, want)
		if err != nil {
			logs := func() string { return b.ng.logs() }
			if target == refFileServer {
				logs = b.gofs.logs
			}
			return fmt.Errorf("%s's answer (its log: %s): %w", target, logs(), err)
		}
		if accepts && !gz && target == refGzipStatic {
			return fmt.Errorf("%s answered %s without gzip", target, u)
		}
	}
	return nil
}

// getFixed measures GETs of one image, photo.jpg (100 KB) or big.png
// (1 MB), with or without Accept-Encoding: gzip, beside nginx and, without
// gzip, beside Go's http.FileServer.
func (b *bench) getFixed(ctx context.Context, workload, file string, gz bool) error {
	data, ctype := b.fx.photo, "image/jpeg"
	if file == "big.png" {
		data, ctype = b.fx.bigPNG, "image/png"
	}
	token, err := b.newUser(ctx, "get")
	if err != nil {
		return err
	}
	id, err := b.srv.upload(ctx, token, file, ctype, data)
	if err != nil {
		return err
	}
	var headers []string
	type ref struct{ target, url string }
	refs := []ref{{refStatic, b.ng.url(nginxPlainPrefix + file)}}
	if gz {
		headers = []string{"Accept-Encoding: gzip"}
		refs = []ref{{refGzipStatic, b.ng.url(nginxGzipPrefix + file)}}
	} else {
		if file == "photo.jpg" {
			refs = append(refs, ref{refGunzip, b.ng.url(nginxGunzipPrefix + file)})
		}
		refs = append(refs, ref{refFileServer, b.gofs.url("/" + file)})
	}
	serverURL := b.srv.seedURL("token/%s/get-image/%s/", token, id)
	refURLs := map[string]string{}
	for _, r := range refs {
		refURLs[r.target] = r.url
	}
	if err := b.checkGets(ctx, workload, serverURL, refURLs, headers, data); err != nil {
		return err
	}
	for _, c := range b.opts.concs {
		server := func(ctx context.Context, rep int) (*result, error) {
			return b.serverWrk(ctx, workload, rep, wrkRun{url: serverURL, headers: headers, conc: c, duration: b.opts.duration})
		}
		var ms []measurement
		for _, r := range refs {
			ms = append(ms, b.refWrkRun(workload, r.target, wrkRun{url: r.url, headers: headers, conc: c, duration: b.opts.duration}))
		}
		if err := b.compare(ctx, server, ms...); err != nil {
			return err
		}
	}
	return nil
}

// imageSet is one user's images uploaded for the read workloads.
type imageSet struct {
	token string
	ids   []string
}

// seedImages uploads n images to a server at concurrency conc: image i
// goes to tokens[i % len(tokens)] as file(i). Any failed upload stops the
// seeding with an error. It returns the ids in order and the run's result.
func (b *bench) seedImages(ctx context.Context, srv *server, workload string, tokens []string, n, conc int, profile bool, file func(i int) (name string, data []byte)) ([]string, *result, error) {
	ids := make([]string, n)
	var next, done atomic.Int64
	var failed atomic.Bool
	urls := make([]string, len(tokens))
	for i, t := range tokens {
		urls[i] = srv.seedURL("token/%s/upload-image/", t)
	}
	spec := loadSpec{
		conc:      conc,
		noProfile: !profile,
		next: func(worker, iter int) (*call, bool) {
			i := int(next.Add(1) - 1)
			if i >= n || failed.Load() {
				return nil, false
			}
			name, data := file(i)
			parts, ct := multipartBody(name, "image/png", data)
			return &call{
				method: http.MethodPost, url: urls[i%len(urls)], body: parts, want: http.StatusCreated,
				header: http.Header{"Content-Type": {ct}},
				onOK: func(body []byte) {
					var out struct {
						ID string `json:"File ID"`
					}
					if json.Unmarshal(body, &out) != nil || out.ID == "" {
						failed.Store(true)
						return
					}
					ids[i] = out.ID
					done.Add(1)
				},
			}, true
		},
	}
	// Progress every 10 s: seeding a large set takes a while.
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		start := time.Now()
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-tick.C:
				d := done.Load()
				fmt.Fprintf(os.Stderr, "  %s: %d/%d uploaded (%.0f/s)\n", workload, d, n, float64(d)/time.Since(start).Seconds())
			}
		}
	}()
	r, st, report, err := b.serverLoad(ctx, srv, workload, spec)
	close(stopProgress)
	<-progressDone
	if err != nil {
		return nil, nil, err
	}
	if st.errors > 0 || failed.Load() || done.Load() != int64(n) {
		return nil, nil, fmt.Errorf("seeding failed: %d of %d uploads succeeded, %d errors; first: %s", done.Load(), n, st.errors, report.first())
	}
	return ids, r, nil
}

// ensureSeeded uploads the image set of get-random and list once, at
// concurrency 64 into one user, and records it as a result of its own.
func (b *bench) ensureSeeded(ctx context.Context) (*imageSet, error) {
	if b.seeded != nil {
		return b.seeded, nil
	}
	token, err := b.newUser(ctx, "set")
	if err != nil {
		return nil, err
	}
	n := b.opts.listImages
	fmt.Fprintf(os.Stderr, "seeding %d images into one user at concurrency 64...\n", n)
	ids, r, err := b.seedImages(ctx, b.srv, "seed-10k", []string{token}, n, 64, true, func(i int) (string, []byte) {
		return fmt.Sprintf("r-%d.png", i), randomSetPNG(i)
	})
	if err != nil {
		return nil, err
	}
	b.add(r)
	b.note("seed-10k: %d distinct PNGs of about %d bytes uploaded into one user at concurrency 64 in %.1f s (%s uploads/s)",
		n, len(randomSetPNG(0)), r.Seconds, fmtRPS(r.RPS))
	b.seeded = &imageSet{token: token, ids: ids}
	return b.seeded, nil
}

// getRandom measures GETs spread at random over the seeded image set,
// beside nginx serving the same images as files and, without gzip, beside
// Go's http.FileServer serving them too.
func (b *bench) getRandom(ctx context.Context, workload string, gz bool) error {
	set, err := b.ensureSeeded(ctx)
	if err != nil {
		return err
	}
	var headers []string
	target, nginxPrefix := refStatic, nginxPlainPrefix+"r/"
	if gz {
		headers = []string{"Accept-Encoding: gzip"}
		target, nginxPrefix = refGzipStatic, nginxGzipPrefix+"r/"
	}
	serverPaths := make([]string, len(set.ids))
	nginxPaths := make([]string, len(set.ids))
	filePaths := make([]string, len(set.ids))
	for i, id := range set.ids {
		serverPaths[i] = fmt.Sprintf("/imageapi/token/%s/get-image/%s/", set.token, id)
		nginxPaths[i] = fmt.Sprintf("%s%d.png", nginxPrefix, i)
		filePaths[i] = fmt.Sprintf("/r/%d.png", i)
	}
	refURLs := map[string]string{target: b.ng.url(nginxPaths[0])}
	if !gz {
		refURLs[refFileServer] = b.gofs.url(filePaths[0])
	}
	if err := b.checkGets(ctx, workload, b.srv.base+serverPaths[0], refURLs, headers, randomSetPNG(0)); err != nil {
		return err
	}
	dir := filepath.Join(b.tmp, "wrk")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	serverScript, err := writeRandomScript(dir, workload+"-server", serverPaths, headers)
	if err != nil {
		return err
	}
	nginxScript, err := writeRandomScript(dir, workload+"-nginx", nginxPaths, headers)
	if err != nil {
		return err
	}
	fileScript := ""
	if !gz {
		if fileScript, err = writeRandomScript(dir, workload+"-fileserver", filePaths, headers); err != nil {
			return err
		}
	}
	for _, c := range b.opts.concs {
		server := func(ctx context.Context, rep int) (*result, error) {
			return b.serverWrk(ctx, workload, rep, wrkRun{url: b.srv.base + "/", script: serverScript, conc: c, duration: b.opts.duration})
		}
		refs := []measurement{b.refWrkRun(workload, target, wrkRun{url: b.ng.url("/"), script: nginxScript, conc: c, duration: b.opts.duration})}
		if fileScript != "" {
			refs = append(refs, b.refWrkRun(workload, refFileServer, wrkRun{url: b.gofs.url("/"), script: fileScript, conc: c, duration: b.opts.duration}))
		}
		if err := b.compare(ctx, server, refs...); err != nil {
			return err
		}
	}
	return nil
}

// durableRun returns a measurement of the durable loop, for compare.
func (b *bench) durableRun(workload string, conc int) measurement {
	return func(ctx context.Context, _ int) (*result, error) { return b.durableRef(ctx, workload, conc) }
}

// uploads measures uploads of the 100 KB JPEG with unique names, every
// client into one user or each into its own, beside the durable loop.
// Each run uploads into new users, so that every run starts alike.
func (b *bench) uploads(ctx context.Context, workload string, userPerClient bool) error {
	return b.uploadRuns(ctx, workload, func(ctx context.Context, c int) ([]string, error) {
		users := 1
		if userPerClient {
			users = c
		}
		urls := make([]string, users)
		for i := range urls {
			token, err := b.newUser(ctx, "up")
			if err != nil {
				return nil, err
			}
			urls[i] = b.srv.seedURL("token/%s/upload-image/", token)
		}
		return urls, nil
	})
}

// uploadsIntoSet measures uploads of the 100 KB JPEG with unique names into
// the user of the seeded image set (10,000 images at first, more after
// each run), beside the durable loop: what a user's long list costs each
// upload.
func (b *bench) uploadsIntoSet(ctx context.Context) error {
	set, err := b.ensureSeeded(ctx)
	if err != nil {
		return err
	}
	url := b.srv.seedURL("token/%s/upload-image/", set.token)
	return b.uploadRuns(ctx, "upload-100k-10k-list", func(context.Context, int) ([]string, error) {
		return []string{url}, nil
	})
}

// uploadRuns measures, at each concurrency c, uploads of the 100 KB JPEG
// with unique names, client w sending to urls[w % len(urls)] (urls as
// made for each run), beside the durable loop.
func (b *bench) uploadRuns(ctx context.Context, workload string, urlsFor func(ctx context.Context, c int) ([]string, error)) error {
	for _, c := range b.opts.concs {
		server := func(ctx context.Context, rep int) (*result, error) {
			urls, err := urlsFor(ctx, c)
			if err != nil {
				return nil, err
			}
			spec := loadSpec{conc: c, duration: b.opts.duration, run: rep + 1, next: func(w, i int) (*call, bool) {
				parts, ct := multipartBody(fmt.Sprintf("u-%d-%d-%d-%d.jpg", c, rep, w, i), "image/jpeg", b.fx.photo)
				return &call{method: http.MethodPost, url: urls[w%len(urls)], body: parts, want: http.StatusCreated,
					header: http.Header{"Content-Type": {ct}}}, true
			}}
			r, _, _, err := b.serverLoad(ctx, b.srv, workload, spec)
			return r, err
		}
		if err := b.compare(ctx, server, b.durableRun(workload, c)); err != nil {
			return err
		}
	}
	return nil
}

// patches measures replacements: each client replaces its own image again
// and again with the 100 KB JPEG under a new name, all in one user (a new
// one for each run), beside the durable loop.
func (b *bench) patches(ctx context.Context) error {
	for _, c := range b.opts.concs {
		server := func(ctx context.Context, rep int) (*result, error) {
			token, err := b.newUser(ctx, "patch")
			if err != nil {
				return nil, err
			}
			urls := make([]string, c)
			for w := range c {
				id, err := b.srv.upload(ctx, token, fmt.Sprintf("pre-%d.jpg", w), "image/jpeg", b.fx.photo)
				if err != nil {
					return nil, err
				}
				urls[w] = b.srv.seedURL("token/%s/update-image/%s/", token, id)
			}
			spec := loadSpec{conc: c, duration: b.opts.duration, run: rep + 1, next: func(w, i int) (*call, bool) {
				parts, ct := multipartBody(fmt.Sprintf("p-%d-%d.jpg", w, i), "image/jpeg", b.fx.photo)
				return &call{method: http.MethodPatch, url: urls[w], body: parts, want: http.StatusOK,
					header: http.Header{"Content-Type": {ct}}}, true
			}}
			r, _, _, err := b.serverLoad(ctx, b.srv, "patch-100k", spec)
			return r, err
		}
		if err := b.compare(ctx, server, b.durableRun("patch-100k", c)); err != nil {
			return err
		}
	}
	return nil
}

// deletes uploads a fixed number of images into one user, then measures
// deleting them all with c clients.
func (b *bench) deletes(ctx context.Context) error {
	n := b.opts.deleteImages
	for _, c := range b.opts.concs {
		token, err := b.newUser(ctx, "del")
		if err != nil {
			return err
		}
		ids, seed, err := b.seedImages(ctx, b.srv, "delete-seed", []string{token}, n, 64, false, func(i int) (string, []byte) {
			return fmt.Sprintf("d-%d.png", i), tinyPNG(i)
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "  delete c=%d: uploaded %d images at concurrency 64 in %.1f s (%s/s)\n", c, n, seed.Seconds, fmtRPS(seed.RPS))
		var next atomic.Int64
		spec := loadSpec{conc: c, next: func(w, i int) (*call, bool) {
			k := int(next.Add(1) - 1)
			if k >= n {
				return nil, false
			}
			return &call{method: http.MethodDelete, url: b.srv.seedURL("token/%s/delete-image/%s/", token, ids[k]), want: http.StatusOK}, true
		}}
		r, _, _, err := b.serverLoad(ctx, b.srv, "delete", spec)
		if err != nil {
			return err
		}
		b.add(r)
	}
	return nil
}

// lists measures listing the seeded user's images: the whole list by the
// seed route, or the first page of /api/v1/images.
func (b *bench) lists(ctx context.Context, workload string, v1 bool) error {
	set, err := b.ensureSeeded(ctx)
	if err != nil {
		return err
	}
	url := b.srv.seedURL("token/%s/get-image-list/", set.token)
	var header http.Header
	wantCount := len(set.ids)
	if v1 {
		url = b.srv.base + "/api/v1/images?limit=100"
		header = http.Header{"Authorization": {"Bearer " + set.token}}
		wantCount = min(100, len(set.ids))
	}
	// One listing first, to check that it holds what was uploaded.
	var count int
	chk := &call{method: http.MethodGet, url: url, header: header, want: http.StatusOK, onOK: func(body []byte) {
		if v1 {
			var page struct {
				Images []json.RawMessage `json:"images"`
			}
			if json.Unmarshal(body, &page) == nil {
				count = len(page.Images)
			}
			return
		}
		var m map[string]string
		if json.Unmarshal(body, &m) == nil {
			count = len(m)
		}
	}}
	if _, _, err := do(ctx, &http.Client{Transport: newTransport(1, nil)}, chk); err != nil {
		return err
	}
	if count != wantCount {
		return fmt.Errorf("the listing holds %d images, want %d", count, wantCount)
	}
	for _, c := range b.opts.concs {
		spec := loadSpec{conc: c, duration: b.opts.duration, next: func(w, i int) (*call, bool) {
			return &call{method: http.MethodGet, url: url, header: header, want: http.StatusOK}, true
		}}
		r, _, _, err := b.serverLoad(ctx, b.srv, workload, spec)
		if err != nil {
			return err
		}
		b.add(r)
	}
	return nil
}

// generateTokens measures creating users by the seed route.
func (b *bench) generateTokens(ctx context.Context) error {
	for _, c := range b.opts.concs {
		b.users++
		prefix := fmt.Sprintf("gt%d", b.users)
		spec := loadSpec{conc: c, duration: b.opts.duration, next: func(w, i int) (*call, bool) {
			return &call{method: http.MethodGet, url: b.srv.seedURL("generate-token/%s_%d_%d/", prefix, w, i), want: http.StatusCreated}, true
		}}
		r, _, _, err := b.serverLoad(ctx, b.srv, "generate-token", spec)
		if err != nil {
			return err
		}
		b.add(r)
	}
	return nil
}

// bigUploads sends the 20 MiB BMP from 64 clients at once into one user,
// for the server's peak memory. It uses a server process of its own, on a
// new data folder: the shared one still holds what the workloads before
// it left in memory (caches, a heap grown for them), which would say
// nothing about what these uploads need.
func (b *bench) bigUploads(ctx context.Context) error {
	const conc = 64
	srv, err := startServer(ctx, b.bin, filepath.Join(b.tmp, "big-data"), filepath.Join(b.tmp, "big.log"), b.opts.serverFlags, b.opts.profileDir != "")
	if err != nil {
		return err
	}
	defer func() {
		srv.stop(10 * time.Second)
		os.RemoveAll(filepath.Join(b.tmp, "big-data")) // 2.7 GB
	}()
	token, err := srv.newUser(ctx, "big")
	if err != nil {
		return err
	}
	url := srv.seedURL("token/%s/upload-image/", token)
	before, _ := currentRSS(srv.pid())
	rounds := b.opts.bigRounds
	spec := loadSpec{conc: conc, next: func(w, i int) (*call, bool) {
		if i >= rounds {
			return nil, false
		}
		parts, ct := multipartBody(fmt.Sprintf("big-%d-%d.bmp", w, i), "image/bmp", b.fx.bmp20MiB)
		return &call{method: http.MethodPost, url: url, body: parts, want: http.StatusCreated,
			header: http.Header{"Content-Type": {ct}}}, true
	}}
	r, st, _, err := b.serverLoad(ctx, srv, "big-upload-20m", spec)
	if err != nil {
		return err
	}
	r.MBps = float64(st.sent) / st.elapsed.Seconds() / 1e6
	b.add(r)
	b.note("big-upload-20m: %d uploads of %d bytes (%d round(s) of %d at once) in %.1f s: %.0f MB/s; server RSS %s before, peak %s during",
		st.requests, len(b.fx.bmp20MiB), rounds, conc, st.elapsed.Seconds(), r.MBps, fmtBytes(before), fmtBytes(r.PeakRSS))
	return nil
}

// startup fills a data folder through a server of its own, stops it, and
// measures how long a new process on that folder takes to serve.
func (b *bench) startupRun(ctx context.Context) error {
	const users = 100
	n := b.opts.startupImages
	data := filepath.Join(b.tmp, "startup-data")
	s1, err := startServer(ctx, b.bin, data, filepath.Join(b.tmp, "startup-1.log"), b.opts.serverFlags, false)
	if err != nil {
		return err
	}
	defer s1.kill()
	tokens := make([]string, users)
	for i := range tokens {
		if tokens[i], err = s1.newUser(ctx, fmt.Sprintf("start_%d", i)); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "uploading %d images into %d users at concurrency 64...\n", n, users)
	_, seed, err := b.seedImages(ctx, s1, "startup-seed", tokens, n, 64, false, func(i int) (string, []byte) {
		return fmt.Sprintf("s-%d.png", i), tinyPNG(i)
	})
	if err != nil {
		return err
	}
	b.add(seed)
	t0 := time.Now()
	if err := s1.stop(2 * time.Minute); err != nil {
		return err
	}
	stopTime := time.Since(t0)

	s2, err := launchServer(b.bin, data, filepath.Join(b.tmp, "startup-2.log"), b.opts.serverFlags, false)
	if err != nil {
		return err
	}
	defer s2.kill()
	ready, err := s2.waitReady(ctx, 10*time.Minute)
	if err != nil {
		return err
	}
	// The first list of a user: the first request that needs the data.
	url := s2.seedURL("token/%s/get-image-list/", tokens[0])
	wantCount := (n + users - 1) / users // images go round the users, user 0 first
	var count int
	var listed time.Duration
	client := &http.Client{Transport: newTransport(1, nil), Timeout: time.Minute}
	for {
		c := &call{method: http.MethodGet, url: url, want: http.StatusOK, onOK: func(body []byte) {
			var m map[string]string
			json.Unmarshal(body, &m)
			count = len(m)
		}}
		if _, _, err := do(ctx, client, c); err == nil {
			listed = time.Since(s2.started)
			break
		} else if time.Since(s2.started) > 10*time.Minute {
			return fmt.Errorf("no successful list within 10 minutes of start-up: %v", err)
		}
		if err := s2.alive(); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
	if count != wantCount {
		return fmt.Errorf("after the restart, user 0 lists %d images, want %d", count, wantCount)
	}
	rss, _ := peakRSS(s2.pid())
	cpu, _ := cpuTicks(s2.pid())
	b.startup = &startupFigures{images: n, ready: ready, listed: listed}
	b.note("startup-100k: %d images in %d users, uploaded at concurrency 64 in %.1f s (%s/s); graceful stop took %.2f s",
		n, users, seed.Seconds, fmtRPS(seed.RPS), stopTime.Seconds())
	b.note("startup-100k: restarted on %d images: /readyz 200 after %s, first get-image-list 200 after %s (process start to answer); peak RSS so far %s, CPU so far %.2f s",
		n, fmtDur(ready), fmtDur(listed), fmtBytes(rss), float64(cpu)/clockTicks)
	if err := s2.stop(time.Minute); err != nil {
		return err
	}
	return nil
}
