package main

import (
	"slices"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1}, 3},
		{[]float64{9, 1, 4}, 4},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := slices.Clone(tc.in)
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
		if !slices.Equal(in, tc.in) {
			t.Errorf("median reordered its argument: %v", tc.in)
		}
	}
}

// runOf makes a result as one run of a comparison would.
func runOf(target string, rps float64, p50ms, p99ms int, errors int64, cpu float64, rss int64) *result {
	r := &result{Workload: "w", Target: target, Engine: "wrk", Conc: 16, Requests: int64(rps) * 2, Errors: errors,
		Seconds: 2, RPS: rps, CPUPercent: cpu, PeakRSS: rss}
	r.setLatency(time.Duration(p50ms)*time.Millisecond, time.Duration(p99ms)*time.Millisecond)
	return r
}

func TestAggregate(t *testing.T) {
	r := aggregate([]*result{
		runOf(serverTarget, 1000, 3, 30, 0, 150, 40<<20),
		runOf(serverTarget, 400, 9, 90, 2, -1, 60<<20),
		runOf(serverTarget, 800, 5, 20, 1, 130, 50<<20),
	})
	if r.RPS != 800 || r.p50 != 5*time.Millisecond || r.p99 != 30*time.Millisecond || r.P50ms != 5 || r.P99ms != 30 {
		t.Errorf("median req/s %v, p50 %v, p99 %v; want 800, 5ms, 30ms", r.RPS, r.p50, r.p99)
	}
	if r.CPUPercent != 140 {
		t.Errorf("cpu %v, want the median of the measured ones, 140", r.CPUPercent)
	}
	if r.PeakRSS != 60<<20 || r.Errors != 3 || r.Requests != 4400 || r.Seconds != 6 {
		t.Errorf("peak RSS %d, errors %d, requests %d, seconds %v; want %d, 3, 4400, 6", r.PeakRSS, r.Errors, r.Requests, r.Seconds, 60<<20)
	}
	if len(r.Repeats) != 3 || r.Repeats[1].RPS != 400 || r.Repeats[1].Errors != 2 || r.Repeats[1].P99ms != 90 {
		t.Errorf("repeats %+v: want the three runs in order", r.Repeats)
	}
	if r.Workload != "w" || r.Target != serverTarget || r.Conc != 16 || r.Engine != "wrk" {
		t.Errorf("identity %q %q %d %q lost", r.Workload, r.Target, r.Conc, r.Engine)
	}

	one := aggregate([]*result{runOf(serverTarget, 700, 1, 2, 0, -1, -1)})
	if one.RPS != 700 || one.CPUPercent != -1 || one.PeakRSS != -1 || len(one.Repeats) != 1 {
		t.Errorf("single run: req/s %v, cpu %v, rss %d, %d repeats", one.RPS, one.CPUPercent, one.PeakRSS, len(one.Repeats))
	}
}

func TestPairRatios(t *testing.T) {
	srv := aggregate([]*result{runOf(serverTarget, 500, 1, 1, 0, 0, 0), runOf(serverTarget, 900, 1, 1, 0, 0, 0), runOf(serverTarget, 600, 1, 1, 0, 0, 0)})
	ref := aggregate([]*result{runOf(refStatic, 1000, 1, 1, 0, 0, 0), runOf(refStatic, 1000, 1, 1, 0, 0, 0), runOf(refStatic, 2000, 1, 1, 0, 0, 0)})
	if got, want := srv.pairRatios(ref), []float64{0.5, 0.9, 0.3}; !slices.Equal(got, want) {
		t.Errorf("pair ratios %v, want %v", got, want)
	}
	// The ratio is of the medians: 600 / 1000, not the median pair ratio.
	if got := srv.ratio(ref); got != 0.6 {
		t.Errorf("ratio %v, want 0.6", got)
	}
	if got := fmtSpread(srv, ref); got != "0.30–0.90" {
		t.Errorf("spread %q, want 0.30–0.90", got)
	}
	if got := pairsNote(srv, ref); got != ", 3 pairs 0.30–0.90x" {
		t.Errorf("pairs note %q", got)
	}

	single := aggregate([]*result{runOf(serverTarget, 500, 1, 1, 0, 0, 0)})
	singleRef := aggregate([]*result{runOf(refStatic, 1000, 1, 1, 0, 0, 0)})
	if got := fmtSpread(single, singleRef); got != "-" {
		t.Errorf("spread of one pair %q, want -", got)
	}
	if got := pairsNote(single, singleRef); got != "" {
		t.Errorf("pairs note of one pair %q, want none", got)
	}
	if got := srv.pairRatios(singleRef); got != nil {
		t.Errorf("pair ratios of unlike repeats %v, want none", got)
	}
}

func TestRepeatOption(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 3},
		{[]string{"-quick"}, 1},
		{[]string{"-quick", "-repeat", "5"}, 5},
		{[]string{"-repeat", "1"}, 1},
	} {
		o, err := parseOptions(tc.args)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if o.repeat != tc.want {
			t.Errorf("%v: repeat %d, want %d", tc.args, o.repeat, tc.want)
		}
	}
	if _, err := parseOptions([]string{"-repeat", "0"}); err == nil {
		t.Error("-repeat 0: no error")
	}
}
