package httpapi_test

import (
	"bytes"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/httpapi"
	"github.com/imagestore/imagestore/storage/filestore"
)

// TestStoreFaultFailsOnlyThatRequest: a disk error in the middle of an
// upload answers that request with a 5xx, and only it: the requests before
// and after are served.
func TestStoreFaultFailsOnlyThatRequest(t *testing.T) {
	for _, step := range []string{"create", "write", "sync", "rename"} {
		var armed atomic.Bool
		fs, err := filestore.OpenWith(t.TempDir(), filestore.Options{Fault: func(s, key string) error {
			if armed.Load() && s == step {
				return errors.New("I/O error")
			}
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		svc, _ := domain.New(fs, domain.DefaultConfig)
		srv := httptest.NewServer(httpapi.NewServer(svc, httpapi.Options{}))
		u, _ := svc.CreateUser(t.Context(), "disk", "")
		png, _ := os.ReadFile("../imagetype/testdata/png-rgb.png")
		upload := func(name string) int {
			var body bytes.Buffer
			mw := multipart.NewWriter(&body)
			w, _ := mw.CreateFormFile("f", name)
			w.Write(png)
			mw.Close()
			resp, err := http.Post(srv.URL+"/imageapi/token/"+u.Token+"/upload-image/", mw.FormDataContentType(), &body)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if got := upload("before.png"); got != 201 {
			t.Fatalf("%s: upload before the fault: %d", step, got)
		}
		armed.Store(true)
		if got := upload("during.png"); got < 500 {
			t.Errorf("%s: upload during the fault: %d, want a 5xx", step, got)
		}
		armed.Store(false)
		if got := upload("after.png"); got != 201 {
			t.Errorf("%s: upload after the fault: %d, want 201", step, got)
		}
		resp, err := http.Get(srv.URL + "/imageapi/token/" + u.Token + "/get-image-list/")
		if err != nil {
			t.Fatal(err)
		}
		var list bytes.Buffer
		list.ReadFrom(resp.Body)
		resp.Body.Close()
		if want := `{"before.png":`; !bytes.HasPrefix(list.Bytes(), []byte(want)) || bytes.Contains(list.Bytes(), []byte("during")) {
			t.Errorf("%s: list %s", step, list.String())
		}
		srv.Close()
		fs.Close()
	}
}
