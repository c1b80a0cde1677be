package domain

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/imagestore/imagestore/storage"
)

// Config holds the rules an operator can set.
type Config struct {
	// MaxPixels is the most pixels (width times height) an image may
	// claim; 0 means no limit.
	MaxPixels int64
	// GzipLevel is the compression level of stored images, from 1 (fastest)
	// to 9 (smallest).
	GzipLevel int
	// GzipAll deflates every image at GzipLevel. Without it, images whose
	// format compresses its data already (JPEG, PNG, WebP) are stored in
	// gzip's stored blocks: still gzip, for a fraction of the CPU, and
	// under 1% larger.
	GzipAll bool
	// Logger receives warnings about things that went wrong without
	// failing a request (an unreferenced blob left behind, say).
	Logger *slog.Logger
	// Retrieval is the rule for retrieving a token by username; empty
	// means RetrievalOpen, the original's behaviour.
	Retrieval RetrievalMode
	// MinFreeBytes is the free space below which uploads and replacements
	// are refused with ErrInsufficientStorage, for stores that can tell
	// their free space; reads and deletions go on.
	MinFreeBytes int64
	// SoleWriter says that this Service is the only writer of its store
	// (a data folder the process holds locked): what it read or wrote may
	// then be cached and trusted without asking the store again. Leave it
	// false when several servers share the store.
	SoleWriter bool
	// KeepUnpublished keeps in their lists the images a list's log added
	// whose bytes are missing. A server leaves them out: they are uploads
	// a crash cut short, never acknowledged (see pendingBlob). The check
	// command keeps them, to report them (and remove them on repair) with
	// every other image listed without its bytes.
	KeepUnpublished bool
	// HotCacheBytes is the size of the cache of images read most
	// recently: their decompressed bytes, for clients that do not take
	// gzip, and their stored bytes, for those that do; 0 turns it off.
	HotCacheBytes int64
	// MaxVariantSize is the largest width or height a variant may be
	// asked for (see OpenVariant); 0 means DefaultMaxVariantSize.
	MaxVariantSize int
	// CPUs is how many CPUs the service's CPU-bound work (making
	// variants) may keep busy at once; 0 means runtime.GOMAXPROCS(0).
	CPUs int
	// StripMetadata removes the metadata segments of JPEG uploads and
	// replacements (Exif with its GPS position, XMP, IPTC, comments) as
	// they stream in, without touching the pixels: see stripmeta.go.
	StripMetadata bool
}

// DefaultConfig is the configuration used where none is given.
var DefaultConfig = Config{MaxPixels: 100_000_000, GzipLevel: 6}

// Service carries out every operation on users and images.
type Service struct {
	store  storage.Store
	stager storage.Stager // the store, if it is one and this Service its sole writer: see pendingBlob
	cfg    Config
	log    *slog.Logger
	now    func() time.Time

	users, images atomic.Int64 // as this process knows them: see Counts

	indexes   *boundedMap[string, cachedIndex] // decoded indexes by user hash: see loadIndex
	seed      maphash.Seed
	writeGens [256]atomic.Uint64 // index writes begun, by group of users: see loadIndex
	queueMu   sync.Mutex
	queues    map[string]*indexQueue // users whose index is being written: see updateIndex
	unsure    sync.Map               // users whose last list write failed: see writeIndex
	writing   sync.Map               // blob keys being written, not yet named or dropped: SweepOrphans spares them

	tokens    *boundedMap[string, string] // username by token: see Authenticate
	userCache *boundedMap[string, User]   // users by name, for a SoleWriter
	hashes    *boundedMap[string, string] // userHashOf by username: see userHash
	hot       *hotCache                   // nil when off
	variants  *variantState               // see variants.go
}

// Counts returns the numbers of users and images: those this process
// created or deleted, and those Recount found from before.
func (s *Service) Counts() (users, images int64) { return s.users.Load(), s.images.Load() }

// Recount adds to the counts the users and images in the store that were
// created before the given time (this process's start): the later ones
// this process counted itself as it made them.
func (s *Service) Recount(ctx context.Context, before time.Time) error {
	var users, images int64
	for key, err := range s.store.List(ctx, "users/") {
		if err != nil {
			return err
		}
		var u User
		if _, err := s.getJSON(ctx, key, &u); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			return err
		}
		if u.Created.Before(before) {
			users++
		}
		ix, _, err := s.loadIndex(ctx, userHashOf(u.Name))
		if err != nil {
			return err
		}
		for _, img := range ix.Images {
			if img.Created.Before(before) {
				images++
			}
		}
	}
	s.users.Add(users)
	s.images.Add(images)
	return nil
}

// New returns a Service keeping its state in store.
func New(store storage.Store, cfg Config) (*Service, error) {
	if cfg.GzipLevel < gzip.BestSpeed || cfg.GzipLevel > gzip.BestCompression {
		return nil, fmt.Errorf("gzip level %d is not between %d and %d", cfg.GzipLevel, gzip.BestSpeed, gzip.BestCompression)
	}
	if cfg.HotCacheBytes < 0 {
		return nil, fmt.Errorf("cache size %d is negative", cfg.HotCacheBytes)
	}
	if cfg.MaxPixels < 0 {
		return nil, fmt.Errorf("pixel limit %d is negative", cfg.MaxPixels)
	}
	if cfg.MaxVariantSize < 0 {
		return nil, fmt.Errorf("variant size limit %d is negative", cfg.MaxVariantSize)
	}
	if cfg.MaxVariantSize == 0 {
		cfg.MaxVariantSize = DefaultMaxVariantSize
	}
	if cfg.CPUs < 0 {
		return nil, fmt.Errorf("CPU count %d is negative", cfg.CPUs)
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = runtime.GOMAXPROCS(0)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		store: store, cfg: cfg, log: log, now: time.Now,
		indexes: newBoundedMap[string, cachedIndex](maxCachedIndexes),
		seed:    maphash.MakeSeed(), queues: map[string]*indexQueue{},
		tokens:    newBoundedMap[string, string](maxCachedTokens),
		userCache: newBoundedMap[string, User](maxCachedTokens),
		hashes:    newBoundedMap[string, string](maxCachedTokens),
		hot:       newHotCache(cfg.HotCacheBytes),
		variants:  newVariantState(cfg.CPUs),
	}
	if st, ok := store.(storage.Stager); ok && cfg.SoleWriter {
		s.stager = st
	}
	return s, nil
}

// Config returns the service's configuration.
func (s *Service) Config() Config { return s.cfg }

// ---- users and tokens

type tokenRecord struct {
	Username string `json:"username"`
}

// GenerateToken creates the user, without a password, and returns its new
// token. It returns ErrUserExists if the username is taken, and
// ErrInvalidUsername if it is not a username.
func (s *Service) GenerateToken(ctx context.Context, username string) (string, error) {
	u, err := s.CreateUser(ctx, username, "")
	return u.Token, err
}

// CreateUser creates the user with a new token and, if password is not
// empty, a password (kept only as a bcrypt hash). Errors: ErrInvalidUsername,
// ErrWeakPassword, ErrUserExists.
func (s *Service) CreateUser(ctx context.Context, username, password string) (User, error) {
	if !ValidUsername(username) {
		return User{}, ErrInvalidUsername
	}
	u := User{Name: username, Created: s.now().UTC()}
	if password != "" {
		hash, err := hashPassword(password)
		if err != nil {
			return User{}, err
		}
		u.PasswordHash = hash
	}
	uh := userHashOf(username)
	if _, err := s.store.Stat(ctx, userKey(uh)); err == nil {
		return User{}, ErrUserExists
	} else if !errors.Is(err, storage.ErrNotFound) {
		return User{}, err
	}
	// Claim a token no one has. A token record without its user (after a
	// crash, or a lost race below) authenticates no one: see Authenticate.
	token, err := s.claimToken(ctx, username)
	if err != nil {
		return User{}, err
	}
	u.Token = token
	err = s.putJSON(ctx, userKey(uh), u, storage.Cond{IfAbsent: true})
	s.userWritten(uh)
	if err != nil {
		if errors.Is(err, storage.ErrPrecondition) {
			s.store.Delete(context.WithoutCancel(ctx), tokenKey(token))
			return User{}, ErrUserExists // another request created the user first
		}
		// The write may have happened all the same (a timeout after the
		// commit): keep the token record if the user record names it.
		if cur, rerr := s.User(context.WithoutCancel(ctx), username); rerr != nil || cur.Token != token {
			if rerr == nil || errors.Is(rerr, ErrUserNotFound) {
				s.store.Delete(context.WithoutCancel(ctx), tokenKey(token))
			}
		}
		return User{}, err
	}
	s.users.Add(1)
	return u, nil
}

// claimToken creates the record of a new token for username, retrying on
// the (astronomically rare) collision with an existing token.
func (s *Service) claimToken(ctx context.Context, username string) (string, error) {
	for attempt := 0; ; attempt++ {
		token := NewToken()
		err := s.putJSON(ctx, tokenKey(token), tokenRecord{Username: username}, storage.Cond{IfAbsent: true})
		if err == nil {
			return token, nil
		}
		if !errors.Is(err, storage.ErrPrecondition) || attempt == 10 {
			return "", err
		}
	}
}

// User returns the user of that name, or ErrUserNotFound.
func (s *Service) User(ctx context.Context, username string) (User, error) {
	if !ValidUsername(username) {
		return User{}, ErrUserNotFound
	}
	uh := s.userHash(username)
	if s.cfg.SoleWriter {
		if u, ok := s.userCache.get(uh); ok {
			return u, nil
		}
	}
	gen := s.writeGen(uh)
	g := gen.Load()
	var u User
	if _, err := s.getJSON(ctx, userKey(uh), &u); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return User{}, ErrUserNotFound
		}
		return User{}, err
	}
	if s.cfg.SoleWriter {
		s.userCache.putIf(uh, u, func() bool { return gen.Load() == g })
	}
	return u, nil
}

// userWritten follows a write of the user's record, whatever its outcome:
// the cached copy goes.
func (s *Service) userWritten(uh string) {
	s.writeGen(uh).Add(1)
	s.userCache.forget(uh)
}

// Authenticate returns the user whose token this is, or ErrUnauthorized.
func (s *Service) Authenticate(ctx context.Context, token string) (User, error) {
	if !ValidToken(token) {
		return User{}, ErrUnauthorized
	}
	// A token's record names the same user as long as it exists (tokens
	// are never reused), and the user's record says whether the token is
	// still the user's: only the user record must be read fresh.
	username, ok := s.tokens.get(token)
	if !ok {
		var rec tokenRecord
		if _, err := s.getJSON(ctx, tokenKey(token), &rec); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return User{}, ErrUnauthorized
			}
			return User{}, err
		}
		username = rec.Username
	}
	u, err := s.User(ctx, username)
	if errors.Is(err, ErrUserNotFound) {
		return User{}, ErrUnauthorized
	}
	if err != nil {
		return User{}, err
	}
	if subtle.ConstantTimeCompare([]byte(u.Token), []byte(token)) != 1 {
		s.tokens.forget(token)
		return User{}, ErrUnauthorized // a stale token record
	}
	if !ok {
		s.tokens.put(token, username)
	}
	return u, nil
}

// List returns the user's images in upload order (a replaced image keeps
// its place).
func (s *Service) List(ctx context.Context, u User) ([]Image, error) {
	ix, _, err := s.loadIndex(ctx, s.userHash(u.Name))
	return ix.Images, err
}

// Image returns the user's image with that id, or ErrImageNotFound.
func (s *Service) Image(ctx context.Context, u User, id string) (Image, error) {
	if !ValidID(id) {
		return Image{}, ErrImageNotFound
	}
	ix, _, err := s.loadIndex(ctx, s.userHash(u.Name))
	if err != nil {
		return Image{}, err
	}
	i := ix.byID(id)
	if i < 0 {
		return Image{}, ErrImageNotFound
	}
	return ix.Images[i], nil
}

// Open returns the image with that id and a reader of its bytes as they
// were uploaded. The caller closes the reader. A damaged blob makes the
// reader fail (gzip's checksum), never yield wrong bytes silently.
func (s *Service) Open(ctx context.Context, u User, id string) (Image, io.ReadCloser, error) {
	img, rc, _, err := s.OpenStored(ctx, u, id)
	if err != nil {
		return Image{}, nil, err
	}
	zr, err := gzip.NewReader(rc)
	if err != nil {
		rc.Close()
		return Image{}, nil, fmt.Errorf("image %s: %w: %w", id, ErrDamaged, err)
	}
	return img, &gunzipReadCloser{Reader: zr, c: rc}, nil
}

// OpenStored returns the image with that id and a reader of its bytes as
// stored, a gzip stream of storedSize bytes, for clients that take gzip as
// it is. The caller closes the reader.
func (s *Service) OpenStored(ctx context.Context, u User, id string) (img Image, rc io.ReadCloser, storedSize int64, err error) {
	// Stored bytes are safe to keep in memory, since a blob key is never
	// written twice. A store that is not this process's alone is remote
	// (a bucket): each of its blobs read is worth keeping. A local file
	// is sent by sendfile, nearly as cheaply as from memory, so it is
	// kept only once it is asked for again: images read once (a spread
	// over many) do not churn the cache.
	if s.cfg.SoleWriter {
		return s.openStored(ctx, u, id, cacheOnSecondRead)
	}
	return s.openStored(ctx, u, id, cacheEachRead)
}

// storedCaching says whether openStored keeps the stored bytes it reads in
// the hot cache.
type storedCaching int

const (
	cacheNever        storedCaching = iota
	cacheEachRead                   // each blob read
	cacheOnSecondRead               // a blob read again soon after (see hotCache.seenBefore)
)

func (s *Service) openStored(ctx context.Context, u User, id string, caching storedCaching) (img Image, rc io.ReadCloser, storedSize int64, err error) {
	uh := s.userHash(u.Name)
	c := s.hot
	if caching == cacheNever {
		c = nil
	}
	tried := ""
	for attempt := 0; ; attempt++ {
		img, err := s.Image(ctx, u, id)
		if err != nil {
			return Image{}, nil, 0, err
		}
		key := blobKey(uh, img.Blob)
		if c != nil {
			if data, ok := c.get(storedCacheKey(key)); ok {
				c.hits.Add(1)
				return img, memBlob{bytes.NewReader(data)}, int64(len(data)), nil
			}
		}
		rc, attrs, err := s.store.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) && img.Blob != tried && attempt < 100 {
			// Replaced since the index was read, its old blob removed:
			// look again, as long as the index names a new blob.
			tried = img.Blob
			continue
		}
		if errors.Is(err, storage.ErrNotFound) {
			return Image{}, nil, 0, fmt.Errorf("image %s: its blob is missing: %w", id, err)
		}
		if err != nil {
			return Image{}, nil, 0, err
		}
		if img.StoredSize > 0 && attrs.Size != img.StoredSize {
			// Cut short or grown: never sent as if it were whole (a
			// client taking gzip as it is would not notice a shorter
			// stream that is itself valid gzip).
			rc.Close()
			return Image{}, nil, 0, fmt.Errorf("image %s: %w: %d stored bytes, %d recorded", id, ErrDamaged, attrs.Size, img.StoredSize)
		}
		if c != nil && attrs.Size <= min(c.maxItem, maxStoredCacheItem) &&
			(caching == cacheEachRead || c.seenBefore(storedCacheKey(key))) {
			data := make([]byte, attrs.Size)
			_, err := io.ReadFull(rc, data)
			rc.Close()
			if err != nil {
				return Image{}, nil, 0, fmt.Errorf("image %s: reading its blob: %w", id, err)
			}
			c.misses.Add(1)
			c.put(storedCacheKey(key), data)
			return img, memBlob{bytes.NewReader(data)}, attrs.Size, nil
		}
		return img, rc, attrs.Size, nil
	}
}

// Upload stores r's bytes as a new image of the user, named name (see
// CleanName), and returns it. Errors, in the order the original checked:
// ErrNotImage or a *TooManyPixelsError if the bytes are not an acceptable
// image, ErrNameTaken if the user has an image of that name; or r's error.
func (s *Service) Upload(ctx context.Context, u User, name string, r io.Reader) (Image, error) {
	name, ok := CleanName(name)
	if !ok {
		return Image{}, fmt.Errorf("%w: no file name", ErrNotImage)
	}
	uh := userHashOf(u.Name)
	ix, _, err := s.loadIndex(ctx, uh)
	if err != nil {
		return Image{}, err
	}
	if ix.byName(name) >= 0 {
		return Image{}, s.nameTaken(r)
	}
	if err := s.checkRoom(); err != nil {
		return Image{}, err
	}
	blob, err := s.writeBlob(ctx, uh, r, true)
	if err != nil {
		return Image{}, err
	}
	defer s.writing.Delete(blobKey(uh, blob.name))
	if blob.pending != nil {
		// The list may name the blob once it is published (see
		// pendingBlob). Joining the list's next batch only then keeps a
		// batch from waiting for the sync of the latest upload to join it.
		if err := blob.pending.ready(); err != nil {
			return Image{}, err
		}
	}
	img := Image{
		Name: name, Type: blob.info.Format.Name,
		Size: blob.size, StoredSize: blob.storedSize, SHA256: blob.sha256,
		Width: blob.info.Width, Height: blob.info.Height, Blob: blob.name,
	}
	err = s.updateIndex(ctx, uh, func(ix *index) error {
		if ix.byName(name) >= 0 {
			return ErrNameTaken
		}
		// Creation times increase along the list, whatever order racing
		// uploads (or the clocks of several servers) arrive in: pages
		// resume by them.
		now := s.now().UTC()
		if n := len(ix.Images); n > 0 && !now.After(ix.Images[n-1].Created) {
			now = ix.Images[n-1].Created.Add(time.Microsecond)
		}
		img.Created, img.Updated = now, now
		img.ID = NewID()
		for ix.byID(img.ID) >= 0 {
			img.ID = NewID()
		}
		ix.add(img)
		return nil
	})
	if blob.pending != nil {
		perr := blob.pending.wait()
		if err == nil && perr != nil {
			// Listed, but the blob's name may not be durable: like a
			// failed fsync after a rename, the outcome is unknown, and
			// the error stands. A crash drops it from the list.
			s.images.Add(1)
			return Image{}, perr
		}
	}
	if err != nil {
		listed, ok := s.discardBlob(ctx, uh, blob.name)
		if ok && errors.Is(err, ErrNameTaken) {
			// The name is taken by this very image: a list write was
			// answered with a failed condition after it had happened (an
			// object store's client that sent it again after losing the
			// answer). The store decided, so the write is durable. Other
			// errors keep the uncertainty of a write whose durability is
			// unknown (a failed fsync): the error stands, the bytes stay.
			s.images.Add(1)
			return listed, nil
		}
		return Image{}, err
	}
	s.images.Add(1)
	return img, nil
}

// Replace stores r's bytes as the new content of the user's image id, under
// the new name, keeping its id and its place in the list. Errors, in the
// order the original checked: ErrImageNotFound, ErrNotImage or a
// *TooManyPixelsError, ErrNameTaken if another image of the user has that
// name. A refused replacement changes nothing.
func (s *Service) Replace(ctx context.Context, u User, id, name string, r io.Reader) (Image, error) {
	return s.ReplaceIf(ctx, u, id, name, "", r)
}

// ReplaceIf is Replace, made conditional: if ifSHA256 is not empty, the
// replacement happens only while the image's content still has that hash,
// and ErrChanged is returned otherwise. An empty name keeps the current one.
func (s *Service) ReplaceIf(ctx context.Context, u User, id, name, ifSHA256 string, r io.Reader) (Image, error) {
	if !ValidID(id) {
		return Image{}, ErrImageNotFound
	}
	uh := userHashOf(u.Name)
	ix, _, err := s.loadIndex(ctx, uh)
	if err != nil {
		return Image{}, err
	}
	i := ix.byID(id)
	if i < 0 {
		return Image{}, ErrImageNotFound
	}
	if ifSHA256 != "" && ix.Images[i].SHA256 != ifSHA256 {
		return Image{}, ErrChanged
	}
	if name == "" {
		name = ix.Images[i].Name
	}
	name, ok := CleanName(name)
	if !ok {
		return Image{}, fmt.Errorf("%w: no file name", ErrNotImage)
	}
	if i := ix.byName(name); i >= 0 && ix.Images[i].ID != id {
		return Image{}, s.nameTaken(r)
	}
	if err := s.checkRoom(); err != nil {
		return Image{}, err
	}
	// Written whole before the list names it: were the list's record
	// durable before the blob, a crash would lose the image's previous
	// content, acknowledged long ago.
	blob, err := s.writeBlob(ctx, uh, r, false)
	if err == nil {
		defer s.writing.Delete(blobKey(uh, blob.name))
	}
	if err != nil {
		return Image{}, err
	}
	var img Image
	var oldBlob string
	err = s.updateIndex(ctx, uh, func(ix *index) error {
		i := ix.byID(id)
		if i < 0 {
			return ErrImageNotFound
		}
		if ix.Images[i].Blob == blob.name {
			return errAlreadyApplied // see Upload; handled below
		}
		if ifSHA256 != "" && ix.Images[i].SHA256 != ifSHA256 {
			return ErrChanged
		}
		if j := ix.byName(name); j >= 0 && j != i {
			return ErrNameTaken
		}
		img = ix.Images[i]
		oldBlob = img.Blob
		img.Name, img.Type = name, blob.info.Format.Name
		img.Size, img.StoredSize, img.SHA256 = blob.size, blob.storedSize, blob.sha256
		img.Width, img.Height = blob.info.Width, blob.info.Height
		img.Updated, img.Blob = s.now().UTC(), blob.name
		ix.set(i, img)
		return nil
	})
	if err != nil {
		listed, ok := s.discardBlob(ctx, uh, blob.name)
		if ok {
			s.deleteBlob(ctx, uh, oldBlob) // committed after all: the old one is unreferenced
		}
		if ok && errors.Is(err, errAlreadyApplied) {
			return listed, nil // see Upload
		}
		return Image{}, err
	}
	s.deleteBlob(ctx, uh, oldBlob)
	return img, nil
}

// Delete removes the user's image id, or returns ErrImageNotFound.
func (s *Service) Delete(ctx context.Context, u User, id string) error {
	return s.DeleteIf(ctx, u, id, "")
}

// DeleteIf is Delete, made conditional: if ifSHA256 is not empty, the image
// goes only while its content still has that hash; ErrChanged otherwise.
func (s *Service) DeleteIf(ctx context.Context, u User, id, ifSHA256 string) error {
	if !ValidID(id) {
		return ErrImageNotFound
	}
	uh := userHashOf(u.Name)
	var blob string
	err := s.updateIndex(ctx, uh, func(ix *index) error {
		i := ix.byID(id)
		if i < 0 && blob != "" {
			// Applied again after a write reported as failed: the first
			// one happened after all (an object store's client that sent
			// it again was refused by it), or another request deleted the
			// image meanwhile. Either way it is gone, as asked.
			return errAlreadyApplied
		}
		if i < 0 {
			return ErrImageNotFound
		}
		if ifSHA256 != "" && ix.Images[i].SHA256 != ifSHA256 {
			return ErrChanged
		}
		blob = ix.Images[i].Blob
		ix.remove(i)
		return nil
	})
	if errors.Is(err, errAlreadyApplied) {
		s.deleteBlob(ctx, uh, blob)
		return nil
	}
	if err != nil {
		return err
	}
	s.images.Add(-1)
	s.deleteBlob(ctx, uh, blob)
	return nil
}

// errAlreadyApplied is what a change of an image list returns when it
// finds its own effect there already: a write reported as failed had
// happened (see Upload).
var errAlreadyApplied = errors.New("the change is in the list already")

// SweepOrphans removes the blobs that no index names and that were written
// before the given time: the bytes of uploads that a crash interrupted
// between their two steps, and old bytes whose removal was interrupted.
// Uploads in progress write their blob before their index names it; the
// time spares them, so it must be earlier than any upload in progress
// began (for a store used by one process, the moment that process started),
// and this Service's own uploads in progress are spared whatever the
// clock says. A user whose list cannot be read keeps all of its blobs,
// and the others are swept all the same; the errors met are returned.
// It returns how many blobs it removed.
func (s *Service) SweepOrphans(ctx context.Context, before time.Time) (int, error) {
	removed := 0
	var curUser string
	var named map[string]bool // nil: the user's list could not be read
	var errs []error          // the first few, of users and blobs skipped
	skip := func(err error) {
		if len(errs) < 10 {
			errs = append(errs, err)
		}
	}
	for key, err := range s.store.List(ctx, "blobs/") {
		if err != nil {
			return removed, errors.Join(append(errs, err)...)
		}
		uh, file, ok := strings.Cut(strings.TrimPrefix(key, "blobs/"), "/")
		name, isBlob := strings.CutSuffix(file, ".gz")
		if !ok || !isBlob {
			continue // not a key this package wrote
		}
		if uh != curUser {
			curUser, named = uh, nil
			ix, _, err := s.loadIndex(ctx, uh)
			if err != nil {
				// Nothing of this user's is removed, and the other
				// users are swept all the same.
				skip(fmt.Errorf("the blobs of user %s are kept: %w", uh, err))
			} else {
				named = map[string]bool{}
				for _, img := range ix.Images {
					named[img.Blob] = true
				}
			}
		}
		if named == nil || named[name] {
			continue
		}
		attrs, err := s.store.Stat(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			skip(err)
			continue
		}
		if !attrs.ModTime.Before(before) {
			continue
		}
		// Read the index again: it may have changed since it was loaded.
		if ix, _, err := s.loadIndex(ctx, uh); err != nil || slices.ContainsFunc(ix.Images, func(img Image) bool { return img.Blob == name }) {
			continue
		}
		if _, ok := s.writing.Load(key); ok {
			// An upload of this process in progress: its time spares it
			// too, unless the clock was set back since the start.
			continue
		}
		if err := s.store.Delete(ctx, key); err != nil && !errors.Is(err, storage.ErrNotFound) {
			skip(err)
			continue
		}
		s.deleteVariants(ctx, uh, name)
		removed++
	}
	if len(errs) > 0 {
		return removed, errors.Join(errs...)
	}
	// Variants whose blob is gone (a crash between the two removals).
	if err := s.sweepVariants(ctx, before); err != nil {
		return removed, err
	}
	return removed, nil
}

// discardBlob removes a new blob after its index update failed. A failure
// reported by the store may hide a write that happened all the same (a
// timeout after the commit, a failed fsync after the rename), so the blob
// goes only if a fresh read of the index does not name it; if the index
// cannot be read, it stays, for the orphan sweep to judge later. It reports
// whether the index names the blob.
func (s *Service) discardBlob(ctx context.Context, uh, blob string) (listed Image, ok bool) {
	ctx = context.WithoutCancel(ctx)
	ix, _, err := s.loadIndex(ctx, uh)
	if err != nil {
		s.log.Warn("kept a blob whose index update failed: the index cannot be read", "blob", blob, "err", err)
		return Image{}, false
	}
	if i := slices.IndexFunc(ix.Images, func(img Image) bool { return img.Blob == blob }); i >= 0 {
		return ix.Images[i], true
	}
	s.deleteBlob(ctx, uh, blob)
	return Image{}, false
}

// ---- JSON records

func (s *Service) getJSON(ctx context.Context, key string, v any) (etag string, err error) {
	rc, attrs, err := s.store.Get(ctx, key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	if err := json.NewDecoder(rc).Decode(v); err != nil {
		return "", fmt.Errorf("decode %s: %w", key, err)
	}
	return attrs.ETag, nil
}

func (s *Service) putJSON(ctx context.Context, key string, v any, cond storage.Cond) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = s.store.Put(ctx, key, bytes.NewReader(b), cond)
	return storeErr(err)
}

// MaxPageSize bounds a page of ListPage.
const MaxPageSize = 1000

// ListPage returns up to limit of the user's images in upload order,
// starting after the place after marks (the zero Cursor for the first
// page), and the cursor of the next page (zero after the last one). Pages
// stay consistent while images are added (they come last), replaced (they
// keep their place) or deleted (a cursor whose image is gone resumes after
// the images created no later than it).
func (s *Service) ListPage(ctx context.Context, u User, after Cursor, limit int) ([]Image, Cursor, error) {
	if limit <= 0 || limit > MaxPageSize {
		limit = MaxPageSize
	}
	imgs, err := s.List(ctx, u)
	if err != nil {
		return nil, Cursor{}, err
	}
	start := 0
	if !after.IsZero() {
		start = len(imgs)
		if i := slices.IndexFunc(imgs, func(img Image) bool { return img.ID == after.ID && img.Created.Equal(after.Created) }); i >= 0 {
			start = i + 1
		} else if i := slices.IndexFunc(imgs, func(img Image) bool { return img.Created.After(after.Created) }); i >= 0 {
			start = i
		}
	}
	end := min(start+limit, len(imgs))
	page := imgs[start:end:end] // capped: the list after it is shared
	var next Cursor
	if end < len(imgs) {
		last := page[len(page)-1]
		next = Cursor{Created: last.Created, ID: last.ID}
	}
	return page, next, nil
}

// Cursor marks a place in a user's list of images.
type Cursor struct {
	Created time.Time
	ID      string
}

// IsZero reports whether the cursor is the start of the list.
func (c Cursor) IsZero() bool { return c.ID == "" }

// CheckWritable writes and removes a small record, to tell whether the
// store takes writes.
func (s *Service) CheckWritable(ctx context.Context) error {
	key := "health/" + newBlobName() + ".json"
	if err := s.putJSON(ctx, key, map[string]string{"check": "writable"}, storage.Cond{IfAbsent: true}); err != nil {
		return err
	}
	return s.store.Delete(context.WithoutCancel(ctx), key)
}

// checkRoom refuses a write when the store's free space is below the
// watermark, before anything is written.
func (s *Service) checkRoom() error {
	if s.cfg.MinFreeBytes <= 0 {
		return nil
	}
	free, ok, err := s.FreeBytes()
	if err != nil || !ok || free >= s.cfg.MinFreeBytes {
		return nil // a store that cannot tell still reports a real ENOSPC
	}
	return fmt.Errorf("%w: %d bytes free, below the %d kept in reserve", ErrInsufficientStorage, free, s.cfg.MinFreeBytes)
}

// FreeBytes returns the free space of the store, if the store can tell
// (ok false otherwise).
func (s *Service) FreeBytes() (free int64, ok bool, err error) {
	if fs, isFS := s.store.(interface{ FreeBytes() (int64, error) }); isFS {
		free, err := fs.FreeBytes()
		if errors.Is(err, errors.ErrUnsupported) {
			return 0, false, nil
		}
		return free, true, err
	}
	return 0, false, nil
}
