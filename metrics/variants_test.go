package metrics_test

import (
	"strings"
	"testing"

	"github.com/imagestore/imagestore/metrics"
)

// TestVariants: the figures of variants are read at each scrape.
func TestVariants(t *testing.T) {
	m := metrics.New()
	hits := int64(3)
	m.Variants(func() (int64, int64, int64, float64) { return hits, 2, 1, 0.75 })
	for round, want := range [][]string{
		{
			"imagestore_variant_cache_hits_total 3",
			"imagestore_variant_cache_misses_total 2",
			"imagestore_variant_failures_total 1",
			"imagestore_variant_generation_seconds_total 0.75",
		},
		{"imagestore_variant_cache_hits_total 10"},
	} {
		out := scrape(t, m)
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("scrape %d: no %q in:\n%s", round, w, out)
			}
		}
		hits = 10
	}
	for _, help := range []string{"# TYPE imagestore_variant_cache_hits_total counter", "# TYPE imagestore_variant_generation_seconds_total counter"} {
		if !strings.Contains(scrape(t, m), help) {
			t.Errorf("no %q", help)
		}
	}
	var none *metrics.Metrics
	none.Variants(func() (int64, int64, int64, float64) { return 0, 0, 0, 0 }) // records nothing, does not panic
}
