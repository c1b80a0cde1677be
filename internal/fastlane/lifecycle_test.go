package fastlane_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imagestore/imagestore/internal/fastlane"
)

// TestWriteTimeoutPerPiece checks that WriteTimeout bounds each MiB of an
// answer, not the whole of it: a client that takes a 64 MiB answer in
// about four seconds, twice the timeout, but never waits a quarter of it
// between two reads, gets all of it.
func TestWriteTimeoutPerPiece(t *testing.T) {
	f := start(t, fastlane.Options{WriteTimeout: 2 * time.Second})
	c := f.dial(t)
	c.send(get("/fast/big64"))
	resp := c.readHead()
	var got bytes.Buffer
	got.Grow(64 << 20) // the client never stalls on its own memory
	for {
		n, err := io.CopyN(&got, resp.Body, 4<<20)
		if err == io.EOF || n == 0 {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got.Len(), err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !bytes.Equal(got.Bytes(), big64()) {
		t.Errorf("got %d bytes, want the 64 MiB answer whole", got.Len())
	}
	if an := f.a.next(t, "/fast/big64"); an.err != nil || an.written != 64<<20 {
		t.Errorf("Answered(written %d, %v), want all of it and no error", an.written, an.err)
	}
}

// lockedLog is a log's output, safe for the lane's goroutines.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// hookAnswerer answers every GET of /fast/... with "ok", panics on
// /fast/panic, and on /fast/wait tells entered, then waits for release.
type hookAnswerer struct {
	entered, release chan struct{}
}

func (a *hookAnswerer) Answer(req *fastlane.Request, resp *fastlane.Response) bool {
	switch string(req.Target) {
	case "/fast/panic":
		panic("the answerer failed")
	case "/fast/wait":
		a.entered <- struct{}{}
		<-a.release
	}
	if !strings.HasPrefix(string(req.Target), "/fast/") {
		return false
	}
	resp.Header = append(resp.Header, "Content-Type: text/plain\r\n"...)
	resp.Body = []byte("ok")
	return true
}

func (a *hookAnswerer) Answered(*fastlane.Request, *fastlane.Response, int64, error) {}

func startHooked(t *testing.T) (addr string, lane *fastlane.Lane, a *hookAnswerer, errs *lockedLog) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a = &hookAnswerer{entered: make(chan struct{}, 1), release: make(chan struct{})}
	errs = &lockedLog{}
	lane = fastlane.New(ln, a, fastlane.Options{ErrorLog: log.New(errs, "", 0)})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "slow")
	})}
	go srv.Serve(lane)
	t.Cleanup(func() {
		srv.Close()
		lane.Shutdown(context.Background())
	})
	return ln.Addr().String(), lane, a, errs
}

// TestAnswererPanic checks that a panic of the Answerer closes its
// connection, is logged, and leaves the lane serving other connections.
func TestAnswererPanic(t *testing.T) {
	addr, _, _, errs := startHooked(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, get("/fast/panic"))
	// Closed with the request unread: a reset, or the end.
	if n, err := c.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after the panic: read %d bytes, %v; want the connection closed", n, err)
	}
	if !strings.Contains(errs.String(), "panic") || !strings.Contains(errs.String(), "the answerer failed") {
		t.Errorf("error log %q, want the panic", errs.String())
	}
	resp, err := http.Get("http://" + addr + "/fast/after")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Errorf("another connection after the panic: %q, want the lane's answer", body)
	}
}

// TestShutdownClosesAfterAnswer checks that an answer being prepared when
// Shutdown begins still goes out, saying Connection: close as net/http's
// do then, and that the connection is closed after it.
func TestShutdownClosesAfterAnswer(t *testing.T) {
	addr, lane, a, _ := startHooked(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, get("/fast/wait"))
	<-a.entered
	done := make(chan error, 1)
	go func() { done <- lane.Shutdown(context.Background()) }()
	// Shutdown has begun once the listener refuses connections.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		d, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		d.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts 5 s after Shutdown")
		}
	}
	close(a.release)
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 200 OK\r\n")) || !bytes.Contains(got, []byte("\r\nConnection: close\r\n")) || !bytes.HasSuffix(got, []byte("\r\n\r\nok")) {
		t.Errorf("answer during shutdown:\n%s\nwant 200, Connection: close, the body, then the end", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Shutdown did not return")
	}
}

// heldListener holds an Accept that failed until hold is closed: its
// server keeps the listener, as one does that has not yet seen it fail.
type heldListener struct {
	net.Listener
	hold chan struct{}
}

func (h heldListener) Accept() (net.Conn, error) {
	c, err := h.Listener.Accept()
	if err != nil {
		<-h.hold
	}
	return c, err
}

// TestShutdownBesideServer checks that the lane's Shutdown and the
// http.Server's, which both close the listener, succeed together once
// the server is serving: the lane's closed first while the server still
// holds the listener, and both at once, as the server stops them.
func TestShutdownBesideServer(t *testing.T) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for round := range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lane := fastlane.New(ln, &hookAnswerer{}, fastlane.Options{})
		held := heldListener{lane, make(chan struct{})}
		srv := &http.Server{Handler: http.NotFoundHandler()}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(held) }()
		// A request that net/http answers: Serve is accepting.
		resp, err := client.Get("http://" + ln.Addr().String() + "/handed")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET /handed: %s, want net/http's 404", resp.Status)
		}
		ctx := context.Background()
		if round%2 == 0 {
			if err := lane.Shutdown(ctx); err != nil {
				t.Fatalf("round %d: the lane's Shutdown: %v", round, err)
			}
			// The server's Shutdown closes its listeners at once, then
			// waits for Serve to return.
			time.AfterFunc(50*time.Millisecond, func() { close(held.hold) })
			if err := srv.Shutdown(ctx); err != nil {
				t.Fatalf("round %d: the server's Shutdown after the lane's: %v", round, err)
			}
		} else {
			close(held.hold)
			errs := make(chan error, 2)
			go func() { errs <- lane.Shutdown(ctx) }()
			go func() { errs <- srv.Shutdown(ctx) }()
			for range 2 {
				if err := <-errs; err != nil {
					t.Fatalf("round %d: a Shutdown failed: %v", round, err)
				}
			}
		}
		// Serve ends on Shutdown's mark, or on the listener's close if
		// it saw that first.
		if err := <-served; !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("round %d: Serve returned %v", round, err)
		}
	}
}
