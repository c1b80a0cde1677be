package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// call is one HTTP request of a Go-driven workload.
type call struct {
	method string
	url    string
	header http.Header
	// body is sent as the concatenation of its pieces, without copying
	// them, so one large fixture can back many requests at once.
	body [][]byte
	want int
	// onOK, when set, receives the body of a response with the wanted
	// status (up to maxKeptBody bytes).
	onOK func(body []byte)
}

const maxKeptBody = 1 << 20

// loadSpec describes one run of the Go load generator: conc goroutines,
// each calling next for its requests until next reports that it has no
// more or, when duration is positive, until the duration has passed.
type loadSpec struct {
	name     string
	conc     int
	duration time.Duration
	next     func(worker, iter int) (*call, bool)
	// sameAddress sends every client's requests from 127.0.0.1 instead of
	// an address of its own (see clientAddr).
	sameAddress bool
	// noProfile skips the CPU profile of -profile, for preparatory runs.
	noProfile bool
	// run is the run's number in a repeated comparison (1, 2, ...), for
	// the profile's file name, or 0.
	run int
}

// loadStats is what a run measured.
type loadStats struct {
	requests  int64
	errors    int64
	elapsed   time.Duration
	latencies []time.Duration // sorted
	sent      int64           // request body bytes
	received  int64           // response body bytes
}

func (s *loadStats) rps() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.requests) / s.elapsed.Seconds()
}

// errorReport prints the first few distinct unexpected outcomes of a run,
// each once, to standard error.
type errorReport struct {
	name string
	mu   sync.Mutex
	seen map[string]bool
}

const maxReportedErrors = 5

func (r *errorReport) add(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[what] || len(r.seen) >= maxReportedErrors {
		return
	}
	r.seen[what] = true
	fmt.Fprintf(os.Stderr, "  %s: unexpected: %s\n", r.name, what)
	if len(r.seen) == maxReportedErrors {
		fmt.Fprintf(os.Stderr, "  %s: (further distinct errors not shown)\n", r.name)
	}
}

// first returns one recorded outcome, for error messages.
func (r *errorReport) first() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.seen {
		return k
	}
	return ""
}

// newTransport returns a keep-alive transport for up to conc
// simultaneous requests, whose connections come from source if it is not
// nil. Compression is off so that Accept-Encoding is whatever a request
// says.
func newTransport(conc int, source net.IP) *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if source != nil {
		dialer.LocalAddr = &net.TCPAddr{IP: source}
	}
	return &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		MaxIdleConns:        2 * conc,
		MaxIdleConnsPerHost: 2 * conc,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// clientAddr returns the loopback source address of simulated client w:
// 127.0.0.2, 127.0.0.3, and so on. The server applies some limits per
// client address; distinct addresses make c clients look like c clients
// rather than one client with c connections.
func clientAddr(w int) net.IP {
	n := w + 2
	return net.IPv4(127, byte(n>>16), byte(n>>8), byte(n))
}

// runLoad runs a load spec and returns its statistics. An error is
// returned only when the run could not take place (the context ended);
// unexpected responses are counted in loadStats.errors.
func runLoad(ctx context.Context, spec loadSpec) (*loadStats, *errorReport, error) {
	// Each simulated client has its own transport, hence its own
	// keep-alive connection.
	clients := make([]*http.Client, spec.conc)
	for w := range clients {
		var source net.IP
		if !spec.sameAddress {
			source = clientAddr(w)
		}
		tr := newTransport(1, source)
		defer tr.CloseIdleConnections()
		clients[w] = &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	report := &errorReport{name: spec.name, seen: map[string]bool{}}
	var deadline time.Time
	start := time.Now()
	if spec.duration > 0 {
		deadline = start.Add(spec.duration)
	}
	lat := make([][]time.Duration, spec.conc)
	var requests, errs, sent, received atomic.Int64
	var wg sync.WaitGroup
	for w := range spec.conc {
		wg.Go(func() {
			for i := 0; ; i++ {
				if ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline)) {
					return
				}
				c, ok := spec.next(w, i)
				if !ok {
					return
				}
				t0 := time.Now()
				n, in, err := do(ctx, clients[w], c)
				d := time.Since(t0)
				if ctx.Err() != nil {
					return // an interrupted request is not a measurement
				}
				lat[w] = append(lat[w], d)
				requests.Add(1)
				sent.Add(n)
				received.Add(in)
				if err != nil {
					errs.Add(1)
					report.add(err.Error())
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	st := &loadStats{
		requests: requests.Load(),
		errors:   errs.Load(),
		elapsed:  time.Since(start),
		sent:     sent.Load(),
		received: received.Load(),
	}
	for _, l := range lat {
		st.latencies = append(st.latencies, l...)
	}
	slices.Sort(st.latencies)
	return st, report, nil
}

// do sends one call and reads the whole response. It returns the request
// and response body sizes, and an error describing an unexpected status or
// a transport failure.
func do(ctx context.Context, client *http.Client, c *call) (sent, received int64, err error) {
	var body io.Reader
	if len(c.body) > 0 {
		readers := make([]io.Reader, len(c.body))
		for i, p := range c.body {
			readers[i] = bytes.NewReader(p)
			sent += int64(len(p))
		}
		body = io.MultiReader(readers...)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, body)
	if err != nil {
		return 0, 0, err
	}
	req.ContentLength = sent
	for k, v := range c.header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return sent, 0, fmt.Errorf("%s %s: %v", c.method, routeOf(c.url), unwrapURLError(err))
	}
	defer resp.Body.Close()
	keep := resp.StatusCode != c.want || c.onOK != nil
	var kept bytes.Buffer
	if keep {
		received, err = io.Copy(&kept, io.LimitReader(resp.Body, maxKeptBody))
		if err == nil {
			var rest int64
			rest, err = io.Copy(io.Discard, resp.Body)
			received += rest
		}
	} else {
		received, err = io.Copy(io.Discard, resp.Body)
	}
	if err != nil {
		return sent, received, fmt.Errorf("%s %s: reading the response: %v", c.method, routeOf(c.url), err)
	}
	if resp.StatusCode != c.want {
		snippet := strings.TrimSpace(kept.String())
		if len(snippet) > 200 {
			snippet = snippet[:200] + "..."
		}
		return sent, received, fmt.Errorf("%s %s: status %d (want %d): %s", c.method, routeOf(c.url), resp.StatusCode, c.want, snippet)
	}
	if c.onOK != nil {
		c.onOK(kept.Bytes())
	}
	return sent, received, nil
}

// routeOf shortens a URL to a path with the token and id elided, so error
// messages group by route.
func routeOf(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		if j := strings.IndexByte(u[i+3:], '/'); j >= 0 {
			u = u[i+3+j:]
		}
	}
	parts := strings.Split(u, "/")
	for i := 1; i < len(parts); i++ {
		switch parts[i-1] {
		case "token", "get-image", "delete-image", "update-image", "generate-token":
			parts[i] = "…"
		}
	}
	return strings.Join(parts, "/")
}

// unwrapURLError drops the method and URL that net/http puts around a
// transport error; the caller names the route itself.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted
// durations by the nearest-rank method, or 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(len(sorted)) * p / 100))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// multipartBody returns the pieces of a multipart/form-data body carrying
// data as the file part "file" with the given file name, and the matching
// Content-Type header value.
func multipartBody(filename, contentType string, data []byte) ([][]byte, string) {
	const boundary = "imagestore-bench-boundary-7f3a9c"
	head := "--" + boundary + "\r\n" +
		`Content-Disposition: form-data; name="file"; filename="` + filename + `"` + "\r\n" +
		"Content-Type: " + contentType + "\r\n\r\n"
	tail := "\r\n--" + boundary + "--\r\n"
	return [][]byte{[]byte(head), data, []byte(tail)}, "multipart/form-data; boundary=" + boundary
}
