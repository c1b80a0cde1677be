package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/imagestore/imagestore/domain"
)

// shareX is the .sxcu configuration as ShareX reads it.
type shareX struct {
	Version, Name, DestinationType, RequestMethod, RequestURL string
	Headers                                                   map[string]string
	Body, FileFormName, URL, ErrorMessage                     string
}

// TestShareXConfig: the uploader is for the signed-in user, on the
// address the request reached, as an attachment no one caches.
func TestShareXConfig(t *testing.T) {
	s := newV1Server(t, domain.DefaultConfig)
	tok := s.user("sharer")
	for _, c := range []struct {
		header []string
		base   string
	}{
		{nil, "http://images.example:8443"},
		{[]string{"X-Forwarded-Proto", "https"}, "https://images.example:8443"},
		{[]string{"X-Forwarded-Proto", "HTTPS, http"}, "https://images.example:8443"},
		{[]string{"X-Forwarded-Proto", "gopher"}, "http://images.example:8443"},
	} {
		header := append([]string{"Authorization", "Bearer " + tok, "Host", "images.example:8443"}, c.header...)
		resp, body := s.do("GET", "/api/v1/sharex.sxcu", nil, header...)
		if resp.StatusCode != 200 {
			t.Fatalf("%v: %d %s", c.header, resp.StatusCode, body)
		}
		for name, want := range map[string]string{
			"Content-Type":        "application/json",
			"Content-Disposition": `attachment; filename="imagestore.sxcu"`,
			"Cache-Control":       "no-store",
		} {
			if got := resp.Header.Get(name); got != want {
				t.Errorf("%s %q, want %q", name, got, want)
			}
		}
		var cfg shareX
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		want := shareX{
			Version: "14.0.0", Name: "imagestore (sharer on images.example:8443)",
			DestinationType: "ImageUploader", RequestMethod: "POST", RequestURL: c.base + "/api/v1/images",
			Headers: map[string]string{"Authorization": "Bearer " + tok},
			Body:    "MultipartFormData", FileFormName: "file", URL: c.base + "{json:url}", ErrorMessage: "{json:title}: {json:detail}",
		}
		got, _ := json.Marshal(cfg)
		wantJSON, _ := json.Marshal(want)
		if !bytes.Equal(got, wantJSON) {
			t.Errorf("%v:\n got %s\nwant %s", c.header, got, wantJSON)
		}
	}

	resp, body := s.do("HEAD", "/api/v1/sharex.sxcu", nil, "Authorization", "Bearer "+tok)
	if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength <= 0 {
		t.Errorf("HEAD: %d, %d bytes, Content-Length %d", resp.StatusCode, len(body), resp.ContentLength)
	}
	resp, body = s.do("GET", "/api/v1/sharex.sxcu", nil)
	problem(t, resp, body, 401, "unauthorized")
	resp, body = s.do("GET", "/api/v1/sharex.sxcu", nil, "Authorization", "Bearer AAAAAAAAAA")
	problem(t, resp, body, 401, "unauthorized")
	for _, host := range []string{"evil.example/path", "a b", "x@y", "-bad", "[zz]"} {
		resp, body = s.do("GET", "/api/v1/sharex.sxcu", nil, "Authorization", "Bearer "+tok, "Host", host)
		if resp.StatusCode == 400 && resp.Header.Get("Content-Type") == "text/plain; charset=utf-8" {
			continue // refused by net/http before the handler
		}
		problem(t, resp, body, 400, "bad-host")
	}
}

// TestShareXUploads does what ShareX does with the configuration: upload a
// capture as the form it describes, then follow the link it makes from the
// answer; and read an error's message where it says.
func TestShareXUploads(t *testing.T) {
	s := newV1Server(t, domain.DefaultConfig)
	tok := s.user("capture")
	_, body := s.do("GET", "/api/v1/sharex.sxcu", nil, "Authorization", "Bearer "+tok)
	var cfg shareX
	if err := json.Unmarshal(body, &cfg); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.RequestURL, s.srv.URL) {
		t.Fatalf("RequestURL %s is not on %s", cfg.RequestURL, s.srv.URL)
	}
	send := func(data []byte) (*http.Response, map[string]any) {
		var form bytes.Buffer
		mw := multipart.NewWriter(&form)
		fw, _ := mw.CreateFormFile(cfg.FileFormName, "Screenshot 2025-01-01.png")
		fw.Write(data)
		mw.Close()
		req, _ := http.NewRequest(cfg.RequestMethod, cfg.RequestURL, &form)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		for k, v := range cfg.Headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var answer map[string]any
		json.NewDecoder(resp.Body).Decode(&answer)
		return resp, answer
	}
	capture := readFixture(t, "png-rgb.png")
	resp, answer := send(capture)
	if resp.StatusCode != 201 {
		t.Fatalf("upload: %d %v", resp.StatusCode, answer)
	}
	link := strings.ReplaceAll(cfg.URL, "{json:url}", answer["url"].(string))
	req, _ := http.NewRequest("GET", link, nil)
	req.Header.Set("Authorization", cfg.Headers["Authorization"])
	req.Header.Set("Accept-Encoding", "identity")
	got, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if got.StatusCode != 200 || !bytes.Equal(data, capture) {
		t.Errorf("the link %s: %d, %d bytes, want the capture", link, got.StatusCode, len(data))
	}
	resp, answer = send([]byte("not an image"))
	msg := strings.NewReplacer("{json:title}", str(answer["title"]), "{json:detail}", str(answer["detail"])).Replace(cfg.ErrorMessage)
	if resp.StatusCode != 406 || !strings.HasPrefix(msg, "Not an image of an accepted type") {
		t.Errorf("a refused upload: %d, ShareX would say %q", resp.StatusCode, msg)
	}
}

// str is a JSON value as ShareX's {json:...} gives it: a string, or
// nothing for a missing member.
func str(v any) string {
	s, _ := v.(string)
	return s
}
