package domain_test

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"sync"
	"testing"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage/memstore"
)

func TestPasswords(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		u, err := e.svc.CreateUser(ctx, "pat", "correct horse")
		if err != nil {
			t.Fatal(err)
		}
		if !u.HasPassword() || strings.Contains(u.PasswordHash, "correct horse") {
			t.Fatalf("password hash %q", u.PasswordHash)
		}
		if !domain.CheckPassword(u, "correct horse") || domain.CheckPassword(u, "wrong horse") || domain.CheckPassword(u, "") {
			t.Fatal("CheckPassword accepts what it should not, or refuses the password")
		}
		// The stored record holds the hash, never the password.
		for key, err := range e.store.List(ctx, "") {
			if err != nil {
				t.Fatal(err)
			}
			rc, _, _ := e.store.Get(ctx, key)
			var b bytes.Buffer
			b.ReadFrom(rc)
			rc.Close()
			if strings.Contains(b.String(), "correct horse") {
				t.Fatalf("%s holds the password in clear", key)
			}
		}
		for _, pw := range []string{"short", strings.Repeat("x", 73)} {
			if _, err := e.svc.CreateUser(ctx, "weak"+fmt.Sprint(len(pw)), pw); !errors.Is(err, domain.ErrWeakPassword) {
				t.Errorf("password of %d bytes: got %v, want ErrWeakPassword", len(pw), err)
			}
		}
		if _, err := e.svc.User(ctx, "weak5"); !errors.Is(err, domain.ErrUserNotFound) {
			t.Errorf("a refused password created the user: %v", err)
		}
	})
}

func TestRetrieveTokenModes(t *testing.T) {
	st := memstore.New()
	open := newService(t, st, domain.Config{GzipLevel: 6, Retrieval: domain.RetrievalOpen})
	ctx := t.Context()
	plain, _ := open.CreateUser(ctx, "plain", "")
	locked, _ := open.CreateUser(ctx, "locked", "s3cret-pass")

	type try struct {
		user, pw string
		given    bool
		want     error
	}
	cases := map[domain.RetrievalMode][]try{
		domain.RetrievalOpen: {
			{"plain", "", false, nil},
			{"plain", "anything", true, nil},
			{"locked", "", false, domain.ErrPasswordRequired},
			{"locked", "nope-nope", true, domain.ErrWrongPassword},
			{"locked", "s3cret-pass", true, nil},
			{"nobody", "", false, domain.ErrUserNotFound},
		},
		domain.RetrievalPassword: {
			{"plain", "", false, domain.ErrPasswordRequired},
			{"plain", "anything", true, domain.ErrWrongPassword},
			{"locked", "s3cret-pass", true, nil},
			{"locked", "nope-nope", true, domain.ErrWrongPassword},
			{"nobody", "whatever1", true, domain.ErrWrongPassword}, // existence not revealed
			{"nobody", "", false, domain.ErrPasswordRequired},
		},
		domain.RetrievalOff: {
			{"plain", "", false, domain.ErrRetrievalDisabled},
			{"locked", "s3cret-pass", true, domain.ErrRetrievalDisabled},
		},
	}
	for mode, tries := range cases {
		svc := newService(t, st, domain.Config{GzipLevel: 6, Retrieval: mode})
		for _, tr := range tries {
			u, err := svc.RetrieveToken(ctx, tr.user, tr.pw, tr.given)
			if !errors.Is(err, tr.want) && !(err == nil && tr.want == nil) {
				t.Errorf("%s: %s with %q (given %v): got %v, want %v", mode, tr.user, tr.pw, tr.given, err, tr.want)
			}
			if err == nil {
				want := map[string]string{"plain": plain.Token, "locked": locked.Token}[tr.user]
				if u.Token != want {
					t.Errorf("%s: %s: token %q, want %q", mode, tr.user, u.Token, want)
				}
			}
		}
	}
	if _, err := domain.ParseRetrievalMode("sometimes"); err == nil {
		t.Error("ParseRetrievalMode accepted a bad mode")
	}
}

func TestRotateToken(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		u := newUser(t, e.svc, "rotor")
		img := upload(t, e.svc, u, "a.png", fixture(t, "png-rgb.png"))
		u2, err := e.svc.RotateToken(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if u2.Token == u.Token || !domain.ValidToken(u2.Token) {
			t.Fatalf("new token %q (old %q)", u2.Token, u.Token)
		}
		if _, err := e.svc.Authenticate(ctx, u.Token); !errors.Is(err, domain.ErrUnauthorized) {
			t.Fatalf("the old token still works: %v", err)
		}
		got, err := e.svc.Authenticate(ctx, u2.Token)
		if err != nil || got.Name != "rotor" {
			t.Fatalf("the new token: %v %v", got, err)
		}
		if _, err := e.svc.Image(ctx, got, img.ID); err != nil {
			t.Fatalf("the images stay with the user: %v", err)
		}
		// Rotating with a stale token fails and changes nothing.
		if _, err := e.svc.RotateToken(ctx, u); !errors.Is(err, domain.ErrUnauthorized) {
			t.Fatalf("rotation with the old token: %v", err)
		}
		if _, err := e.svc.Authenticate(ctx, u2.Token); err != nil {
			t.Fatalf("a refused rotation broke the current token: %v", err)
		}
		// Concurrent rotations with one token: one wins, the user keeps
		// exactly one working token.
		var wg sync.WaitGroup
		var mu sync.Mutex
		var winners []string
		for range 8 {
			wg.Go(func() {
				if u3, err := e.svc.RotateToken(ctx, got); err == nil {
					mu.Lock()
					winners = append(winners, u3.Token)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("%d concurrent rotations succeeded, want 1", len(winners))
		}
		if _, err := e.svc.Authenticate(ctx, winners[0]); err != nil {
			t.Fatalf("the winning token does not work: %v", err)
		}
		n := 0
		for _, err := range e.store.List(ctx, "tokens/") {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != 1 {
			t.Errorf("%d token records, want 1 (the current one)", n)
		}
	})
}

func TestConditionalReplaceAndDelete(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		u := newUser(t, e.svc, "cond")
		png, jpg := fixture(t, "png-rgb.png"), fixture(t, "jpeg-baseline.jpg")
		img := upload(t, e.svc, u, "a.png", png)
		if _, err := e.svc.ReplaceIf(ctx, u, img.ID, "b.jpg", "0000", bytes.NewReader(jpg)); !errors.Is(err, domain.ErrChanged) {
			t.Fatalf("ReplaceIf with a stale hash: %v", err)
		}
		same, _ := e.svc.Image(ctx, u, img.ID)
		if same.SHA256 != img.SHA256 || same.Name != "a.png" {
			t.Fatal("a refused ReplaceIf changed the image")
		}
		got, err := e.svc.ReplaceIf(ctx, u, img.ID, "", img.SHA256, bytes.NewReader(jpg))
		if err != nil || got.Name != "a.png" || got.SHA256 != sha(jpg) {
			t.Fatalf("ReplaceIf: %+v %v (an empty name keeps the name)", got, err)
		}
		if err := e.svc.DeleteIf(ctx, u, img.ID, img.SHA256); !errors.Is(err, domain.ErrChanged) {
			t.Fatalf("DeleteIf with the old hash: %v", err)
		}
		if err := e.svc.DeleteIf(ctx, u, img.ID, got.SHA256); err != nil {
			t.Fatalf("DeleteIf: %v", err)
		}
		if _, err := e.svc.Image(ctx, u, img.ID); !errors.Is(err, domain.ErrImageNotFound) {
			t.Fatalf("after DeleteIf: %v", err)
		}
	})
}

func TestUploadOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		u := newUser(t, e.svc, "idem")
		png := fixture(t, "png-rgb.png")
		first, replayed, err := e.svc.UploadOnce(ctx, u, "key-1", "a.png", bytes.NewReader(png))
		if err != nil || replayed {
			t.Fatalf("first: %v %v", replayed, err)
		}
		again, replayed, err := e.svc.UploadOnce(ctx, u, "key-1", "a.png", bytes.NewReader(png))
		if err != nil || !replayed || again.ID != first.ID {
			t.Fatalf("retry: %+v replayed %v, %v; want the first image replayed", again, replayed, err)
		}
		// The key reused for another upload: refused, nothing stored.
		if _, _, err := e.svc.UploadOnce(ctx, u, "key-1", "a.png", bytes.NewReader(fixture(t, "gif-still.gif"))); !errors.Is(err, domain.ErrIdempotencyMismatch) {
			t.Fatalf("key reused with other bytes: %v", err)
		}
		if _, _, err := e.svc.UploadOnce(ctx, u, "key-1", "other.png", bytes.NewReader(png)); !errors.Is(err, domain.ErrIdempotencyMismatch) {
			t.Fatalf("key reused with another name: %v", err)
		}
		// A failed first try frees the key.
		if _, _, err := e.svc.UploadOnce(ctx, u, "key-2", "b.png", bytes.NewReader(notImage)); !errors.Is(err, domain.ErrNotImage) {
			t.Fatalf("not an image: %v", err)
		}
		// b.png has the same bytes as a.png, but another name: stored.
		if _, replayed, err := e.svc.UploadOnce(ctx, u, "key-2", "b.png", bytes.NewReader(png)); err != nil || replayed {
			t.Fatalf("after a failure, the key is free: replayed %v, %v", replayed, err)
		}
		for _, bad := range []string{"", strings.Repeat("k", 256), "has space", "tab\t"} {
			if _, _, err := e.svc.UploadOnce(ctx, u, bad, "c.png", bytes.NewReader(png)); !errors.Is(err, domain.ErrIdempotencyKey) {
				t.Errorf("key %q: %v", bad, err)
			}
		}
		// Concurrent requests with one key store one image.
		var wg sync.WaitGroup
		ids := make(chan string, 10)
		for range 10 {
			wg.Go(func() {
				img, _, err := e.svc.UploadOnce(ctx, u, "key-3", "c.png", bytes.NewReader(png))
				switch {
				case err == nil:
					ids <- img.ID
				case errors.Is(err, domain.ErrIdempotencyInProgress):
				default:
					t.Errorf("concurrent: %v", err)
				}
			})
		}
		wg.Wait()
		close(ids)
		seen := map[string]bool{}
		for id := range ids {
			seen[id] = true
		}
		if len(seen) != 1 {
			t.Errorf("concurrent requests with one key gave ids %v, want one", seen)
		}
		imgs, _ := e.svc.List(ctx, u)
		if len(imgs) != 3 {
			t.Errorf("%d images stored, want 3 (a.png, b.png, c.png)", len(imgs))
		}
		// Another user's key is another key.
		v := newUser(t, e.svc, "other")
		if _, replayed, err := e.svc.UploadOnce(ctx, v, "key-1", "a.png", bytes.NewReader(png)); err != nil || replayed {
			t.Errorf("another user's key-1: replayed %v, %v", replayed, err)
		}
	})
}

func TestListPage(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		u := newUser(t, e.svc, "pager")
		var all []string
		for i := range 12 {
			all = append(all, upload(t, e.svc, u, fmt.Sprintf("i%02d.png", i), uniquePNG(t, i)).ID)
		}
		var got []string
		var cur domain.Cursor
		pages := 0
		for {
			page, next, err := e.svc.ListPage(ctx, u, cur, 5)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, img := range page {
				got = append(got, img.ID)
			}
			// Changes between pages: a deletion of the cursor's image and
			// an insertion must not skip or repeat the rest.
			if pages == 1 {
				if err := e.svc.Delete(ctx, u, page[len(page)-1].ID); err != nil {
					t.Fatal(err)
				}
				all = append(all[:4], all[5:]...)
				all = append(all, upload(t, e.svc, u, "late.png", uniquePNG(t, 99)).ID)
			}
			if next.IsZero() {
				break
			}
			cur = next
		}
		// The deleted image was seen on page 1 before it went.
		want := append([]string{}, all[:4]...)
		want = append(want, got[4])
		want = append(want, all[4:]...)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("pages gave %v, want %v", got, want)
		}
		if pages != 3 {
			t.Errorf("%d pages, want 3", pages)
		}
	})
}

// uniquePNG returns a PNG whose bytes differ with n (a text chunk).
func uniquePNG(t testing.TB, n int) []byte {
	t.Helper()
	base := fixture(t, "png-palette.png")
	data := []byte(fmt.Sprintf("tEXtn\x00%d", n))
	var chunk bytes.Buffer
	l := len(data) - 4
	chunk.Write([]byte{byte(l >> 24), byte(l >> 16), byte(l >> 8), byte(l)})
	chunk.Write(data)
	crc := crc32.ChecksumIEEE(data)
	chunk.Write([]byte{byte(crc >> 24), byte(crc >> 16), byte(crc >> 8), byte(crc)})
	out := append([]byte{}, base[:33]...)
	out = append(out, chunk.Bytes()...)
	return append(out, base[33:]...)
}
