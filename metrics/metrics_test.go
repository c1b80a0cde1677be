package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/imagestore/imagestore/metrics"
	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/memstore"
)

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d", rec.Code)
	}
	return rec.Body.String()
}

func TestRequestsAndLimits(t *testing.T) {
	m := metrics.New()
	m.Request("/api/v1/images/{id}", "GET", 200, 0, 1234, 3*time.Millisecond)
	m.Request("/api/v1/images/{id}", "BREW", 405, 0, 10, time.Millisecond)
	m.RateLimited("accounts")
	m.AuthFailure()
	m.Counts(func() (int64, int64) { return 2, 5 })
	out := scrape(t, m)
	for _, want := range []string{
		`imagestore_http_requests_total{method="GET",route="/api/v1/images/{id}",status="200"} 1`,
		`imagestore_http_requests_total{method="OTHER",route="/api/v1/images/{id}",status="405"} 1`,
		`imagestore_http_response_bytes_total{route="/api/v1/images/{id}"} 1244`,
		`imagestore_http_request_duration_seconds_count{method="GET",route="/api/v1/images/{id}"} 1`,
		`imagestore_rate_limited_total{limit="accounts"} 1`,
		`imagestore_auth_failures_total 1`,
		`imagestore_users 2`,
		`imagestore_images 5`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "BREW") {
		t.Error("a made-up method became a label value")
	}
}

func TestStoreOperations(t *testing.T) {
	m := metrics.New()
	s := m.Store(memstore.New())
	ctx := context.Background()
	_, err := s.Put(ctx, "k", bytes.NewReader([]byte("v")), storage.Cond{})
	if err != nil {
		t.Fatal(err)
	}
	s.Put(ctx, "k", bytes.NewReader(nil), storage.Cond{IfAbsent: true})
	s.Get(ctx, "missing")
	rc, _, _ := s.Get(ctx, "k")
	io.Copy(io.Discard, rc)
	rc.Close()
	s.Delete(ctx, "k")
	for range s.List(ctx, "") {
	}
	if _, err := s.(interface{ FreeBytes() (int64, error) }).FreeBytes(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("FreeBytes of a memory store: %v, want ErrUnsupported", err)
	}
	// A store that writes in steps still does through the wrapper.
	st, ok := s.(storage.Stager)
	if !ok {
		t.Fatal("the wrapper of a storage.Stager is not one")
	}
	v, err := st.Stage(ctx, "d/staged", bytes.NewReader([]byte("v")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	v.Close()
	if err := st.Flush(ctx, "d/"); err != nil {
		t.Fatal(err)
	}
	out := scrape(t, m)
	for _, want := range []string{
		`imagestore_store_operations_total{op="stage",result="ok"} 1`,
		`imagestore_store_operations_total{op="publish",result="ok"} 1`,
		`imagestore_store_operations_total{op="flush",result="ok"} 1`,
		`imagestore_store_operations_total{op="put",result="ok"} 1`,
		`imagestore_store_operations_total{op="put",result="precondition_failed"} 1`,
		`imagestore_store_operations_total{op="get",result="not_found"} 1`,
		`imagestore_store_operations_total{op="get",result="ok"} 1`,
		`imagestore_store_operations_total{op="delete",result="ok"} 1`,
		`imagestore_store_operations_total{op="list",result="ok"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the metrics", want)
		}
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	m.Request("/x", "GET", 200, 0, 0, 0)
	m.RateLimited("x")
	m.AuthFailure()
	m.Counts(func() (int64, int64) { return 0, 0 })
	st := memstore.New()
	if m.Store(st) != storage.Store(st) {
		t.Error("a nil Metrics wrapped the store")
	}
}
