package domain_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/filestore"
	"github.com/imagestore/imagestore/storage/memstore"
)

// ---- fixtures

const (
	fixturePNG  = "png-rgb.png"
	fixtureJPEG = "jpeg-baseline.jpg"
	fixtureGIF  = "gif-still.gif"
	fixtureBomb = "bombs/bomb.png"

	// The fixtures' size in pixels.
	fixtureW, fixtureH = 37, 23
)

var (
	fixtureMu    sync.Mutex
	fixtureCache = map[string][]byte{}
)

// fixture returns the bytes of a file of imagetype/testdata. Callers must
// not modify them.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if b, ok := fixtureCache[name]; ok {
		return b
	}
	b, err := os.ReadFile(filepath.Join("..", "imagetype", "testdata", filepath.FromSlash(name)))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	fixtureCache[name] = b
	return b
}

// images returns the three small valid fixtures, with their imghdr type.
func images(t testing.TB) []struct {
	file, typ string
	data      []byte
} {
	return []struct {
		file, typ string
		data      []byte
	}{
		{fixturePNG, "png", fixture(t, fixturePNG)},
		{fixtureJPEG, "jpeg", fixture(t, fixtureJPEG)},
		{fixtureGIF, "gif", fixture(t, fixtureGIF)},
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// notImage is plainly not an image of any accepted type.
var notImage = []byte("this is a text file, not an image\n")

// errClient is the error of a client whose upload breaks off.
var errClient = errors.New("client connection reset")

// failingReader serves data in small pieces, then fails with err instead of
// io.EOF.
type failingReader struct {
	data  []byte
	chunk int
	err   error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := min(len(p), len(r.data), r.chunk)
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// ---- stores and services

// env is one store with a service over it.
type env struct {
	store storage.Store
	svc   *domain.Service
	fs    *filestore.Store // nil for the memstore
}

// eachStore runs fn against a fresh memstore and a fresh filestore. The
// filestore's temporary files are checked after fn: a finished operation
// must leave none.
func eachStore(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	t.Run("memstore", func(t *testing.T) {
		st := memstore.New()
		fn(t, &env{store: st, svc: newService(t, st, domain.DefaultConfig)})
	})
	t.Run("filestore", func(t *testing.T) {
		// As the server uses it: the one writer of its data folder.
		st := openFilestore(t)
		cfg := domain.DefaultConfig
		cfg.SoleWriter = true
		fn(t, &env{store: st, svc: newService(t, st, cfg), fs: st})
		checkNoLeftovers(t, st)
	})
}

func openFilestore(t *testing.T) *filestore.Store {
	t.Helper()
	st, err := filestore.Open(t.TempDir())
	if err != nil {
		t.Fatalf("filestore.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("filestore Close: %v", err)
		}
	})
	return st
}

func checkNoLeftovers(t *testing.T, st *filestore.Store) {
	t.Helper()
	left, err := st.Leftovers()
	if err != nil {
		t.Fatalf("Leftovers: %v", err)
	}
	if len(left) != 0 {
		t.Errorf("filestore temporary files left behind: got %q, want none", left)
	}
}

func newService(t testing.TB, st storage.Store, cfg domain.Config) *domain.Service {
	t.Helper()
	svc, err := domain.New(st, cfg)
	if err != nil {
		t.Fatalf("domain.New: %v", err)
	}
	return svc
}

// newUser creates a user and returns it as Authenticate does.
func newUser(t testing.TB, svc *domain.Service, name string) domain.User {
	t.Helper()
	token, err := svc.GenerateToken(t.Context(), name)
	if err != nil {
		t.Fatalf("GenerateToken(%q): %v", name, err)
	}
	u, err := svc.Authenticate(t.Context(), token)
	if err != nil {
		t.Fatalf("Authenticate(token of %q): %v", name, err)
	}
	return u
}

func upload(t testing.TB, svc *domain.Service, u domain.User, name string, data []byte) domain.Image {
	t.Helper()
	img, err := svc.Upload(t.Context(), u, name, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Upload(%q): %v", name, err)
	}
	return img
}

// openBytes opens the image and reads all of its bytes.
func openBytes(t testing.TB, svc *domain.Service, u domain.User, id string) (domain.Image, []byte) {
	t.Helper()
	img, rc, err := svc.Open(t.Context(), u, id)
	if err != nil {
		t.Fatalf("Open(%q): %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read image %q: %v", id, err)
	}
	return img, b
}

func list(t testing.TB, svc *domain.Service, u domain.User) []domain.Image {
	t.Helper()
	imgs, err := svc.List(t.Context(), u)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return imgs
}

func listIDs(t testing.TB, svc *domain.Service, u domain.User) []string {
	t.Helper()
	var ids []string
	for _, img := range list(t, svc, u) {
		ids = append(ids, img.ID)
	}
	return ids
}

// keys lists the store's keys under prefix.
func keys(t testing.TB, st storage.Store, prefix string) []string {
	t.Helper()
	var ks []string
	for k, err := range st.List(t.Context(), prefix) {
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		ks = append(ks, k)
	}
	return ks
}

func blobKeys(t testing.TB, st storage.Store) []string { return keys(t, st, "blobs/") }

// sameImage compares two descriptions of an image field by field (times
// with Equal, since they may have passed through JSON).
func sameImage(got, want domain.Image) bool {
	return got.ID == want.ID && got.Name == want.Name && got.Type == want.Type &&
		got.Size == want.Size && got.StoredSize == want.StoredSize && got.SHA256 == want.SHA256 &&
		got.Width == want.Width && got.Height == want.Height &&
		got.Created.Equal(want.Created) && got.Updated.Equal(want.Updated) && got.Blob == want.Blob
}

func sameImages(got, want []domain.Image) bool {
	return slices.EqualFunc(got, want, sameImage)
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{4}$`)

// checkConsistent checks the invariants of the user's images, the only
// user whose blobs are in st: names and ids unique, ids well formed, every
// listed image opens to bytes matching its SHA256 and Size, and the blobs
// in the store are exactly those the list names. It returns the list.
func checkConsistent(t testing.TB, e *env, u domain.User) []domain.Image {
	t.Helper()
	imgs := list(t, e.svc, u)
	names := map[string]bool{}
	ids := map[string]bool{}
	var wantBlobs []string
	for _, img := range imgs {
		if !idRE.MatchString(img.ID) {
			t.Errorf("image id: got %q, want 4 symbols of [A-Za-z0-9_-]", img.ID)
		}
		if ids[img.ID] {
			t.Errorf("image id %q listed twice", img.ID)
		}
		ids[img.ID] = true
		if names[img.Name] {
			t.Errorf("image name %q listed twice", img.Name)
		}
		names[img.Name] = true
		got, b := openBytes(t, e.svc, u, img.ID)
		if !sameImage(got, img) {
			t.Errorf("Open(%q) image: got %+v, want %+v", img.ID, got, img)
		}
		if got, want := sha(b), img.SHA256; got != want {
			t.Errorf("image %q (%s): sha256 of bytes: got %s, want %s", img.ID, img.Name, got, want)
		}
		if got, want := int64(len(b)), img.Size; got != want {
			t.Errorf("image %q (%s): size: got %d, want %d", img.ID, img.Name, got, want)
		}
		wantBlobs = append(wantBlobs, img.Blob+".gz")
	}
	var gotBlobs []string
	for _, k := range blobKeys(t, e.store) {
		gotBlobs = append(gotBlobs, path.Base(k))
	}
	slices.Sort(gotBlobs)
	slices.Sort(wantBlobs)
	if !slices.Equal(gotBlobs, wantBlobs) {
		t.Errorf("blobs in the store: got %d %q, want %d %q (one per listed image)", len(gotBlobs), gotBlobs, len(wantBlobs), wantBlobs)
	}
	return imgs
}

// snapshot is everything a refused operation must leave unchanged.
type snapshot struct {
	images []domain.Image
	data   map[string][]byte // by id
	blobs  []string
}

func takeSnapshot(t testing.TB, e *env, u domain.User) snapshot {
	t.Helper()
	s := snapshot{images: list(t, e.svc, u), data: map[string][]byte{}, blobs: blobKeys(t, e.store)}
	for _, img := range s.images {
		_, s.data[img.ID] = openBytes(t, e.svc, u, img.ID)
	}
	return s
}

func checkUnchanged(t testing.TB, e *env, u domain.User, before snapshot) {
	t.Helper()
	after := takeSnapshot(t, e, u)
	if !sameImages(after.images, before.images) {
		t.Errorf("list changed:\ngot  %+v\nwant %+v", after.images, before.images)
	}
	for id, want := range before.data {
		if got := after.data[id]; !bytes.Equal(got, want) {
			t.Errorf("bytes of image %q changed: got %d bytes (sha256 %s), want %d bytes (sha256 %s)",
				id, len(got), sha(got), len(want), sha(want))
		}
	}
	if !slices.Equal(after.blobs, before.blobs) {
		t.Errorf("blob keys changed: got %q, want %q", after.blobs, before.blobs)
	}
}

// ---- configuration

func TestNewRejectsBadConfig(t *testing.T) {
	st := memstore.New()
	for _, cfg := range []domain.Config{
		{MaxPixels: 1, GzipLevel: 0},
		{MaxPixels: 1, GzipLevel: 10},
		{MaxPixels: -1, GzipLevel: 6},
		{GzipLevel: 6, CPUs: -1},
	} {
		if _, err := domain.New(st, cfg); err == nil {
			t.Errorf("New(%+v): got nil error, want an error", cfg)
		}
	}
	for _, cfg := range []domain.Config{domain.DefaultConfig, {GzipLevel: 1}, {GzipLevel: 9, MaxPixels: 0}, {GzipLevel: 6, CPUs: 2}} {
		svc, err := domain.New(st, cfg)
		if err != nil {
			t.Errorf("New(%+v): got %v, want nil", cfg, err)
			continue
		}
		if got := svc.Config(); got.GzipLevel != cfg.GzipLevel || got.MaxPixels != cfg.MaxPixels {
			t.Errorf("Config(): got %+v, want %+v", got, cfg)
		}
	}
}

// ---- users and tokens

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{10}$`)

func TestGenerateTokenAuthenticate(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		token, err := e.svc.GenerateToken(ctx, "alice_1")
		if err != nil {
			t.Fatalf("GenerateToken: got %v, want nil", err)
		}
		if !tokenRE.MatchString(token) {
			t.Errorf("token: got %q, want 10 symbols of [A-Za-z0-9_-]", token)
		}
		if !domain.ValidToken(token) {
			t.Errorf("ValidToken(%q): got false, want true", token)
		}

		u, err := e.svc.User(ctx, "alice_1")
		if err != nil {
			t.Fatalf("User: got %v, want nil", err)
		}
		if got, want := u.Token, token; got != want {
			t.Errorf("User().Token: got %q, want %q", got, want)
		}
		if got, want := u.Name, "alice_1"; got != want {
			t.Errorf("User().Name: got %q, want %q", got, want)
		}
		if u.Created.IsZero() {
			t.Errorf("User().Created: got zero time, want the creation time")
		}

		au, err := e.svc.Authenticate(ctx, token)
		if err != nil {
			t.Fatalf("Authenticate: got %v, want nil", err)
		}
		if au.Name != u.Name || au.Token != u.Token || !au.Created.Equal(u.Created) {
			t.Errorf("Authenticate: got %+v, want %+v", au, u)
		}

		_, err = e.svc.GenerateToken(ctx, "alice_1")
		if got, want := err, domain.ErrUserExists; !errors.Is(got, want) {
			t.Errorf("second GenerateToken: got %v, want %v", got, want)
		}
		// The failed attempt changed nothing.
		u2, err := e.svc.User(ctx, "alice_1")
		if err != nil || u2.Token != token {
			t.Errorf("User after second GenerateToken: got (%q, %v), want (%q, nil)", u2.Token, err, token)
		}
		if _, err := e.svc.Authenticate(ctx, token); err != nil {
			t.Errorf("Authenticate after second GenerateToken: got %v, want nil", err)
		}
		if got, want := len(keys(t, e.store, "tokens/")), 1; got != want {
			t.Errorf("token records: got %d, want %d", got, want)
		}

		// Usernames are case sensitive, like the original's.
		if _, err := e.svc.GenerateToken(ctx, "ALICE_1"); err != nil {
			t.Errorf("GenerateToken(ALICE_1): got %v, want nil", err)
		}
	})
}

func TestGenerateTokenInvalidUsername(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		for _, name := range []string{"", "a-b", "../x", "a/b", strings.Repeat("a", 151), "é", "a b", "a.b", "a\x00", "😀"} {
			token, err := e.svc.GenerateToken(t.Context(), name)
			if got, want := err, domain.ErrInvalidUsername; !errors.Is(got, want) {
				t.Errorf("GenerateToken(%q): got (%q, %v), want %v", name, token, got, want)
			}
			if _, err := e.svc.User(t.Context(), name); !errors.Is(err, domain.ErrUserNotFound) {
				t.Errorf("User(%q): got %v, want %v", name, err, domain.ErrUserNotFound)
			}
		}
		if ks := keys(t, e.store, ""); len(ks) != 0 {
			t.Errorf("store keys after invalid usernames: got %q, want none", ks)
		}
		// The longest valid username is accepted.
		if _, err := e.svc.GenerateToken(t.Context(), strings.Repeat("a", 150)); err != nil {
			t.Errorf("GenerateToken(150 chars): got %v, want nil", err)
		}
	})
}

func TestUserNotFound(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		newUser(t, e.svc, "bob")
		for _, name := range []string{"nobody", "bo", "bobb", "Bob", ""} {
			if _, err := e.svc.User(t.Context(), name); !errors.Is(err, domain.ErrUserNotFound) {
				t.Errorf("User(%q): got %v, want %v", name, err, domain.ErrUserNotFound)
			}
		}
	})
}

func TestAuthenticateRejectsWrongTokens(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "carol")
		// A token of the right form that differs in one symbol.
		flipped := []byte(u.Token)
		if flipped[0] == 'A' {
			flipped[0] = 'B'
		} else {
			flipped[0] = 'A'
		}
		for _, tok := range []string{
			string(flipped),
			"", "short", u.Token[:9], u.Token + "A", // wrong length
			"!!!!!!!!!!", "../../../x", "aaaa/aaaaa", "aaaaaaaaa\x00", // wrong symbols
			strings.ToUpper(u.Token), // may equal the token only if it has no lower case letter
		} {
			if tok == u.Token {
				continue
			}
			got, err := e.svc.Authenticate(t.Context(), tok)
			if !errors.Is(err, domain.ErrUnauthorized) {
				t.Errorf("Authenticate(%q): got (%+v, %v), want %v", tok, got, err, domain.ErrUnauthorized)
			}
		}
	})
}

func TestGenerateTokenConcurrentSameUser(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		const n = 20
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			tokens = make([]string, n)
			errs   = make([]error, n)
		)
		for i := range n {
			wg.Go(func() {
				<-start
				tokens[i], errs[i] = e.svc.GenerateToken(t.Context(), "dave")
			})
		}
		close(start)
		wg.Wait()

		var winner string
		wins := 0
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
				winner = tokens[i]
			case errors.Is(err, domain.ErrUserExists):
			default:
				t.Errorf("GenerateToken #%d: got %v, want nil or %v", i, err, domain.ErrUserExists)
			}
		}
		if got, want := wins, 1; got != want {
			t.Fatalf("successful GenerateToken: got %d, want %d", got, want)
		}
		u, err := e.svc.Authenticate(t.Context(), winner)
		if err != nil {
			t.Fatalf("Authenticate(winner's token): got %v, want nil", err)
		}
		if got, want := u.Name, "dave"; got != want {
			t.Errorf("Authenticate(winner's token).Name: got %q, want %q", got, want)
		}
		su, err := e.svc.User(t.Context(), "dave")
		if err != nil || su.Token != winner {
			t.Errorf("User(dave): got (%q, %v), want (%q, nil)", su.Token, err, winner)
		}
		// The losers' token records, which authenticate no one, are gone.
		if got, want := len(keys(t, e.store, "tokens/")), 1; got != want {
			t.Errorf("token records: got %d, want %d", got, want)
		}
	})
}

func TestTokensDistinct(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		const n = 200
		seen := map[string]string{}
		for i := range n {
			name := fmt.Sprintf("user_%d", i)
			u := newUser(t, e.svc, name)
			if other, ok := seen[u.Token]; ok {
				t.Errorf("token %q given to both %q and %q", u.Token, other, name)
			}
			seen[u.Token] = name
		}
		// Each token authenticates its own user.
		for tok, name := range seen {
			u, err := e.svc.Authenticate(t.Context(), tok)
			if err != nil || u.Name != name {
				t.Errorf("Authenticate(%q): got (%q, %v), want (%q, nil)", tok, u.Name, err, name)
			}
		}
	})
}

// ---- images

func TestUploadOpenRoundTrip(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "erin")
		for _, f := range images(t) {
			before := len(blobKeys(t, e.store))
			img := upload(t, e.svc, u, "photo-"+f.file, f.data)

			if !idRE.MatchString(img.ID) || !domain.ValidID(img.ID) {
				t.Errorf("%s: id: got %q, want 4 symbols of [A-Za-z0-9_-]", f.file, img.ID)
			}
			if got, want := img.Name, "photo-"+f.file; got != want {
				t.Errorf("%s: Name: got %q, want %q", f.file, got, want)
			}
			if got, want := img.Type, f.typ; got != want {
				t.Errorf("%s: Type: got %q, want %q", f.file, got, want)
			}
			if got, want := img.MIME(), "image/"+f.typ; got != want {
				t.Errorf("%s: MIME: got %q, want %q", f.file, got, want)
			}
			if got, want := img.Size, int64(len(f.data)); got != want {
				t.Errorf("%s: Size: got %d, want %d", f.file, got, want)
			}
			if got, want := img.SHA256, sha(f.data); got != want {
				t.Errorf("%s: SHA256: got %s, want %s", f.file, got, want)
			}
			if img.Width != fixtureW || img.Height != fixtureH {
				t.Errorf("%s: size in pixels: got %dx%d, want %dx%d", f.file, img.Width, img.Height, fixtureW, fixtureH)
			}
			if img.Created.IsZero() || !img.Updated.Equal(img.Created) {
				t.Errorf("%s: Created, Updated: got %v, %v, want equal non-zero times", f.file, img.Created, img.Updated)
			}
			if img.Blob == "" {
				t.Errorf("%s: Blob: got empty, want the blob's name", f.file)
			}

			// Exactly one new blob, whose stored size is StoredSize.
			ks := blobKeys(t, e.store)
			if got, want := len(ks), before+1; got != want {
				t.Fatalf("%s: blob keys: got %d, want %d", f.file, got, want)
			}
			var key string
			for _, k := range ks {
				if path.Base(k) == img.Blob+".gz" {
					key = k
				}
			}
			if key == "" {
				t.Fatalf("%s: no blob key for blob %q among %q", f.file, img.Blob, ks)
			}
			attrs, err := e.store.Stat(t.Context(), key)
			if err != nil {
				t.Fatalf("Stat(%q): %v", key, err)
			}
			if got, want := img.StoredSize, attrs.Size; got != want {
				t.Errorf("%s: StoredSize: got %d, want %d (the blob's size)", f.file, got, want)
			}

			got, b := openBytes(t, e.svc, u, img.ID)
			if !bytes.Equal(b, f.data) {
				t.Errorf("%s: Open bytes: got %d bytes (sha256 %s), want %d bytes (sha256 %s)",
					f.file, len(b), sha(b), len(f.data), sha(f.data))
			}
			if !sameImage(got, img) {
				t.Errorf("%s: Open image: got %+v, want %+v", f.file, got, img)
			}
			got2, err := e.svc.Image(t.Context(), u, img.ID)
			if err != nil || !sameImage(got2, img) {
				t.Errorf("%s: Image(): got (%+v, %v), want (%+v, nil)", f.file, got2, err, img)
			}
		}
		checkConsistent(t, e, u)
	})
}

func TestUploadCleansName(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "frank")
		png := fixture(t, fixturePNG)
		img := upload(t, e.svc, u, `C:\Users\frank\  holiday.png `, png)
		if got, want := img.Name, "holiday.png"; got != want {
			t.Errorf("Name: got %q, want %q", got, want)
		}
		// Another path to the same file name is the same name.
		_, err := e.svc.Upload(t.Context(), u, "some/dir/holiday.png", bytes.NewReader(png))
		if !errors.Is(err, domain.ErrNameTaken) {
			t.Errorf("Upload(some/dir/holiday.png): got %v, want %v", err, domain.ErrNameTaken)
		}
		// A name with nothing usable in it is refused, as the original
		// refused a file without a name, and nothing is stored.
		for _, name := range []string{"", ".", "..", "dir/", `dir\..`, "   "} {
			_, err := e.svc.Upload(t.Context(), u, name, bytes.NewReader(png))
			if !errors.Is(err, domain.ErrNotImage) {
				t.Errorf("Upload(%q): got %v, want %v", name, err, domain.ErrNotImage)
			}
		}
		if got, want := len(checkConsistent(t, e, u)), 1; got != want {
			t.Errorf("images: got %d, want %d", got, want)
		}
	})
}

func TestListReplaceDelete(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		u := newUser(t, e.svc, "grace")
		if got := list(t, e.svc, u); len(got) != 0 {
			t.Fatalf("List of a new user: got %+v, want none", got)
		}
		fx := images(t)
		var uploaded []domain.Image
		for i := range 6 {
			f := fx[i%len(fx)]
			uploaded = append(uploaded, upload(t, e.svc, u, fmt.Sprintf("img%d.%s", i, f.typ), f.data))
		}
		if got, want := list(t, e.svc, u), uploaded; !sameImages(got, want) {
			t.Fatalf("List: got %+v, want (upload order) %+v", got, want)
		}

		// Replace the third image (a png) with a gif under a new name.
		old := uploaded[2]
		gif := fixture(t, fixtureGIF)
		rep, err := e.svc.Replace(ctx, u, old.ID, "dir/new-name.gif", bytes.NewReader(gif))
		if err != nil {
			t.Fatalf("Replace: got %v, want nil", err)
		}
		if got, want := rep.ID, old.ID; got != want {
			t.Errorf("Replace: ID: got %q, want %q", got, want)
		}
		if got, want := rep.Name, "new-name.gif"; got != want {
			t.Errorf("Replace: Name: got %q, want %q", got, want)
		}
		if rep.Type != "gif" || rep.Size != int64(len(gif)) || rep.SHA256 != sha(gif) || rep.Width != fixtureW || rep.Height != fixtureH {
			t.Errorf("Replace: got %+v, want a gif of %d bytes, sha256 %s, %dx%d", rep, len(gif), sha(gif), fixtureW, fixtureH)
		}
		if !rep.Created.Equal(old.Created) {
			t.Errorf("Replace: Created: got %v, want %v (unchanged)", rep.Created, old.Created)
		}
		if rep.Updated.Before(old.Updated) {
			t.Errorf("Replace: Updated: got %v, want at least %v", rep.Updated, old.Updated)
		}
		if rep.Blob == old.Blob {
			t.Errorf("Replace: Blob: got %q, want a new blob", rep.Blob)
		}
		_, b := openBytes(t, e.svc, u, old.ID)
		if !bytes.Equal(b, gif) {
			t.Errorf("Open after Replace: got %d bytes (sha256 %s), want the gif's %d bytes (sha256 %s)", len(b), sha(b), len(gif), sha(gif))
		}
		want := slices.Clone(uploaded)
		want[2] = rep
		if got := list(t, e.svc, u); !sameImages(got, want) {
			t.Errorf("List after Replace: got %+v, want %+v", got, want)
		}
		// The old name is free again.
		uploaded = append(uploaded, upload(t, e.svc, u, old.Name, fixture(t, fixturePNG)))
		want = append(want, uploaded[6])

		// Replace with its own current name is allowed.
		jpeg := fixture(t, fixtureJPEG)
		rep2, err := e.svc.Replace(ctx, u, old.ID, "new-name.gif", bytes.NewReader(jpeg))
		if err != nil {
			t.Fatalf("Replace with the image's own name: got %v, want nil", err)
		}
		if rep2.Name != "new-name.gif" || rep2.Type != "jpeg" || rep2.SHA256 != sha(jpeg) || rep2.ID != old.ID {
			t.Errorf("Replace with own name: got %+v, want id %q, name new-name.gif, a jpeg with sha256 %s", rep2, old.ID, sha(jpeg))
		}
		want[2] = rep2
		if got := list(t, e.svc, u); !sameImages(got, want) {
			t.Errorf("List after second Replace: got %+v, want %+v", got, want)
		}
		checkConsistent(t, e, u)

		// Delete the first, a middle one and the last.
		for _, i := range []int{0, 3, 6} {
			if err := e.svc.Delete(ctx, u, uploaded[i].ID); err != nil {
				t.Fatalf("Delete(%q): got %v, want nil", uploaded[i].ID, err)
			}
			if _, _, err := e.svc.Open(ctx, u, uploaded[i].ID); !errors.Is(err, domain.ErrImageNotFound) {
				t.Errorf("Open of deleted %q: got %v, want %v", uploaded[i].ID, err, domain.ErrImageNotFound)
			}
			if _, err := e.svc.Image(ctx, u, uploaded[i].ID); !errors.Is(err, domain.ErrImageNotFound) {
				t.Errorf("Image of deleted %q: got %v, want %v", uploaded[i].ID, err, domain.ErrImageNotFound)
			}
			if err := e.svc.Delete(ctx, u, uploaded[i].ID); !errors.Is(err, domain.ErrImageNotFound) {
				t.Errorf("second Delete(%q): got %v, want %v", uploaded[i].ID, err, domain.ErrImageNotFound)
			}
			_, err := e.svc.Replace(ctx, u, uploaded[i].ID, "x.png", bytes.NewReader(fixture(t, fixturePNG)))
			if !errors.Is(err, domain.ErrImageNotFound) {
				t.Errorf("Replace of deleted %q: got %v, want %v", uploaded[i].ID, err, domain.ErrImageNotFound)
			}
		}
		want = []domain.Image{want[1], want[2], want[4], want[5]}
		if got := checkConsistent(t, e, u); !sameImages(got, want) {
			t.Errorf("List after Delete: got %+v, want %+v", got, want)
		}
		// A deleted image's name can be used again, at the end of the list.
		again := upload(t, e.svc, u, uploaded[0].Name, fixture(t, fixturePNG))
		if got, want := listIDs(t, e.svc, u), []string{want[0].ID, want[1].ID, want[2].ID, want[3].ID, again.ID}; !slices.Equal(got, want) {
			t.Errorf("ids after re-upload: got %q, want %q", got, want)
		}
	})
}

func TestInvalidAndUnknownIDs(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		u := newUser(t, e.svc, "heidi")
		img := upload(t, e.svc, u, "a.png", fixture(t, fixturePNG))
		other := "AAAA"
		if img.ID == other {
			other = "BBBB"
		}
		for _, id := range []string{"", "abc", "abcde", "../x", "a/b.", other, strings.ToLower(img.ID) + "x"} {
			if _, _, err := e.svc.Open(ctx, u, id); !errors.Is(err, domain.ErrImageNotFound) {
				t.Errorf("Open(%q): got %v, want %v", id, err, domain.ErrImageNotFound)
			}
			if _, err := e.svc.Image(ctx, u, id); !errors.Is(err, domain.ErrImageNotFound) {
				t.Errorf("Image(%q): got %v, want %v", id, err, domain.ErrImageNotFound)
			}
			if err := e.svc.Delete(ctx, u, id); !errors.Is(err, domain.ErrImageNotFound) {
				t.Errorf("Delete(%q): got %v, want %v", id, err, domain.ErrImageNotFound)
			}
			// Unknown id comes first, even before a refused file.
			_, err := e.svc.Replace(ctx, u, id, "b.txt", bytes.NewReader(notImage))
			if !errors.Is(err, domain.ErrImageNotFound) {
				t.Errorf("Replace(%q, non-image): got %v, want %v", id, err, domain.ErrImageNotFound)
			}
			_, err = e.svc.Replace(ctx, u, id, "a.png", bytes.NewReader(fixture(t, fixturePNG)))
			if !errors.Is(err, domain.ErrImageNotFound) {
				t.Errorf("Replace(%q, image): got %v, want %v", id, err, domain.ErrImageNotFound)
			}
		}
		if got := checkConsistent(t, e, u); len(got) != 1 || !sameImage(got[0], img) {
			t.Errorf("List: got %+v, want [%+v]", got, img)
		}
	})
}

func TestUsersAreIsolated(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		a := newUser(t, e.svc, "ivan")
		b := newUser(t, e.svc, "judy")
		png, jpeg := fixture(t, fixturePNG), fixture(t, fixtureJPEG)
		ia := upload(t, e.svc, a, "same.png", png)
		ib := upload(t, e.svc, b, "same.png", jpeg) // names are per user
		if ids := listIDs(t, e.svc, a); !slices.Equal(ids, []string{ia.ID}) {
			t.Errorf("List(ivan): got %q, want %q", ids, []string{ia.ID})
		}
		if ids := listIDs(t, e.svc, b); !slices.Equal(ids, []string{ib.ID}) {
			t.Errorf("List(judy): got %q, want %q", ids, []string{ib.ID})
		}
		if ia.ID != ib.ID {
			if _, _, err := e.svc.Open(ctx, b, ia.ID); !errors.Is(err, domain.ErrImageNotFound) {
				t.Errorf("judy Open(ivan's image): got %v, want %v", err, domain.ErrImageNotFound)
			}
			if err := e.svc.Delete(ctx, b, ia.ID); !errors.Is(err, domain.ErrImageNotFound) {
				t.Errorf("judy Delete(ivan's image): got %v, want %v", err, domain.ErrImageNotFound)
			}
			if _, err := e.svc.Replace(ctx, b, ia.ID, "x.png", bytes.NewReader(png)); !errors.Is(err, domain.ErrImageNotFound) {
				t.Errorf("judy Replace(ivan's image): got %v, want %v", err, domain.ErrImageNotFound)
			}
		}
		if _, data := openBytes(t, e.svc, a, ia.ID); !bytes.Equal(data, png) {
			t.Errorf("ivan's image: got sha256 %s, want %s", sha(data), sha(png))
		}
		if _, data := openBytes(t, e.svc, b, ib.ID); !bytes.Equal(data, jpeg) {
			t.Errorf("judy's image: got sha256 %s, want %s", sha(data), sha(jpeg))
		}
		if got, want := len(blobKeys(t, e.store)), 2; got != want {
			t.Errorf("blob keys: got %d, want %d", got, want)
		}
		// No user-supplied value appears in a key.
		for _, k := range keys(t, e.store, "") {
			if strings.Contains(k, "ivan") || strings.Contains(k, "judy") || strings.Contains(k, "same") ||
				strings.Contains(k, a.Token) || strings.Contains(k, b.Token) {
				t.Errorf("store key %q contains a user-supplied value", k)
			}
		}
	})
}

// ---- errors, in the original's order

func TestUploadErrorOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		u := newUser(t, e.svc, "kim")
		png := fixture(t, fixturePNG)
		upload(t, e.svc, u, "taken.png", png)
		before := takeSnapshot(t, e, u)

		// A non-image under a taken name is refused as a non-image.
		_, err := e.svc.Upload(ctx, u, "taken.png", bytes.NewReader(notImage))
		if !errors.Is(err, domain.ErrNotImage) || errors.Is(err, domain.ErrNameTaken) {
			t.Errorf("Upload(non-image, taken name): got %v, want %v", err, domain.ErrNotImage)
		}
		// A truncated image likewise.
		_, err = e.svc.Upload(ctx, u, "taken.png", bytes.NewReader(png[:len(png)/2]))
		if !errors.Is(err, domain.ErrNotImage) {
			t.Errorf("Upload(truncated png, taken name): got %v, want %v", err, domain.ErrNotImage)
		}
		// A pixel bomb under a taken name is refused as a bomb.
		_, err = e.svc.Upload(ctx, u, "taken.png", bytes.NewReader(fixture(t, fixtureBomb)))
		var tooMany *domain.TooManyPixelsError
		if !errors.As(err, &tooMany) {
			t.Errorf("Upload(bomb, taken name): got %v, want a *TooManyPixelsError", err)
		}
		// An image under a taken name is refused for the name.
		for _, f := range images(t) {
			_, err = e.svc.Upload(ctx, u, "taken.png", bytes.NewReader(f.data))
			if !errors.Is(err, domain.ErrNameTaken) {
				t.Errorf("Upload(%s, taken name): got %v, want %v", f.file, err, domain.ErrNameTaken)
			}
		}
		// A non-image under a free name.
		_, err = e.svc.Upload(ctx, u, "free.png", bytes.NewReader(notImage))
		if !errors.Is(err, domain.ErrNotImage) {
			t.Errorf("Upload(non-image, free name): got %v, want %v", err, domain.ErrNotImage)
		}
		// An empty upload.
		_, err = e.svc.Upload(ctx, u, "empty.png", bytes.NewReader(nil))
		if !errors.Is(err, domain.ErrNotImage) {
			t.Errorf("Upload(empty): got %v, want %v", err, domain.ErrNotImage)
		}
		checkUnchanged(t, e, u, before)
	})
}

func TestUploadPixelBomb(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "leo")
		_, err := e.svc.Upload(t.Context(), u, "bomb.png", bytes.NewReader(fixture(t, fixtureBomb)))
		var tooMany *domain.TooManyPixelsError
		if !errors.As(err, &tooMany) {
			t.Fatalf("Upload(bomb): got %v, want a *TooManyPixelsError", err)
		}
		if tooMany.Width != 100000 || tooMany.Height != 100000 || tooMany.Max != domain.DefaultConfig.MaxPixels {
			t.Errorf("TooManyPixelsError: got %dx%d max %d, want 100000x100000 max %d",
				tooMany.Width, tooMany.Height, tooMany.Max, domain.DefaultConfig.MaxPixels)
		}
		if errors.Is(err, domain.ErrNotImage) {
			t.Errorf("Upload(bomb): got %v, which is also ErrNotImage; want only a *TooManyPixelsError", err)
		}
		if got := checkConsistent(t, e, u); len(got) != 0 {
			t.Errorf("List after bomb: got %+v, want none", got)
		}
	})
}

func TestMaxPixelsLimit(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		const pixels = fixtureW * fixtureH
		tight := newService(t, e.store, domain.Config{MaxPixels: pixels - 1, GzipLevel: 1})
		exact := newService(t, e.store, domain.Config{MaxPixels: pixels, GzipLevel: 9})
		u := newUser(t, exact, "mallory")
		png := fixture(t, fixturePNG)

		_, err := tight.Upload(t.Context(), u, "a.png", bytes.NewReader(png))
		var tooMany *domain.TooManyPixelsError
		if !errors.As(err, &tooMany) {
			t.Fatalf("Upload with a limit of %d pixels: got %v, want a *TooManyPixelsError", pixels-1, err)
		}
		if tooMany.Width != fixtureW || tooMany.Height != fixtureH || tooMany.Max != pixels-1 {
			t.Errorf("TooManyPixelsError: got %dx%d max %d, want %dx%d max %d",
				tooMany.Width, tooMany.Height, tooMany.Max, fixtureW, fixtureH, pixels-1)
		}
		img := upload(t, exact, u, "a.png", png)
		// Images stored at one compression level read back through a
		// service using another.
		if _, b := openBytes(t, tight, u, img.ID); !bytes.Equal(b, png) {
			t.Errorf("Open through another service: got sha256 %s, want %s", sha(b), sha(png))
		}
		// Replacing with an image over the limit is refused too.
		_, err = tight.Replace(t.Context(), u, img.ID, "b.png", bytes.NewReader(png))
		if !errors.As(err, &tooMany) {
			t.Errorf("Replace with a limit of %d pixels: got %v, want a *TooManyPixelsError", pixels-1, err)
		}
		if got := checkConsistent(t, e, u); len(got) != 1 || !sameImage(got[0], img) {
			t.Errorf("List: got %+v, want [%+v]", got, img)
		}
	})
}

func TestReplaceErrors(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		u := newUser(t, e.svc, "nina")
		png, jpeg, gif := fixture(t, fixturePNG), fixture(t, fixtureJPEG), fixture(t, fixtureGIF)
		a := upload(t, e.svc, u, "a.png", png)
		b := upload(t, e.svc, u, "b.jpg", jpeg)
		upload(t, e.svc, u, "c.gif", gif)
		before := takeSnapshot(t, e, u)

		var tooMany *domain.TooManyPixelsError
		cases := []struct {
			name    string
			id      string
			newName string
			body    io.Reader
			check   func(error) bool
			want    string
		}{
			{"unknown id", "ZZZZ", "z.png", bytes.NewReader(png), func(err error) bool { return errors.Is(err, domain.ErrImageNotFound) }, "ErrImageNotFound"},
			{"name of another image", a.ID, "b.jpg", bytes.NewReader(gif), func(err error) bool { return errors.Is(err, domain.ErrNameTaken) }, "ErrNameTaken"},
			{"name of another image, after cleaning", a.ID, " x/c.gif", bytes.NewReader(gif), func(err error) bool { return errors.Is(err, domain.ErrNameTaken) }, "ErrNameTaken"},
			{"non-image", a.ID, "a2.png", bytes.NewReader(notImage), func(err error) bool { return errors.Is(err, domain.ErrNotImage) }, "ErrNotImage"},
			{"non-image, own name", a.ID, "a.png", bytes.NewReader(notImage), func(err error) bool { return errors.Is(err, domain.ErrNotImage) }, "ErrNotImage"},
			{"non-image, name of another image", a.ID, "b.jpg", bytes.NewReader(notImage), func(err error) bool {
				return errors.Is(err, domain.ErrNotImage) && !errors.Is(err, domain.ErrNameTaken)
			}, "ErrNotImage"},
			{"truncated image", b.ID, "b2.jpg", bytes.NewReader(jpeg[:len(jpeg)-10]), func(err error) bool { return errors.Is(err, domain.ErrNotImage) }, "ErrNotImage"},
			{"bomb", a.ID, "bomb.png", bytes.NewReader(fixture(t, fixtureBomb)), func(err error) bool { return errors.As(err, &tooMany) }, "*TooManyPixelsError"},
			{"bomb, name of another image", a.ID, "b.jpg", bytes.NewReader(fixture(t, fixtureBomb)), func(err error) bool { return errors.As(err, &tooMany) }, "*TooManyPixelsError"},
			{"no usable name", a.ID, "dir/", bytes.NewReader(png), func(err error) bool { return errors.Is(err, domain.ErrNotImage) }, "ErrNotImage"},
			{"client error", a.ID, "a3.png", &failingReader{data: png[:1000], chunk: 100, err: errClient}, func(err error) bool { return errors.Is(err, errClient) }, "errClient"},
			{"client error, name of another image", a.ID, "b.jpg", &failingReader{data: png[:1000], chunk: 100, err: errClient}, func(err error) bool { return errors.Is(err, errClient) }, "errClient"},
		}
		for _, tc := range cases {
			img, err := e.svc.Replace(ctx, u, tc.id, tc.newName, tc.body)
			if !tc.check(err) {
				t.Errorf("Replace (%s): got (%+v, %v), want %s", tc.name, img, err, tc.want)
			}
			checkUnchanged(t, e, u, before)
		}
	})
}

// ---- refused writes leave nothing behind

func TestRefusedUploadsLeaveNoBlob(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		u := newUser(t, e.svc, "oscar")
		png := fixture(t, fixturePNG)
		upload(t, e.svc, u, "kept.png", png)
		before := takeSnapshot(t, e, u)

		bodies := []struct {
			name string
			body func() io.Reader
			want func(error) bool
		}{
			{"non-image", func() io.Reader { return bytes.NewReader(notImage) }, func(err error) bool { return errors.Is(err, domain.ErrNotImage) }},
			{"truncated png", func() io.Reader { return bytes.NewReader(png[:len(png)-20]) }, func(err error) bool { return errors.Is(err, domain.ErrNotImage) }},
			{"png with a corrupted chunk", func() io.Reader {
				b := slices.Clone(png)
				b[40] ^= 0xff // inside IHDR or the next chunk: its CRC no longer matches
				return bytes.NewReader(b)
			}, func(err error) bool { return errors.Is(err, domain.ErrNotImage) }},
			{"bomb", func() io.Reader { return bytes.NewReader(fixture(t, fixtureBomb)) }, func(err error) bool {
				var tooMany *domain.TooManyPixelsError
				return errors.As(err, &tooMany)
			}},
			{"client error midway", func() io.Reader { return &failingReader{data: png[:1200], chunk: 100, err: errClient} }, func(err error) bool { return errors.Is(err, errClient) }},
			{"client error at once", func() io.Reader { return &failingReader{err: errClient} }, func(err error) bool { return errors.Is(err, errClient) }},
			{"client error after the whole image", func() io.Reader { return &failingReader{data: png, chunk: 512, err: errClient} }, func(err error) bool { return errors.Is(err, errClient) }},
			{"image under a taken name", func() io.Reader { return bytes.NewReader(png) }, func(err error) bool { return errors.Is(err, domain.ErrNameTaken) }},
		}
		for _, name := range []string{"new.png", "kept.png"} {
			for _, bc := range bodies {
				if bc.name == "image under a taken name" && name != "kept.png" {
					continue
				}
				img, err := e.svc.Upload(ctx, u, name, bc.body())
				if !bc.want(err) {
					t.Errorf("Upload(%s as %q): got (%+v, %v), want its own error", bc.name, name, img, err)
				}
				if got, want := len(blobKeys(t, e.store)), 1; got != want {
					t.Errorf("after Upload(%s as %q): blob keys: got %d, want %d", bc.name, name, got, want)
				}
				if e.fs != nil {
					checkNoLeftovers(t, e.fs)
				}
			}
		}
		checkUnchanged(t, e, u, before)
		checkConsistent(t, e, u)
	})
}

func TestDamagedBlobIsDetected(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "peggy")
		png := fixture(t, fixturePNG)
		img := upload(t, e.svc, u, "a.png", png)
		ks := blobKeys(t, e.store)
		if len(ks) != 1 {
			t.Fatalf("blob keys: got %q, want one", ks)
		}
		rc, _, err := e.store.Get(t.Context(), ks[0])
		if err != nil {
			t.Fatalf("Get(%q): %v", ks[0], err)
		}
		blob, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("read %q: %v", ks[0], err)
		}
		for _, pos := range []int{len(blob) - 6 /* in the CRC-32 */, len(blob) / 2 /* in the data */} {
			bad := slices.Clone(blob)
			bad[pos] ^= 0x55
			if _, err := e.store.Put(t.Context(), ks[0], bytes.NewReader(bad), storage.Cond{}); err != nil {
				t.Fatalf("Put(%q): %v", ks[0], err)
			}
			_, rc, err := e.svc.Open(t.Context(), u, img.ID)
			if err != nil {
				continue // refusing to open a damaged blob is fine too
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err == nil {
				t.Errorf("reading a blob damaged at byte %d of %d: got %d bytes (equal to the upload: %v) and no error, want an error",
					pos, len(blob), len(got), bytes.Equal(got, png))
			}
		}
	})
}

// ---- concurrency

func TestConcurrentUploadsDistinctNames(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		const n = 50
		u := newUser(t, e.svc, "quinn")
		fx := images(t)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			got   = make([]domain.Image, n)
			errs  = make([]error, n)
		)
		for i := range n {
			wg.Go(func() {
				<-start
				got[i], errs[i] = e.svc.Upload(t.Context(), u, fmt.Sprintf("file%02d.img", i), bytes.NewReader(fx[i%len(fx)].data))
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Upload #%d: got %v, want nil", i, err)
			}
		}
		if t.Failed() {
			return
		}
		imgs := checkConsistent(t, e, u)
		if got, want := len(imgs), n; got != want {
			t.Fatalf("listed images: got %d, want %d", got, want)
		}
		byID := map[string]domain.Image{}
		for _, img := range imgs {
			byID[img.ID] = img
		}
		for i, img := range got {
			listed, ok := byID[img.ID]
			if !ok {
				t.Errorf("Upload #%d returned id %q, which is not listed", i, img.ID)
				continue
			}
			if !sameImage(listed, img) {
				t.Errorf("Upload #%d: listed %+v, returned %+v", i, listed, img)
			}
			if want := fx[i%len(fx)].data; img.SHA256 != sha(want) || img.Name != fmt.Sprintf("file%02d.img", i) {
				t.Errorf("Upload #%d: got name %q sha256 %s, want name %q sha256 %s", i, img.Name, img.SHA256, fmt.Sprintf("file%02d.img", i), sha(want))
			}
			if _, b := openBytes(t, e.svc, u, img.ID); !bytes.Equal(b, fx[i%len(fx)].data) {
				t.Errorf("Upload #%d: Open bytes: got sha256 %s, want %s", i, sha(b), sha(fx[i%len(fx)].data))
			}
		}
		if got, want := len(blobKeys(t, e.store)), n; got != want {
			t.Errorf("blob keys: got %d, want %d", got, want)
		}
	})
}

func TestConcurrentUploadsSameName(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		u := newUser(t, e.svc, "rita")
		concurrentSameName(t, e, u, []*domain.Service{e.svc}, 3)
	})
}

// concurrentSameName uploads one name 50 times at once, spread over svcs,
// and checks that exactly one upload won; it does so for rounds names in
// turn, since a lost race shows only when the losers reach the index
// update together.
func concurrentSameName(t *testing.T, e *env, u domain.User, svcs []*domain.Service, rounds int) {
	t.Helper()
	const n = 50
	fx := images(t)
	var winners []domain.Image
	var winnerData [][]byte
	for round := range rounds {
		name := fmt.Sprintf("same-%d.png", round)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			got   = make([]domain.Image, n)
			errs  = make([]error, n)
		)
		for i := range n {
			wg.Go(func() {
				<-start
				got[i], errs[i] = svcs[i%len(svcs)].Upload(t.Context(), u, name, bytes.NewReader(fx[i%len(fx)].data))
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		wins, taken := 0, 0
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
				winner = i
			case errors.Is(err, domain.ErrNameTaken):
				taken++
			default:
				t.Errorf("Upload #%d of %q: got %v, want nil or %v", i, name, err, domain.ErrNameTaken)
			}
		}
		if wins != 1 || taken != n-1 {
			t.Fatalf("uploads of %q: got %d successes and %d ErrNameTaken, want 1 and %d", name, wins, taken, n-1)
		}
		winners = append(winners, got[winner])
		winnerData = append(winnerData, fx[winner%len(fx)].data)
		if got, want := len(blobKeys(t, e.store)), round+1; got != want {
			t.Fatalf("after the uploads of %q: blob keys: got %d, want %d", name, got, want)
		}
	}
	imgs := checkConsistent(t, e, u)
	if !sameImages(imgs, winners) {
		t.Fatalf("List: got %+v, want only the winners %+v", imgs, winners)
	}
	for i, img := range imgs {
		if _, b := openBytes(t, e.svc, u, img.ID); !bytes.Equal(b, winnerData[i]) {
			t.Errorf("winner's bytes of %q: got sha256 %s, want %s", img.Name, sha(b), sha(winnerData[i]))
		}
	}
}

// TestConcurrentReplaceAndDelete races replacements of one image (under
// new names, its own name, and names of images being deleted), deletions of
// other images, and reads of the replaced image.
func TestConcurrentReplaceAndDelete(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		concurrentReplaceAndDelete(t, e, []*domain.Service{e.svc})
	})
}

func concurrentReplaceAndDelete(t *testing.T, e *env, svcs []*domain.Service) {
	t.Helper()
	ctx := t.Context()
	u := newUser(t, svcs[0], "sam")
	fx := images(t)
	var orig []domain.Image
	for i := range 10 {
		orig = append(orig, upload(t, svcs[i%len(svcs)], u, fmt.Sprintf("i%d.png", i), fx[i%len(fx)].data))
	}
	target := orig[0].ID
	deleted := orig[1:5] // deleted during the race
	kept := orig[5:]     // untouched

	const replacers, rounds, readers = 6, 6, 3
	var (
		wg        sync.WaitGroup
		start     = make(chan struct{})
		done      atomic.Bool
		mu        sync.Mutex
		successes []domain.Image
		missing   atomic.Int64 // Opens of the target that found it missing
	)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
	}
	for g := range replacers {
		svc := svcs[g%len(svcs)]
		wg.Go(func() {
			<-start
			for r := range rounds {
				f := fx[(g+r)%len(fx)]
				var name string
				switch r % 3 {
				case 0:
					name = fmt.Sprintf("r%d-%d.%s", g, r, f.typ)
				case 1:
					name = deleted[(g+r)%len(deleted)].Name // taken until deleted
				case 2:
					name = kept[(g+r)%len(kept)].Name // always taken
				}
				img, err := svc.Replace(ctx, u, target, name, bytes.NewReader(f.data))
				switch {
				case err == nil:
					if img.ID != target || img.Name != name || img.SHA256 != sha(f.data) || img.Type != f.typ {
						fail("Replace(%q, %q): got %+v, want that id and name, a %s with sha256 %s", target, name, img, f.typ, sha(f.data))
					}
					if r%3 == 2 {
						fail("Replace(%q, %q): got success, want %v (the name belongs to a kept image)", target, name, domain.ErrNameTaken)
					}
					mu.Lock()
					successes = append(successes, img)
					mu.Unlock()
				case errors.Is(err, domain.ErrNameTaken) && r%3 != 0:
				default:
					fail("Replace(%q, %q): got %v, want nil or (for a taken name) %v", target, name, err, domain.ErrNameTaken)
				}
			}
		})
	}
	for i, img := range deleted {
		svc := svcs[i%len(svcs)]
		wg.Go(func() {
			<-start
			if err := svc.Delete(ctx, u, img.ID); err != nil {
				fail("Delete(%q): got %v, want nil", img.ID, err)
			}
		})
	}
	var readerWG sync.WaitGroup
	for i := range readers {
		svc := svcs[i%len(svcs)]
		readerWG.Go(func() {
			<-start
			for !done.Load() {
				img, rc, err := svc.Open(ctx, u, target)
				if errors.Is(err, domain.ErrImageNotFound) {
					// The target is replaced, never deleted: it must
					// always be found.
					missing.Add(1)
					continue
				}
				if err != nil {
					fail("Open(%q) during replacements: got %v, want nil", target, err)
					return
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					fail("reading %q during replacements: got %v, want nil", target, err)
					return
				}
				if got, want := sha(b), img.SHA256; got != want {
					fail("Open(%q) during replacements: bytes' sha256: got %s, want %s (the returned image's)", target, got, want)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	done.Store(true)
	readerWG.Wait()
	if n := missing.Load(); n > 0 {
		t.Errorf("Open of an image being replaced: got ErrImageNotFound %d times, want the image every time", n)
	}

	imgs := checkConsistent(t, e, u)
	wantIDs := []string{target}
	for _, img := range kept {
		wantIDs = append(wantIDs, img.ID)
	}
	var gotIDs []string
	for _, img := range imgs {
		gotIDs = append(gotIDs, img.ID)
	}
	if !slices.Equal(gotIDs, wantIDs) {
		t.Fatalf("ids after the race: got %q, want %q", gotIDs, wantIDs)
	}
	for i, img := range kept {
		if !sameImage(imgs[i+1], img) {
			t.Errorf("kept image after the race: got %+v, want %+v (unchanged)", imgs[i+1], img)
		}
	}
	if len(successes) == 0 {
		t.Fatalf("no Replace succeeded")
	}
	final := imgs[0]
	found := false
	for _, s := range successes {
		if sameImage(s, final) {
			found = true
		}
	}
	if !found {
		t.Errorf("final target %+v is none of the successful replacements", final)
	}
	if !final.Created.Equal(orig[0].Created) {
		t.Errorf("target's Created: got %v, want %v (unchanged)", final.Created, orig[0].Created)
	}
}

// ---- several services sharing one store

// sharedStores runs fn with two services over one memstore, and two over
// one filestore, as two servers sharing a store would be.
func sharedStores(t *testing.T, fn func(t *testing.T, e *env, svcs []*domain.Service)) {
	t.Helper()
	t.Run("memstore", func(t *testing.T) {
		st := memstore.New()
		svcs := []*domain.Service{newService(t, st, domain.DefaultConfig), newService(t, st, domain.DefaultConfig)}
		fn(t, &env{store: st, svc: svcs[0]}, svcs)
	})
	t.Run("filestore", func(t *testing.T) {
		st := openFilestore(t)
		svcs := []*domain.Service{newService(t, st, domain.DefaultConfig), newService(t, st, domain.DefaultConfig)}
		fn(t, &env{store: st, svc: svcs[0], fs: st}, svcs)
		checkNoLeftovers(t, st)
	})
}

func TestTwoServicesUploadSameName(t *testing.T) {
	sharedStores(t, func(t *testing.T, e *env, svcs []*domain.Service) {
		u := newUser(t, svcs[0], "tom")
		concurrentSameName(t, e, u, svcs, 20)
	})
}

func TestTwoServicesUploadDistinctNames(t *testing.T) {
	sharedStores(t, func(t *testing.T, e *env, svcs []*domain.Service) {
		const n = 40
		u := newUser(t, svcs[0], "uma")
		png := fixture(t, fixturePNG)
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  = make([]error, n)
		)
		for i := range n {
			wg.Go(func() {
				<-start
				_, errs[i] = svcs[i%2].Upload(t.Context(), u, fmt.Sprintf("f%d.png", i), bytes.NewReader(png))
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Upload #%d: got %v, want nil (no update may be lost)", i, err)
			}
		}
		imgs := checkConsistent(t, e, u)
		if got, want := len(imgs), n; got != want {
			t.Errorf("listed images: got %d, want %d", got, want)
		}
	})
}

func TestTwoServicesGenerateToken(t *testing.T) {
	sharedStores(t, func(t *testing.T, e *env, svcs []*domain.Service) {
		const n = 20
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			tokens = make([]string, n)
			errs   = make([]error, n)
		)
		for i := range n {
			wg.Go(func() {
				<-start
				tokens[i], errs[i] = svcs[i%2].GenerateToken(t.Context(), "victor")
			})
		}
		close(start)
		wg.Wait()
		var winners []string
		for i, err := range errs {
			if err == nil {
				winners = append(winners, tokens[i])
			} else if !errors.Is(err, domain.ErrUserExists) {
				t.Errorf("GenerateToken #%d: got %v, want nil or %v", i, err, domain.ErrUserExists)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("successful GenerateToken: got %d, want 1", len(winners))
		}
		for i, svc := range svcs {
			if u, err := svc.Authenticate(t.Context(), winners[0]); err != nil || u.Name != "victor" {
				t.Errorf("service %d: Authenticate(winner's token): got (%q, %v), want (victor, nil)", i, u.Name, err)
			}
		}
	})
}

func TestTwoServicesReplaceAndDelete(t *testing.T) {
	sharedStores(t, func(t *testing.T, e *env, svcs []*domain.Service) {
		concurrentReplaceAndDelete(t, e, svcs)
	})
}

// TestOpenDuringReplaceFindsTheImage: Open reads the index, then opens the
// blob it names; a Replace may remove that blob in between, any number of
// times. The image exists all along (only its bytes change), so Open must
// always find it. The test replaces one image continuously while reading
// it, for up to a few seconds, and fails at the first miss.
func TestOpenDuringReplaceFindsTheImage(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		ctx := t.Context()
		u := newUser(t, e.svc, "wendy")
		fx := images(t)
		target := upload(t, e.svc, u, "a.png", fx[0].data).ID

		const replacers, readers = 4, 4
		deadline := time.Now().Add(3 * time.Second)
		var (
			stop                   atomic.Bool
			wg                     sync.WaitGroup
			opens, misses, replace atomic.Int64
		)
		for g := range replacers {
			wg.Go(func() {
				for i := 0; !stop.Load() && time.Now().Before(deadline); i++ {
					f := fx[(g+i)%len(fx)]
					if _, err := e.svc.Replace(ctx, u, target, "a.png", bytes.NewReader(f.data)); err != nil {
						t.Errorf("Replace: got %v, want nil", err)
						stop.Store(true)
						return
					}
					replace.Add(1)
				}
			})
		}
		for range readers {
			wg.Go(func() {
				for !stop.Load() && time.Now().Before(deadline) {
					img, rc, err := e.svc.Open(ctx, u, target)
					opens.Add(1)
					if errors.Is(err, domain.ErrImageNotFound) {
						misses.Add(1)
						stop.Store(true)
						return
					}
					if err != nil {
						t.Errorf("Open: got %v, want nil", err)
						stop.Store(true)
						return
					}
					b, err := io.ReadAll(rc)
					rc.Close()
					if err != nil || sha(b) != img.SHA256 {
						t.Errorf("reading the image: got sha256 %s and error %v, want sha256 %s and nil", sha(b), err, img.SHA256)
					}
				}
			})
		}
		wg.Wait()
		if n := misses.Load(); n > 0 {
			t.Errorf("Open of an image that always existed, during %d replacements and %d opens: got %v, want the image",
				replace.Load(), opens.Load(), domain.ErrImageNotFound)
		}
		checkConsistent(t, e, u)
	})
}
