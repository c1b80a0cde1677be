package main

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// Reports printed by wrk 4.1.0 with --latency.
const (
	wrkMicrosAndMillis = `Running 2s test @ http://127.0.0.1:18089/a.bin
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.92ms    0.86ms   9.04ms   88.82%
    Req/Sec     8.93k     1.76k   11.48k    65.00%
  Latency Distribution
     50%  673.00us
     75%    1.11ms
     90%    1.87ms
     99%    4.39ms
  35585 requests in 2.00s, 3.32GB read
Requests/sec:  17754.33
Transfer/sec:      1.66GB
`
	wrkNon2xxReport = `Running 1s test @ http://127.0.0.1:18089/missing
  1 threads and 1 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    66.40us  152.61us   4.07ms   98.99%
    Req/Sec    17.40k     2.14k   20.95k    72.73%
  Latency Distribution
     50%   53.00us
     75%   62.00us
     90%   72.00us
     99%  222.00us
  19002 requests in 1.10s, 5.58MB read
  Non-2xx or 3xx responses: 19002
Requests/sec:  17282.54
Transfer/sec:      5.08MB
`
	// Seconds are printed with a trailing space.
	wrkSecondsReport = "Running 4s test @ http://127.0.0.1:18091/\n" +
		"  1 threads and 4 connections\n" +
		"  Thread Stats   Avg      Stdev     Max   +/- Stdev\n" +
		"    Latency     1.23s    20.03ms   1.24s    66.67%\n" +
		"    Req/Sec     3.00      0.00     3.00    100.00%\n" +
		"  Latency Distribution\n" +
		"     50%    1.24s \n" +
		"     75%    1.24s \n" +
		"     90%    1.24s \n" +
		"     99%    1.24s \n" +
		"  12 requests in 4.01s, 1.32KB read\n" +
		"Requests/sec:      2.99\n" +
		"Transfer/sec:     338.09B\n"
	wrkTimeoutReport = `Running 4s test @ http://127.0.0.1:18091/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     3.00      0.00     3.00    100.00%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  12 requests in 4.01s, 1.32KB read
  Socket errors: connect 0, read 1, write 2, timeout 12
Requests/sec:      2.99
Transfer/sec:     338.21B
`
)

func TestParseWrk(t *testing.T) {
	for _, tc := range []struct {
		name     string
		out      string
		requests int64
		rps      float64
		p50, p99 time.Duration
		errors   int64
		transfer float64
	}{
		{"us and ms", wrkMicrosAndMillis, 35585, 17754.33, 673 * time.Microsecond, 4390 * time.Microsecond, 0, 1.66 * (1 << 30)},
		{"non-2xx", wrkNon2xxReport, 19002, 17282.54, 53 * time.Microsecond, 222 * time.Microsecond, 19002, 5.08 * (1 << 20)},
		{"seconds", wrkSecondsReport, 12, 2.99, 1240 * time.Millisecond, 1240 * time.Millisecond, 0, 338.09},
		{"socket errors", wrkTimeoutReport, 12, 2.99, 0, 0, 15, 338.21},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseWrk(tc.out)
			if err != nil {
				t.Fatal(err)
			}
			if r.requests != tc.requests || r.rps != tc.rps || r.errors() != tc.errors {
				t.Errorf("requests %d, rps %v, errors %d; want %d, %v, %d", r.requests, r.rps, r.errors(), tc.requests, tc.rps, tc.errors)
			}
			if !near(r.p50, tc.p50) || !near(r.p99, tc.p99) {
				t.Errorf("p50 %v, p99 %v; want %v, %v", r.p50, r.p99, tc.p50, tc.p99)
			}
			if d := r.transferPerSec - tc.transfer; d > 1e-6*tc.transfer || d < -1e-6*tc.transfer {
				t.Errorf("transfer %v bytes/s, want %v", r.transferPerSec, tc.transfer)
			}
		})
	}
}

// near allows for the float arithmetic of unit conversion.
func near(a, b time.Duration) bool {
	d := a - b
	return d < time.Microsecond/100 && d > -time.Microsecond/100
}

func TestParseWrkRejects(t *testing.T) {
	for name, out := range map[string]string{
		"empty":           "",
		"connect failure": "unable to connect to 127.0.0.1:18090 Connection refused\n",
		"no --latency":    strings.Replace(wrkMicrosAndMillis, "Latency Distribution", "", 1),
		"no 99% line":     strings.Replace(wrkMicrosAndMillis, "     99%    4.39ms\n", "", 1),
	} {
		if _, err := parseWrk(out); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, n := range v {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2), 50, 1 * time.Millisecond},
		{ms(1, 2, 3), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
		}
	}

	// 1..1000 ms in random order: p50 is 500 ms, p99 990 ms.
	var d []time.Duration
	for _, i := range rand.New(rand.NewPCG(1, 2)).Perm(1000) {
		d = append(d, time.Duration(i+1)*time.Millisecond)
	}
	slices.Sort(d)
	if p50, p99 := percentile(d, 50), percentile(d, 99); p50 != 500*time.Millisecond || p99 != 990*time.Millisecond {
		t.Errorf("1..1000 ms: p50 %v, p99 %v; want 500ms, 990ms", p50, p99)
	}
}

func TestParseWrkDurationUnits(t *testing.T) {
	for in, want := range map[[2]string]time.Duration{
		{"673.00", "us"}: 673 * time.Microsecond,
		{"1.11", "ms"}:   1110 * time.Microsecond,
		{"1.24", "s"}:    1240 * time.Millisecond,
		{"2.00", "m"}:    2 * time.Minute,
	} {
		got, err := parseWrkDuration(in[0], in[1])
		if err != nil || !near(got, want) {
			t.Errorf("%s%s: %v, %v; want %v", in[0], in[1], got, err, want)
		}
	}
}
