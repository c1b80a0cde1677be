// Package fastlane answers the simplest requests of HTTP/1.1 connections
// itself, and hands each connection to net/http at the first request it
// does not answer.
//
// net/http spends most of the time of a small download on machinery that a
// request for cached bytes does not need: a goroutine started for each
// request to watch the connection, the headers and the body sent by two
// writes, a map of headers built and sorted. A Lane sits between a
// listener and an http.Server. It reads each request of a connection in
// one read; if that read holds the whole head, a plain GET or HEAD of
// HTTP/1.1 with no body, and its Answerer answers it, the lane sends the
// answer, headers and body, in one writev. Anything else, from a head
// split over two packets to a header the Answerer does not know, goes to
// the http.Server with the connection, which serves it from then on, the
// bytes the lane read given back first: net/http stays the authority on
// every request the lane is not sure of.
package fastlane

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Request is a request a lane read whole: a GET or HEAD of HTTP/1.1 with no
// body. Its slices point into the lane's buffer: they are valid until
// Answered returns, and must not be kept.
type Request struct {
	Method     string // "GET" or "HEAD"
	Target     []byte // the request target as sent: a path, maybe with a query
	Fields     []Field
	RemoteAddr string
	Start      time.Time // when the lane read the request
}

// Field is a header field of a request, its name as sent and its value
// without surrounding whitespace.
type Field struct {
	Name, Value []byte
}

// Response is the answer of 200 OK that an Answerer fills in.
type Response struct {
	// Header holds the header lines, each "Name: value\r\n". The lane adds
	// Date and Content-Length.
	Header []byte
	// Body is sent after the headers, except in answer to HEAD. The lane
	// does not change it.
	Body []byte
	// Tag is the Answerer's own, for Answered.
	Tag int
}

// Answerer answers the requests it can answer whole.
type Answerer interface {
	// Answer fills in resp (whose Header it may append to, from length 0)
	// and returns true if it answers req; false leaves req, and its
	// connection, to net/http.
	Answer(req *Request, resp *Response) bool
	// Answered reports that the answer to req was sent: written bytes of
	// its body, err if sending it failed (the lane then closes the
	// connection).
	Answered(req *Request, resp *Response, written int64, err error)
}

// Options configure a Lane.
type Options struct {
	// HeaderTimeout bounds the wait for a new connection's first bytes;
	// 0 means IdleTimeout. If they are not a whole head, the connection
	// goes to net/http, whose ReadHeaderTimeout then starts afresh: half
	// of it here keeps a slow client's total within one and a half times.
	HeaderTimeout time.Duration
	// IdleTimeout bounds the wait for a connection's next request; 0
	// means no limit.
	IdleTimeout time.Duration
	// WriteTimeout bounds the sending of each MiB of an answer, so that a
	// slow client gets a large one as long as it keeps taking bytes; 0
	// means no limit.
	WriteTimeout time.Duration
	// ErrorLog receives what goes wrong outside an answer: errors
	// accepting connections, and a panic of the Answerer (the connection
	// is then closed, and the server goes on). Nil discards them.
	ErrorLog *log.Logger
}

// writePiece is the part of an answer that WriteTimeout bounds.
const writePiece = 1 << 20

// headSize bounds the head of a request the lane answers: a longer one is
// handed to net/http.
const headSize = 4096

// maxFields bounds the header fields of a request the lane answers.
const maxFields = 32

// Lane is a net.Listener for an http.Server: its Accept returns the
// connections the lane has handed over.
type Lane struct {
	inner   net.Listener
	answer  Answerer
	opts    Options
	handoff chan net.Conn

	stopped   chan struct{} // closed when the inner listener's Accept fails
	acceptErr error         // why, set before stopped is closed

	closeOnce sync.Once
	closeErr  error // the inner listener's Close

	shutting         atomic.Bool
	answered, handed atomic.Int64 // see Stats

	mu    sync.Mutex
	conns map[*net.TCPConn]struct{} // connections the lane is serving
	idle  chan struct{}             // closed, then replaced, when conns becomes empty
}

// New returns a Lane that accepts connections from ln, answers what a can
// answer, and hands the rest to whoever calls Accept.
func New(ln net.Listener, a Answerer, opts Options) *Lane {
	l := &Lane{
		inner:   ln,
		answer:  a,
		opts:    opts,
		handoff: make(chan net.Conn),
		stopped: make(chan struct{}),
		conns:   map[*net.TCPConn]struct{}{},
	}
	go l.acceptLoop()
	return l
}

// Accept returns the next connection handed over.
func (l *Lane) Accept() (net.Conn, error) {
	select {
	case c := <-l.handoff:
		return c, nil
	case <-l.stopped:
		return nil, l.acceptErr
	}
}

// Stats returns the requests the lane has answered, and the connections it
// has handed to net/http.
func (l *Lane) Stats() (answered, handedOver int64) {
	return l.answered.Load(), l.handed.Load()
}

// Close closes the listener: no connection is accepted any more. The
// connections the lane serves go on; see Shutdown. Only the first call
// closes; later ones return its result, so that Shutdown and an
// http.Server's Shutdown can run at once, both closing the listener.
func (l *Lane) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.inner.Close() })
	return l.closeErr
}

// Addr returns the listener's address.
func (l *Lane) Addr() net.Addr { return l.inner.Addr() }

// Shutdown stops the lane as http.Server.Shutdown stops a server: it closes
// the listener and the connections waiting for a request, lets the answers
// being sent finish, and returns when every connection the lane serves is
// closed, or when ctx ends (it then closes them all and returns ctx's
// error).
func (l *Lane) Shutdown(ctx context.Context) error {
	l.shutting.Store(true)
	l.Close()
	past := time.Unix(1, 0)
	for {
		l.mu.Lock()
		n := len(l.conns)
		for c := range l.conns {
			// Wakes a connection waiting for a request; one sending an
			// answer sees shutting when it is done.
			c.SetReadDeadline(past)
		}
		if n == 0 {
			l.mu.Unlock()
			return nil
		}
		if l.idle == nil {
			l.idle = make(chan struct{})
		}
		idle := l.idle
		l.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			l.mu.Lock()
			for c := range l.conns {
				c.Close()
			}
			l.mu.Unlock()
			return ctx.Err()
		}
	}
}

func (l *Lane) acceptLoop() {
	var delay time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			// Like http.Server: wait and try again after a temporary
			// error (out of file descriptors).
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() && !l.shutting.Load() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				l.logf("fastlane: accept error: %v; retrying in %v", err, delay)
				time.Sleep(delay)
				continue
			}
			l.acceptErr = err
			close(l.stopped)
			return
		}
		delay = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			go l.handOver(c)
			continue
		}
		go l.serve(tc)
	}
}

func (l *Lane) logf(format string, args ...any) {
	if l.opts.ErrorLog != nil {
		l.opts.ErrorLog.Printf(format, args...)
	}
}

// handOver gives c to Accept's caller, or closes it if the listener was
// closed.
func (l *Lane) handOver(c net.Conn) {
	l.handed.Add(1)
	select {
	case l.handoff <- c:
	case <-l.stopped:
		c.Close()
	}
}

func (l *Lane) track(c *net.TCPConn, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if on {
		l.conns[c] = struct{}{}
		return
	}
	delete(l.conns, c)
	if len(l.conns) == 0 && l.idle != nil {
		close(l.idle)
		l.idle = nil
	}
}

// serve answers c's requests until one is not the lane's, then hands c
// over; or until c fails or ends, and closes it.
func (l *Lane) serve(c *net.TCPConn) {
	l.track(c, true)
	handed := false
	defer func() {
		if v := recover(); v != nil {
			l.logf("fastlane: panic serving %v: %v\n%s", c.RemoteAddr(), v, debug.Stack())
		}
		l.track(c, false)
		if !handed {
			c.Close()
		}
	}()
	var (
		buf        = make([]byte, headSize)
		have       int // bytes read into buf, not yet answered
		req        = Request{RemoteAddr: c.RemoteAddr().String(), Fields: make([]Field, 0, 8)}
		resp       Response
		head       = make([]byte, 0, 512)
		date       []byte
		dateSecond int64
	)
	wait := cmp.Or(l.opts.HeaderTimeout, l.opts.IdleTimeout)
	for {
		if have == 0 {
			if wait > 0 {
				c.SetReadDeadline(time.Now().Add(wait))
			}
			wait = l.opts.IdleTimeout
			if l.shutting.Load() { // after the deadline: see Shutdown
				return
			}
			n, err := c.Read(buf)
			if err != nil {
				return // a Shutdown's deadline, too
			}
			// A request read as Shutdown began is still answered, with
			// Connection: close, or handed over (and closed then).
			have = n
		}
		// One read: a head that came in several packets, or whose end is
		// still to come after pipelined requests, is net/http's.
		size, ok := parse(buf[:have], &req)
		if ok {
			req.Start = time.Now()
			resp.Header, resp.Body, resp.Tag = resp.Header[:0], nil, 0
			ok = l.answer.Answer(&req, &resp)
		}
		if !ok {
			// Untracked first, so that no Shutdown sets a deadline after
			// this clears the lane's: net/http must not inherit them.
			handed = true
			l.track(c, false)
			c.SetDeadline(time.Time{})
			l.handOver(&handedConn{TCPConn: c, pending: buf[:have]})
			return
		}
		if s := req.Start.Unix(); s != dateSecond || date == nil {
			date = req.Start.UTC().AppendFormat(date[:0], "Mon, 02 Jan 2006 15:04:05 GMT")
			dateSecond = s
		}
		head = append(head[:0], "HTTP/1.1 200 OK\r\n"...)
		head = append(head, resp.Header...)
		head = append(head, "Content-Length: "...)
		head = strconv.AppendInt(head, int64(len(resp.Body)), 10)
		head = append(head, "\r\nDate: "...)
		head = append(head, date...)
		closing := l.shutting.Load()
		if closing {
			head = append(head, "\r\nConnection: close"...) // as net/http says it
		}
		head = append(head, "\r\n\r\n"...)
		body := resp.Body
		if req.Method == "HEAD" {
			body = nil
		}
		l.answered.Add(1) // before the answer, so that its client sees it counted
		written, err := l.write(c, head, body)
		l.answer.Answered(&req, &resp, written, err)
		// The request's bytes are no longer needed: pipelined ones move
		// to the front.
		have = copy(buf, buf[size:have])
		if err != nil || closing {
			return
		}
	}
}

// write sends head and body, in one writev if the body is at most
// writePiece long, and returns the bytes of body written. Each piece of
// writePiece bytes gets WriteTimeout afresh.
func (l *Lane) write(c *net.TCPConn, head, body []byte) (int64, error) {
	var written int64
	for first := true; first || len(body) > 0; first = false {
		if l.opts.WriteTimeout > 0 {
			c.SetWriteDeadline(time.Now().Add(l.opts.WriteTimeout))
		}
		n := min(len(body), writePiece)
		bufs := net.Buffers{body[:n]}
		if first {
			bufs = net.Buffers{head, body[:n]}
		}
		m, err := bufs.WriteTo(c)
		if first {
			m -= int64(len(head))
		}
		written += max(0, m)
		if err != nil {
			return written, err
		}
		body = body[n:]
	}
	return written, nil
}

// handedConn is a connection handed to net/http: its reads (Read, and
// WriteTo for io.Copy) return first the bytes the lane read and did not
// answer, then the socket's. It is the *net.TCPConn in every other way
// (sendfile by ReadFrom, CloseWrite, deadlines); a reader that goes to the
// socket itself (SyscallConn, File) must first Read the pending bytes,
// which net/http's first read of 4 KiB always does.
type handedConn struct {
	*net.TCPConn
	pending []byte
}

func (h *handedConn) Read(p []byte) (int, error) {
	if len(h.pending) > 0 {
		n := copy(p, h.pending)
		h.pending = h.pending[n:]
		if len(h.pending) == 0 {
			h.pending = nil // the lane's buffer, freed
		}
		return n, nil
	}
	return h.TCPConn.Read(p)
}

// WriteTo writes the pending bytes to w, then what the socket yields.
func (h *handedConn) WriteTo(w io.Writer) (int64, error) {
	var n int64
	if len(h.pending) > 0 {
		m, err := w.Write(h.pending)
		n += int64(m)
		h.pending = h.pending[m:]
		if err != nil {
			return n, err
		}
		h.pending = nil
	}
	m, err := h.TCPConn.WriteTo(w)
	return n + m, err
}

// NetConn returns the connection under h, as tls.Conn's NetConn does.
func (h *handedConn) NetConn() net.Conn { return h.TCPConn }
