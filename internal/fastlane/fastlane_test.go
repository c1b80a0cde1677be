package fastlane_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagestore/imagestore/internal/fastlane"
)

// laneHeader holds the header lines the test answerer puts in each answer.
const laneHeader = "X-Lane: yes\r\nContent-Type: text/plain; charset=utf-8\r\n"

// Bodies of large answers: random bytes, so that a byte lost, duplicated
// or moved is seen.
var (
	big4  = sync.OnceValue(func() []byte { return randomBytes(1, 4<<20) })
	big64 = sync.OnceValue(func() []byte { return randomBytes(2, 64<<20) })
)

func randomBytes(seed byte, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// laneBody returns the body the test answerer sends for target.
func laneBody(target string) []byte {
	switch target {
	case "/fast/big4":
		return big4()
	case "/fast/big64":
		return big64()
	}
	return []byte("fast:" + target)
}

// answer records one call of Answered.
type answer struct {
	method, target, remote string
	fields                 []string // "Name: value"
	start                  time.Time
	written                int64
	err                    error
}

// testAnswerer answers the GET and HEAD requests of a target under
// /fast/, and records what the lane tells it.
type testAnswerer struct {
	calls   atomic.Int64 // calls of Answer
	answers atomic.Int64 // calls of Answer that answered
	dropped atomic.Int64 // calls of Answered that done had no room for
	reused  atomic.Int64 // calls of Answer given a Response not emptied
	done    chan answer  // each call of Answered, in order
}

func (a *testAnswerer) Answer(req *fastlane.Request, resp *fastlane.Response) bool {
	a.calls.Add(1)
	if len(resp.Header) != 0 || resp.Body != nil {
		a.reused.Add(1)
	}
	target := string(req.Target)
	if !strings.HasPrefix(target, "/fast/") {
		return false
	}
	resp.Header = append(resp.Header, laneHeader...)
	resp.Body = laneBody(target)
	a.answers.Add(1)
	return true
}

func (a *testAnswerer) Answered(req *fastlane.Request, resp *fastlane.Response, written int64, err error) {
	an := answer{method: req.Method, target: string(req.Target), remote: req.RemoteAddr,
		start: req.Start, written: written, err: err}
	for _, f := range req.Fields {
		an.fields = append(an.fields, string(f.Name)+": "+string(f.Value))
	}
	select {
	case a.done <- an:
	default:
		a.dropped.Add(1)
	}
}

// next returns the next call of Answered for target, skipping the calls
// for other targets.
func (a *testAnswerer) next(t *testing.T, target string) answer {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case an := <-a.done:
			if an.target == target {
				return an
			}
		case <-timeout:
			t.Fatalf("Answered was not called for %s (%d calls dropped)", target, a.dropped.Load())
		}
	}
}

// testHandler is the http.Server's handler: it answers every request with
// "slow:" and the path, and records the requests it served.
type testHandler struct {
	mu   sync.Mutex
	reqs []string // "METHOD path body"
}

func (h *testHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.reqs = append(h.reqs, r.Method+" "+r.URL.Path+" "+string(body))
	h.mu.Unlock()
	io.WriteString(w, "slow:"+r.URL.Path)
}

// served returns the requests the handler served.
func (h *testHandler) served() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.reqs)
}

// fixture is a Lane on a loopback listener, served by an http.Server.
type fixture struct {
	addr      string
	lane      *fastlane.Lane
	a         *testAnswerer
	h         *testHandler
	serveErr  error         // what srv.Serve returned
	serveDone chan struct{} // closed when srv.Serve has returned
}

func start(t *testing.T, opts fastlane.Options) *fixture {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		addr:      ln.Addr().String(),
		a:         &testAnswerer{done: make(chan answer, 1<<14)},
		h:         &testHandler{},
		serveDone: make(chan struct{}),
	}
	f.lane = fastlane.New(ln, f.a, opts)
	srv := &http.Server{Handler: f.h, ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		f.serveErr = srv.Serve(f.lane)
		close(f.serveDone)
	}()
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.lane.Shutdown(ctx); err != nil {
			t.Errorf("cleanup: Shutdown: %v", err)
		}
		f.served(t)
		if n := f.a.reused.Load(); n > 0 {
			t.Errorf("Answer given a Response not emptied %d times", n)
		}
	})
	return f
}

// served waits for srv.Serve to return, and returns its error.
func (f *fixture) served(t *testing.T) error {
	t.Helper()
	select {
	case <-f.serveDone:
		return f.serveErr
	case <-time.After(10 * time.Second):
		t.Fatal("http.Server.Serve did not return")
		return nil
	}
}

// client is a raw connection to a fixture.
type client struct {
	t  *testing.T
	c  *net.TCPConn
	br *bufio.Reader
}

func (f *fixture) dial(t *testing.T) *client {
	t.Helper()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{t: t, c: c.(*net.TCPConn), br: bufio.NewReader(c)}
}

// request returns the head of a request of method and path, with no body.
func request(method, path string) string {
	return method + " " + path + " HTTP/1.1\r\nHost: lane.test\r\n\r\n"
}

// get returns the head of a GET of path.
func get(path string) string { return request("GET", path) }

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// readResponse reads a response to a request of method, and its body.
func readResponse(br *bufio.Reader, method string) (*http.Response, []byte, error) {
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body, err
}

func (c *client) read(method string) (*http.Response, []byte) {
	c.t.Helper()
	resp, body, err := readResponse(c.br, method)
	if err != nil {
		c.t.Fatalf("reading the response: %v", err)
	}
	return resp, body
}

// readHead reads the head of a response to a GET, leaving its body unread.
func (c *client) readHead() *http.Response {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
	if err != nil {
		c.t.Fatalf("reading the response: %v", err)
	}
	return resp
}

// expectEOF checks that the server closes the connection, sending nothing
// more.
func (c *client) expectEOF() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.br.ReadByte()
	if err != io.EOF {
		c.t.Fatalf("read after the last response: %q, %v; want EOF", b, err)
	}
}

// expectClosed checks that the server closes the connection, sending
// nothing more; the close may reset it.
func (c *client) expectClosed() {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.br.ReadByte()
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatalf("read after the last response: %q, %v; want the connection closed", b, err)
	}
}

// checkLane checks a response the lane sent to a request of method and
// target.
func checkLane(t *testing.T, method, target string, resp *http.Response, body []byte) {
	t.Helper()
	if err := laneError(method, target, resp, body); err != nil {
		t.Error(err)
	}
}

func laneError(method, target string, resp *http.Response, body []byte) error {
	want := laneBody(target)
	if method == "HEAD" {
		if len(body) != 0 {
			return fmt.Errorf("HEAD %s: %d bytes of body", target, len(body))
		}
	} else if !bytes.Equal(body, want) {
		if len(body) > 64 || len(want) > 64 {
			return fmt.Errorf("%s %s: body of %d bytes differs from the %d bytes answered", method, target, len(body), len(want))
		}
		return fmt.Errorf("%s %s: body %q, want %q from the lane", method, target, body, want)
	}
	if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/1.1" {
		return fmt.Errorf("%s %s: %s %s", method, target, resp.Proto, resp.Status)
	}
	if resp.ContentLength != int64(len(want)) {
		return fmt.Errorf("%s %s: Content-Length %d, want %d", method, target, resp.ContentLength, len(want))
	}
	if got := resp.Header.Get("X-Lane"); got != "yes" {
		return fmt.Errorf("%s %s: X-Lane %q, want yes", method, target, got)
	}
	if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
		return fmt.Errorf("%s %s: Date: %v", method, target, err)
	}
	if resp.Close {
		return fmt.Errorf("%s %s: the lane's answer closes the connection", method, target)
	}
	return nil
}

// checkSlow checks a response net/http sent to a request of path.
func checkSlow(t *testing.T, method, path string, resp *http.Response, body []byte) {
	t.Helper()
	if err := slowError(method, path, resp, body); err != nil {
		t.Error(err)
	}
}

func slowError(method, path string, resp *http.Response, body []byte) error {
	want := "slow:" + path
	if method == "HEAD" {
		if len(body) != 0 {
			return fmt.Errorf("HEAD %s: %d bytes of body", path, len(body))
		}
	} else if string(body) != want {
		return fmt.Errorf("%s %s: body %q, want %q from net/http", method, path, body, want)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if resp.ContentLength != int64(len(want)) {
		return fmt.Errorf("%s %s: Content-Length %d, want %d", method, path, resp.ContentLength, len(want))
	}
	if resp.Header.Get("X-Lane") != "" {
		return fmt.Errorf("%s %s: answered by the lane, want net/http", method, path)
	}
	return nil
}

// checkServed checks the requests the handler served, in order.
func (f *fixture) checkServed(t *testing.T, want ...string) {
	t.Helper()
	if got := f.h.served(); !slices.Equal(got, want) {
		t.Errorf("handler served %q, want %q", got, want)
	}
}

// TestGetAnswered checks an answer of the lane, and what it tells the
// Answerer.
func TestGetAnswered(t *testing.T) {
	f := start(t, fastlane.Options{})
	c := f.dial(t)
	before := time.Now()
	c.send(get("/fast/a?b=c"))
	resp, body := c.read("GET")
	after := time.Now()
	checkLane(t, "GET", "/fast/a?b=c", resp, body)
	if string(body) != "fast:/fast/a?b=c" {
		t.Errorf("body %q", body)
	}
	keys := slices.Sorted(maps.Keys(resp.Header))
	if want := []string{"Content-Length", "Content-Type", "Date", "X-Lane"}; !slices.Equal(keys, want) {
		t.Errorf("header fields %q, want %q", keys, want)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", got)
	}
	date, _ := http.ParseTime(resp.Header.Get("Date"))
	if date.Before(before.Truncate(time.Second)) || date.After(after) {
		t.Errorf("Date %v, not between %v and %v", date, before, after)
	}
	an := f.a.next(t, "/fast/a?b=c")
	if an.method != "GET" || an.written != int64(len(body)) || an.err != nil {
		t.Errorf("Answered(%s, written %d, %v), want (GET, %d, nil)", an.method, an.written, an.err, len(body))
	}
	if an.remote != c.c.LocalAddr().String() {
		t.Errorf("RemoteAddr %q, want %q", an.remote, c.c.LocalAddr())
	}
	if want := []string{"Host: lane.test"}; !slices.Equal(an.fields, want) {
		t.Errorf("Fields %q, want %q", an.fields, want)
	}
	if an.start.Before(before) || an.start.After(after) {
		t.Errorf("Start %v, not between %v and %v", an.start, before, after)
	}
	f.checkServed(t)
}

// TestHeadAnswered checks that the answer to HEAD has the Content-Length
// of the body, and no body.
func TestHeadAnswered(t *testing.T) {
	f := start(t, fastlane.Options{})
	c := f.dial(t)
	c.send(request("HEAD", "/fast/h"))
	resp, body := c.read("HEAD")
	checkLane(t, "HEAD", "/fast/h", resp, body)
	an := f.a.next(t, "/fast/h")
	if an.method != "HEAD" || an.written != 0 || an.err != nil {
		t.Errorf("Answered(%s, written %d, %v), want (HEAD, 0, nil)", an.method, an.written, an.err)
	}
	// A body sent after the head would be read as the start of the next
	// response.
	c.send(get("/fast/g"))
	resp, body = c.read("GET")
	checkLane(t, "GET", "/fast/g", resp, body)

	// The same, the two requests sent at once.
	c.send(request("HEAD", "/fast/h2") + get("/fast/g2"))
	resp, body = c.read("HEAD")
	checkLane(t, "HEAD", "/fast/h2", resp, body)
	resp, body = c.read("GET")
	checkLane(t, "GET", "/fast/g2", resp, body)
	f.checkServed(t)
}

// TestKeepAlive checks answers sent one after another on one connection.
func TestKeepAlive(t *testing.T) {
	f := start(t, fastlane.Options{IdleTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second})
	c := f.dial(t)
	for i := range 20 {
		target := fmt.Sprintf("/fast/%d", i)
		c.send(get(target))
		resp, body := c.read("GET")
		checkLane(t, "GET", target, resp, body)
		if an := f.a.next(t, target); an.err != nil || an.written != int64(len(body)) {
			t.Errorf("Answered(%s, written %d, %v)", target, an.written, an.err)
		}
	}
	if n := f.a.answers.Load(); n != 20 {
		t.Errorf("%d answers, want 20", n)
	}
	f.checkServed(t)
}

// TestPipelining checks requests sent at once: the lane answers the first,
// and net/http everything from the first it does not answer.
func TestPipelining(t *testing.T) {
	f := start(t, fastlane.Options{})
	c := f.dial(t)
	c.send(get("/fast/1") + get("/slow/2") + get("/fast/3"))
	resp, body := c.read("GET")
	checkLane(t, "GET", "/fast/1", resp, body)
	resp, body = c.read("GET")
	checkSlow(t, "GET", "/slow/2", resp, body)
	// net/http has the connection from the second request on.
	resp, body = c.read("GET")
	checkSlow(t, "GET", "/fast/3", resp, body)
	f.checkServed(t, "GET /slow/2 ", "GET /fast/3 ")
	if calls, answers := f.a.calls.Load(), f.a.answers.Load(); calls != 2 || answers != 1 {
		t.Errorf("Answer called %d times, answering %d; want 2 and 1", calls, answers)
	}
}

// TestSplitHead checks that a head that arrives in two parts goes to
// net/http, and no byte of it is lost or read twice.
func TestSplitHead(t *testing.T) {
	f := start(t, fastlane.Options{})
	c := f.dial(t)
	c.send("GET /fast/split HTTP/1.1\r\nHo")
	time.Sleep(100 * time.Millisecond) // the lane sees the first part alone
	c.send("st: lane.test\r\n\r\n")
	resp, body := c.read("GET")
	checkSlow(t, "GET", "/fast/split", resp, body)
	c.send(get("/fast/next"))
	resp, body = c.read("GET")
	checkSlow(t, "GET", "/fast/next", resp, body)
	f.checkServed(t, "GET /fast/split ", "GET /fast/next ")
	if n := f.a.calls.Load(); n != 0 {
		t.Errorf("Answer called %d times for a split head", n)
	}
}

// TestLongHead checks that a head too long for the lane's buffer goes to
// net/http whole, also after an answered request sent with it.
func TestLongHead(t *testing.T) {
	f := start(t, fastlane.Options{})
	c := f.dial(t)
	long := "GET /fast/long HTTP/1.1\r\nHost: lane.test\r\nX-Pad: " + strings.Repeat("p", 8<<10) + "\r\n\r\n"
	c.send(get("/fast/1") + long)
	resp, body := c.read("GET")
	checkLane(t, "GET", "/fast/1", resp, body)
	resp, body = c.read("GET")
	checkSlow(t, "GET", "/fast/long", resp, body)
	f.checkServed(t, "GET /fast/long ")
}

// TestHalfClose checks that a request sent with the end of the stream is
// answered, and the connection then closed.
func TestHalfClose(t *testing.T) {
	f := start(t, fastlane.Options{})
	c := f.dial(t)
	c.send(get("/fast/1") + get("/fast/2"))
	if err := c.c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"/fast/1", "/fast/2"} {
		resp, body := c.read("GET")
		checkLane(t, "GET", target, resp, body)
	}
	c.expectEOF()
	f.checkServed(t)
}

// TestPostHandedOver checks that a request with a body goes to net/http,
// which reads the body.
func TestPostHandedOver(t *testing.T) {
	f := start(t, fastlane.Options{})
	c := f.dial(t)
	c.send("POST /fast/p HTTP/1.1\r\nHost: lane.test\r\nContent-Length: 5\r\n\r\nhello" + get("/fast/q"))
	resp, body := c.read("POST")
	checkSlow(t, "POST", "/fast/p", resp, body)
	resp, body = c.read("GET")
	checkSlow(t, "GET", "/fast/q", resp, body)
	f.checkServed(t, "POST /fast/p hello", "GET /fast/q ")
	if n := f.a.calls.Load(); n != 0 {
		t.Errorf("Answer called %d times", n)
	}
}

// TestConnectionClose checks that a request asking for the connection to
// be closed goes to net/http, which closes it.
func TestConnectionClose(t *testing.T) {
	f := start(t, fastlane.Options{})
	c := f.dial(t)
	c.send(get("/fast/1"))
	resp, body := c.read("GET")
	checkLane(t, "GET", "/fast/1", resp, body)
	c.send("GET /fast/2 HTTP/1.1\r\nHost: lane.test\r\nConnection: close\r\n\r\n")
	resp, body = c.read("GET")
	checkSlow(t, "GET", "/fast/2", resp, body)
	if !resp.Close {
		t.Error("the answer to Connection: close keeps the connection")
	}
	c.expectEOF()
	f.checkServed(t, "GET /fast/2 ")
}

// TestAnswerableAfterHandover checks that the lane does not look at a
// connection again once it has handed it over.
func TestAnswerableAfterHandover(t *testing.T) {
	f := start(t, fastlane.Options{})
	c := f.dial(t)
	c.send(get("/slow/1"))
	resp, body := c.read("GET")
	checkSlow(t, "GET", "/slow/1", resp, body)
	for _, path := range []string{"/fast/2", "/fast/3"} {
		c.send(get(path))
		resp, body = c.read("GET")
		checkSlow(t, "GET", path, resp, body)
	}
	f.checkServed(t, "GET /slow/1 ", "GET /fast/2 ", "GET /fast/3 ")
	if n := f.a.calls.Load(); n != 1 {
		t.Errorf("Answer called %d times, want once", n)
	}
}

// TestLargeBody checks an answer much larger than the socket buffers.
func TestLargeBody(t *testing.T) {
	f := start(t, fastlane.Options{})
	c := f.dial(t)
	c.send(get("/fast/big4"))
	resp, body := c.read("GET")
	checkLane(t, "GET", "/fast/big4", resp, body)
	if an := f.a.next(t, "/fast/big4"); an.written != 4<<20 || an.err != nil {
		t.Errorf("Answered(written %d, %v), want (%d, nil)", an.written, an.err, 4<<20)
	}
	c.send(get("/fast/after"))
	resp, body = c.read("GET")
	checkLane(t, "GET", "/fast/after", resp, body)
}

// serverSocket returns the inode of the socket the server holds for the
// client's connection c.
func serverSocket(t *testing.T, c *net.TCPConn) string {
	t.Helper()
	port := func(addr string) int {
		_, p, _ := strings.Cut(addr, ":")
		n, _ := strconv.ParseUint(p, 16, 16)
		return int(n)
	}
	local, remote := c.RemoteAddr().(*net.TCPAddr).Port, c.LocalAddr().(*net.TCPAddr).Port
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("cannot see sockets: %v", err)
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) >= 10 && port(f[1]) == local && port(f[2]) == remote {
			return f[9]
		}
	}
	t.Fatalf("no socket from port %d to %d in /proc/net/tcp", local, remote)
	return ""
}

// socketOpen reports whether the process holds a descriptor of the socket
// inode.
func socketOpen(t *testing.T, inode string) bool {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot see descriptors: %v", err)
	}
	for _, fd := range fds {
		if l, _ := os.Readlink("/proc/self/fd/" + fd.Name()); l == "socket:["+inode+"]" {
			return true
		}
	}
	return false
}

// TestClientGoneDuringAnswer checks that a client closing its connection
// during an answer makes Answered report an error and the lane close the
// connection, and that the lane goes on serving the others.
func TestClientGoneDuringAnswer(t *testing.T) {
	f := start(t, fastlane.Options{})
	c := f.dial(t)
	c.send(get("/fast/big64"))
	resp := c.readHead()
	if resp.ContentLength != 64<<20 {
		t.Fatalf("Content-Length %d", resp.ContentLength)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	inode := serverSocket(t, c.c)
	if !socketOpen(t, inode) {
		t.Fatalf("socket %s not open while answering", inode)
	}
	c.c.Close()

	an := f.a.next(t, "/fast/big64")
	if an.err == nil || an.written >= 64<<20 {
		t.Errorf("Answered(written %d, %v), want an error", an.written, an.err)
	}
	for deadline := time.Now().Add(5 * time.Second); socketOpen(t, inode); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lane did not close the connection after a failed answer")
		}
	}

	c = f.dial(t)
	c.send(get("/fast/x"))
	resp, body := c.read("GET")
	checkLane(t, "GET", "/fast/x", resp, body)
	c.send(get("/slow/y"))
	resp, body = c.read("GET")
	checkSlow(t, "GET", "/slow/y", resp, body)
}

// TestWriteTimeout checks that an answer the client does not take within
// WriteTimeout fails, and the lane closes its connection.
func TestWriteTimeout(t *testing.T) {
	f := start(t, fastlane.Options{WriteTimeout: 200 * time.Millisecond})
	c := f.dial(t)
	c.send(get("/fast/big64"))
	resp := c.readHead()
	an := f.a.next(t, "/fast/big64") // the client reads nothing more
	if !errors.Is(an.err, os.ErrDeadlineExceeded) || an.written >= 64<<20 {
		t.Errorf("Answered(written %d, %v), want a timeout", an.written, an.err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != io.ErrUnexpectedEOF || n >= 64<<20 {
		t.Errorf("read %d bytes of the body, then %v; want the connection closed before the end", n, err)
	}
	f.checkServed(t)
}

// TestIdleTimeout checks that the lane closes a connection that sends no
// request within IdleTimeout, new or after an answer.
func TestIdleTimeout(t *testing.T) {
	f := start(t, fastlane.Options{IdleTimeout: 200 * time.Millisecond})
	fresh := f.dial(t)
	used := f.dial(t)
	used.send(get("/fast/1"))
	resp, body := used.read("GET")
	checkLane(t, "GET", "/fast/1", resp, body)
	fresh.expectEOF()
	used.expectEOF()
	f.checkServed(t)
}

// TestHeaderTimeout checks that HeaderTimeout bounds the wait for the first
// request of a connection only.
func TestHeaderTimeout(t *testing.T) {
	f := start(t, fastlane.Options{HeaderTimeout: 200 * time.Millisecond, IdleTimeout: 20 * time.Second})
	used := f.dial(t)
	used.send(get("/fast/1"))
	resp, body := used.read("GET")
	checkLane(t, "GET", "/fast/1", resp, body)
	f.a.next(t, "/fast/1")

	// Once the lane has closed, for sending nothing, a connection opened
	// now, used has waited longer than HeaderTimeout for its second
	// request.
	f.dial(t).expectEOF()

	used.send(get("/fast/2"))
	resp, body = used.read("GET")
	checkLane(t, "GET", "/fast/2", resp, body)
	f.checkServed(t)
}

// TestDeadlinesNotHandedOver checks that the deadlines the lane sets do not
// stay on a connection it hands to net/http.
func TestDeadlinesNotHandedOver(t *testing.T) {
	f := start(t, fastlane.Options{IdleTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	c := f.dial(t)
	c.send(get("/fast/1"))
	resp, body := c.read("GET")
	checkLane(t, "GET", "/fast/1", resp, body)
	f.a.next(t, "/fast/1")
	// Half a head: the lane hands c over, and net/http waits for the rest.
	c.send("GET /slow/2 HTTP/1.1\r\nHo")

	// Once the lane has closed, for being idle, a connection opened
	// now and then another, the deadlines it set on c have passed.
	f.dial(t).expectEOF()
	f.dial(t).expectEOF()

	c.send("st: lane.test\r\n\r\n")
	resp, body = c.read("GET")
	checkSlow(t, "GET", "/slow/2", resp, body)
	c.send(get("/fast/3"))
	resp, body = c.read("GET")
	checkSlow(t, "GET", "/fast/3", resp, body)
	f.checkServed(t, "GET /slow/2 ", "GET /fast/3 ")
}

// TestShutdownIdle checks that Shutdown closes the connections waiting for
// a request, stops the listener, and leaves alone the connections handed
// to net/http.
func TestShutdownIdle(t *testing.T) {
	f := start(t, fastlane.Options{})
	handed := f.dial(t)
	handed.send(get("/slow/h"))
	resp, body := handed.read("GET")
	checkSlow(t, "GET", "/slow/h", resp, body)
	var idle []*client
	for i := range 3 {
		c := f.dial(t)
		target := fmt.Sprintf("/fast/%d", i)
		c.send(get(target))
		resp, body := c.read("GET")
		checkLane(t, "GET", target, resp, body)
		idle = append(idle, c)
	}
	fresh := f.dial(t) // perhaps not yet accepted when Shutdown begins

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.lane.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, c := range idle {
		c.expectEOF()
	}
	fresh.expectClosed()

	if err := f.served(t); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve returned %v, want net.ErrClosed", err)
	}
	if c, err := f.lane.Accept(); err == nil {
		c.Close()
		t.Error("Accept after Shutdown returned a connection")
	}
	if c, err := net.Dial("tcp", f.addr); err == nil {
		c.Close()
		t.Error("the listener accepts connections after Shutdown")
	}
	// The connection handed over is net/http's, which goes on serving it.
	handed.send(get("/fast/z"))
	resp, body = handed.read("GET")
	checkSlow(t, "GET", "/fast/z", resp, body)
}

// TestShutdownWaitsForAnswer checks that Shutdown lets an answer being sent
// finish, then closes its connection and returns nil.
func TestShutdownWaitsForAnswer(t *testing.T) {
	f := start(t, fastlane.Options{})
	busy := f.dial(t)
	busy.send(get("/fast/big64"))
	resp := busy.readHead() // and no more, for now
	idle := f.dial(t)
	idle.send(get("/fast/i"))
	r, body := idle.read("GET")
	checkLane(t, "GET", "/fast/i", r, body)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- f.lane.Shutdown(ctx)
	}()
	idle.expectEOF() // Shutdown is under way
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while an answer was being sent", err)
	default:
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(body, big64()) {
		t.Fatalf("read %d bytes of the answer, then %v", len(body), err)
	}
	if an := f.a.next(t, "/fast/big64"); an.written != 64<<20 || an.err != nil {
		t.Errorf("Answered(written %d, %v), want (%d, nil)", an.written, an.err, 64<<20)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the answer was sent")
	}
	busy.expectEOF()
}

// TestShutdownContextDone checks that Shutdown with a context ended closes
// a connection whose answer is being sent and returns the context's error.
func TestShutdownContextDone(t *testing.T) {
	f := start(t, fastlane.Options{})
	c := f.dial(t)
	c.send(get("/fast/big64"))
	resp := c.readHead() // and no more

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.lane.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want %v", err, context.Canceled)
	}
	if an := f.a.next(t, "/fast/big64"); an.err == nil || an.written >= 64<<20 {
		t.Errorf("Answered(written %d, %v), want an error", an.written, an.err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || n >= 64<<20 {
		t.Errorf("read %d bytes of the body, then %v; want the connection closed before the end", n, err)
	}
	if err := f.served(t); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve returned %v, want net.ErrClosed", err)
	}
	if c, err := f.lane.Accept(); err == nil {
		c.Close()
		t.Error("Accept after Shutdown returned a connection")
	}
}

// TestClose checks that after Close, Accept fails, and the lane goes on
// answering its connections but closes those it cannot hand over.
func TestClose(t *testing.T) {
	f := start(t, fastlane.Options{})
	c := f.dial(t)
	c.send(get("/fast/1"))
	resp, body := c.read("GET")
	checkLane(t, "GET", "/fast/1", resp, body)

	if err := f.lane.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.served(t); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve returned %v, want net.ErrClosed", err)
	}
	if conn, err := f.lane.Accept(); !errors.Is(err, net.ErrClosed) {
		if conn != nil {
			conn.Close()
		}
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	// The lane goes on answering its connections, but has no one to hand
	// them to: it closes them instead.
	c.send(get("/fast/2"))
	resp, body = c.read("GET")
	checkLane(t, "GET", "/fast/2", resp, body)
	c.send(get("/slow/3"))
	c.expectClosed() // the request unread, reset
	f.checkServed(t)
}

// concurrentClient sends requests on its own connection to addr: GETs and
// HEADs, most for the lane, some not. It opens a new connection a few
// requests after each handover, and sends some requests two at a time. It
// returns how many answers came from the lane and how many from net/http.
func concurrentClient(addr string, id, requests int) (lane, slow int, err error) {
	var (
		conn          net.Conn
		br            *bufio.Reader
		handed        bool
		sinceHandover int
	)
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	type sent struct {
		method, path string
		viaLane      bool
	}
	for i := 0; i < requests; {
		if conn == nil || sinceHandover >= 3 {
			if conn != nil {
				conn.Close()
			}
			if conn, err = net.Dial("tcp", addr); err != nil {
				return lane, slow, err
			}
			conn.SetDeadline(time.Now().Add(60 * time.Second))
			br = bufio.NewReader(conn)
			handed, sinceHandover = false, 0
		}
		n := 1
		if i%11 == 5 && i+1 < requests {
			n = 2
		}
		var batch []sent
		var buf strings.Builder
		for j := i; j < i+n; j++ {
			s := sent{method: "GET", path: fmt.Sprintf("/fast/%d/%d", id, j)}
			if (j+id)%5 == 0 {
				s.method = "HEAD"
			}
			if (3*j+id)%13 == 0 {
				s.path = fmt.Sprintf("/slow/%d/%d", id, j)
			}
			s.viaLane = !handed && strings.HasPrefix(s.path, "/fast/")
			if !s.viaLane {
				handed = true
				sinceHandover++
			}
			batch = append(batch, s)
			buf.WriteString(request(s.method, s.path))
		}
		i += n
		if _, err := io.WriteString(conn, buf.String()); err != nil {
			return lane, slow, err
		}
		for _, s := range batch {
			resp, body, err := readResponse(br, s.method)
			if err != nil {
				return lane, slow, fmt.Errorf("%s %s: %v", s.method, s.path, err)
			}
			if s.viaLane {
				err = laneError(s.method, s.path, resp, body)
				lane++
			} else {
				err = slowError(s.method, s.path, resp, body)
				slow++
			}
			if err != nil {
				return lane, slow, err
			}
		}
	}
	return lane, slow, nil
}

// TestConcurrent runs clients at once, each with its own connections,
// mixing requests for the lane and for net/http, and checks every
// response.
func TestConcurrent(t *testing.T) {
	f := start(t, fastlane.Options{IdleTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
	const clients, requests = 32, 200
	var lane, slow atomic.Int64
	var wg sync.WaitGroup
	for id := range clients {
		wg.Go(func() {
			l, s, err := concurrentClient(f.addr, id, requests)
			lane.Add(int64(l))
			slow.Add(int64(s))
			if err != nil {
				t.Errorf("client %d: %v", id, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if got := lane.Load() + slow.Load(); got != clients*requests {
		t.Fatalf("%d answers, want %d", got, clients*requests)
	}
	if n := f.a.answers.Load(); n != lane.Load() {
		t.Errorf("Answer answered %d requests, clients got %d answers from the lane", n, lane.Load())
	}
	if n := len(f.h.served()); int64(n) != slow.Load() {
		t.Errorf("handler served %d requests, clients got %d answers from net/http", n, slow.Load())
	}
	for range lane.Load() {
		select {
		case an := <-f.a.done:
			if an.err != nil {
				t.Fatalf("Answered(%s %s, %v)", an.method, an.target, an.err)
			}
			if want := int64(len(laneBody(an.target))); an.method == "GET" && an.written != want {
				t.Fatalf("Answered(%s %s, written %d), want %d", an.method, an.target, an.written, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Answered not called for every answer (%d dropped)", f.a.dropped.Load())
		}
	}
	t.Logf("%d answers from the lane, %d from net/http", lane.Load(), slow.Load())
}
