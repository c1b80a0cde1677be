package domain

import (
	"runtime"
	"testing"

	"github.com/imagestore/imagestore/storage/memstore"
)

// TestVariantSlotsFollowCPUs checks that the variants made at once follow
// Config.CPUs (at most 4), and GOMAXPROCS only when it is 0: a server
// running more Ps than CPUs must not make more variants at once.
func TestVariantSlotsFollowCPUs(t *testing.T) {
	for cpus, want := range map[int]int{0: min(runtime.GOMAXPROCS(0), 4), 1: 1, 2: 2, 8: 4} {
		cfg := DefaultConfig
		cfg.CPUs = cpus
		s, err := New(memstore.New(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := cap(s.variants.slots); got != want {
			t.Errorf("CPUs %d: %d variants at once, want %d", cpus, got, want)
		}
	}
}
