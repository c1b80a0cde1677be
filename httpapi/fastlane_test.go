package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/httpapi"
	"github.com/imagestore/imagestore/internal/fastlane"
	"github.com/imagestore/imagestore/metrics"
	"github.com/imagestore/imagestore/storage/memstore"
)

// countingAnswerer counts the requests the lane answered itself.
type countingAnswerer struct {
	fastlane.Answerer
	answered atomic.Int64
}

func (c *countingAnswerer) Answer(req *fastlane.Request, resp *fastlane.Response) bool {
	ok := c.Answerer.Answer(req, resp)
	if ok {
		c.answered.Add(1)
	}
	return ok
}

// laneFixture is one API server reached two ways: through net/http alone,
// and through a fast lane in front of net/http.
type laneFixture struct {
	plain, lane string // addresses
	answerer    *countingAnswerer
	log         *lockedBuffer
	metrics     *metrics.Metrics
}

func newLaneFixture(t *testing.T, opts httpapi.Options) *laneFixture {
	t.Helper()
	cfg := domain.DefaultConfig
	cfg.HotCacheBytes = 8 << 20
	cfg.SoleWriter = true
	svc, err := domain.New(memstore.New(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &laneFixture{log: &lockedBuffer{}, metrics: metrics.New()}
	opts.Logger = slog.New(slog.NewJSONHandler(f.log, nil))
	opts.Metrics = f.metrics
	api := httpapi.NewServer(svc, opts)
	f.answerer = &countingAnswerer{Answerer: api.FastLane()}

	serve := func(ln net.Listener) {
		srv := &http.Server{Handler: api, ConnContext: httpapi.ConnContext}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.plain = ln.Addr().String()
	serve(ln)
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lane := fastlane.New(ln, f.answerer, fastlane.Options{IdleTimeout: time.Minute})
	f.lane = ln.Addr().String()
	serve(lane)
	t.Cleanup(func() { lane.Shutdown(context.Background()) })
	return f
}

// roundTrip sends a raw request on a new connection and reads the answer.
func roundTrip(t *testing.T, addr, req string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(req, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// TestFastLaneParity checks that the lane answers exactly as net/http does
// (status, every header but Date, body), answering itself the downloads of
// cached images and leaving every other request to net/http; and that its
// answers are logged and counted as net/http's are.
func TestFastLaneParity(t *testing.T) {
	for _, cors := range []bool{false, true} {
		t.Run(fmt.Sprintf("cors=%v", cors), func(t *testing.T) {
			var opts httpapi.Options
			if cors {
				opts.CORSOrigins = []string{"https://app.example"}
			}
			testFastLaneParity(t, opts)
		})
	}
}

func testFastLaneParity(t *testing.T, opts httpapi.Options) {
	f := newLaneFixture(t, opts)
	// An image, uploaded and read through net/http alone, twice each way,
	// so that the cache holds its stored and its decompressed bytes.
	resp, body := roundTrip(t, f.plain, "GET /imageapi/generate-token/laner/ HTTP/1.1\r\nHost: x\r\n\r\n")
	token := decodeJSON(t, body)["token"]
	if resp.StatusCode != http.StatusCreated || token == "" {
		t.Fatalf("generate-token: %d %s", resp.StatusCode, body)
	}
	data := readFixture(t, "jpeg-baseline.jpg")
	ct, form := fileForm(t, `été "1".jpg`, data)
	resp, body = roundTrip(t, f.plain, fmt.Sprintf("POST /imageapi/token/%s/upload-image/ HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s", token, ct, len(form), form))
	id := decodeJSON(t, body)["File ID"]
	if resp.StatusCode != http.StatusCreated || id == "" {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	get := "/imageapi/token/" + token + "/get-image/" + id + "/"
	v1 := "/api/v1/images/" + id
	for range 2 {
		roundTrip(t, f.plain, "GET "+get+" HTTP/1.1\r\nHost: x\r\n\r\n")
		roundTrip(t, f.plain, "GET "+get+" HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
	}
	f.requestsLogged(t, 6) // logged once answered: maybe after the client has the answer

	tests := []struct {
		name, req string
		lane      bool // answered by the lane itself
	}{
		{"gzip", "GET " + get + " HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, deflate\r\n\r\n", true},
		{"plain", "GET " + get + " HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"no final slash", "GET " + strings.TrimSuffix(get, "/") + " HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n", true},
		{"two encodings", "GET " + get + " HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nAccept-Encoding: identity\r\n\r\n", false},
		{"two encodings, gzip second", "GET " + get + " HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\nAccept-Encoding: gzip\r\n\r\n", false},
		{"gzip refused", "GET " + get + " HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=0, br\r\n\r\n", true},
		{"browser", "GET " + get + " HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0\r\nAccept: image/*\r\nAccept-Language: fr\r\nSec-Fetch-Mode: no-cors\r\nConnection: keep-alive\r\nAccept-Encoding: gzip\r\n\r\n", true},
		{"range", "GET " + get + " HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n", false},
		{"if-none-match", "GET " + get + " HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nIf-None-Match: \"x\", *\r\n\r\n", false},
		{"if-modified-since", "GET " + get + " HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: " + time.Now().Add(time.Hour).UTC().Format(http.TimeFormat) + "\r\n\r\n", false},
		{"origin", "GET " + get + " HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\nAccept-Encoding: gzip\r\n\r\n", false},
		{"head", "HEAD " + get + " HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n", false},
		{"query", "GET " + get + "?v=1 HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"escaped id", "GET " + strings.Replace(get, id, "%"+fmt.Sprintf("%02X", id[0])+id[1:], 1) + " HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"unknown header", "GET " + get + " HTTP/1.1\r\nHost: x\r\nX-Whatever: 1\r\n\r\n", false},
		{"wrong token", "GET /imageapi/token/" + strings.Repeat("a", len(token)) + "/get-image/" + id + "/ HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"unknown image", "GET /imageapi/token/" + token + "/get-image/nope/ HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"list", "GET /imageapi/token/" + token + "/get-image-list/ HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"http/1.0", "GET " + get + " HTTP/1.0\r\nHost: x\r\n\r\n", false},
		{"connection close", "GET " + get + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false},
		{"seed with authorization", "GET " + get + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\n\r\n", false},
		{"v1 gzip", "GET " + v1 + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nAccept-Encoding: gzip\r\n\r\n", true},
		{"v1 plain", "GET " + v1 + "/ HTTP/1.1\r\nHost: x\r\nAuthorization: bearer   " + token + "\r\n\r\n", true},
		{"v1 no token", "GET " + v1 + " HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"v1 basic", "GET " + v1 + " HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + token + "\r\n\r\n", false},
		{"v1 two tokens", "GET " + v1 + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nAuthorization: Bearer x\r\n\r\n", false},
		{"v1 wrong token", "GET " + v1 + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + strings.Repeat("a", len(token)) + "\r\n\r\n", false},
		{"v1 variant", "GET " + v1 + "?w=4 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\n\r\n", false},
		{"v1 meta", "GET " + v1 + "/meta HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\n\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logged := len(f.requestsLogged(t, 0))
			want, wantBody := roundTrip(t, f.plain, tt.req)
			wantLog := f.requestsLogged(t, logged+1)[logged]
			before := f.answerer.answered.Load()
			got, gotBody := roundTrip(t, f.lane, tt.req)
			if gotLog := f.requestsLogged(t, logged+2)[logged+1]; !maps.Equal(gotLog, wantLog) {
				t.Errorf("logged %v, want %v as net/http's", gotLog, wantLog)
			}
			if answered := f.answerer.answered.Load() - before; answered != map[bool]int64{true: 1, false: 0}[tt.lane] {
				t.Errorf("the lane answered %d requests, want %v", answered, tt.lane)
			}
			if got.StatusCode != want.StatusCode {
				t.Errorf("status %d, want %d as net/http's", got.StatusCode, want.StatusCode)
			}
			for _, h := range []http.Header{got.Header, want.Header} {
				if _, err := http.ParseTime(h.Get("Date")); err != nil {
					t.Errorf("Date %q: %v", h.Get("Date"), err)
				}
				h.Del("Date")
			}
			for k := range mergeKeys(got.Header, want.Header) {
				if !slices.Equal(got.Header[k], want.Header[k]) {
					t.Errorf("%s: %q, want %q as net/http's", k, got.Header[k], want.Header[k])
				}
			}
			if got.ContentLength != want.ContentLength || !bytes.Equal(gotBody, wantBody) {
				t.Errorf("body of %d bytes (Content-Length %d), want net/http's %d (%d)",
					len(gotBody), got.ContentLength, len(wantBody), want.ContentLength)
			}
		})
	}
	if got, want := f.answerer.answered.Load(), int64(7); got != want {
		t.Errorf("the lane answered %d requests, want %d", got, want)
	}

	// A download cut short is an error for the stored gzip stream, as
	// abortDownload makes it, and not for the decompressed bytes, as
	// http.ServeContent leaves it.
	for _, tt := range []struct {
		accept string
		errors int
	}{{"gzip", 1}, {"identity", 0}} {
		req := &fastlane.Request{Method: "GET", Target: []byte(get), RemoteAddr: "127.0.0.1:1", Start: time.Now(),
			Fields: []fastlane.Field{{Name: []byte("Host"), Value: []byte("x")}, {Name: []byte("Accept-Encoding"), Value: []byte(tt.accept)}}}
		var resp fastlane.Response
		if !f.answerer.Answer(req, &resp) {
			t.Fatalf("Accept-Encoding %s: not answered", tt.accept)
		}
		before := strings.Count(f.log.String(), "image download failed")
		f.answerer.Answered(req, &resp, 1000, errors.New("connection reset by peer"))
		if got := strings.Count(f.log.String(), "image download failed") - before; got != tt.errors {
			t.Errorf("Accept-Encoding %s, cut short: %d errors logged, want %d", tt.accept, got, tt.errors)
		}
	}

	// Counted as net/http's are, by the route's pattern.
	seedOKs := strings.Count(f.log.String(), `"method":"GET","route":"/imageapi/token/{token}/get-image/{id}/","status":200`)
	if strings.Contains(f.log.String(), token) {
		t.Errorf("the log holds the token:\n%s", f.log.String())
	}
	mresp, mbody := roundTrip(t, f.plain, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	wantLine := fmt.Sprintf(`imagestore_http_requests_total{method="GET",route="/imageapi/token/{token}/get-image/{id}/",status="200"} %d`, seedOKs)
	if mresp.StatusCode != http.StatusOK || !strings.Contains(string(mbody), wantLine) {
		t.Errorf("metrics lack %s:\n%s", wantLine, grepLines(string(mbody), "get-image"))
	}
}

// requestsLogged waits until the log holds at least n request records
// (logged once the answer is sent, so maybe after the client has it), and
// returns them all, each without its time, duration and client port.
func (f *laneFixture) requestsLogged(t *testing.T, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var recs []map[string]any
		for line := range strings.Lines(f.log.String()) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if rec["msg"] != "request" {
				continue
			}
			for _, k := range []string{"time", "duration", "remote"} {
				if _, ok := rec[k]; !ok {
					t.Fatalf("log line %q has no %s", line, k)
				}
				delete(rec, k)
			}
			recs = append(recs, rec)
		}
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d request records logged after 5 s, want %d:\n%s", len(recs), n, f.log.String())
		}
		time.Sleep(time.Millisecond)
	}
}

func mergeKeys(hs ...http.Header) map[string]bool {
	keys := map[string]bool{}
	for _, h := range hs {
		for k := range h {
			keys[k] = true
		}
	}
	return keys
}

func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

// TestFastLaneRespectsFailureLimits checks that a client that failed to
// authenticate too often gets 429 through the lane too, even with a valid
// token for a cached image.
func TestFastLaneRespectsFailureLimits(t *testing.T) {
	f := newLaneFixture(t, httpapi.Options{FailureRate: httpapi.Rate{N: 3, Per: time.Hour}})
	_, body := roundTrip(t, f.plain, "GET /imageapi/generate-token/limited/ HTTP/1.1\r\nHost: x\r\n\r\n")
	token := decodeJSON(t, body)["token"]
	ct, form := fileForm(t, "a.jpg", readFixture(t, "jpeg-baseline.jpg"))
	_, body = roundTrip(t, f.plain, fmt.Sprintf("POST /imageapi/token/%s/upload-image/ HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s", token, ct, len(form), form))
	get := "GET /imageapi/token/" + token + "/get-image/" + decodeJSON(t, body)["File ID"] + "/ HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n"
	for range 2 {
		roundTrip(t, f.plain, get)
	}
	if resp, _ := roundTrip(t, f.lane, get); resp.StatusCode != http.StatusOK || f.answerer.answered.Load() != 1 {
		t.Fatalf("a cached download: %d, %d answered by the lane; want 200 by the lane", resp.StatusCode, f.answerer.answered.Load())
	}
	bad := "GET /imageapi/token/" + strings.Repeat("b", len(token)) + "/get-image/x/ HTTP/1.1\r\nHost: x\r\n\r\n"
	for range 4 {
		roundTrip(t, f.lane, bad)
	}
	if resp, _ := roundTrip(t, f.lane, get); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("after 4 failures: %d, want 429", resp.StatusCode)
	}
	if n := f.answerer.answered.Load(); n != 1 {
		t.Errorf("the lane answered %d requests, want only the first", n)
	}
}
