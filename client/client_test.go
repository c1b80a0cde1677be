package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/imagestore/imagestore/client"
)

// newUser creates a user on the server at url and returns a client
// authenticated as that user.
func newUser(t *testing.T, url, username string) *client.Client {
	t.Helper()
	tok, err := client.New(url, "").CreateUser(t.Context(), username, "")
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", username, err)
	}
	return client.New(url, tok)
}

// wantProblem checks that err is an *Error of status and problem type
// urn:imagestore:problem:slug that matches the sentinel.
func wantProblem(t *testing.T, what string, err error, status int, slug string, sentinel error) *client.Error {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: got %v (%T), want an *client.Error", what, err, err)
	}
	if e.StatusCode != status || e.Type != "urn:imagestore:problem:"+slug {
		t.Errorf("%s: got %d %s, want %d %s", what, e.StatusCode, e.Type, status, slug)
	}
	if e.Title == "" || !strings.Contains(e.Error(), e.Title) || !strings.Contains(e.Error(), fmt.Sprint(status)) {
		t.Errorf("%s: Error() = %q, title %q", what, e.Error(), e.Title)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Errorf("%s: errors.Is(%v, %v) is false", what, err, sentinel)
	}
	for _, other := range []error{client.ErrUnauthorized, client.ErrNotFound, client.ErrConflict, client.ErrPreconditionFailed,
		client.ErrTooLarge, client.ErrNotImage, client.ErrRateLimited, client.ErrUnavailable} {
		if other != sentinel && errors.Is(err, other) {
			t.Errorf("%s: %v also matches %v", what, err, other)
		}
	}
	return e
}

func TestUsersAndTokens(t *testing.T) {
	url := startServer(t)
	ctx := t.Context()
	anon := client.New(url, "")

	tok, err := anon.CreateUser(ctx, "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 10 {
		t.Errorf("token %q, want 10 characters", tok)
	}
	_, err = anon.CreateUser(ctx, "alice", "")
	wantProblem(t, "same username", err, 409, "user-exists", client.ErrConflict)
	_, err = anon.CreateUser(ctx, "no spaces", "")
	wantProblem(t, "invalid username", err, 422, "invalid-username", nil)
	_, err = anon.CreateUser(ctx, "bob", "short")
	e := wantProblem(t, "weak password", err, 422, "weak-password", nil)
	if e.Limit != "password_length" || e.Allowed != "8-72" {
		t.Errorf("weak password: limit %q allowed %q", e.Limit, e.Allowed)
	}
	if _, err := anon.CreateUser(ctx, "carol", "a good password"); err != nil {
		t.Fatal(err)
	}

	alice := client.New(url, tok)
	me, err := alice.Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if me.Username != "alice" || me.HasPassword || me.Created.IsZero() {
		t.Errorf("Me = %+v", me)
	}

	// After a rotation the client uses the new token; the old one is dead.
	newTok, err := alice.RotateToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newTok == tok || len(newTok) != 10 {
		t.Errorf("rotated token %q (was %q)", newTok, tok)
	}
	if _, err := alice.Me(ctx); err != nil {
		t.Errorf("Me after rotation: %v", err)
	}
	_, err = client.New(url, tok).Me(ctx)
	wantProblem(t, "old token", err, 401, "unauthorized", client.ErrUnauthorized)
	if me, err := client.New(url, newTok).Me(ctx); err != nil || me.Username != "alice" {
		t.Errorf("Me with the new token: %+v, %v", me, err)
	}
}

func TestLimits(t *testing.T) {
	url := startServer(t, "--max-upload", "64KiB", "--max-pixels", "1000000", "--variant-max-size", "640")
	l, err := client.New(url, "").Limits(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if l.MaxUploadBytes != 64<<10 || l.MaxPixels != 1000000 || l.MaxPageSize < 1 || l.MaxVariantSize != 640 || !slices.Contains(l.AcceptedTypes, "image/png") {
		t.Errorf("Limits = %+v", l)
	}
}

func TestUnauthorized(t *testing.T) {
	url := startServer(t)
	ctx := t.Context()
	for _, tok := range []string{"", "AAAAAAAAAA"} {
		c := client.New(url, tok)
		what := fmt.Sprintf("token %q", tok)
		_, err := c.Me(ctx)
		wantProblem(t, what+": Me", err, 401, "unauthorized", client.ErrUnauthorized)
		_, err = c.RotateToken(ctx)
		wantProblem(t, what+": RotateToken", err, 401, "unauthorized", client.ErrUnauthorized)
		_, err = c.List(ctx, "", 0)
		wantProblem(t, what+": List", err, 401, "unauthorized", client.ErrUnauthorized)
		png := fixture(t, "png-palette.png")
		_, err = c.Upload(ctx, "a.png", bytes.NewReader(png), int64(len(png)), nil)
		wantProblem(t, what+": Upload", err, 401, "unauthorized", client.ErrUnauthorized)
		_, err = c.Download(ctx, "abcd", io.Discard)
		wantProblem(t, what+": Download", err, 401, "unauthorized", client.ErrUnauthorized)
		err = c.Delete(ctx, "abcd", "")
		wantProblem(t, what+": Delete", err, 401, "unauthorized", client.ErrUnauthorized)
		// Limits needs no token.
		if _, err := c.Limits(ctx); err != nil {
			t.Errorf("%s: Limits: %v", what, err)
		}
	}
}

func TestImages(t *testing.T) {
	url := startServer(t)
	ctx := t.Context()
	c := newUser(t, url, "alice")

	// Upload, with progress, a known size, and an unknown one (chunked).
	pngBytes := fixture(t, "png-palette.png")
	var last, total int64
	up, err := c.Upload(ctx, "cat.png", bytes.NewReader(pngBytes), int64(len(pngBytes)), &client.UploadOptions{
		Progress: func(sent, size int64) { last, total = sent, size },
	})
	if err != nil {
		t.Fatal(err)
	}
	if last != int64(len(pngBytes)) || total != int64(len(pngBytes)) {
		t.Errorf("progress ended at %d of %d, want %d", last, total, len(pngBytes))
	}
	sum := sha256.Sum256(pngBytes)
	if up.Replayed || up.Name != "cat.png" || up.ContentType != "image/png" || up.Size != int64(len(pngBytes)) ||
		up.SHA256 != hex.EncodeToString(sum[:]) || up.Width == 0 || up.Height == 0 || up.URL != "/api/v1/images/"+up.ID {
		t.Errorf("Upload = %+v", up)
	}
	jpg := fixture(t, "jpeg-baseline.jpg")
	up2, err := c.Upload(ctx, `some\folder/dog.jpg`, struct{ io.Reader }{bytes.NewReader(jpg)}, -1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if up2.Name != "dog.jpg" || up2.ContentType != "image/jpeg" || up2.Size != int64(len(jpg)) {
		t.Errorf("Upload of unknown size = %+v", up2)
	}
	gif := fixture(t, "gif-still.gif")
	up3, err := c.Upload(ctx, "bird.gif", bytes.NewReader(gif), int64(len(gif)), nil)
	if err != nil {
		t.Fatal(err)
	}

	// Refusals.
	_, err = c.Upload(ctx, "cat.png", bytes.NewReader(pngBytes), int64(len(pngBytes)), nil)
	wantProblem(t, "same name", err, 409, "name-taken", client.ErrConflict)
	text := []byte("just some text, not an image at all")
	_, err = c.Upload(ctx, "notes.png", bytes.NewReader(text), int64(len(text)), nil)
	wantProblem(t, "not an image", err, 406, "not-an-image", client.ErrNotImage)
	_, err = c.Upload(ctx, "", bytes.NewReader(pngBytes), int64(len(pngBytes)), nil)
	wantProblem(t, "no name", err, 400, "no-file", nil)
	_, err = c.Upload(ctx, "empty.png", strings.NewReader(""), 0, nil)
	if err == nil {
		t.Error("empty upload: no error")
	}

	// Meta and Download.
	meta, err := c.Meta(ctx, up.ID)
	if err != nil {
		t.Fatal(err)
	}
	if meta != up.Image {
		t.Errorf("Meta = %+v, want %+v", meta, up.Image)
	}
	var buf bytes.Buffer
	n, err := c.Download(ctx, up.ID, &buf)
	if err != nil || n != int64(len(pngBytes)) || !bytes.Equal(buf.Bytes(), pngBytes) {
		t.Errorf("Download: %d bytes, %v; identical: %v", n, err, bytes.Equal(buf.Bytes(), pngBytes))
	}
	// Without gzip, the server sends the bytes decompressed.
	plain := client.New(url, "", client.WithHTTPClient(&http.Client{Transport: &http.Transport{DisableCompression: true}}))
	_, err = plain.Meta(ctx, up.ID)
	wantProblem(t, "Meta without token", err, 401, "unauthorized", client.ErrUnauthorized)
	tok, err := client.New(url, "").CreateUser(ctx, "bob", "")
	if err != nil {
		t.Fatal(err)
	}
	bob := client.New(url, tok, client.WithHTTPClient(&http.Client{Transport: &http.Transport{DisableCompression: true}}), client.WithUserAgent("test/1"))
	bobUp, err := bob.Upload(ctx, "x.jpg", bytes.NewReader(jpg), int64(len(jpg)), nil)
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if _, err := bob.Download(ctx, bobUp.ID, &buf); err != nil || !bytes.Equal(buf.Bytes(), jpg) {
		t.Errorf("Download without gzip: %v; identical: %v", err, bytes.Equal(buf.Bytes(), jpg))
	}
	// Another user's image is not found.
	_, err = bob.Meta(ctx, up.ID)
	wantProblem(t, "another user's image", err, 404, "image-not-found", client.ErrNotFound)

	for _, id := range []string{"zzzz", "nope"} {
		_, err = c.Meta(ctx, id)
		wantProblem(t, "Meta "+id, err, 404, "image-not-found", client.ErrNotFound)
		_, err = c.Download(ctx, id, io.Discard)
		wantProblem(t, "Download "+id, err, 404, "image-not-found", client.ErrNotFound)
		_, err = c.Replace(ctx, id, bytes.NewReader(pngBytes), int64(len(pngBytes)), nil)
		wantProblem(t, "Replace "+id, err, 404, "image-not-found", client.ErrNotFound)
		err = c.Delete(ctx, id, "")
		wantProblem(t, "Delete "+id, err, 404, "image-not-found", client.ErrNotFound)
	}
	// Ids that cannot be ids are not sent at all.
	for _, id := range []string{"", "..", "../users/me", "a b", "a?b"} {
		_, err := c.Meta(ctx, id)
		var e *client.Error
		if !errors.Is(err, client.ErrNotFound) || errors.As(err, &e) {
			t.Errorf("Meta(%q): %v, want a local ErrNotFound", id, err)
		}
		if err := c.Delete(ctx, id, ""); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("Delete(%q): %v", id, err)
		}
	}

	// List, a page at a time, and All.
	var ids []string
	cursor := ""
	for pages := 0; ; pages++ {
		p, err := c.List(ctx, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Images) > 2 || pages > 3 {
			t.Fatalf("page %d: %d images", pages, len(p.Images))
		}
		for _, img := range p.Images {
			ids = append(ids, img.ID)
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	want := []string{up.ID, up2.ID, up3.ID}
	if !slices.Equal(ids, want) {
		t.Errorf("List: %v, want %v", ids, want)
	}
	for _, size := range []int{0, 1, 2, 1000} {
		var got []string
		for img, err := range c.All(ctx, size) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, img.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("All(%d): %v, want %v", size, got, want)
		}
	}
	for img, err := range c.All(ctx, 1) { // stopping early
		if err != nil || img.ID != up.ID {
			t.Errorf("All: first %v, %v", img.ID, err)
		}
		break
	}
	_, err = c.List(ctx, "", 100000)
	e := wantProblem(t, "limit out of bounds", err, 400, "bad-query", nil)
	if e.Limit != "limit" || e.Actual != "100000" {
		t.Errorf("bad limit: %+v", e)
	}
	for _, err := range c.All(ctx, 100000) {
		wantProblem(t, "All with a bad page size", err, 400, "bad-query", nil)
	}

	// Replace: If-Match, renaming, keeping the name.
	_, err = c.Replace(ctx, up.ID, bytes.NewReader(jpg), int64(len(jpg)), &client.ReplaceOptions{IfMatch: up2.ETag()})
	wantProblem(t, "Replace with a stale If-Match", err, 412, "changed", client.ErrPreconditionFailed)
	_, err = c.Replace(ctx, up.ID, bytes.NewReader(jpg), int64(len(jpg)), &client.ReplaceOptions{Name: "dog.jpg"})
	wantProblem(t, "Replace to a taken name", err, 409, "name-taken", client.ErrConflict)
	_, err = c.Replace(ctx, up.ID, bytes.NewReader(text), int64(len(text)), nil)
	wantProblem(t, "Replace with a non-image", err, 406, "not-an-image", client.ErrNotImage)
	rep, err := c.Replace(ctx, up.ID, bytes.NewReader(jpg), int64(len(jpg)), &client.ReplaceOptions{IfMatch: up.ETag()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ID != up.ID || rep.Name != "cat.png" || rep.ContentType != "image/jpeg" || rep.ETag() == up.ETag() {
		t.Errorf("Replace keeping the name = %+v", rep)
	}
	rep, err = c.Replace(ctx, up.ID, bytes.NewReader(gif), -1, &client.ReplaceOptions{Name: "cat.gif", IfMatch: rep.ETag()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Name != "cat.gif" || rep.ContentType != "image/gif" {
		t.Errorf("Replace renaming = %+v", rep)
	}
	buf.Reset()
	if _, err := c.Download(ctx, up.ID, &buf); err != nil || !bytes.Equal(buf.Bytes(), gif) {
		t.Errorf("Download after Replace: %v", err)
	}

	// Delete: If-Match, then for good.
	err = c.Delete(ctx, up.ID, up.ETag())
	wantProblem(t, "Delete with a stale If-Match", err, 412, "changed", client.ErrPreconditionFailed)
	if err := c.Delete(ctx, up.ID, rep.ETag()); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, up2.ID, ""); err != nil {
		t.Fatal(err)
	}
	_, err = c.Meta(ctx, up.ID)
	wantProblem(t, "Meta after Delete", err, 404, "image-not-found", client.ErrNotFound)
	err = c.Delete(ctx, up.ID, "")
	wantProblem(t, "Delete twice", err, 404, "image-not-found", client.ErrNotFound)
	p, err := c.List(ctx, "", 0)
	if err != nil || len(p.Images) != 1 || p.Images[0].ID != up3.ID || p.NextCursor != "" {
		t.Errorf("List after Delete: %+v, %v", p, err)
	}
}

func TestIdempotentUpload(t *testing.T) {
	url := startServer(t)
	ctx := t.Context()
	c := newUser(t, url, "alice")
	png := fixture(t, "png-rgb.png")
	opts := &client.UploadOptions{IdempotencyKey: "key-1"}
	first, err := c.Upload(ctx, "a.png", bytes.NewReader(png), int64(len(png)), opts)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Upload(ctx, "a.png", bytes.NewReader(png), int64(len(png)), opts)
	if err != nil {
		t.Fatal(err)
	}
	if first.Replayed || !again.Replayed || again.Image != first.Image {
		t.Errorf("first %+v, again %+v", first, again)
	}
	// The same key for other bytes is refused.
	jpg := fixture(t, "jpeg-baseline.jpg")
	_, err = c.Upload(ctx, "a.png", bytes.NewReader(jpg), int64(len(jpg)), opts)
	wantProblem(t, "key reused", err, 422, "idempotency-key-reused", nil)
	_, err = c.Upload(ctx, "b.png", bytes.NewReader(png), int64(len(png)), &client.UploadOptions{IdempotencyKey: "not valid"})
	wantProblem(t, "bad key", err, 400, "bad-idempotency-key", nil)
	n := 0
	for _, err := range c.All(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("%d images stored, want 1", n)
	}
}

// bigPNG is a valid PNG of more than 64 KiB: random pixels do not
// compress.
func bigPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 160, 160))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = byte(r.Uint32())
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if buf.Len() <= 64<<10 {
		t.Fatalf("the big PNG is only %d bytes", buf.Len())
	}
	return buf.Bytes()
}

func TestTooLarge(t *testing.T) {
	url := startServer(t, "--max-upload", "64KiB")
	ctx := t.Context()
	c := newUser(t, url, "alice")
	big := bigPNG(t)
	small := fixture(t, "png-palette.png")
	up, err := c.Upload(ctx, "small.png", bytes.NewReader(small), int64(len(small)), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{int64(len(big)), -1} { // announced, and found while streaming
		what := fmt.Sprintf("size %d", size)
		_, err := c.Upload(ctx, "big.png", bytes.NewReader(big), size, nil)
		e := wantProblem(t, what+": Upload", err, 413, "upload-too-large", client.ErrTooLarge)
		if e.Limit != "max_upload_bytes" || e.Allowed != "65536" {
			t.Errorf("%s: limit %q allowed %q", what, e.Limit, e.Allowed)
		}
		_, err = c.Replace(ctx, up.ID, bytes.NewReader(big), size, nil)
		wantProblem(t, what+": Replace", err, 413, "upload-too-large", client.ErrTooLarge)
	}
	if _, err := c.Meta(ctx, up.ID); err != nil {
		t.Errorf("the small image after refused replacements: %v", err)
	}
}

func TestNoAnswer(t *testing.T) {
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := client.New("http://"+addr, "AAAAAAAAAA")
	_, err = c.Me(t.Context())
	var e *client.Error
	if !errors.Is(err, client.ErrUnavailable) || errors.As(err, &e) {
		t.Errorf("server down: %v", err)
	}
	if strings.Contains(err.Error(), "AAAAAAAAAA") {
		t.Errorf("the token is in the error: %v", err)
	}

	url := startServer(t)
	c = newUser(t, url, "alice")
	// A cancelled request is not the server's fault.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Me(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, client.ErrUnavailable) {
		t.Errorf("cancelled: %v", err)
	}
	// Nor is a file that cannot be read.
	broken := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader(fixture(t, "png-palette.png")[:100]), &failingReader{broken})
	if _, err := c.Upload(t.Context(), "a.png", r, 672, nil); !errors.Is(err, broken) || errors.Is(err, client.ErrUnavailable) {
		t.Errorf("unreadable body: %v", err)
	}
	// A trailing slash in the base URL is fine.
	if _, err := client.New(url+"/", "").Limits(t.Context()); err != nil {
		t.Errorf("trailing slash: %v", err)
	}
}

type failingReader struct{ err error }

func (r *failingReader) Read([]byte) (int, error) { return 0, r.err }
