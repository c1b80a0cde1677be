package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startUpload opens a connection and sends the headers and the first n
// bytes of an upload of body, leaving the rest unsent.
func startUpload(t *testing.T, s *server, path, contentType string, body []byte, n int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", path, contentType, len(body))
	conn.Write(body[:n])
	return conn
}

func readResponse(t *testing.T, conn net.Conn, within time.Duration) (*http.Response, string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(within))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no response within %v: %v", within, err)
	}
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	resp.Body.Close()
	return resp, b.String()
}

// TestSlowClients: an upload that stalls is cut with 408 after the body
// timeout; one that is slow but keeps moving succeeds, however long it
// takes in all.
func TestSlowClients(t *testing.T) {
	s := start(t, t.TempDir(), "--body-timeout", "1s")
	tok := s.newUser("snail")
	body, ct := form(formPart{"f", "slow.png", fixture(t, "png-rgb.png")})
	path := "/imageapi/token/" + tok + "/upload-image/"

	t.Run("stalled", func(t *testing.T) {
		conn := startUpload(t, s, path, ct, body, 300)
		began := time.Now()
		resp, b := readResponse(t, conn, 10*time.Second)
		if resp.StatusCode != 408 {
			t.Fatalf("stalled upload: %d %s, want 408", resp.StatusCode, b)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Errorf("cut after %v, want about the 1s timeout", d)
		}
	})

	t.Run("slow but steady", func(t *testing.T) {
		conn := startUpload(t, s, path, ct, body, 0)
		// About 3 s in all, well past the timeout, but never 1 s idle.
		step := len(body)/10 + 1
		for i := 0; i < len(body); i += step {
			time.Sleep(300 * time.Millisecond)
			conn.Write(body[i:min(i+step, len(body))])
		}
		resp, b := readResponse(t, conn, 10*time.Second)
		if resp.StatusCode != 201 {
			t.Fatalf("slow upload: %d %s, want 201", resp.StatusCode, b)
		}
	})
	if got := s.list(tok); len(got) != 1 || got[0][0] != "slow.png" {
		t.Fatalf("list = %v, want only the slow but steady upload", got)
	}
}

// TestUploadsWaitTheirTurn: with room for one upload at a time, a second
// upload waits while the first is in progress, then succeeds; reads are
// not held up meanwhile.
func TestUploadsWaitTheirTurn(t *testing.T) {
	s := start(t, t.TempDir(), "--max-uploads", "1")
	tok := s.newUser("queue")
	s.uploadID(tok, "first.png", fixture(t, "png-rgb.png"))
	body, ct := form(formPart{"f", "held.png", fixture(t, "png-palette.png")})
	path := "/imageapi/token/" + tok + "/upload-image/"
	conn := startUpload(t, s, path, ct, body, 100)
	time.Sleep(200 * time.Millisecond) // the held upload has the only turn

	done := make(chan response, 1)
	go func() { done <- s.upload(tok, "waiting.png", fixture(t, "gif-still.gif")) }()
	select {
	case r := <-done:
		t.Fatalf("the second upload did not wait: %v", r)
	case <-time.After(500 * time.Millisecond):
	}
	began := time.Now()
	if got := s.list(tok); len(got) != 1 {
		t.Fatalf("list while uploads wait: %v", got)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("a list took %v while uploads waited", d)
	}
	conn.Write(body[100:])
	if resp, b := readResponse(t, conn, 10*time.Second); resp.StatusCode != 201 {
		t.Fatalf("held upload: %d %s", resp.StatusCode, b)
	}
	if r := <-done; r.status != 201 {
		t.Fatalf("waiting upload: %v", r)
	}
}

// TestFormPrefixIsBounded: what comes before the file (part headers, text
// fields) is limited to 1 MiB, whatever the upload limit.
func TestFormPrefixIsBounded(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.newUser("prefix")
	big := bytes.Repeat([]byte("x"), 2<<20)
	r := s.sendForm("POST", "/imageapi/token/"+tok+"/upload-image/", formPart{"notes", "", big}, formPart{"f", "a.png", fixture(t, "png-rgb.png")})
	if r.status != 413 || !strings.Contains(string(r.body), "before the file") {
		t.Errorf("2 MiB of fields before the file: %v, want 413", r)
	}
	// A file of that size after small fields is fine.
	png := append(fixture(t, "png-rgb.png"), big...) // bytes after IEND are allowed
	r = s.sendForm("POST", "/imageapi/token/"+tok+"/upload-image/", formPart{"notes", "", []byte("hello")}, formPart{"f", "b.png", png})
	if r.status != 201 {
		t.Errorf("a 2 MiB file after a small field: %v, want 201", r)
	}
}
