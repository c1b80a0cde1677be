// Package metrics exposes imagestore's Prometheus metrics: requests by route
// and status, latencies, bytes in and out, store operations and errors, rate
// limiting, and the numbers of users and images.
//
// Labels are route patterns, methods, status codes and operation names:
// never a path, a token or a username.
package metrics

import (
	"context"
	"errors"
	"io"
	"iter"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/imagestore/imagestore/storage"
)

// Metrics holds the collectors. A nil *Metrics records nothing.
type Metrics struct {
	reg *prometheus.Registry

	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	bytesIn      *prometheus.CounterVec
	bytesOut     *prometheus.CounterVec
	storeOps     *prometheus.CounterVec
	storeTime    *prometheus.HistogramVec
	limited      *prometheus.CounterVec
	authFailures prometheus.Counter
	failedReads  prometheus.Counter

	// The series of each label combination, looked up once: finding a
	// child by label values hashes them on every call.
	reqSeries   sync.Map // requestLabels -> *requestSeries
	storeSeries sync.Map // [2]string{op, result} -> *storeSeries
}

type requestLabels struct {
	route, method string
	status        int
}

type requestSeries struct {
	count, in, out prometheus.Counter
	duration       prometheus.Observer
}

type storeSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// New returns metrics registered in a registry of their own, with the Go
// runtime's and the process's collectors beside them.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imagestore_http_requests_total", Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imagestore_http_request_duration_seconds", Help: "HTTP request latency by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imagestore_http_request_bytes_total", Help: "Request body bytes read, by route pattern.",
		}, []string{"route"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imagestore_http_response_bytes_total", Help: "Response body bytes written, by route pattern.",
		}, []string{"route"}),
		storeOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imagestore_store_operations_total", Help: "Store operations by operation and result (ok, not_found, precondition_failed, error).",
		}, []string{"op", "result"}),
		storeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "imagestore_store_operation_duration_seconds", Help: "Store operation latency by operation.",
			Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"op"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imagestore_rate_limited_total", Help: "Requests refused with 429, by limit.",
		}, []string{"limit"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imagestore_auth_failures_total", Help: "Failed authentications (unknown tokens, wrong passwords).",
		}),
		failedReads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "imagestore_download_failures_total", Help: "Image downloads cut short because the stored image could not be read whole and right (damage, a store error).",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.bytesIn, m.bytesOut, m.storeOps, m.storeTime, m.limited, m.authFailures, m.failedReads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Counts registers gauges of users and images, read from f at each scrape.
func (m *Metrics) Counts(f func() (users, images int64)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imagestore_users", Help: "Users, as this process knows them."},
			func() float64 { u, _ := f(); return float64(u) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imagestore_images", Help: "Images, as this process knows them."},
			func() float64 { _, i := f(); return float64(i) }),
	)
}

// HotCache registers the figures of the memory cache of images,
// read from f at each scrape.
func (m *Metrics) HotCache(f func() (hits, misses, bytes, entries, capacity int64)) {
	if m == nil {
		return
	}
	pick := func(i int) func() float64 {
		return func() float64 {
			h, mi, b, e, c := f()
			return float64([]int64{h, mi, b, e, c}[i])
		}
	}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imagestore_image_cache_hits_total", Help: "Downloads served from the memory cache of images."}, pick(0)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imagestore_image_cache_misses_total", Help: "Downloads that read an image and filled the memory cache with it."}, pick(1)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imagestore_image_cache_bytes", Help: "Bytes of images (decompressed, or as stored) held in the memory cache."}, pick(2)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imagestore_image_cache_entries", Help: "Images held in the memory cache."}, pick(3)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "imagestore_image_cache_capacity_bytes", Help: "Size of the memory cache of images (--cache-size)."}, pick(4)),
	)
}

// FastLane registers the figures of the fast lane (--fast-lane), read from
// f at each scrape: the downloads it answered itself, and the connections
// it handed to Go's HTTP server.
func (m *Metrics) FastLane(f func() (answered, handedOver int64)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imagestore_fast_lane_answers_total", Help: "Downloads of cached images answered by the fast lane, before Go's HTTP server."},
			func() float64 { a, _ := f(); return float64(a) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imagestore_fast_lane_handovers_total", Help: "Connections the fast lane handed to Go's HTTP server, at their first request it did not answer."},
			func() float64 { _, h := f(); return float64(h) }),
	)
}

// Variants registers the figures of image variants (resized copies made on
// demand and kept in the store), read from f at each scrape: variants
// served from the store, variants made, requests for which none could be
// made, and the time spent making them.
func (m *Metrics) Variants(f func() (hits, misses, failures int64, seconds float64)) {
	if m == nil {
		return
	}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imagestore_variant_cache_hits_total", Help: "Image variants served from the store, made by an earlier request."},
			func() float64 { h, _, _, _ := f(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imagestore_variant_cache_misses_total", Help: "Image variants made (decoded, resized, encoded) and kept in the store."},
			func() float64 { _, mi, _, _ := f(); return float64(mi) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imagestore_variant_failures_total", Help: "Requests for a variant that could not be made (an image that cannot be decoded, damaged, or over the pixel limit)."},
			func() float64 { _, _, fa, _ := f(); return float64(fa) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "imagestore_variant_generation_seconds_total", Help: "Time spent making image variants (divide by the misses for the mean)."},
			func() float64 { _, _, _, sec := f(); return sec }),
	)
}

// Request records one served request.
func (m *Metrics) Request(route, method string, status int, in, out int64, d time.Duration) {
	if m == nil {
		return
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	default:
		method = "OTHER" // a client's made-up methods must not grow the label set
	}
	key := requestLabels{route, method, status}
	v, ok := m.reqSeries.Load(key)
	if !ok {
		v, _ = m.reqSeries.LoadOrStore(key, &requestSeries{
			count:    m.requests.WithLabelValues(route, method, strconv.Itoa(status)),
			duration: m.duration.WithLabelValues(route, method),
			in:       m.bytesIn.WithLabelValues(route),
			out:      m.bytesOut.WithLabelValues(route),
		})
	}
	rs := v.(*requestSeries)
	rs.count.Inc()
	rs.duration.Observe(d.Seconds())
	if in > 0 {
		rs.in.Add(float64(in))
	}
	if out > 0 {
		rs.out.Add(float64(out))
	}
}

// RateLimited counts a request refused by the named limit.
func (m *Metrics) RateLimited(limit string) {
	if m != nil {
		m.limited.WithLabelValues(limit).Inc()
	}
}

// DownloadFailed counts a download cut short by a stored image that could
// not be read whole and right.
func (m *Metrics) DownloadFailed() {
	if m != nil {
		m.failedReads.Inc()
	}
}

// AuthFailure counts a failed authentication.
func (m *Metrics) AuthFailure() {
	if m != nil {
		m.authFailures.Inc()
	}
}

// Store wraps a store so that its operations are counted and timed. A
// storage.Stager stays one: its steps are counted as "stage", "publish",
// "unlink", "flush" and "append".
func (m *Metrics) Store(s storage.Store) storage.Store {
	if m == nil {
		return s
	}
	w := &store{Store: s, m: m}
	if st, ok := s.(storage.Stager); ok {
		return &stagerStore{store: w, stager: st}
	}
	return w
}

type stagerStore struct {
	*store
	stager storage.Stager
}

func (s *stagerStore) Stage(ctx context.Context, key string, r io.Reader) (storage.Staged, error) {
	start := time.Now()
	v, err := s.stager.Stage(ctx, key, r)
	s.observe("stage", start, err)
	if err != nil {
		return nil, err
	}
	return &staged{Staged: v, s: s.store}, nil
}

func (s *stagerStore) StageNew(ctx context.Context, key string, r io.Reader) (storage.Staged, error) {
	start := time.Now()
	v, err := s.stager.StageNew(ctx, key, r)
	s.observe("stage", start, err)
	if err != nil {
		return nil, err
	}
	return &staged{Staged: v, s: s.store}, nil
}

func (s *stagerStore) Unlink(ctx context.Context, key string) error {
	start := time.Now()
	err := s.stager.Unlink(ctx, key)
	s.observe("unlink", start, err)
	return err
}

func (s *stagerStore) Append(ctx context.Context, key string, p []byte) error {
	start := time.Now()
	err := s.stager.Append(ctx, key, p)
	s.observe("append", start, err)
	return err
}

func (s *stagerStore) Flush(ctx context.Context, folder string) error {
	start := time.Now()
	err := s.stager.Flush(ctx, folder)
	s.observe("flush", start, err)
	return err
}

type staged struct {
	storage.Staged
	s *store
}

func (v *staged) Publish(ctx context.Context) (storage.Attrs, error) {
	start := time.Now()
	a, err := v.Staged.Publish(ctx)
	v.s.observe("publish", start, err)
	return a, err
}

type store struct {
	storage.Store
	m *Metrics
}

func (s *store) observe(op string, start time.Time, err error) {
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrNotFound):
		result = "not_found"
	case errors.Is(err, storage.ErrPrecondition):
		result = "precondition_failed"
	default:
		result = "error"
	}
	key := [2]string{op, result}
	v, ok := s.m.storeSeries.Load(key)
	if !ok {
		v, _ = s.m.storeSeries.LoadOrStore(key, &storeSeries{
			count:    s.m.storeOps.WithLabelValues(op, result),
			duration: s.m.storeTime.WithLabelValues(op),
		})
	}
	ss := v.(*storeSeries)
	ss.count.Inc()
	ss.duration.Observe(time.Since(start).Seconds())
}

func (s *store) Get(ctx context.Context, key string) (io.ReadCloser, storage.Attrs, error) {
	start := time.Now()
	rc, a, err := s.Store.Get(ctx, key)
	s.observe("get", start, err)
	return rc, a, err
}

func (s *store) Stat(ctx context.Context, key string) (storage.Attrs, error) {
	start := time.Now()
	a, err := s.Store.Stat(ctx, key)
	s.observe("stat", start, err)
	return a, err
}

func (s *store) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	start := time.Now()
	a, err := s.Store.Put(ctx, key, r, cond)
	s.observe("put", start, err)
	return a, err
}

func (s *store) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := s.Store.Delete(ctx, key)
	s.observe("delete", start, err)
	return err
}

func (s *store) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		start := time.Now()
		var failed error
		for k, err := range s.Store.List(ctx, prefix) {
			if err != nil {
				failed = err
			}
			if !yield(k, err) {
				break
			}
		}
		s.observe("list", start, failed)
	}
}

// FreeBytes passes on the wrapped store's free space, where it can tell.
func (s *store) FreeBytes() (int64, error) {
	if fs, ok := s.Store.(interface{ FreeBytes() (int64, error) }); ok {
		return fs.FreeBytes()
	}
	return 0, errors.ErrUnsupported
}
