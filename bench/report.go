package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// result is one measured run, or the median of repeated runs: the server,
// nginx, Go's file server or the durable-write loop under one workload at
// one concurrency. Repeated runs (see compare) keep each run's figures in
// Repeats; RPS, the latencies, CPUPercent and MBps are then their medians,
// PeakRSS their highest, and Requests, Errors and Seconds their sums.
type result struct {
	Workload  string  `json:"workload"`
	Target    string  `json:"target"` // what was measured
	Engine    string  `json:"engine"` // wrk, go (the built-in generator) or loop
	Reference bool    `json:"reference"`
	Conc      int     `json:"concurrency"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
	RPS       float64 `json:"requests_per_second"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	// CPUPercent is CPU time over wall time, in percent of one core;
	// PeakRSS is in bytes. -1 when not measured.
	CPUPercent float64    `json:"cpu_percent"`
	PeakRSS    int64      `json:"peak_rss_bytes"`
	MBps       float64    `json:"mb_per_second,omitempty"`
	Repeats    []sample   `json:"repeats,omitempty"`
	Refs       []*result  `json:"-"`
	RefRatios  []refRatio `json:"references,omitempty"`

	p50, p99 time.Duration
}

// refRatio compares a result with one of its references: Ratio is the
// ratio of the median throughputs; PairRatios are the ratios of each pair
// of runs made one after the other, RatioMin and RatioMax their range.
type refRatio struct {
	Target     string    `json:"target"`
	RPS        float64   `json:"requests_per_second"`
	Ratio      float64   `json:"ratio"`
	PairRatios []float64 `json:"pair_ratios,omitempty"`
	RatioMin   float64   `json:"ratio_min,omitempty"`
	RatioMax   float64   `json:"ratio_max,omitempty"`
}

func (r *result) setLatency(p50, p99 time.Duration) {
	r.p50, r.p99 = p50, p99
	r.P50ms = float64(p50) / float64(time.Millisecond)
	r.P99ms = float64(p99) / float64(time.Millisecond)
}

// ratio is r's throughput over a reference's; NaN without one.
func (r *result) ratio(ref *result) float64 {
	if ref == nil || ref.RPS == 0 {
		return math.NaN()
	}
	return r.RPS / ref.RPS
}

// fromLoad fills a result from the Go generator's statistics.
func fromLoad(workload, target, engine string, conc int, st *loadStats) *result {
	r := &result{
		Workload: workload, Target: target, Engine: engine, Conc: conc,
		Requests: st.requests, Errors: st.errors, Seconds: st.elapsed.Seconds(), RPS: st.rps(),
		CPUPercent: -1, PeakRSS: -1,
	}
	r.setLatency(percentile(st.latencies, 50), percentile(st.latencies, 99))
	return r
}

// fromWrk fills a result from a wrk report.
func fromWrk(workload, target string, conc int, d time.Duration, w wrkResult) *result {
	r := &result{
		Workload: workload, Target: target, Engine: "wrk", Conc: conc,
		Requests: w.requests, Errors: w.errors(), Seconds: d.Seconds(), RPS: w.rps,
		CPUPercent: -1, PeakRSS: -1, MBps: w.transferPerSec / 1e6,
	}
	r.setLatency(w.p50, w.p99)
	return r
}

// environment is the header of the report.
type environment struct {
	Date        string   `json:"date"`
	GoVersion   string   `json:"go_version"`
	CPU         string   `json:"cpu"`
	Cores       int      `json:"cores"`
	LoadAvg     string   `json:"load_average_at_start"`
	Nginx       string   `json:"nginx"`
	Wrk         string   `json:"wrk"`
	ServerFlags []string `json:"server_flags"`
	Duration    string   `json:"duration"`
	Repeat      int      `json:"repeat"`
	Conc        []int    `json:"concurrency"`
	Quick       bool     `json:"quick"`
	Clients     string   `json:"clients"`
}

// target is one goal of the project and how the run fared against it.
type target struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Pass     bool   `json:"pass"`
}

// report is everything the benchmark prints at the end.
type report struct {
	Env      environment `json:"environment"`
	Results  []*result   `json:"results"`
	Notes    []string    `json:"notes"`
	Targets  []target    `json:"targets"`
	Complete bool        `json:"complete"`
}

func (rep *report) print(w io.Writer) {
	e := rep.Env
	fmt.Fprintf(w, "# imagestore benchmark\n\n")
	if !rep.Complete {
		fmt.Fprintf(w, "**Incomplete run: the benchmark stopped early; see its standard error.**\n\n")
	}
	fmt.Fprintf(w, "- date: %s\n", e.Date)
	fmt.Fprintf(w, "- go: %s\n", e.GoVersion)
	fmt.Fprintf(w, "- CPU: %s, %d cores; load average at start: %s (anything else running skews every figure)\n", e.CPU, e.Cores, e.LoadAvg)
	fmt.Fprintf(w, "- nginx: %s; wrk: %s\n", e.Nginx, e.Wrk)
	fmt.Fprintf(w, "- server flags: `%s`\n", strings.Join(e.ServerFlags, " "))
	quick := ""
	if e.Quick {
		quick = " (-quick)"
	}
	fmt.Fprintf(w, "- duration per run: %s; concurrency: %s%s\n", e.Duration, joinInts(e.Conc), quick)
	if e.Repeat > 1 {
		fmt.Fprintf(w, "- repeats: %d; a workload with a reference runs the server and its references alternately %d times (server, references, server, ...); "+
			"req/s, p50, p99 and cpu%% are the medians of those runs, peak RSS the highest, errors the total; "+
			"ratio is the server's median req/s over the reference's, spread the lowest and highest ratio of the %d pairs of runs\n",
			e.Repeat, e.Repeat, e.Repeat)
	} else {
		fmt.Fprintf(w, "- repeats: 1 (each run once; no spread)\n")
	}
	fmt.Fprintf(w, "- client addresses: %s\n\n", e.Clients)

	fmt.Fprintf(w, "| workload | conc | req/s | p50 | p99 | errors | server cpu%% | server peak RSS | reference | ref req/s | ratio | spread |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n")
	for _, r := range rep.Results {
		if r.Reference {
			continue
		}
		ref, refRPS, ratio, spread := "", "", "", ""
		if len(r.Refs) > 0 {
			ref, refRPS, ratio, spread = r.Refs[0].Target, fmtRPS(r.Refs[0].RPS), fmtRatio(r.ratio(r.Refs[0])), fmtSpread(r, r.Refs[0])
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s |\n",
			r.Workload, r.Conc, fmtRPS(r.RPS), fmtDur(r.p50), fmtDur(r.p99), r.Errors,
			fmtCPU(r.CPUPercent), fmtBytes(r.PeakRSS), ref, refRPS, ratio, spread)
		for _, extra := range r.Refs[min(1, len(r.Refs)):] {
			fmt.Fprintf(w, "| %s | %d | | | | | | | %s | %s | %s | %s |\n",
				r.Workload, r.Conc, extra.Target, fmtRPS(extra.RPS), fmtRatio(r.ratio(extra)), fmtSpread(r, extra))
		}
	}

	var refs []*result
	for _, r := range rep.Results {
		if r.Reference {
			refs = append(refs, r)
		}
	}
	if len(refs) > 0 {
		fmt.Fprintf(w, "\nReference runs (cpu%% and RSS are nginx's master and workers summed, the file server process for go FileServer, or the benchmark process for the write loop; req/s, p50, p99 and cpu%% are medians, req/s range the lowest and highest of the runs):\n\n")
		fmt.Fprintf(w, "| reference | for | conc | req/s | req/s range | p50 | p99 | errors | cpu%% | peak RSS |\n")
		fmt.Fprintf(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range refs {
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %d | %s | %s |\n",
				r.Target, r.Workload, r.Conc, fmtRPS(r.RPS), fmtRPSRange(r), fmtDur(r.p50), fmtDur(r.p99), r.Errors,
				fmtCPU(r.CPUPercent), fmtBytes(r.PeakRSS))
		}
	}

	if len(rep.Notes) > 0 {
		fmt.Fprintf(w, "\n## Notes\n\n")
		for _, n := range rep.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}

	fmt.Fprintf(w, "\n## Targets\n\n")
	if len(rep.Targets) == 0 {
		fmt.Fprintf(w, "(none measured in this run)\n")
	}
	for _, t := range rep.Targets {
		verdict := "MISS"
		if t.Pass {
			verdict = "PASS"
		}
		fmt.Fprintf(w, "- %s: %s: **%s**\n", t.Goal, t.Measured, verdict)
	}
}

func (rep *report) writeJSON(path string) error {
	for _, r := range rep.Results {
		r.RefRatios = nil
		for _, ref := range r.Refs {
			rr := refRatio{Target: ref.Target, RPS: ref.RPS, Ratio: finite(r.ratio(ref)), PairRatios: r.pairRatios(ref)}
			if lo, hi, ok := r.ratioRange(ref); ok {
				rr.RatioMin, rr.RatioMax = lo, hi
			}
			r.RefRatios = append(r.RefRatios, rr)
		}
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func fmtRPS(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// fmtRPSRange prints the lowest and highest req/s of a result's repeated
// runs, or "-" for a single run.
func fmtRPSRange(r *result) string {
	if len(r.Repeats) < 2 {
		return "-"
	}
	lo, hi := r.Repeats[0].RPS, r.Repeats[0].RPS
	for _, s := range r.Repeats[1:] {
		lo, hi = min(lo, s.RPS), max(hi, s.RPS)
	}
	return fmt.Sprintf("%s–%s", fmtRPS(lo), fmtRPS(hi))
}

func fmtRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

// fmtDur prints a latency in milliseconds, or seconds from 10 s on.
func fmtDur(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.2f ms", ms)
}

func fmtCPU(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", v)
}

func fmtBytes(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",")
}

// targets compares the run's figures with the project's goals. Goals
// whose workload did not run are left out.
func (b *bench) targets() []target {
	var out []target
	find := func(workload string, conc int) *result {
		for _, r := range b.rep.Results {
			if !r.Reference && r.Workload == workload && r.Conc == conc {
				return r
			}
		}
		return nil
	}
	concsOf := func(workload string) []int {
		var cs []int
		for _, r := range b.rep.Results {
			if !r.Reference && r.Workload == workload {
				cs = append(cs, r.Conc)
			}
		}
		return cs
	}
	refOf := func(r *result, target string) *result {
		for _, ref := range r.Refs {
			if ref.Target == target {
				return ref
			}
		}
		return nil
	}
	errNote := func(n int64) string {
		if n == 0 {
			return ""
		}
		return fmt.Sprintf(", %d errors", n)
	}

	for _, g := range []struct {
		workload, ref, label string
		min                  float64
	}{
		{"get-100k-gzip", refGzipStatic, "GET 100 KB with gzip", 0.8},
		{"get-100k-plain", refStatic, "GET 100 KB plain", 0.5},
	} {
		ran := concsOf(g.workload)
		var cs []int
		for _, c := range ran {
			if c == 16 || c == 64 {
				cs = append(cs, c)
			}
		}
		if len(cs) == 0 && len(ran) > 0 {
			// Neither 16 nor 64 ran: the best of the concurrencies that did.
			best := ran[0]
			for _, c := range ran {
				if r := find(g.workload, c); r.ratio(refOf(r, g.ref)) > find(g.workload, best).ratio(refOf(find(g.workload, best), g.ref)) {
					best = c
				}
			}
			cs = []int{best}
		}
		for _, c := range cs {
			r := find(g.workload, c)
			ref := refOf(r, g.ref)
			if ref == nil {
				continue
			}
			ratio := r.ratio(ref)
			measured := fmt.Sprintf("%s %s (%s vs %s req/s%s%s)", fmtRatio(ratio), g.ref, fmtRPS(r.RPS), fmtRPS(ref.RPS), pairsNote(r, ref), errNote(r.Errors+ref.Errors))
			if fs := refOf(r, refFileServer); fs != nil {
				// For information: what Go's own HTTP server does here.
				measured += fmt.Sprintf(", %s Go's http.FileServer (%s req/s%s%s)", fmtRatio(r.ratio(fs)), fmtRPS(fs.RPS), pairsNote(r, fs), errNote(fs.Errors))
			}
			out = append(out, target{
				Goal:     fmt.Sprintf("%s, %d clients: ≥ %.1fx %s", g.label, c, g.min, g.ref),
				Measured: measured,
				Pass:     ratio >= g.min && r.Errors == 0 && ref.Errors == 0,
			})
		}
	}

	if ran := concsOf("upload-100k"); len(ran) > 0 {
		c := ran[0]
		for _, x := range ran {
			if abs(x-16) < abs(c-16) {
				c = x
			}
		}
		r := find("upload-100k", c)
		if ref := refOf(r, refDurable); ref != nil {
			ratio := r.ratio(ref)
			out = append(out, target{
				Goal:     fmt.Sprintf("upload 100 KB, %d clients into one user: ≥ 0.5x the durable write loop, and 0 errors", c),
				Measured: fmt.Sprintf("%s (%s vs %s writes/s%s), %d errors", fmtRatio(ratio), fmtRPS(r.RPS), fmtRPS(ref.RPS), pairsNote(r, ref), r.Errors),
				Pass:     ratio >= 0.5 && r.Errors == 0,
			})
		}
	}

	for _, l := range []struct{ workload, label string }{
		{"list-10k", "list of %d images (get-image-list), %d client"},
		{"list-10k-v1-page", "first page of 100 of %d images (/api/v1/images), %d client"},
	} {
		ran := concsOf(l.workload)
		if len(ran) == 0 {
			continue
		}
		c := ran[0]
		for _, x := range ran {
			c = min(c, x)
		}
		r := find(l.workload, c)
		out = append(out, target{
			Goal:     fmt.Sprintf(l.label, b.opts.listImages, c) + ": p50 < 10 ms",
			Measured: fmt.Sprintf("p50 %s, p99 %s%s", fmtDur(r.p50), fmtDur(r.p99), errNote(r.Errors)),
			Pass:     r.p50 < 10*time.Millisecond && r.Errors == 0,
		})
	}

	if r := find("big-upload-20m", 64); r != nil {
		out = append(out, target{
			Goal:     "64 simultaneous 20 MiB uploads: server peak RSS < 150 MiB",
			Measured: fmt.Sprintf("%s (%.0f MB/s%s)", fmtBytes(r.PeakRSS), r.MBps, errNote(r.Errors)),
			Pass:     r.PeakRSS >= 0 && r.PeakRSS < 150<<20 && r.Errors == 0,
		})
	}

	if s := b.startup; s != nil {
		out = append(out, target{
			Goal:     fmt.Sprintf("start-up on %d images: < 2 s to serving", s.images),
			Measured: fmt.Sprintf("%s to the first list (/readyz after %s)", fmtDur(s.listed), fmtDur(s.ready)),
			Pass:     s.listed < 2*time.Second,
		})
	}
	return out
}

// pairsNote describes the spread of r's pair ratios to ref for the
// targets, such as ", pairs 0.65–0.80x"; empty for a single pair.
func pairsNote(r, ref *result) string {
	lo, hi, ok := r.ratioRange(ref)
	if !ok {
		return ""
	}
	return fmt.Sprintf(", %d pairs %.2f–%.2fx", len(r.Repeats), lo, hi)
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
