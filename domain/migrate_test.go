package domain_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/storage"
	"github.com/imagestore/imagestore/storage/memstore"
)

// populate fills st as a server would: a user with a password whose images
// were uploaded, replaced and deleted; one whose token was rotated and who
// made an idempotent upload; one without images. It returns the users'
// current tokens and the rotated one, which must fail everywhere.
func populate(t *testing.T, st storage.Store) (tokens []string, oldToken string) {
	t.Helper()
	ctx := t.Context()
	svc := newService(t, st, domain.DefaultConfig)

	alice, err := svc.CreateUser(ctx, "alice", "correct horse")
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	upload(t, svc, alice, "a.png", fixture(t, fixturePNG))
	jpeg := upload(t, svc, alice, "b.jpg", fixture(t, fixtureJPEG))
	gif := upload(t, svc, alice, "c.gif", fixture(t, fixtureGIF))
	if _, err := svc.Replace(ctx, alice, jpeg.ID, "b2.gif", bytes.NewReader(fixture(t, fixtureGIF))); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	if err := svc.Delete(ctx, alice, gif.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}

	bob := newUser(t, svc, "bob")
	oldToken = bob.Token
	if bob, err = svc.RotateToken(ctx, bob); err != nil {
		t.Fatalf("RotateToken: %v", err)
	}
	upload(t, svc, bob, "photo.jpg", fixture(t, fixtureJPEG))
	if _, _, err := svc.UploadOnce(ctx, bob, "retry-1", "once.png", bytes.NewReader(fixture(t, fixturePNG))); err != nil {
		t.Fatalf("UploadOnce: %v", err)
	}

	carol := newUser(t, svc, "carol")
	return []string{alice.Token, bob.Token, carol.Token}, oldToken
}

func migrate(t *testing.T, src, dst storage.Store, opts domain.MigrateOptions) domain.MigrateReport {
	t.Helper()
	rep, err := domain.Migrate(t.Context(), src, dst, opts)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return rep
}

// readKey returns the bytes of a key, or nil if it is missing.
func readKey(t *testing.T, st storage.Store, key string) []byte {
	t.Helper()
	rc, _, err := st.Get(t.Context(), key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return b
}

// checkSameKeys checks that dst holds exactly src's keys, with the same
// bytes, but for those skip names.
func checkSameKeys(t *testing.T, src, dst storage.Store, skip ...string) {
	t.Helper()
	want := slices.DeleteFunc(keys(t, src, ""), func(k string) bool { return slices.Contains(skip, k) })
	if got := keys(t, dst, ""); !slices.Equal(got, want) {
		t.Fatalf("keys in the destination:\ngot  %q\nwant %q", got, want)
	}
	for _, k := range want {
		if !bytes.Equal(readKey(t, dst, k), readKey(t, src, k)) {
			t.Errorf("%s: the destination's bytes differ from the source's", k)
		}
	}
}

// checkSameService checks through two Services that every user
// authenticates in dst with the same token, with the same record, and has
// the same images with the same bytes; and that the rotated token fails.
func checkSameService(t *testing.T, src, dst storage.Store, tokens []string, oldToken string) {
	t.Helper()
	ctx := t.Context()
	ssvc := newService(t, src, domain.DefaultConfig)
	dsvc := newService(t, dst, domain.DefaultConfig)
	for _, token := range tokens {
		want, err := ssvc.Authenticate(ctx, token)
		if err != nil {
			t.Fatalf("source: Authenticate: %v", err)
		}
		got, err := dsvc.Authenticate(ctx, token)
		if err != nil {
			t.Fatalf("destination: Authenticate(token of %s): %v", want.Name, err)
		}
		if got.Name != want.Name || got.Token != want.Token || !got.Created.Equal(want.Created) || got.PasswordHash != want.PasswordHash {
			t.Errorf("destination: user %+v, want %+v", got, want)
		}
		wantImgs, gotImgs := list(t, ssvc, want), list(t, dsvc, got)
		if !sameImages(gotImgs, wantImgs) {
			t.Errorf("destination: %s's images:\ngot  %+v\nwant %+v", want.Name, gotImgs, wantImgs)
			continue
		}
		for _, img := range wantImgs {
			_, wantData := openBytes(t, ssvc, want, img.ID)
			_, gotData := openBytes(t, dsvc, got, img.ID)
			if !bytes.Equal(gotData, wantData) || sha(gotData) != img.SHA256 {
				t.Errorf("destination: %s's image %s (%s): bytes differ", want.Name, img.ID, img.Name)
			}
		}
	}
	if _, err := dsvc.Authenticate(ctx, oldToken); !errors.Is(err, domain.ErrUnauthorized) {
		t.Errorf("destination: the rotated token: got %v, want ErrUnauthorized", err)
	}
}

// checkSound checks the destination's promise after any run, complete or
// not: every user it holds authenticates with its token, and every image
// the user lists opens to bytes matching its SHA-256.
func checkSound(t *testing.T, st storage.Store) {
	t.Helper()
	svc := newService(t, st, domain.DefaultConfig)
	for _, key := range keys(t, st, "users/") {
		var rec domain.User
		if err := json.Unmarshal(readKey(t, st, key), &rec); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		u, err := svc.Authenticate(t.Context(), rec.Token)
		if err != nil {
			t.Errorf("user %s is in the destination, but its token fails: %v", rec.Name, err)
			continue
		}
		for _, img := range list(t, svc, u) {
			if _, b := openBytes(t, svc, u, img.ID); sha(b) != img.SHA256 {
				t.Errorf("user %s's image %s: wrong bytes", u.Name, img.ID)
			}
		}
	}
}

// progressLog records Progress's calls. It takes no lock: Migrate says
// it serialises them, and the race detector checks that.
type progressLog struct {
	calls [][3]int64
}

func (p *progressLog) record(done, total int, bytes int64) {
	p.calls = append(p.calls, [3]int64{int64(done), int64(total), bytes})
}

// check verifies that done went up one at a time to the total.
func (p *progressLog) check(t *testing.T, rep domain.MigrateReport) {
	t.Helper()
	total := rep.Copied + rep.Skipped + len(rep.Failures)
	if len(p.calls) != total {
		t.Fatalf("progress: %d calls, want %d (one per key)", len(p.calls), total)
	}
	for i, c := range p.calls {
		if c[0] != int64(i+1) || c[1] != int64(total) {
			t.Fatalf("progress call %d: done %d of %d, want %d of %d", i, c[0], c[1], i+1, total)
		}
		if i > 0 && c[2] < p.calls[i-1][2] {
			t.Fatalf("progress call %d: bytes went down from %d to %d", i, p.calls[i-1][2], c[2])
		}
	}
	if last := p.calls[len(p.calls)-1][2]; last != rep.Bytes {
		t.Errorf("progress: last bytes %d, want the report's %d", last, rep.Bytes)
	}
}

func TestMigrate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst func(t *testing.T) storage.Store
	}{
		{"memstore to filestore", memStore, fileStore},
		{"filestore to memstore", fileStore, memStore},
		{"filestore to filestore", fileStore, fileStore},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := tc.src(t), tc.dst(t)
			tokens, oldToken := populate(t, src)
			all := len(keys(t, src, ""))

			var progress progressLog
			rep := migrate(t, src, dst, domain.MigrateOptions{Progress: progress.record})
			if len(rep.Failures) != 0 {
				t.Fatalf("failures: %v", rep.Failures)
			}
			if rep.Copied != all || rep.Skipped != 0 || rep.Users != 3 || rep.Images != 4 || rep.Verified != 4 || rep.Unreferenced != 0 {
				t.Errorf("report %+v: want %d keys copied, none skipped, 3 users, 4 images verified, none unreferenced", rep, all)
			}
			var size int64
			for _, k := range keys(t, src, "") {
				size += int64(len(readKey(t, src, k)))
			}
			if rep.Bytes != size {
				t.Errorf("bytes copied: got %d, want %d", rep.Bytes, size)
			}
			progress.check(t, rep)
			checkSameKeys(t, src, dst)
			checkSameService(t, src, dst, tokens, oldToken)

			// Run again: nothing to do.
			rep = migrate(t, src, dst, domain.MigrateOptions{Workers: 1})
			if rep.Copied != 0 || rep.Skipped != all || rep.Bytes != 0 || rep.Verified != 4 || len(rep.Failures) != 0 {
				t.Errorf("second run: report %+v, want nothing copied, %d keys skipped, 4 images verified", rep, all)
			}
			checkSameKeys(t, src, dst)
		})
	}
}

func memStore(t *testing.T) storage.Store  { return memstore.New() }
func fileStore(t *testing.T) storage.Store { return openFilestore(t) }

// TestMigrateRewritesWhatDiffers: a destination image whose bytes do not
// verify, and a record whose bytes differ, are written over; the rest is
// skipped.
func TestMigrateRewritesWhatDiffers(t *testing.T) {
	src, dst := memstore.New(), memstore.New()
	tokens, oldToken := populate(t, src)
	migrate(t, src, dst, domain.MigrateOptions{})

	svc := newService(t, dst, domain.DefaultConfig)
	u, err := svc.Authenticate(t.Context(), tokens[0])
	if err != nil {
		t.Fatal(err)
	}
	damage(t, t.Context(), dst, list(t, svc, u)[0])
	token := keys(t, dst, "tokens/")[0]
	if _, err := dst.Put(t.Context(), token, strings.NewReader(`{"username":"mallory"}`), storage.Cond{}); err != nil {
		t.Fatal(err)
	}

	// The damaged image is written again; the record that differs is left
	// alone and reported (it may have been written in dst since).
	all := len(keys(t, src, ""))
	rep, _ := domain.Migrate(t.Context(), src, dst, domain.MigrateOptions{})
	if rep.Copied != 1 || rep.Skipped != all-3 || len(rep.Failures) != 2 {
		t.Errorf("report %+v: want 1 key copied, %d skipped, 2 failures (the token, and its user held back)", rep, all-3)
	}
	if got := string(readKey(t, dst, token)); got != `{"username":"mallory"}` {
		t.Errorf("the token record that differed was overwritten: %s", got)
	}
	// With Overwrite, the source's version replaces it.
	rep = migrate(t, src, dst, domain.MigrateOptions{Overwrite: true})
	if rep.Copied != 1 || rep.Skipped != all-1 || len(rep.Failures) != 0 {
		t.Errorf("report %+v: want 1 key copied (the token), %d skipped", rep, all-1)
	}
	checkSameKeys(t, src, dst)
	checkSameService(t, src, dst, tokens, oldToken)
}

// TestMigrateKeepsWhatWasWrittenSince: a migration run again after a server
// began writing to the destination loses nothing that server wrote.
func TestMigrateKeepsWhatWasWrittenSince(t *testing.T) {
	src, dst := memstore.New(), memstore.New()
	tokens, _ := populate(t, src)
	migrate(t, src, dst, domain.MigrateOptions{})
	svc := newService(t, dst, domain.DefaultConfig)
	u, err := svc.Authenticate(t.Context(), tokens[0])
	if err != nil {
		t.Fatal(err)
	}
	before := len(list(t, svc, u))
	upload(t, svc, u, "after-the-switch.png", uniquePNG(t, 99))

	rep, err := domain.Migrate(t.Context(), src, dst, domain.MigrateOptions{})
	if err != nil || len(rep.Failures) == 0 {
		t.Fatalf("report %+v, %v: want the list that differs reported", rep, err)
	}
	svc = newService(t, dst, domain.DefaultConfig)
	if got := list(t, svc, u); len(got) != before+1 {
		t.Fatalf("after migrating again: %d images, want %d: the upload made in the destination was lost", len(got), before+1)
	}
}

// TestMigrateNeverDeletes: keys only the destination has stay.
func TestMigrateNeverDeletes(t *testing.T) {
	src, dst := memstore.New(), memstore.New()
	populate(t, src)
	extra := "users/0123456789abcdef.json"
	if _, err := dst.Put(t.Context(), extra, strings.NewReader(`{}`), storage.Cond{}); err != nil {
		t.Fatal(err)
	}
	migrate(t, src, dst, domain.MigrateOptions{})
	if readKey(t, dst, extra) == nil {
		t.Errorf("%s, only in the destination, was deleted", extra)
	}
}

// TestMigrateUnreferencedBlobs: blobs no list names are counted, not
// copied.
func TestMigrateUnreferencedBlobs(t *testing.T) {
	src, dst := memstore.New(), memstore.New()
	tokens, oldToken := populate(t, src)
	folder := path.Dir(keys(t, src, "blobs/")[0])
	orphans := []string{folder + "/0123456789abcdef0123456789abcdef.gz", "blobs/ffff/00.gz", "blobs/ffff/notes.txt"}
	for _, k := range orphans {
		if _, err := src.Put(t.Context(), k, strings.NewReader("partial"), storage.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	rep := migrate(t, src, dst, domain.MigrateOptions{})
	if rep.Unreferenced != len(orphans) || len(rep.Failures) != 0 {
		t.Errorf("report %+v: want %d unreferenced blobs and no failure", rep, len(orphans))
	}
	checkSameKeys(t, src, dst, orphans...)
	checkSameService(t, src, dst, tokens, oldToken)
}

// TestMigrateSourceDamage: an image whose bytes are damaged, or missing, in
// the source is reported as the source's fault and not copied; its user
// and the user's other images are.
func TestMigrateSourceDamage(t *testing.T) {
	ctx := t.Context()
	src, dst := memstore.New(), memstore.New()
	tokens, _ := populate(t, src)
	svc := newService(t, src, domain.DefaultConfig)
	alice, _ := svc.Authenticate(ctx, tokens[0])
	bob, _ := svc.Authenticate(ctx, tokens[1])
	damaged := list(t, svc, alice)[0]
	damage(t, ctx, src, damaged)
	missing := list(t, svc, bob)[1]
	var damagedKey, missingKey string
	for _, k := range keys(t, src, "blobs/") {
		switch path.Base(k) {
		case damaged.Blob + ".gz":
			damagedKey = k
		case missing.Blob + ".gz":
			missingKey = k
		}
	}
	if err := src.Delete(ctx, missingKey); err != nil {
		t.Fatal(err)
	}

	for run := range 2 {
		rep := migrate(t, src, dst, domain.MigrateOptions{})
		if len(rep.Failures) != 2 || rep.SourceDamage() != 2 {
			t.Fatalf("run %d: failures %v: want 2, both the source's", run, rep.Failures)
		}
		for _, want := range []struct{ key, text string }{{damagedKey, "damaged"}, {missingKey, "missing"}} {
			i := slices.IndexFunc(rep.Failures, func(f domain.MigrateFailure) bool { return f.Key == want.key })
			if i < 0 {
				t.Fatalf("run %d: no failure for %s in %v", run, want.key, rep.Failures)
			}
			if f := rep.Failures[i]; !f.Source || !strings.Contains(f.String(), want.text) {
				t.Errorf("run %d: failure %q: want it to be the source's, and %s", run, f, want.text)
			}
		}
		if rep.Verified != 2 || (run == 1 && rep.Copied != 0) {
			t.Errorf("run %d: report %+v: want 2 images verified (and nothing copied the second time)", run, rep)
		}
		if readKey(t, dst, damagedKey) != nil || readKey(t, dst, missingKey) != nil {
			t.Errorf("run %d: the damaged or missing bytes were copied", run)
		}
	}
	// The users and their lists are there; the other images open.
	dsvc := newService(t, dst, domain.DefaultConfig)
	for _, u := range []domain.User{alice, bob} {
		got, err := dsvc.Authenticate(ctx, u.Token)
		if err != nil {
			t.Fatalf("destination: Authenticate(token of %s): %v", u.Name, err)
		}
		if want := list(t, svc, u); !sameImages(list(t, dsvc, got), want) {
			t.Errorf("destination: %s's list differs", u.Name)
		}
		for _, img := range list(t, dsvc, got) {
			if img.ID == damaged.ID || img.ID == missing.ID {
				continue
			}
			if _, b := openBytes(t, dsvc, got, img.ID); sha(b) != img.SHA256 {
				t.Errorf("destination: %s's image %s: wrong bytes", u.Name, img.ID)
			}
		}
	}
}

var errInjected = errors.New("injected failure")

// faultyStore makes its failAt-th Put (counted from 1) fail, or, with
// corrupt, write the bytes with one changed.
type faultyStore struct {
	storage.Store
	failAt  int64
	corrupt bool
	puts    atomic.Int64
}

func (f *faultyStore) Put(ctx context.Context, key string, r io.Reader, cond storage.Cond) (storage.Attrs, error) {
	if f.puts.Add(1) != f.failAt {
		return f.Store.Put(ctx, key, r, cond)
	}
	if !f.corrupt {
		return storage.Attrs{}, errInjected
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return storage.Attrs{}, err
	}
	b[len(b)/2] ^= 0xff
	return f.Store.Put(ctx, key, bytes.NewReader(b), cond)
}

// TestMigrateFailedWrites: whichever write fails, the destination stays
// sound (no user whose data is not all there), the failures are reported,
// and a second run copies just what failed.
func TestMigrateFailedWrites(t *testing.T) {
	src := memstore.New()
	tokens, oldToken := populate(t, src)
	all := len(keys(t, src, ""))
	for n := 1; n <= all; n++ {
		dst := memstore.New()
		rep := migrate(t, src, &faultyStore{Store: dst, failAt: int64(n)}, domain.MigrateOptions{Workers: 3})
		if len(rep.Failures) == 0 || rep.SourceDamage() != 0 || rep.Copied+len(rep.Failures) != all {
			t.Fatalf("write %d failing: report %+v: want failures, none the source's, and the rest copied", n, rep)
		}
		if f := rep.Failures[0]; !errors.Is(f.Err, errInjected) && !strings.Contains(f.String(), "held back") {
			t.Errorf("write %d failing: failure %q: want the injected error or a record held back", n, f)
		}
		checkSound(t, dst)

		again := migrate(t, src, dst, domain.MigrateOptions{})
		if len(again.Failures) != 0 || again.Copied != len(rep.Failures) || again.Skipped != all-len(rep.Failures) {
			t.Fatalf("write %d failing, then a second run: report %+v: want the %d keys that failed copied, the rest skipped", n, again, len(rep.Failures))
		}
		checkSameKeys(t, src, dst)
		checkSameService(t, src, dst, tokens, oldToken)
	}
}

// TestMigrateBadCopy: bytes that do not read back from the destination as
// the image are a failed copy, not source damage, and hold back the user's
// list and record; a second run mends them.
func TestMigrateBadCopy(t *testing.T) {
	src, dst := memstore.New(), memstore.New()
	tokens, oldToken := populate(t, src)
	rep := migrate(t, src, &faultyStore{Store: dst, failAt: 1, corrupt: true}, domain.MigrateOptions{})
	if len(rep.Failures) != 3 || rep.SourceDamage() != 0 {
		t.Fatalf("failures %v: want 3 (a blob, its user's list and record), none the source's", rep.Failures)
	}
	blob := rep.Failures[0]
	if !strings.HasPrefix(blob.Key, "blobs/") || !strings.Contains(blob.String(), "does not read back") {
		t.Errorf("failure %q: want a blob that does not read back", blob)
	}
	uh := strings.Split(blob.Key, "/")[1]
	for i, want := range []string{"index/" + uh + ".json", "users/" + uh + ".json"} {
		if f := rep.Failures[i+1]; f.Key != want || !strings.Contains(f.String(), "held back") {
			t.Errorf("failure %q: want %s held back", f, want)
		}
		if readKey(t, dst, want) != nil {
			t.Errorf("%s was written, though its images' bytes failed to copy", want)
		}
	}
	checkSound(t, dst)

	rep = migrate(t, src, dst, domain.MigrateOptions{})
	if len(rep.Failures) != 0 || rep.Copied != 3 {
		t.Errorf("second run: report %+v: want the 3 keys copied", rep)
	}
	checkSameKeys(t, src, dst)
	checkSameService(t, src, dst, tokens, oldToken)
}

// TestMigrateCancelled: a migration stopped after any number of keys
// leaves a sound destination, and a second run completes it.
func TestMigrateCancelled(t *testing.T) {
	src := openFilestore(t)
	tokens, oldToken := populate(t, src)
	all := len(keys(t, src, ""))
	for n := 1; n < all; n++ {
		dst := openFilestore(t)
		ctx, cancel := context.WithCancel(t.Context())
		_, err := domain.Migrate(ctx, src, dst, domain.MigrateOptions{Progress: func(done, total int, bytes int64) {
			if done == n {
				cancel()
			}
		}})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled after %d keys: got %v, want context.Canceled", n, err)
		}
		checkSound(t, dst)
		checkNoLeftovers(t, dst)

		rep := migrate(t, src, dst, domain.MigrateOptions{})
		if len(rep.Failures) != 0 || rep.Copied+rep.Skipped != all || rep.Skipped < n {
			t.Fatalf("cancelled after %d keys, then a second run: report %+v", n, rep)
		}
		checkSameKeys(t, src, dst)
		checkSameService(t, src, dst, tokens, oldToken)
	}
}

// TestMigrateSkipsCaches: image variants (a cache, made again on demand)
// and health probes are not copied.
func TestMigrateSkipsCaches(t *testing.T) {
	src, dst := memstore.New(), memstore.New()
	tokens, oldToken := populate(t, src)
	folder := path.Base(path.Dir(keys(t, src, "blobs/")[0]))
	skipped := []string{"variants/" + folder + "/0123456789abcdef0123456789abcdef.320x320-cover.jpeg", "health/0123.json"}
	for _, k := range skipped {
		if _, err := src.Put(t.Context(), k, strings.NewReader("cache"), storage.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	rep := migrate(t, src, dst, domain.MigrateOptions{})
	if len(rep.Failures) != 0 {
		t.Errorf("report %+v: want no failure", rep)
	}
	checkSameKeys(t, src, dst, skipped...)
	checkSameService(t, src, dst, tokens, oldToken)
}

// TestMigrateLoggedLists: a data folder's lists, kept as a base and a log
// of changes by the server that owns it, arrive whole, with every change
// of their log, and run again the migration has nothing to do.
func TestMigrateLoggedLists(t *testing.T) {
	ctx := t.Context()
	src, dst := fileStore(t), memStore(t)
	cfg := domain.DefaultConfig
	cfg.SoleWriter = true
	svc := newService(t, src, cfg)
	u := newUser(t, svc, "logged")
	var imgs []domain.Image
	for i := range 80 { // more writes than a log holds: a compaction, then records
		imgs = append(imgs, upload(t, svc, u, fmt.Sprintf("%d.png", i), uniquePNG(t, i)))
	}
	if err := svc.Delete(ctx, u, imgs[3].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Replace(ctx, u, imgs[70].ID, "replaced.png", bytes.NewReader(uniquePNG(t, 1000))); err != nil {
		t.Fatal(err)
	}
	if len(keys(t, src, "indexlog/")) == 0 {
		t.Fatal("the source has no log records: nothing tested")
	}
	rep := migrate(t, src, dst, domain.MigrateOptions{})
	if len(rep.Failures) != 0 || rep.Images != 79 {
		t.Fatalf("report %+v, failures %v: want 79 images", rep, rep.Failures)
	}
	if got := keys(t, dst, "indexlog/"); len(got) != 0 {
		t.Errorf("log records copied: %q", got)
	}
	checkSameService(t, src, dst, []string{u.Token}, "no-such-token")
	rep = migrate(t, src, dst, domain.MigrateOptions{})
	if rep.Copied != 0 || len(rep.Failures) != 0 {
		t.Errorf("second run: report %+v, want nothing copied", rep)
	}
}
