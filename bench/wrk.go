package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what one wrk run reported.
type wrkResult struct {
	requests       int64
	rps            float64
	p50, p99       time.Duration
	non2xx         int64
	socketErrors   int64
	transferPerSec float64 // bytes per second
}

func (r wrkResult) errors() int64 { return r.non2xx + r.socketErrors }

// wrkRun describes one wrk invocation.
type wrkRun struct {
	url      string
	headers  []string // "Name: value"
	script   string   // a Lua script, or ""
	conc     int
	duration time.Duration
}

// runWrk runs wrk and parses its report.
func runWrk(ctx context.Context, r wrkRun) (wrkResult, error) {
	threads := min(2, r.conc)
	secs := max(1, int(r.duration/time.Second))
	args := []string{
		"-t", strconv.Itoa(threads), "-c", strconv.Itoa(r.conc), "-d", strconv.Itoa(secs) + "s",
		"--timeout", "10s", "--latency",
	}
	for _, h := range r.headers {
		args = append(args, "-H", h)
	}
	if r.script != "" {
		args = append(args, "-s", r.script)
	}
	args = append(args, r.url)
	cmd := exec.CommandContext(ctx, "wrk", args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return wrkResult{}, ctx.Err()
		}
		return wrkResult{}, fmt.Errorf("wrk %s: %v: %s%s", strings.Join(args, " "), err,
			strings.TrimSpace(errOut.String()), strings.TrimSpace(out.String()))
	}
	res, err := parseWrk(out.String())
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %v; its output was:\n%s", strings.Join(args, " "), err, out.String())
	}
	return res, nil
}

var (
	wrkRPS       = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkTransfer  = regexp.MustCompile(`(?m)^Transfer/sec:\s+([0-9.]+)([KMGT]?B)`)
	wrkRequests  = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	wrkNon2xx    = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSocket    = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkLatencyAt = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m|h)\s*$`)
)

// parseWrk reads the report wrk prints with --latency.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("no Requests/sec line")
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkRequests.FindStringSubmatch(out); m != nil {
		r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkTransfer.FindStringSubmatch(out); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		mult := map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[m[2]]
		r.transferPerSec = v * mult
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.socketErrors += n
		}
	}
	i := strings.Index(out, "Latency Distribution")
	if i < 0 {
		return r, errors.New("no Latency Distribution block (was --latency given?)")
	}
	found := 0
	for _, m := range wrkLatencyAt.FindAllStringSubmatch(out[i:], -1) {
		d, err := parseWrkDuration(m[2], m[3])
		if err != nil {
			return r, err
		}
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
		found++
	}
	if found < 2 {
		return r, errors.New("no 50% or 99% line in the Latency Distribution block")
	}
	return r, nil
}

// parseWrkDuration converts a wrk latency figure, such as "673.00" "us".
func parseWrkDuration(num, unit string) (time.Duration, error) {
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("bad latency %q", num+unit)
	}
	scale := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	return time.Duration(v * float64(scale)), nil
}

// writeRandomScript writes a wrk Lua script that requests paths at random,
// each thread with its own seed, and sends headers with every request. It
// returns the script's path.
func writeRandomScript(dir, name string, paths, headers []string) (string, error) {
	list := filepath.Join(dir, name+".paths")
	if err := os.WriteFile(list, []byte(strings.Join(paths, "\n")+"\n"), 0o644); err != nil {
		return "", err
	}
	var s strings.Builder
	fmt.Fprintf(&s, "local paths = {}\n")
	fmt.Fprintf(&s, "for line in io.lines(%q) do paths[#paths + 1] = line end\n", list)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		fmt.Fprintf(&s, "wrk.headers[%q] = %q\n", strings.TrimSpace(k), strings.TrimSpace(v))
	}
	s.WriteString(`local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function init(args)
  math.randomseed(1000003 * (id or 1) + os.time())
end
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
`)
	script := filepath.Join(dir, name+".lua")
	return script, os.WriteFile(script, []byte(s.String()), 0o644)
}
