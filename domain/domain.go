// Package domain holds imagestore's rules: users and their tokens, images
// and their names and ids, and what may happen to them. It knows nothing of
// HTTP or of disks; it keeps its state in a storage.Store, and relies only on
// that interface's conditional writes to stay correct when requests race,
// within one process or across several sharing one store.
//
// Keys in the store are derived from hashes and random numbers, never from
// what users send, so no username, token, id or file name is ever part of a
// path or an object name. The layout, where H(x) is the hex SHA-256 of x
// behind a prefix naming its kind ("user\x00alice"):
//
//	users/<H(username)>.json      the user: name, token, creation time
//	tokens/<H(token)>.json        which user a token belongs to
//	index/<H(username)>.json      the user's images, in upload order
//	blobs/<H(username)>/<rand>.gz an image's bytes, gzip-compressed
//	variants/<H(username)>/<rand>.<w>x<h>-<fit>.<format>
//	                              a resized copy of them (see variants.go)
//
// A user record is created with create-if-absent, so one username gets one
// token; a token record likewise, so one token belongs to one user. The index
// is replaced with compare-and-swap, so concurrent uploads, replacements and
// deletions of one user's images never lose each other's changes, and names
// and ids stay unique. An image's blob is written, durably, before the index
// names it, and removed only after the index stopped naming it: a crash
// leaves at worst an unreferenced blob, never a listed image without bytes.
package domain

import (
	"errors"
	"time"

	"github.com/imagestore/imagestore/imagetype"
)

// The errors of the domain. Adapters map them to their own terms (HTTP
// status codes, exit codes) in one place each.
var (
	ErrInvalidUsername = errors.New("invalid username")
	ErrUserExists      = errors.New("user exists")
	ErrUserNotFound    = errors.New("user not found")
	ErrUnauthorized    = errors.New("token not recognized")
	ErrImageNotFound   = errors.New("image not found")
	ErrNameTaken       = errors.New("a file of that name exists")
	// ErrNotImage wraps imagetype.ErrNotImage with the reason.
	ErrNotImage = imagetype.ErrNotImage
	// ErrInsufficientStorage is the store's storage.ErrInsufficientStorage.
	ErrInsufficientStorage = errors.New("insufficient storage")
	// ErrChanged means a conditional change found the image changed.
	ErrChanged = errors.New("the image changed")
	// ErrWeakPassword is returned for a password outside the accepted
	// lengths (see MinPasswordLen).
	ErrWeakPassword = errors.New("password too short or too long")
	// ErrPasswordRequired and ErrWrongPassword refuse a token retrieval.
	ErrPasswordRequired = errors.New("a password is required")
	ErrWrongPassword    = errors.New("wrong username or password")
	// ErrRetrievalDisabled: the operator turned token retrieval off.
	ErrRetrievalDisabled = errors.New("token retrieval is disabled")
	// ErrIdempotencyInProgress: a request with the same idempotency key is
	// still being processed.
	ErrIdempotencyInProgress = errors.New("a request with this idempotency key is in progress")
	// ErrIdempotencyMismatch: an idempotency key reused for another upload
	// (another name or other bytes).
	ErrIdempotencyMismatch = errors.New("the idempotency key was used for another upload")
	// ErrIdempotencyKey: an idempotency key that is empty, too long or not
	// printable ASCII.
	ErrIdempotencyKey = errors.New("invalid idempotency key")
	// ErrDamaged reports stored bytes that fail their checksum.
	ErrDamaged = errors.New("damaged blob")
)

// TooManyPixelsError is returned for an image whose header claims more
// pixels than allowed.
type TooManyPixelsError = imagetype.TooManyPixelsError

// User is a holder of a token.
type User struct {
	Name    string    `json:"username"`
	Token   string    `json:"token"`
	Created time.Time `json:"created"`
	// PasswordHash is the bcrypt hash of the user's password, if any.
	PasswordHash string `json:"password_hash,omitempty"`
}

// HasPassword reports whether the user set a password.
func (u User) HasPassword() bool { return u.PasswordHash != "" }

// Image describes one stored image.
type Image struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Type is the format's short name ("jpeg", "png", ...): see imagetype.
	Type string `json:"type"`
	// Size is the length of the image as uploaded; StoredSize that of its
	// compressed form in the store.
	Size       int64     `json:"size"`
	StoredSize int64     `json:"stored_size"`
	SHA256     string    `json:"sha256"`
	Width      int64     `json:"width"`
	Height     int64     `json:"height"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	// Blob names the stored bytes; it changes when the image is replaced.
	Blob string `json:"blob"`
}

// MIME is the media type to serve the image with.
func (img Image) MIME() string {
	if f, ok := imagetype.ByName(img.Type); ok {
		return f.MIME
	}
	return "application/octet-stream"
}
