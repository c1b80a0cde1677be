package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"
)

// sample is the figures of one of the runs a result sums up.
type sample struct {
	Requests   int64   `json:"requests"`
	Errors     int64   `json:"errors"`
	Seconds    float64 `json:"seconds"`
	RPS        float64 `json:"requests_per_second"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	CPUPercent float64 `json:"cpu_percent"`
	PeakRSS    int64   `json:"peak_rss_bytes"`
	MBps       float64 `json:"mb_per_second,omitempty"`
}

func sampleOf(r *result) sample {
	return sample{
		Requests: r.Requests, Errors: r.Errors, Seconds: r.Seconds, RPS: r.RPS,
		P50ms: r.P50ms, P99ms: r.P99ms, CPUPercent: r.CPUPercent, PeakRSS: r.PeakRSS, MBps: r.MBps,
	}
}

// median returns the median of v (the mean of the middle two for an even
// count), or 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// aggregate sums up repeated runs of one target at one concurrency: the
// median throughput, latencies, CPU use and transfer rate, the highest
// peak RSS, and the total requests, errors and time. Every run's figures
// are kept in Repeats, in the order they ran.
func aggregate(runs []*result) *result {
	first := runs[0]
	r := &result{
		Workload: first.Workload, Target: first.Target, Engine: first.Engine, Reference: first.Reference, Conc: first.Conc,
		PeakRSS: -1,
	}
	var rps, p50, p99, cpu, mbps []float64
	for _, x := range runs {
		r.Requests += x.Requests
		r.Errors += x.Errors
		r.Seconds += x.Seconds
		r.PeakRSS = max(r.PeakRSS, x.PeakRSS)
		rps = append(rps, x.RPS)
		p50 = append(p50, float64(x.p50))
		p99 = append(p99, float64(x.p99))
		mbps = append(mbps, x.MBps)
		if x.CPUPercent >= 0 {
			cpu = append(cpu, x.CPUPercent)
		}
		r.Repeats = append(r.Repeats, sampleOf(x))
	}
	r.RPS = median(rps)
	r.MBps = median(mbps)
	r.CPUPercent = -1
	if len(cpu) > 0 {
		r.CPUPercent = median(cpu)
	}
	r.setLatency(time.Duration(median(p50)), time.Duration(median(p99)))
	return r
}

// pairRatios returns r's throughput over ref's in each pair of runs that
// ran one after the other, when both were repeated alike.
func (r *result) pairRatios(ref *result) []float64 {
	if ref == nil || len(r.Repeats) != len(ref.Repeats) {
		return nil
	}
	out := make([]float64, 0, len(r.Repeats))
	for i, s := range r.Repeats {
		if ref.Repeats[i].RPS == 0 {
			return nil
		}
		out = append(out, s.RPS/ref.Repeats[i].RPS)
	}
	return out
}

// ratioRange returns the lowest and highest of r's pair ratios to ref,
// and whether there are at least two pairs.
func (r *result) ratioRange(ref *result) (lo, hi float64, ok bool) {
	p := r.pairRatios(ref)
	if len(p) < 2 {
		return 0, 0, false
	}
	return slices.Min(p), slices.Max(p), true
}

// fmtSpread prints the range of r's pair ratios to ref, such as
// "0.65–0.80", or "-" with fewer than two pairs.
func fmtSpread(r, ref *result) string {
	lo, hi, ok := r.ratioRange(ref)
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2f–%.2f", lo, hi)
}

// measurement is one side of a comparison: a function that measures the
// server or a reference once, in repeat rep (0, 1, ...).
type measurement func(ctx context.Context, rep int) (*result, error)

// compare measures the server and its references at one concurrency
// alternately, -repeat times (server, each reference, server, each
// reference, ...), each run lasting as long as the others, so that a
// change in the machine's load in the meantime affects both sides alike.
// It records each reference's summed-up result, then the server's with
// those as its references.
func (b *bench) compare(ctx context.Context, server measurement, refs ...measurement) error {
	n := b.opts.repeat
	srvRuns := make([]*result, 0, n)
	refRuns := make([][]*result, len(refs))
	for rep := range n {
		r, err := server(ctx, rep)
		if err != nil {
			return err
		}
		b.progress(r, rep)
		srvRuns = append(srvRuns, r)
		for j, m := range refs {
			rr, err := m(ctx, rep)
			if err != nil {
				return err
			}
			rr.Reference = true
			b.progress(rr, rep)
			refRuns[j] = append(refRuns[j], rr)
		}
	}
	r := aggregate(srvRuns)
	for _, runs := range refRuns {
		ref := aggregate(runs)
		b.rep.Results = append(b.rep.Results, ref)
		r.Refs = append(r.Refs, ref)
	}
	b.add(r)
	return nil
}

// progress prints one run of a comparison. A single run of the server is
// left to the summary line of add.
func (b *bench) progress(r *result, rep int) {
	if b.opts.repeat < 2 && !r.Reference {
		return
	}
	which := ""
	if b.opts.repeat > 1 {
		which = fmt.Sprintf("run %d/%d", rep+1, b.opts.repeat)
	}
	fmt.Fprintf(os.Stderr, "  %-20s c=%-3d %-7s %-20s %9s req/s  p50 %9s  p99 %9s  errors %d  cpu %s  rss %s\n",
		r.Workload, r.Conc, which, r.Target, fmtRPS(r.RPS), fmtDur(r.p50), fmtDur(r.p99), r.Errors, fmtCPU(r.CPUPercent), fmtBytes(r.PeakRSS))
}
