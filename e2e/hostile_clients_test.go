package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Hostile clients: what a client that does not play by the rules sends
// (huge headers, thousands of parts, pixel bombs, endless bodies, stalled
// connections by the hundred) must get a prompt, bounded answer, and the
// server must keep serving everyone else.

// memory returns the server process's resident memory and its peak so far,
// in bytes, from /proc.
func (s *server) memory(t *testing.T) (rss, peak int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("reading the server's memory: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if rss == 0 || peak == 0 {
		t.Fatalf("no VmRSS or VmHWM in /proc/%d/status", s.cmd.Process.Pid)
	}
	return rss, peak
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// exchange is one request sent on its own connection and its answer.
type exchange struct {
	status  int
	header  http.Header
	body    string
	elapsed time.Duration // from the first byte sent to the response's headers
	sent    int64         // bytes written when the response arrived
	err     error
}

// countingWriter counts what reaches the connection.
type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// rawExchange writes head and then body (io.EOF ends it; it may never end)
// on a new connection, while reading the response at the same time: a
// server may answer, and hang up, before the request is complete. Write
// errors are expected then and ignored. Nothing takes longer than within.
// It may run on any goroutine: it reports failures in its result.
func rawExchange(s *server, head string, body io.Reader, within time.Duration) exchange {
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		return exchange{err: err}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(within))
	cw := &countingWriter{w: conn}
	began := time.Now()
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		if _, err := io.WriteString(cw, head); err != nil {
			return
		}
		if body != nil {
			io.Copy(cw, body)
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	x := exchange{elapsed: time.Since(began), sent: cw.n.Load(), err: err}
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		x.status, x.header, x.body = resp.StatusCode, resp.Header, string(b)
	}
	conn.Close() // ends the writer if the body never ends
	<-writing
	return x
}

// endless is a body that never ends: prefix, then zeros for ever.
type endless struct {
	prefix []byte
}

func (e *endless) Read(p []byte) (int, error) {
	if len(e.prefix) > 0 {
		n := copy(p, e.prefix)
		e.prefix = e.prefix[n:]
		return n, nil
	}
	clear(p)
	return len(p), nil
}

// repeated is a body that repeats s for ever.
type repeated struct {
	s   string
	off int
}

func (r *repeated) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.s[r.off]
		r.off = (r.off + 1) % len(r.s)
	}
	return len(p), nil
}

// chunked frames a body in the chunked transfer coding, ending it with the
// last chunk if it ends.
type chunked struct {
	r    io.Reader
	buf  []byte
	out  bytes.Buffer
	done bool
}

func (c *chunked) Read(p []byte) (int, error) {
	for c.out.Len() == 0 {
		if c.done {
			return 0, io.EOF
		}
		if c.buf == nil {
			c.buf = make([]byte, 32<<10)
		}
		n, err := c.r.Read(c.buf)
		if n > 0 {
			fmt.Fprintf(&c.out, "%x\r\n", n)
			c.out.Write(c.buf[:n])
			c.out.WriteString("\r\n")
		}
		if err == io.EOF {
			c.out.WriteString("0\r\n\r\n")
			c.done = true
		} else if err != nil {
			return 0, err
		}
	}
	return c.out.Read(p)
}

// filePartHead is the start of a multipart body with boundary "XbX" whose
// first part is a file; the file's bytes follow it.
func filePartHead(filename string) string {
	return "--XbX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename + "\"\r\nContent-Type: application/octet-stream\r\n\r\n"
}

const formType = "multipart/form-data; boundary=XbX"

// TestHostileHugeHeaders: a megabyte of request headers, in one header or
// in a thousand, gets 431 at once, ten clients at a time, and the server
// goes on serving; headers just under the limit are served normally.
func TestHostileHugeHeaders(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.newUser("headers")
	s.uploadID(tok, "a.png", fixture(t, "png-rgb.png"))
	path := "/imageapi/token/" + tok + "/get-image-list/"

	var many strings.Builder
	for i := 0; many.Len() < 1<<20; i++ {
		fmt.Fprintf(&many, "X-Junk-%d: %s\r\n", i, strings.Repeat("j", 1000))
	}
	request := "GET " + path + " HTTP/1.1\r\nHost: x\r\n"
	huge := []struct {
		what string
		head string
		rest func() io.Reader // the headers go on for ever
	}{
		{"one header of 1 MB", request + "X-Big: " + strings.Repeat("b", 1<<20) + "\r\n\r\n", nil},
		{"1 MB in 1 KB headers", request + many.String() + "\r\n", nil},
		{"a 1 MB cookie", request + "Cookie: " + strings.Repeat("c=1; ", 1<<20/5) + "\r\n\r\n", nil},
		{"a header line that never ends", request + "X-Endless: ", func() io.Reader { return &repeated{s: "e"} }},
		{"header lines that never end", request, func() io.Reader { return &repeated{s: "X-Again: and again\r\n"} }},
	}
	for _, h := range huge {
		var wg sync.WaitGroup
		results := make([]exchange, 10)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var rest io.Reader
				if h.rest != nil {
					rest = h.rest()
				}
				results[i] = rawExchange(s, h.head, rest, 10*time.Second)
			}()
		}
		wg.Wait()
		var slowest time.Duration
		var sent int64
		for _, x := range results {
			if x.err != nil || x.status != 431 {
				t.Errorf("%s: %d %q (%v), want 431", h.what, x.status, x.body, x.err)
			}
			slowest, sent = max(slowest, x.elapsed), max(sent, x.sent)
		}
		t.Logf("%s, 10 clients at once: 431 within %v, at most %d bytes sent by then", h.what, slowest, sent)
		if slowest > 2*time.Second {
			t.Errorf("%s: answered after %v, want at once", h.what, slowest)
		}
		if r := s.get("/healthz"); r.status != 200 {
			t.Fatalf("healthz after %s: %v", h.what, r)
		}
		if got := s.list(tok); len(got) != 1 {
			t.Fatalf("list after %s: %v", h.what, got)
		}
	}
	rss, peak := s.memory(t)
	t.Logf("server memory: %s resident, %s at the peak", mb(rss), mb(peak))

	// 60 KiB of headers are within the 64 KiB limit: served.
	x := rawExchange(s, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "+strings.Repeat("b", 60<<10)+"\r\n\r\n", nil, 10*time.Second)
	if x.err != nil || x.status != 200 {
		t.Errorf("60 KiB of headers: %d %q (%v), want 200", x.status, x.body, x.err)
	}
}

// manyParts is a multipart body: n text fields of size bytes each, then a
// file part named name holding file.
func manyParts(n, size int, name string, file []byte) []byte {
	var b bytes.Buffer
	value := strings.Repeat("v", size)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "--XbX\r\nContent-Disposition: form-data; name=\"field%d\"\r\n\r\n%s\r\n", i, value)
	}
	b.WriteString(filePartHead(name))
	b.Write(file)
	b.WriteString("\r\n--XbX--\r\n")
	return b.Bytes()
}

// TestHostileManyParts: thousands of parts before the file are skipped in
// bounded memory; once they pass 1 MiB the upload is refused with 413.
// Eight clients send each form at once.
func TestHostileManyParts(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.newUser("parts")
	png := fixture(t, "png-rgb.png")
	path := "/imageapi/token/" + tok + "/upload-image/"
	rss0, _ := s.memory(t)

	cases := []struct {
		what        string
		parts, size int
		want        int
	}{
		{"5000 tiny fields (under 1 MiB) before the file", 5000, 1, 201},
		{"5000 fields of 250 bytes (over 1 MiB) before the file", 5000, 250, 413},
		{"50000 empty fields (over 1 MiB) before the file", 50000, 0, 413},
	}
	for _, c := range cases {
		const clients = 8
		var wg sync.WaitGroup
		results := make([]exchange, clients)
		size := 0
		for i := range results {
			body := manyParts(c.parts, c.size, fmt.Sprintf("p%d-%d-%d.png", c.parts, c.size, i), png)
			size = len(body)
			head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", path, formType, len(body))
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = rawExchange(s, head, bytes.NewReader(body), 30*time.Second)
			}()
		}
		wg.Wait()
		var slowest time.Duration
		for _, x := range results {
			if x.err != nil {
				t.Errorf("%s: %v", c.what, x.err)
				continue
			}
			slowest = max(slowest, x.elapsed)
			if x.status != c.want {
				t.Errorf("%s: %d %q, want %d", c.what, x.status, x.body, c.want)
			}
			if x.status == 413 && !strings.Contains(x.body, "before the file") {
				t.Errorf("%s: 413 %q, want the form limit named", c.what, x.body)
			}
		}
		rss, peak := s.memory(t)
		t.Logf("%s: %d-byte bodies, %d clients: %d within %v; server memory %s resident, peak %s", c.what, size, clients, c.want, slowest, mb(rss), mb(peak))
		if peak > 200e6 {
			t.Errorf("%s: the server's memory peaked at %s, want under 200 MB", c.what, mb(peak))
		}
	}
	// The accepted forms were stored whole, and nothing of the refused ones.
	got := s.list(tok)
	if len(got) != 8 {
		t.Errorf("list: %d images %v, want the 8 uploads with tiny fields", len(got), got)
	}
	for _, p := range got {
		if !strings.HasPrefix(p[0], "p5000-1-") {
			t.Errorf("list holds %q, from a refused form", p[0])
		}
		if r := s.get("/imageapi/token/" + tok + "/get-image/" + p[1] + "/"); r.status != 200 || !bytes.Equal(r.body, png) {
			t.Errorf("get %s: %d, %d bytes, want the uploaded PNG", p[0], r.status, len(r.body))
		}
	}
	rss, peak := s.memory(t)
	t.Logf("server memory: %s resident at the start, %s at the end, peak %s", mb(rss0), mb(rss), mb(peak))
}

// TestHostilePixelBombs: each format's pixel bomb, followed by a body that
// never ends, gets 413 from its header alone, within 2 s, through both
// APIs; the server reads only a bounded part of the body.
func TestHostilePixelBombs(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.newUser("bombs")
	bombs, err := filepath.Glob(filepath.Join("..", "imagetype", "testdata", "bombs", "bomb.*"))
	if err != nil || len(bombs) < 10 {
		t.Fatalf("bombs: %v %v", bombs, err)
	}
	for _, p := range bombs {
		bomb, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(p)
		t.Run(name, func(t *testing.T) {
			seed := rawExchange(s, "POST /imageapi/token/"+tok+"/upload-image/ HTTP/1.1\r\nHost: x\r\nContent-Type: "+formType+"\r\nTransfer-Encoding: chunked\r\n\r\n",
				&chunked{r: &endless{prefix: append([]byte(filePartHead(name)), bomb...)}}, 10*time.Second)
			v1 := rawExchange(s, "POST /api/v1/images?name="+name+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok+"\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
				&chunked{r: &endless{prefix: bomb}}, 10*time.Second)
			for api, x := range map[string]exchange{"seed": seed, "v1": v1} {
				if x.err != nil {
					t.Errorf("%s API: no answer: %v (after %v, %d bytes sent)", api, x.err, x.elapsed, x.sent)
					continue
				}
				t.Logf("%s API: %d after %v, %d bytes sent by then: %.80s", api, x.status, x.elapsed, x.sent, x.body)
				if x.status != 413 || !strings.Contains(x.body, "pixels") {
					t.Errorf("%s API: %d %q, want 413 naming the pixels", api, x.status, x.body)
				}
				if x.elapsed > 2*time.Second {
					t.Errorf("%s API: answered after %v, want within 2s", api, x.elapsed)
				}
			}
		})
	}
	if r := s.get("/healthz"); r.status != 200 {
		t.Fatalf("healthz: %v", r)
	}
	if got := s.list(tok); len(got) != 0 {
		t.Errorf("bombs were stored: %v", got)
	}
	rss, peak := s.memory(t)
	t.Logf("server memory after %d bombs: %s resident, peak %s", 2*len(bombs), mb(rss), mb(peak))
}

// TestHostileEndlessBody: a valid PNG followed by zeros that never end is
// cut with 413 once past --max-upload, with or without a (false)
// Content-Length, through both APIs; then the server serves as before.
func TestHostileEndlessBody(t *testing.T) {
	s := start(t, t.TempDir(), "--max-upload", "1MiB")
	tok := s.newUser("endless")
	png := fixture(t, "png-rgb.png")
	seedPath := "/imageapi/token/" + tok + "/upload-image/"
	v1Path := "/api/v1/images?name=endless.png"
	seedHead := "POST " + seedPath + " HTTP/1.1\r\nHost: x\r\nContent-Type: " + formType + "\r\n"
	v1Head := "POST " + v1Path + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\nContent-Type: image/png\r\n"
	seedBody := func() io.Reader { return &endless{prefix: append([]byte(filePartHead("endless.png")), png...)} }
	v1Body := func() io.Reader { return &endless{prefix: png} }

	cases := []struct {
		what string
		head string
		body io.Reader
	}{
		{"seed, chunked", seedHead + "Transfer-Encoding: chunked\r\n\r\n", &chunked{r: seedBody()}},
		{"v1, chunked", v1Head + "Transfer-Encoding: chunked\r\n\r\n", &chunked{r: v1Body()}},
		// A length the body never reaches, over and under the limit.
		{"seed, Content-Length of 10 GB", seedHead + "Content-Length: 10000000000\r\n\r\n", seedBody()},
		{"v1, Content-Length of 10 GB", v1Head + "Content-Length: 10000000000\r\n\r\n", v1Body()},
	}
	for _, c := range cases {
		x := rawExchange(s, c.head, c.body, 20*time.Second)
		if x.err != nil {
			t.Errorf("%s: no answer: %v (after %v, %d bytes sent)", c.what, x.err, x.elapsed, x.sent)
			continue
		}
		t.Logf("%s: %d after %v, %d bytes sent by then: %.80s", c.what, x.status, x.elapsed, x.sent, x.body)
		if x.status != 413 || !strings.Contains(x.body, "1048576") {
			t.Errorf("%s: %d %q, want 413 naming the 1 MiB limit", c.what, x.status, x.body)
		}
		if x.elapsed > 5*time.Second {
			t.Errorf("%s: answered after %v", c.what, x.elapsed)
		}
		if r := s.get("/healthz"); r.status != 200 {
			t.Fatalf("healthz after %s: %v", c.what, r)
		}
	}
	// Ten endless bodies at once.
	var wg sync.WaitGroup
	results := make([]exchange, 10)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = rawExchange(s, seedHead+"Transfer-Encoding: chunked\r\n\r\n", &chunked{r: seedBody()}, 20*time.Second)
		}()
	}
	wg.Wait()
	var slowest time.Duration
	for _, x := range results {
		if x.err != nil || x.status != 413 {
			t.Errorf("endless bodies at once: %d %q (%v)", x.status, x.body, x.err)
		}
		slowest = max(slowest, x.elapsed)
	}
	t.Logf("10 endless bodies at once: 413 within %v", slowest)

	// The server is healthy, stored none of it, and takes a real upload.
	if r := s.get("/healthz"); r.status != 200 {
		t.Fatalf("healthz: %v", r)
	}
	if got := s.list(tok); len(got) != 0 {
		t.Fatalf("list after endless bodies: %v", got)
	}
	s.uploadID(tok, "fine.png", png)
	if got := s.list(tok); len(got) != 1 || got[0][0] != "fine.png" {
		t.Fatalf("list = %v, want only fine.png", got)
	}
	rss, peak := s.memory(t)
	t.Logf("server memory: %s resident, peak %s", mb(rss), mb(peak))
	if peak > 200e6 {
		t.Errorf("the server's memory peaked at %s", mb(peak))
	}
}

// openFiles makes sure this process may open need files, raising its soft
// limit to the hard one if it must, or skips the test.
func openFiles(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot read the limit of open files: %v", err)
	}
	t.Logf("open files: soft limit %d, hard limit %d, %d needed", lim.Cur, lim.Max, need)
	if lim.Cur >= need {
		return
	}
	if lim.Max < need {
		t.Skipf("the hard limit of open files is %d, below the %d this test needs (ulimit -Hn)", lim.Max, need)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot raise the soft limit of open files to %d: %v", lim.Max, err)
	}
}

// TestHostileSlowConnections: 500 connections opened at once that stall,
// half in their request headers, the others in the body of an upload with
// a real token or a wrong one, do not keep a normal client's reads
// waiting; and the server gets rid of every one of them by itself: stalled
// headers after the 10 s header timeout, stalled uploads after
// --body-timeout (or after waiting for a turn in vain), wrong tokens at
// once.
func TestHostileSlowConnections(t *testing.T) {
	const n = 500
	const giveUp = 45 * time.Second // from the first connection
	openFiles(t, 1200)
	s := start(t, t.TempDir(), "--body-timeout", "5s")
	tok := s.newUser("patient")
	png := fixture(t, "png-rgb.png")
	s.uploadID(tok, "a.png", png)
	body, ct := form(formPart{"f", "stalled.png", png})
	addr := strings.TrimPrefix(s.url, "http://")
	rss0, _ := s.memory(t)

	// 250 stalled headers; 64 stalled uploads, as many as may run at once;
	// 186 stalled uploads with a wrong token.
	kindOf := func(i int) string {
		switch {
		case i%2 == 0:
			return "headers"
		case i < 128:
			return "upload"
		default:
			return "wrong token"
		}
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	began := time.Now()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		switch kindOf(i) {
		case "headers": // headers that stop mid-line
			fmt.Fprintf(c, "POST /imageapi/token/%s/upload-image/ HTTP/1.1\r\nHost: x\r\nContent-Type: mult", tok)
		case "upload": // an upload that stops after 200 bytes of its body
			fmt.Fprintf(c, "POST /imageapi/token/%s/upload-image/ HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", tok, ct, len(body))
			c.Write(body[:200])
		default: // the same without an account
			fmt.Fprintf(c, "POST /imageapi/token/AAAAAAAAAA/upload-image/ HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", ct, len(body))
			c.Write(body[:200])
		}
	}
	opened := time.Since(began)
	time.Sleep(200 * time.Millisecond) // let the server take them all in
	rss, _ := s.memory(t)
	t.Logf("%d stalled connections opened in %v; server memory %s before, %s with them", n, opened, mb(rss0), mb(rss))

	// An upload from a normal client (from the same address) waits for a
	// turn behind the stalled ones: measured, not required.
	uploaded := make(chan int, 1)
	uploadInfo := make(chan string, 1)
	go func() {
		began := time.Now()
		fb, fct := form(formPart{"f", "normal.png", png})
		req, _ := http.NewRequest("POST", s.url+"/imageapi/token/"+tok+"/upload-image/", bytes.NewReader(fb))
		req.Header.Set("Content-Type", fct)
		resp, err := (&http.Client{Timeout: giveUp + 10*time.Second}).Do(req)
		if err != nil {
			uploaded <- 0
			uploadInfo <- fmt.Sprintf("failed after %v: %v", time.Since(began), err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		uploaded <- resp.StatusCode
		uploadInfo <- fmt.Sprintf("%d %.60q after %v", resp.StatusCode, b, time.Since(began))
	}()

	// Meanwhile reads are answered at once.
	var lat []time.Duration
	for i := 0; i < 10; i++ {
		for _, p := range []string{"/healthz", "/imageapi/token/" + tok + "/get-image-list/"} {
			began := time.Now()
			r := s.get(p)
			d := time.Since(began)
			lat = append(lat, d)
			if r.status != 200 {
				t.Errorf("GET %s among stalled connections: %v", p, r)
			}
			if d > time.Second {
				t.Errorf("GET %s among stalled connections took %v", p, d)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("normal reads among %d stalled connections: %d requests, median %v, slowest %v", n, len(lat), lat[len(lat)/2], lat[len(lat)-1])

	// The server lets go of every stalled connection by itself, answering
	// the uploads first.
	type cut struct {
		kind   string
		status int
		after  time.Duration
		open   bool // still open when the test gave up
	}
	cuts := make(chan cut, n)
	for i, c := range conns {
		go func() {
			c.SetReadDeadline(began.Add(giveUp))
			br := bufio.NewReader(c)
			status := 0
			if resp, err := http.ReadResponse(br, nil); err == nil {
				status = resp.StatusCode
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			_, err := io.Copy(io.Discard, br) // until the server hangs up
			var ne net.Error
			open := errors.As(err, &ne) && ne.Timeout()
			cuts <- cut{kindOf(i), status, time.Since(began), open}
		}()
	}
	type tally struct {
		total, open int
		statuses    map[int]int
		times       []time.Duration
	}
	tallies := map[string]*tally{}
	for range conns {
		c := <-cuts
		k := tallies[c.kind]
		if k == nil {
			k = &tally{statuses: map[int]int{}}
			tallies[c.kind] = k
		}
		k.total++
		k.statuses[c.status]++
		if c.open {
			k.open++
		} else {
			k.times = append(k.times, c.after)
		}
	}
	// 0: closed without an answer. Whether a refusal reaches a client that
	// stalls is TestHostileStalledBodyAfterEarlyAnswer's business; here,
	// only that the server lets go.
	allowed := map[string][]int{
		"headers":     {0, 408},      // closed, or told why
		"upload":      {0, 408, 503}, // too slow, or no turn came
		"wrong token": {0, 401},
	}
	for _, kind := range []string{"headers", "upload", "wrong token"} {
		k := tallies[kind]
		sort.Slice(k.times, func(i, j int) bool { return k.times[i] < k.times[j] })
		when := "none"
		if len(k.times) > 0 {
			when = fmt.Sprintf("first after %v, last after %v", k.times[0].Round(time.Millisecond), k.times[len(k.times)-1].Round(time.Millisecond))
		}
		t.Logf("stalled %s: %d of %d closed by the server (%s); answers (0: none) %v", kind, k.total-k.open, k.total, when, k.statuses)
		if k.open > 0 {
			t.Errorf("stalled %s: %d of %d connections neither answered nor closed by the server after %v", kind, k.open, k.total, giveUp)
		}
		for st, count := range k.statuses {
			if !slices.Contains(allowed[kind], st) {
				t.Errorf("stalled %s: %d answered %d, want one of %v", kind, count, st, allowed[kind])
			}
		}
	}
	status := <-uploaded
	t.Logf("the normal upload: %s", <-uploadInfo)

	if r := s.get("/healthz"); r.status != 200 {
		t.Fatalf("healthz after the stalled connections: %v", r)
	}
	want := [][2]string{{"a.png", ""}}
	if status == 201 {
		want = append(want, [2]string{"normal.png", ""})
	}
	got := s.list(tok)
	if len(got) != len(want) {
		t.Errorf("list = %v, want %v", got, want)
	}
	for i := range min(len(got), len(want)) {
		if got[i][0] != want[i][0] {
			t.Errorf("list = %v, want %v", got, want)
		}
	}
	rss, peak := s.memory(t)
	t.Logf("server memory at the end: %s resident, peak %s", mb(rss), mb(peak))
	if peak > 200e6 {
		t.Errorf("the server's memory peaked at %s", mb(peak))
	}
}

// TestHostileStalledBodyAfterEarlyAnswer: a request refused without its
// body being read (a wrong token, no credentials), whose body then stalls,
// gets its answer and loses its connection within --body-timeout. If the
// server waited for the rest of the body, anyone, without an account,
// could hold connections (a goroutine and a file descriptor each) for as
// long as they like; if it hung up without a word, the client would not
// know why. Twenty clients at once per case.
func TestHostileStalledBodyAfterEarlyAnswer(t *testing.T) {
	const within = 8 * time.Second // --body-timeout 2s, and room to spare
	const per = 20
	s := start(t, t.TempDir(), "--body-timeout", "2s")
	s.newUser("early")
	ct := "Content-Type: " + formType + "\r\n"
	cases := []struct {
		what, head string
		want       int
	}{
		{"seed upload, wrong token", "POST /imageapi/token/AAAAAAAAAA/upload-image/ HTTP/1.1\r\nHost: x\r\n" + ct, 401},
		{"seed replacement, wrong token", "PATCH /imageapi/token/AAAAAAAAAA/update-image/abcd/ HTTP/1.1\r\nHost: x\r\n" + ct, 401},
		{"v1 upload, no credentials", "POST /api/v1/images?name=a.png HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n", 401},
		{"v1 upload, wrong token", "POST /api/v1/images?name=a.png HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer AAAAAAAAAA\r\nContent-Type: image/png\r\n", 401},
	}
	// 100 kB announced: the rest of the body is small enough for the server
	// to try to read it; 10 MB: too large, it hangs up at once.
	lengths := []int{100_000, 10_000_000}
	type result struct {
		status        int
		answer, close time.Duration // 0: not within the test's patience
	}
	results := make([][]result, len(cases)*len(lengths))
	var wg sync.WaitGroup
	for i := range results {
		c, length := cases[i/len(lengths)], lengths[i%len(lengths)]
		results[i] = make([]result, per)
		for j := range results[i] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
				if err != nil {
					return
				}
				defer conn.Close()
				began := time.Now()
				conn.SetDeadline(began.Add(within))
				fmt.Fprintf(conn, "%sContent-Length: %d\r\n\r\n%s", c.head, length, filePartHead("a.png"))
				br := bufio.NewReader(conn)
				r := &results[i][j]
				if resp, err := http.ReadResponse(br, nil); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					r.status, r.answer = resp.StatusCode, time.Since(began)
				}
				var ne net.Error
				if _, err := io.Copy(io.Discard, br); !errors.As(err, &ne) || !ne.Timeout() {
					r.close = time.Since(began)
				}
			}()
		}
	}
	wg.Wait()
	for i, rs := range results {
		c := cases[i/len(lengths)]
		what := fmt.Sprintf("%s, %d bytes announced, body stalled, %d clients", c.what, lengths[i%len(lengths)], per)
		var answered, silent, held, wrong int
		var lastAnswer, lastClose time.Duration
		for _, r := range rs {
			switch {
			case r.close == 0:
				held++
			case r.status == 0:
				silent++
			case r.status != c.want:
				wrong++
			default:
				answered++
			}
			lastAnswer, lastClose = max(lastAnswer, r.answer), max(lastClose, r.close)
		}
		t.Logf("%s: %d answered %d, %d hung up on without an answer, %d still open after %v; last answer after %v, last close after %v",
			what, answered, c.want, silent, held, within, lastAnswer.Round(time.Millisecond), lastClose.Round(time.Millisecond))
		if held > 0 {
			t.Errorf("%s: %d connections neither answered nor let go within %v: the server waits for the rest of the body", what, held, within)
		}
		if silent > 0 {
			t.Errorf("%s: %d clients hung up on without their %d", what, silent, c.want)
		}
		if wrong > 0 {
			t.Errorf("%s: %d clients got another answer than %d", what, wrong, c.want)
		}
	}
}
