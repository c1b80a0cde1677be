package httpapi_test

import (
	"bytes"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/httpapi"
	"github.com/imagestore/imagestore/storage/memstore"
)

// TestUploadTurns: uploads beyond the limit wait for a turn, a bounded
// time, then get 503 with Retry-After; one client cannot hold every turn.
func TestUploadTurns(t *testing.T) {
	svc, _ := domain.New(memstore.New(), domain.DefaultConfig)
	srv := httptest.NewServer(httpapi.NewServer(svc, httpapi.Options{MaxUploads: 8, UploadWait: 300 * time.Millisecond}))
	defer srv.Close()
	u, _ := svc.CreateUser(t.Context(), "turns", "")
	png, _ := os.ReadFile("../imagetype/testdata/png-rgb.png")
	form := func(name string) ([]byte, string) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		w, _ := mw.CreateFormFile("f", name)
		w.Write(png)
		mw.Close()
		return b.Bytes(), mw.FormDataContentType()
	}
	url := srv.URL + "/imageapi/token/" + u.Token + "/upload-image/"
	// Two uploads that stall halfway hold this client's two turns (a
	// quarter of 8).
	done := make(chan int, 2)
	var finish []func()
	for i := range 2 {
		body, ct := form("held" + string(rune('a'+i)) + ".png")
		pr, pw := io.Pipe()
		go func() {
			req, _ := http.NewRequest("POST", url, pr)
			req.Header.Set("Content-Type", ct)
			req.ContentLength = int64(len(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				done <- -1
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		go pw.Write(body[:len(body)/2])
		finish = append(finish, func() { pw.Write(body[len(body)/2:]); pw.Close() })
	}
	time.Sleep(100 * time.Millisecond)
	body, ct := form("third.png")
	began := time.Now()
	resp, err := http.Post(url, ct, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a third upload from the same client: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if d := time.Since(began); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("refused after %v, want after the 300ms wait", d)
	}
	// Reads go on meanwhile.
	if r, err := http.Get(srv.URL + "/imageapi/retrieve-token/turns/"); err != nil || r.StatusCode != 200 {
		t.Errorf("a read while uploads wait: %v %v", r, err)
	}
	// The held uploads, completed, succeed.
	for _, f := range finish {
		go f()
	}
	for range 2 {
		if st := <-done; st != http.StatusCreated {
			t.Errorf("a held upload, completed: %d, want 201", st)
		}
	}
}
