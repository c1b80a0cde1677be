package main

import (
	"io/fs"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// goProcs is Go's own GOMAXPROCS for this process (the CPUs it may use,
// or its CPU limit in a container), read before setProcs changes it.
var goProcs = runtime.GOMAXPROCS(0)

// serverProcs returns how many goroutines the server runs at once, and
// whether that differs from what Go chose: as many as a valid GOMAXPROCS
// variable says (Go has applied it), Go's own choice where a CPU limit
// applies (cpuLimited), else twice goProcs.
//
// An upload is mostly waits: for the network, for the fsync of its image,
// for its list's batch, for its folder's flush. Its goroutine wakes after
// each for a little work. With one P per CPU, such goroutines often
// waited for a P: Go's scheduler-latency profile counted 4.5-9 ms of
// these waits per upload at 16 clients on two CPUs, while the CPUs were a
// quarter idle or waiting for the disk. With twice as many Ps, the kernel
// interleaves the threads instead: on two CPUs, uploads at 16 clients went
// from about 1,100 to 1,300/s at the same CPU per upload
// (BENCHMARKS.md, "Twice as many Ps"). Under a CPU limit, more threads
// than the limit would only get the process throttled, so there Go's
// choice stands, and so do its updates when the limit changes.
func serverProcs(getenv func(string) string, cpuLimited func() bool) (n int, set bool) {
	if v, err := strconv.Atoi(getenv("GOMAXPROCS")); err == nil && v > 0 {
		return runtime.GOMAXPROCS(0), false
	}
	if cpuLimited() {
		return goProcs, false
	}
	return 2 * goProcs, true
}

// setProcs applies serverProcs and returns the GOMAXPROCS in force.
func setProcs(getenv func(string) string, cpuLimited func() bool) int {
	if n, set := serverProcs(getenv, cpuLimited); set {
		runtime.GOMAXPROCS(n)
	}
	return runtime.GOMAXPROCS(0)
}

// cpuLimited reports whether a CPU quota applies to this process: a
// cgroup v2 cpu.max other than "max", or a cgroup v1 cpu.cfs_quota_us
// above 0, in the process's cgroup or one of its ancestors. fsys is the
// root of the file system; what cannot be read counts as no limit.
func cpuLimited(fsys fs.FS) bool {
	data, err := fs.ReadFile(fsys, "proc/self/cgroup")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(data)) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) != 3 || !strings.HasPrefix(f[2], "/") {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "":
			if quotaIn(fsys, []string{"sys/fs/cgroup", "sys/fs/cgroup/unified"}, f[2], "cpu.max", func(s string) bool {
				q := strings.Fields(s)
				return len(q) > 0 && q[0] != "max"
			}) {
				return true
			}
		case slices.Contains(strings.Split(f[1], ","), "cpu"):
			if quotaIn(fsys, []string{"sys/fs/cgroup/" + f[1], "sys/fs/cgroup/cpu"}, f[2], "cpu.cfs_quota_us", func(s string) bool {
				q, err := strconv.ParseInt(s, 10, 64)
				return err == nil && q > 0
			}) {
				return true
			}
		}
	}
	return false
}

// quotaIn reports whether limited holds for file in the cgroup folder
// at cgroup under one of mounts, or in one of its parents up to the mount.
func quotaIn(fsys fs.FS, mounts []string, cgroup, file string, limited func(string) bool) bool {
	for _, m := range mounts {
		for dir := path.Join(m, cgroup); ; dir = path.Dir(dir) {
			if b, err := fs.ReadFile(fsys, path.Join(dir, file)); err == nil && limited(strings.TrimSpace(string(b))) {
				return true
			}
			if dir == m || !strings.HasPrefix(dir, m+"/") {
				break
			}
		}
	}
	return false
}
