package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"
)

func TestServerProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	unlimited := func() bool { return false }
	limited := func() bool { return true }
	if n, set := serverProcs(noEnv, unlimited); n != 2*goProcs || !set {
		t.Errorf("no GOMAXPROCS, no CPU limit: %d, %v; want twice Go's own %d, set", n, set, goProcs)
	}
	if n, set := serverProcs(noEnv, limited); n != goProcs || set {
		t.Errorf("under a CPU limit: %d, %v; want Go's own %d, left alone", n, set, goProcs)
	}
	runtime.GOMAXPROCS(3) // as Go does at start for GOMAXPROCS=3
	if n, set := serverProcs(envOf(map[string]string{"GOMAXPROCS": "3"}), unlimited); n != 3 || set {
		t.Errorf("GOMAXPROCS=3: %d, %v; want 3, left alone", n, set)
	}
	// Go ignores a GOMAXPROCS that is not a positive number: so does the
	// server.
	for _, v := range []string{"0", "-2", "many"} {
		if n, set := serverProcs(envOf(map[string]string{"GOMAXPROCS": v}), unlimited); n != 2*goProcs || !set {
			t.Errorf("GOMAXPROCS=%s: %d, %v; want twice Go's own %d, set", v, n, set, goProcs)
		}
	}
}

// TestRunSetsProcs checks that the server applies serverProcs' choice
// for this machine, and logs it.
func TestRunSetsProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(goProcs)
	want, _ := serverProcs(noEnv, func() bool { return cpuLimited(os.DirFS("/")) })
	stderr := &syncBuffer{}
	_, done, cancel := startRun(t, t.TempDir(), stderr)
	defer cancel()
	if got := runtime.GOMAXPROCS(0); got != want {
		t.Errorf("GOMAXPROCS while serving: %d, want %d", got, want)
	}
	if w := fmt.Sprintf(" gomaxprocs=%d", want); !strings.Contains(stderr.String(), w) {
		t.Errorf("the listening line lacks %q:\n%s", w, stderr.String())
	}
	cancel()
	if err := waitRun(t, done, stderr); err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestCPULimited(t *testing.T) {
	v1 := "4:memory:/some/where\n2:cpu,cpuacct:/box\n1:cpuset:/\n0::/\n"
	tests := []struct {
		name  string
		files map[string]string
		want  bool
	}{
		{"nothing readable", nil, false},
		{"v2, no quota", map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "max 100000\n"}, false},
		{"v2, a quota", map[string]string{"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "50000 100000\n"}, true},
		{"v2, a quota on a parent", map[string]string{
			"proc/self/cgroup":                       "0::/kubepods/pod1/c1\n",
			"sys/fs/cgroup/kubepods/pod1/c1/cpu.max": "max 100000\n",
			"sys/fs/cgroup/kubepods/pod1/cpu.max":    "150000 100000\n",
		}, true},
		{"v2 beside v1 (hybrid), no quota", map[string]string{
			"proc/self/cgroup":                   "1:cpu:/\n0::/\n",
			"sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
			"sys/fs/cgroup/unified/cgroup.procs": "1\n",
		}, false},
		{"v1, no quota", map[string]string{"proc/self/cgroup": v1, "sys/fs/cgroup/cpu,cpuacct/box/cpu.cfs_quota_us": "-1\n"}, false},
		{"v1, a quota", map[string]string{"proc/self/cgroup": v1, "sys/fs/cgroup/cpu,cpuacct/box/cpu.cfs_quota_us": "50000\n"}, true},
		{"v1, a quota through the cpu link", map[string]string{"proc/self/cgroup": v1, "sys/fs/cgroup/cpu/box/cpu.cfs_quota_us": "200000\n"}, true},
		{"v1, a quota outside the process's cgroup", map[string]string{"proc/self/cgroup": v1, "sys/fs/cgroup/cpu,cpuacct/other/cpu.cfs_quota_us": "50000\n"}, false},
		{"a garbled line", map[string]string{"proc/self/cgroup": "garbage\n0::relative\n", "sys/fs/cgroup/cpu.max": "50000 100000\n"}, false},
	}
	for _, tt := range tests {
		fsys := fstest.MapFS{}
		for name, data := range tt.files {
			fsys[name] = &fstest.MapFile{Data: []byte(data)}
		}
		if got := cpuLimited(fsys); got != tt.want {
			t.Errorf("%s: cpuLimited = %v, want %v", tt.name, got, tt.want)
		}
	}
}
