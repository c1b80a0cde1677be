package e2e

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// raw is a client that shows responses as sent: no transparent gzip.
var raw = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 30 * time.Second}

func rawRequest(t *testing.T, method, url string, header map[string]string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := raw.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// TestDownloadHTTP checks conditional requests, ranges, HEAD, caching
// headers and gzip pass-through on image downloads.
func TestDownloadHTTP(t *testing.T) {
	s := start(t, t.TempDir())
	tok := s.newUser("http")
	img := fixture(t, "ppm-plain.ppm") // compresses well: gzip and identity differ
	id := s.uploadID(tok, "p.ppm", img)
	if len(img) < 4000 {
		t.Fatalf("the image must be larger than the ranges asked for")
	}
	url := s.url + "/imageapi/token/" + tok + "/get-image/" + id + "/"
	identity := map[string]string{"Accept-Encoding": "identity"}

	resp, body, err := rawRequest(t, "GET", url, identity)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, img) {
		t.Fatalf("identity GET: %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}
	etag, lastMod := resp.Header.Get("Etag"), resp.Header.Get("Last-Modified")
	if !strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, "W/") || lastMod == "" {
		t.Fatalf("ETag %q (want strong), Last-Modified %q", etag, lastMod)
	}
	for h, want := range map[string]string{"Cache-Control": "private", "Vary": "Accept-Encoding", "Accept-Ranges": "bytes", "Content-Length": strconv.Itoa(len(img))} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}

	t.Run("gzip pass-through", func(t *testing.T) {
		// The first GET sends the file, the second keeps its bytes in
		// memory, the third sends them from there: the same each time.
		var resp *http.Response
		var first []byte
		for i := range 3 {
			var body []byte
			var err error
			resp, body, err = rawRequest(t, "GET", url, map[string]string{"Accept-Encoding": "gzip, deflate, br"})
			if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" {
				t.Fatalf("GET %d with gzip: %d %q %v", i+1, resp.StatusCode, resp.Header.Get("Content-Encoding"), err)
			}
			if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(len(body)) || len(body) >= len(img) {
				t.Errorf("GET %d: Content-Length %q for a %d-byte gzip body of a %d-byte image", i+1, got, len(body), len(img))
			}
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := io.ReadAll(zr)
			if err != nil || !bytes.Equal(plain, img) {
				t.Fatalf("GET %d: the gzip body does not decompress to the image: %v", i+1, err)
			}
			if i == 0 {
				first = body
			} else if !bytes.Equal(body, first) {
				t.Fatalf("GET %d sent other gzip bytes than the first", i+1)
			}
		}
		gzTag := resp.Header.Get("Etag")
		if gzTag == etag || gzTag == "" {
			t.Errorf("gzip ETag %q, identity ETag %q: each representation needs its own", gzTag, etag)
		}
		if resp, _, _ := rawRequest(t, "GET", url, map[string]string{"Accept-Encoding": "gzip", "If-None-Match": gzTag}); resp.StatusCode != 304 {
			t.Errorf("If-None-Match on gzip: %d, want 304", resp.StatusCode)
		}
		// q=0 refuses gzip.
		if resp, _, _ := rawRequest(t, "GET", url, map[string]string{"Accept-Encoding": "gzip;q=0, identity"}); resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("gzip;q=0 got Content-Encoding %q", resp.Header.Get("Content-Encoding"))
		}
		// HEAD with gzip: the headers, no body.
		resp, body, _ = rawRequest(t, "HEAD", url, map[string]string{"Accept-Encoding": "gzip"})
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Encoding") != "gzip" {
			t.Errorf("HEAD with gzip: %d, %d bytes, %q", resp.StatusCode, len(body), resp.Header.Get("Content-Encoding"))
		}
	})

	t.Run("conditional", func(t *testing.T) {
		for _, h := range []map[string]string{
			{"If-None-Match": etag},
			{"If-None-Match": `"other", ` + etag},
			{"If-None-Match": "W/" + etag},
			{"If-None-Match": "*"},
			{"If-Modified-Since": lastMod},
			{"If-Modified-Since": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)},
		} {
			h["Accept-Encoding"] = "identity"
			resp, body, _ := rawRequest(t, "GET", url, h)
			if resp.StatusCode != 304 || len(body) != 0 {
				t.Errorf("%v: %d with %d bytes, want 304 and no body", h, resp.StatusCode, len(body))
			}
		}
		for _, h := range []map[string]string{
			{"If-None-Match": `"something-else"`},
			{"If-Modified-Since": "Mon, 02 Jan 2006 15:04:05 GMT"},
		} {
			h["Accept-Encoding"] = "identity"
			if resp, body, _ := rawRequest(t, "GET", url, h); resp.StatusCode != 200 || !bytes.Equal(body, img) {
				t.Errorf("%v: %d, want 200 and the image", h, resp.StatusCode)
			}
		}
	})

	t.Run("ranges", func(t *testing.T) {
		resp, body, _ := rawRequest(t, "GET", url, map[string]string{"Range": "bytes=100-199"})
		if resp.StatusCode != 206 || !bytes.Equal(body, img[100:200]) {
			t.Fatalf("range 100-199: %d, %d bytes", resp.StatusCode, len(body))
		}
		if got, want := resp.Header.Get("Content-Range"), "bytes 100-199/"+strconv.Itoa(len(img)); got != want {
			t.Errorf("Content-Range %q, want %q", got, want)
		}
		if resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("a range came gzip-encoded")
		}
		resp, body, _ = rawRequest(t, "GET", url, map[string]string{"Range": "bytes=-50", "Accept-Encoding": "gzip"})
		if resp.StatusCode != 206 || !bytes.Equal(body, img[len(img)-50:]) {
			t.Errorf("suffix range: %d, %d bytes", resp.StatusCode, len(body))
		}
		// Two ranges in order: a multipart answer.
		resp, body, _ = rawRequest(t, "GET", url, map[string]string{"Range": "bytes=0-9,3000-3009"})
		if resp.StatusCode != 206 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") ||
			!bytes.Contains(body, img[3000:3010]) || !bytes.Contains(body, img[0:10]) {
			t.Errorf("two ranges: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		// The second behind the first would mean decompressing twice: only
		// the first is served.
		resp, body, _ = rawRequest(t, "GET", url, map[string]string{"Range": "bytes=3000-3009,0-9"})
		if resp.StatusCode != 206 || !bytes.Equal(body, img[3000:3010]) {
			t.Errorf("two ranges out of order: %d, %d bytes, want the first range alone", resp.StatusCode, len(body))
		}
		resp, _, _ = rawRequest(t, "GET", url, map[string]string{"Range": "bytes=999999-"})
		if resp.StatusCode != 416 {
			t.Errorf("unsatisfiable range: %d, want 416", resp.StatusCode)
		}
		// If-Range with a stale validator: the whole image.
		resp, body, _ = rawRequest(t, "GET", url, map[string]string{"Range": "bytes=0-9", "If-Range": `"stale"`, "Accept-Encoding": "identity"})
		if resp.StatusCode != 200 || !bytes.Equal(body, img) {
			t.Errorf("If-Range stale: %d, %d bytes", resp.StatusCode, len(body))
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		resp, body, _ := rawRequest(t, "HEAD", url, identity)
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Length") != strconv.Itoa(len(img)) || resp.Header.Get("Etag") != etag {
			t.Errorf("HEAD: %d, %d bytes, length %q, etag %q", resp.StatusCode, len(body), resp.Header.Get("Content-Length"), resp.Header.Get("Etag"))
		}
	})

	t.Run("new content, new validators", func(t *testing.T) {
		s.sendForm("PATCH", "/imageapi/token/"+tok+"/update-image/"+id+"/", formPart{"f", "q.png", fixture(t, "png-rgb.png")})
		resp, body, _ := rawRequest(t, "GET", url, map[string]string{"If-None-Match": etag, "Accept-Encoding": "identity"})
		if resp.StatusCode != 200 || !bytes.Equal(body, fixture(t, "png-rgb.png")) || resp.Header.Get("Etag") == etag {
			t.Errorf("after a patch: %d, ETag %q (was %q)", resp.StatusCode, resp.Header.Get("Etag"), etag)
		}
	})
}

// TestDamagedBlobIsNotServedAsGood corrupts a stored image on disk: a
// download must then fail visibly (an error status, or a short body when
// the damage is found late), never deliver wrong bytes
// as if they were right.
func TestDamagedBlobIsNotServedAsGood(t *testing.T) {
	data := t.TempDir()
	s := start(t, data)
	tok := s.newUser("damage")
	img := fixture(t, "ppm-raw.ppm")
	id := s.uploadID(tok, "d.ppm", img)
	blobs, _ := filepath.Glob(filepath.Join(data, "objects", "blobs", "*", "*.gz"))
	if len(blobs) != 1 {
		t.Fatalf("%d blobs, want 1", len(blobs))
	}
	b, _ := os.ReadFile(blobs[0])
	b[len(b)/2] ^= 0xff // flip bits in the middle of the deflate stream
	if err := os.WriteFile(blobs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, body, err := rawRequest(t, "GET", s.url+"/imageapi/token/"+tok+"/get-image/"+id+"/", map[string]string{"Accept-Encoding": "identity"})
	if err == nil && resp.StatusCode == 200 && bytes.Equal(body, img) {
		t.Fatal("a damaged blob was served whole and right: the test did not damage it")
	}
	if err == nil && resp.StatusCode == 200 {
		t.Fatalf("a damaged blob was served as a complete 200 (%d of %d bytes)", len(body), len(img))
	}
	// The log line may be written just after the response was cut.
	for deadline := time.Now().Add(3 * time.Second); !strings.Contains(s.stderr.String(), "image download failed"); {
		if time.Now().After(deadline) {
			t.Fatalf("the failure was not logged:\n%s", s.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHotCacheServesAndCounts: a client without gzip gets the same bytes
// from the memory cache as from the disk, and /metrics counts hits and
// misses; with --cache-size 0 nothing is cached.
func TestHotCacheServesAndCounts(t *testing.T) {
	for _, size := range []string{"1MiB", "0"} {
		t.Run("cache="+size, func(t *testing.T) {
			s := start(t, t.TempDir(), "--cache-size", size)
			tok := s.newUser("hotcache")
			img := fixture(t, "png-rgb.png")
			id := s.uploadID(tok, "h.png", img)
			url := s.url + "/imageapi/token/" + tok + "/get-image/" + id + "/"
			for i := range 3 {
				resp, body, err := rawRequest(t, "GET", url, map[string]string{"Accept-Encoding": "identity"})
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, img) || resp.Header.Get("Content-Length") != strconv.Itoa(len(img)) {
					t.Fatalf("read %d: %v %v, %d bytes", i, err, resp, len(body))
				}
			}
			resp, body, _ := rawRequest(t, "GET", url, map[string]string{"Accept-Encoding": "identity", "Range": "bytes=2-9"})
			if resp.StatusCode != 206 || !bytes.Equal(body, img[2:10]) {
				t.Errorf("range: %d %q", resp.StatusCode, body)
			}
			text := s.metricsText()
			hits, _ := metricSum(text, "imagestore_image_cache_hits_total", nil)
			misses, _ := metricSum(text, "imagestore_image_cache_misses_total", nil)
			want := [2]float64{3, 1}
			if size == "0" {
				want = [2]float64{0, 0}
			}
			if [2]float64{hits, misses} != want {
				t.Errorf("hits, misses: %v, %v; want %v", hits, misses, want)
			}
		})
	}
}

// TestShortBlobIsAServerError: an image whose stored bytes were cut short,
// or replaced by a shorter stream that is itself valid gzip, is a 500 for
// every kind of client (never a 400 blaming the client, never a 200), and
// the failure is logged.
func TestShortBlobIsAServerError(t *testing.T) {
	for _, damage := range []string{"truncated", "shorter valid gzip"} {
		t.Run(damage, func(t *testing.T) {
			data := t.TempDir()
			s := start(t, data)
			tok := s.newUser("short")
			img := fixture(t, "png-rgb.png")
			id := s.uploadID(tok, "s.png", img)
			blobs, _ := filepath.Glob(filepath.Join(data, "objects", "blobs", "*", "*.gz"))
			if len(blobs) != 1 {
				t.Fatalf("%d blobs, want 1", len(blobs))
			}
			b, _ := os.ReadFile(blobs[0])
			if damage == "truncated" {
				b = b[:len(b)/2]
			} else {
				var buf bytes.Buffer
				zw := gzip.NewWriter(&buf)
				zw.Write(img[:100])
				zw.Close()
				b = buf.Bytes()
			}
			if err := os.WriteFile(blobs[0], b, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct{ path, enc string }{
				{"/imageapi/token/" + tok + "/get-image/" + id + "/", "identity"},
				{"/imageapi/token/" + tok + "/get-image/" + id + "/", "gzip"},
				{"/api/v1/images/" + id, "identity"},
				{"/api/v1/images/" + id + "?w=10", "identity"},
			} {
				resp, _, err := rawRequest(t, "GET", s.url+c.path, map[string]string{"Accept-Encoding": c.enc, "Authorization": "Bearer " + tok})
				if err != nil {
					t.Fatalf("%s (%s): %v", c.path, c.enc, err)
				}
				if resp.StatusCode != 500 {
					t.Errorf("%s (%s): %d, want 500", c.path, c.enc, resp.StatusCode)
				}
			}
			if strings.Contains(s.stderr.String(), "abandoned by the client") {
				t.Errorf("the damage was logged as the client's doing:\n%s", s.stderr.String())
			}
		})
	}
}
