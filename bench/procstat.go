package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of the CPU times in
// /proc/PID/stat. It is 100 on every Linux platform Go supports.
const clockTicks = 100

// statFields returns the fields of /proc/PID/stat from field 3 (the
// state) on: the command name before them is in parentheses and may hold
// spaces, so they start after the last ')'.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	return f, nil
}

// cpuTicks returns the user plus system CPU time a process has used, in
// clock ticks.
func cpuTicks(pid int) (int64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad CPU times", pid)
	}
	return utime + stime, nil
}

// parentPID returns the parent of a process.
func parentPID(pid int) (int, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1]) // field 4
}

// children lists the direct children of a process.
func children(pid int) []int {
	entries, _ := filepath.Glob("/proc/[0-9]*")
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(filepath.Base(e))
		if err != nil {
			continue
		}
		if pp, err := parentPID(p); err == nil && pp == pid {
			out = append(out, p)
		}
	}
	return out
}

// resetPeakRSS resets the kernel's record of a process's peak resident
// set size (VmHWM) to its current size.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// peakRSS returns a process's peak resident set size (VmHWM) in bytes.
func peakRSS(pid int) (int64, error) { return statusBytes(pid, "VmHWM") }

// currentRSS returns a process's resident set size (VmRSS) in bytes.
func currentRSS(pid int) (int64, error) { return statusBytes(pid, "VmRSS") }

// statusBytes reads a field in kB of /proc/PID/status, in bytes.
func statusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: bad %s %q", pid, field, v)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// usage records the CPU and memory use of a set of processes over one
// workload.
type usage struct {
	pids    []int
	rss     bool // whether peak RSS is measured
	start   time.Time
	ticks   int64
	started bool
}

// measure starts measuring the processes pids returns. With rss, their
// peak RSS is reset now and read at the end.
func measure(pids []int, rss bool) *usage {
	u := &usage{pids: pids, rss: rss, start: time.Now()}
	if len(pids) == 0 {
		return u
	}
	var total int64
	for _, p := range pids {
		t, err := cpuTicks(p)
		if err != nil {
			return u
		}
		total += t
		if rss {
			if err := resetPeakRSS(p); err != nil {
				u.rss = false
			}
		}
	}
	u.ticks, u.started = total, true
	return u
}

// stop returns the CPU use as a percentage of one core over the time since
// measure, and the summed peak RSS in bytes; -1 for what is unknown.
func (u *usage) stop() (cpuPercent float64, rss int64) {
	cpuPercent, rss = -1, -1
	if !u.started {
		return
	}
	elapsed := time.Since(u.start).Seconds()
	var total, peak int64
	for _, p := range u.pids {
		t, err := cpuTicks(p)
		if err != nil {
			return
		}
		total += t
		if u.rss {
			r, err := peakRSS(p)
			if err != nil {
				u.rss = false
			}
			peak += r
		}
	}
	if elapsed > 0 {
		cpuPercent = float64(total-u.ticks) / clockTicks / elapsed * 100
	}
	if u.rss {
		rss = peak
	}
	return
}
