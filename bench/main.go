// Command bench measures the imagestore server on this machine and sets
// each figure beside a ceiling measured on the same machine in the same
// run:
//
//   - downloads (wrk against the server's get-image route) beside nginx
//     serving the same bytes as static files, with gzip_static for clients
//     that accept gzip and gunzip for those that do not; and, for clients
//     that do not accept gzip, beside Go's own net/http.FileServer serving
//     the same files, for what Go's standard HTTP server does here;
//   - uploads and replacements (a built-in Go load generator) beside a bare
//     loop that writes files as durably as the server promises to
//     (temporary file, write, fsync, rename, fsync of the folder) in the
//     same file system;
//   - deletions, listings, token generation, 64 simultaneous 20 MiB
//     uploads (peak memory) and start-up on a data folder holding many
//     images, on their own.
//
// For every run it records requests per second, the median and 99th
// percentile latency, the errors (any unexpected status), and the
// server's CPU use and peak resident memory from /proc. The load
// generators run on the same machine as the server and compete with it
// for the same cores; nginx and the Go file server are measured under the
// same handicap.
//
// A shared machine's load changes from one minute to the next, enough to
// halve a figure, so a workload with a reference measures the server and
// its references alternately -repeat times (server, references, server,
// references, ...; 3 by default), each run as long as the others. The
// report gives the medians of each side's runs, their ratio (the server's
// median requests per second over the reference's), and the spread: the
// lowest and highest ratio of the pairs of runs made one after the other.
// A wide spread means a noisy machine. Workloads without a reference run
// once per concurrency.
//
// It builds cmd/imagestore, starts it on a free loopback port with a new
// data folder in a temporary directory, starts nginx the same way and the
// Go file server (this program again, in a process of its own, run with a
// hidden -serve-files flag), and stops them all at the end, on failure and
// on Ctrl-C. nginx and wrk must be installed; scripts/bench.sh installs
// them with apt-get. Run it from the repository:
//
//	go run ./bench                      # every workload: 3 s per run, 3 repeats
//	go run ./bench -quick               # 1 s per run, 1 repeat, smaller data sets
//	go run ./bench -only get-100k -conc 16,64 -repeat 5
//	go run ./bench -profile /tmp/prof   # a CPU profile of each server run
//
// With the defaults (concurrency 1, 16 and 64) a full run took about 17
// minutes on a busy 2-core machine: about 10 in the repeated comparisons
// (each workload with references costs concurrencies × -repeat ×
// (1 + references) × -duration; 198 runs of 3 s in all), most of the rest
// uploading the 100,000 images of the start-up test. -quick took 2.5
// minutes.
//
// Progress goes to standard error; the report, a Markdown table followed
// by the project's targets, goes to standard output at the end.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/imagestore/imagestore/storage/s3store/miniotest"
)

// options are the command-line settings.
type options struct {
	duration      time.Duration
	repeat        int
	concs         []int
	only          []string
	quick         bool
	serverFlags   []string
	profileDir    string
	jsonPath      string
	keep          bool
	startupImages int
	listImages    int
	deleteImages  int
	bigRounds     int
	sameAddress   bool
}

// baseServerFlags turn off what would distort the measurements: the rate
// limits (every request comes from one address), the free-space reserve,
// the request log, and the size limits the 20 MiB upload would hit.
var baseServerFlags = []string{
	"--account-rate", "0", "--auth-failure-rate", "0", "--min-free", "0", "--log-level", "error",
	"--max-upload", "64MiB", "--max-pixels", "0",
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./bench [flags]\n\nMeasures the imagestore server beside nginx, Go's http.FileServer and a bare durable-write loop.\n\n")
		fs.PrintDefaults()
	}
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "how long each timed run lasts")
	fs.IntVar(&o.repeat, "repeat", 3, "run a workload with a reference this many `times`, alternating the server's runs with the references', and report medians (-quick: 1)")
	conc := fs.String("conc", "1,16,64", "comma-separated numbers of simultaneous clients")
	only := fs.String("only", "", "run only the workloads whose name contains this `substring` (several: comma-separated)")
	fs.BoolVar(&o.quick, "quick", false, "a smoke run: 1 s per run, 1 repeat and smaller data sets")
	serverFlags := fs.String("server-flags", "", "extra `flags` for the server, separated by spaces")
	fs.StringVar(&o.profileDir, "profile", "", "save a CPU profile of the server during each of its runs into this `folder`, as WORKLOAD-cCONC[-runN].pprof (needs the server's --debug-addr)")
	fs.StringVar(&o.jsonPath, "json", "", "also write every result as JSON to this `file`")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary folder (data folders, configurations, logs)")
	fs.IntVar(&o.startupImages, "startup-images", 100_000, "images in the data folder of the start-up test (-quick: 10000)")
	fs.IntVar(&o.listImages, "images", 10_000, "images of the user that get-random and list spread over (-quick: 2000)")
	fs.IntVar(&o.deleteImages, "delete-images", 2000, "images each delete run uploads and then deletes (-quick: 200)")
	fs.IntVar(&o.bigRounds, "big-rounds", 2, "rounds of 64 simultaneous 20 MiB uploads (-quick: 1)")
	fs.BoolVar(&o.sameAddress, "same-address", false, "send every request of the Go load generator from 127.0.0.1, as behind a proxy, instead of one loopback address per client (the server limits uploads in progress per address)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := map[string]func(){
			"duration":       func() { o.duration = time.Second },
			"repeat":         func() { o.repeat = 1 },
			"startup-images": func() { o.startupImages = 10_000 },
			"images":         func() { o.listImages = 2000 },
			"delete-images":  func() { o.deleteImages = 200 },
			"big-rounds":     func() { o.bigRounds = 1 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	for s := range strings.SplitSeq(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-conc: %q is not a positive number", s)
		}
		o.concs = append(o.concs, n)
	}
	for s := range strings.SplitSeq(*only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.only = append(o.only, s)
		}
	}
	o.serverFlags = append(append([]string{}, baseServerFlags...), strings.Fields(*serverFlags)...)
	switch {
	case o.duration < time.Second:
		return o, errors.New("-duration must be at least 1s (wrk counts whole seconds)")
	case o.startupImages < 100:
		return o, errors.New("-startup-images must be at least 100 (one per user)")
	case o.listImages < 1 || o.deleteImages < 1 || o.bigRounds < 1 || o.repeat < 1:
		return o, errors.New("-images, -delete-images, -big-rounds and -repeat must be positive")
	}
	return o, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == serveFilesFlag {
		os.Exit(serveFiles(os.Args[1:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second one ends the process at once.
		<-ctx.Done()
		stop()
	}()
	err := run(ctx, os.Args[1:])
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil && interrupted:
		fmt.Fprintln(os.Stderr, "bench: interrupted")
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// bench is the state of one benchmark run.
type bench struct {
	opts   options
	tmp    string
	bin    string
	fx     *fixtures
	srv    *server
	ng     *nginx
	gofs   *fileServer
	rep    report
	seeded *imageSet // the images of get-random and list, once uploaded
	minio  *miniotest.Server
	s3srv  *server // a second server, on a bucket of minio
	users  int     // users created, for unique names
	// startup holds the start-up figures, once measured.
	startup *startupFigures
}

// startupFigures are the times from a server process's start to its
// first answers, on a data folder of images.
type startupFigures struct {
	images        int
	ready, listed time.Duration
}

// workload is one named part of the benchmark.
type workload struct {
	name   string
	tools  []string // programs it runs: wrk, nginx, fileserver (Go's http.FileServer)
	server bool     // whether it uses the shared server
	run    func(ctx context.Context) error
}

func run(ctx context.Context, args []string) error {
	opts, err := parseOptions(args)
	if err != nil {
		return err
	}
	b := &bench{opts: opts}

	var selected []workload
	for _, w := range b.workloads() {
		if b.selected(w.name) {
			selected = append(selected, w)
		}
	}
	if len(selected) == 0 {
		var names []string
		for _, w := range b.workloads() {
			names = append(names, w.name)
		}
		return fmt.Errorf("-only %s matches no workload; the workloads are: %s", strings.Join(opts.only, ","), strings.Join(names, ", "))
	}
	needServer, needTool := false, map[string]bool{}
	for _, w := range selected {
		needServer = needServer || w.server
		for _, t := range w.tools {
			needTool[t] = true
		}
	}
	if needTool["nginx"] && nginxPath() == "" {
		return errors.New("nginx is not installed (or not on PATH): scripts/bench.sh installs it with apt-get, or run apt-get install nginx")
	}
	if _, err := miniotest.Binary(); needTool["minio"] && err != nil {
		return fmt.Errorf("the S3 workloads need MinIO: %w (scripts/bench.sh builds it)", err)
	}
	if _, err := exec.LookPath("wrk"); needTool["wrk"] && err != nil {
		return errors.New("wrk is not installed (or not on PATH): scripts/bench.sh installs it with apt-get, or run apt-get install wrk")
	}
	if opts.profileDir != "" {
		if err := os.MkdirAll(opts.profileDir, 0o755); err != nil {
			return fmt.Errorf("-profile: %w", err)
		}
	}

	root, err := repoRoot(ctx)
	if err != nil {
		return err
	}
	b.tmp, err = os.MkdirTemp("", "imagestore-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if opts.keep {
			fmt.Fprintf(os.Stderr, "kept %s\n", b.tmp)
			return
		}
		os.RemoveAll(b.tmp)
	}()

	b.rep.Env = environmentOf(ctx, opts)
	e := b.rep.Env
	fmt.Fprintf(os.Stderr, "%s; %s; %s × %d; load average %s; nginx %s; wrk %s\nserver flags: %s\n",
		e.Date, e.GoVersion, e.CPU, e.Cores, e.LoadAvg, e.Nginx, e.Wrk, strings.Join(e.ServerFlags, " "))

	t0 := time.Now()
	if b.fx, err = makeFixtures(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "fixtures (%.1fs): photo.jpg %d×%d %d bytes (gzip %d), big.png %d×%d %d bytes (gzip %d), tiny PNG %d bytes, BMP %d bytes\n",
		time.Since(t0).Seconds(), b.fx.photoDims[0], b.fx.photoDims[1], len(b.fx.photo), len(b.fx.photoGz),
		b.fx.bigDims[0], b.fx.bigDims[1], len(b.fx.bigPNG), len(b.fx.bigPNGGz), len(b.fx.tiny), len(b.fx.bmp20MiB))

	b.bin = filepath.Join(b.tmp, "imagestore")
	if err := buildServer(ctx, root, b.bin); err != nil {
		return err
	}
	if needServer {
		b.srv, err = startServer(ctx, b.bin, filepath.Join(b.tmp, "data"), filepath.Join(b.tmp, "server.log"), opts.serverFlags, opts.profileDir != "")
		if err != nil {
			return err
		}
		defer b.srv.kill()
		fmt.Fprintf(os.Stderr, "server pid %d at %s\n", b.srv.pid(), b.srv.base)
	}
	if needTool["nginx"] || needTool["fileserver"] {
		randomSet := 0
		for _, w := range selected {
			if strings.HasPrefix(w.name, "get-random") {
				randomSet = opts.listImages
			}
		}
		dir := filepath.Join(b.tmp, "nginx")
		webRoot, err := nginxRoot(dir, b.fx, randomSet)
		if err != nil {
			return err
		}
		if needTool["nginx"] {
			if b.ng, err = startNginx(ctx, dir, webRoot); err != nil {
				return err
			}
			defer b.ng.stop()
			fmt.Fprintf(os.Stderr, "nginx pid %d at %s\n", b.ng.cmd.Process.Pid, b.ng.url("/"))
		}
		if needTool["fileserver"] {
			if b.gofs, err = startFileServer(ctx, filepath.Join(b.tmp, "fileserver"), webRoot, "/photo.jpg"); err != nil {
				return err
			}
			defer b.gofs.stop()
			fmt.Fprintf(os.Stderr, "go FileServer pid %d at %s\n", b.gofs.pid(), b.gofs.url("/"))
		}
	}

	defer b.finish()
	defer b.stopS3()
	for _, w := range selected {
		fmt.Fprintf(os.Stderr, "== %s\n", w.name)
		if err := w.run(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: %w", w.name, err)
		}
		for _, srv := range []*server{b.srv, b.s3srv} {
			if srv == nil {
				continue
			}
			if err := srv.alive(); err != nil {
				return fmt.Errorf("after %s: %w", w.name, err)
			}
		}
		if b.gofs != nil {
			if err := b.gofs.alive(); err != nil {
				return fmt.Errorf("after %s: %w", w.name, err)
			}
		}
	}
	b.rep.Complete = true
	return nil
}

// finish prints the report of what ran, complete or not, and writes the
// JSON file.
func (b *bench) finish() {
	if len(b.rep.Results) == 0 && len(b.rep.Notes) == 0 {
		return
	}
	b.rep.Targets = b.targets()
	b.rep.print(os.Stdout)
	if b.opts.jsonPath != "" {
		if err := b.rep.writeJSON(b.opts.jsonPath); err != nil {
			fmt.Fprintf(os.Stderr, "bench: writing %s: %v\n", b.opts.jsonPath, err)
		}
	}
}

func (b *bench) selected(name string) bool {
	if len(b.opts.only) == 0 {
		return true
	}
	for _, s := range b.opts.only {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// environmentOf describes the machine and the tools.
func environmentOf(ctx context.Context, o options) environment {
	e := environment{
		Date:        time.Now().Format(time.RFC3339),
		GoVersion:   runtime.Version(),
		CPU:         "unknown",
		Cores:       runtime.NumCPU(),
		Nginx:       "not installed",
		Wrk:         "not installed",
		ServerFlags: o.serverFlags,
		Duration:    o.duration.String(),
		Repeat:      o.repeat,
		Conc:        o.concs,
		Quick:       o.quick,
		Clients:     "one loopback address per client (127.0.0.2, 127.0.0.3, ...) for the Go load generator; 127.0.0.1 for wrk",
	}
	if o.sameAddress {
		e.Clients = "every client from 127.0.0.1 (-same-address)"
	}
	if out, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		e.GoVersion = strings.TrimSpace(string(out))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			e.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if nginxPath() != "" {
		e.Nginx = nginxVersion()
	}
	if _, err := exec.LookPath("wrk"); err == nil {
		e.Wrk = wrkVersion()
	}
	return e
}

// add records a result and prints it as progress.
func (b *bench) add(r *result) {
	b.rep.Results = append(b.rep.Results, r)
	line := fmt.Sprintf("%-22s c=%-3d %-20s %9s req/s  p50 %9s  p99 %9s  errors %d  cpu %s  rss %s",
		r.Workload, r.Conc, r.Target, fmtRPS(r.RPS), fmtDur(r.p50), fmtDur(r.p99), r.Errors, fmtCPU(r.CPUPercent), fmtBytes(r.PeakRSS))
	if len(r.Repeats) > 1 {
		line = fmt.Sprintf("%s  (median of %d)", line, len(r.Repeats))
	}
	for _, ref := range r.Refs {
		spread := ""
		if lo, hi, ok := r.ratioRange(ref); ok {
			spread = fmt.Sprintf(", pairs %.2f–%.2f", lo, hi)
		}
		line += fmt.Sprintf("  | %s %s (%s%s)", ref.Target, fmtRPS(ref.RPS), fmtRatio(r.ratio(ref)), spread)
	}
	fmt.Fprintln(os.Stderr, line)
}

// note records a line for the report's Notes section and prints it.
func (b *bench) note(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	b.rep.Notes = append(b.rep.Notes, s)
	fmt.Fprintln(os.Stderr, "note:", s)
}
