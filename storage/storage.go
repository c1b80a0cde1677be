// Package storage defines the one interface every imagestore backend
// implements: a flat key/value store of byte streams with conditional writes.
//
// The interface is deliberately small, so that a directory on a local disk
// (package filestore), process memory (package memstore) and an S3-compatible
// object store can all implement it, and everything above it (the domain
// rules in package domain) works unchanged on each. Conditional writes follow
// the semantics of S3's If-None-Match: * (create if absent) and If-Match
// (replace if unchanged); they are what the domain uses instead of locks to
// keep its invariants when several writers race.
//
// A store whose values a crash undoes one by one (a folder on a disk) may
// also implement Stager, which takes a new value's write in steps, so that
// the domain can overlap the durable writes of values that depend on one
// another, and appends to a value in place, for logs.
//
// Keys are chosen by the program, never by users: see ValidKey. The shared
// conformance suite in package storetest states the contract as tests.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"
)

var (
	// ErrNotFound is returned (possibly wrapped) when a key does not exist.
	ErrNotFound = errors.New("storage: key not found")
	// ErrPrecondition is returned when a conditional write or delete did not
	// happen because its condition was false: the key existed for IfAbsent,
	// or its current ETag differed (or the key was missing) for IfMatch.
	ErrPrecondition = errors.New("storage: precondition failed")
	// ErrInvalidKey is returned for a key that ValidKey rejects.
	ErrInvalidKey = errors.New("storage: invalid key")
	// ErrInsufficientStorage is returned when the backend has no room left
	// for a write (ENOSPC on a disk, for example).
	ErrInsufficientStorage = errors.New("storage: insufficient storage")
)

// Attrs describes one stored value.
type Attrs struct {
	// Size is the length of the value in bytes.
	Size int64
	// ETag identifies this version of the value: a successful Put of other
	// bytes gives the key a different ETag. A Put of the very same bytes may
	// keep it (S3's ETags are hashes of the content), so a compare-and-swap
	// can only ever be fooled by a value identical to the one it expects,
	// which loses nothing. It is opaque: compare it, never parse it.
	ETag string
	// ModTime is when this version was written, as far as the backend knows.
	ModTime time.Time
}

// Cond makes a Put conditional. The zero Cond is unconditional.
// At most one of its fields may be set.
type Cond struct {
	// IfAbsent makes a Put succeed only if the key does not exist
	// (S3's If-None-Match: *). Of many concurrent such Puts of one key,
	// exactly one succeeds; the others return ErrPrecondition.
	IfAbsent bool
	// IfMatch makes the operation succeed only if the key exists and its
	// current ETag equals IfMatch (S3's If-Match). Of many concurrent such
	// operations with the same ETag, at most one succeeds.
	IfMatch string
}

// Store is a flat namespace of keys, each holding a byte stream.
//
// Every method is safe for concurrent use. Values are written atomically and
// durably: a reader sees either the whole old value or the whole new one,
// never a mix or a prefix, and when Put returns nil the value survives a crash
// of the process or the machine.
type Store interface {
	// Get opens the value of key for reading, with its attributes. It returns
	// ErrNotFound if the key does not exist. The caller must close the reader.
	// The reader yields exactly the version that the returned Attrs describe,
	// even if the key is replaced or deleted while it is being read.
	Get(ctx context.Context, key string) (io.ReadCloser, Attrs, error)

	// Stat returns the attributes of key's value, or ErrNotFound.
	Stat(ctx context.Context, key string) (Attrs, error)

	// Put stores everything read from r under key, if cond holds, and returns
	// the new attributes. If r fails, ctx is cancelled or cond is false, the
	// previous value (or absence) is left exactly as it was, and the error is
	// returned: ErrPrecondition for a false condition, otherwise r's or the
	// backend's error. Put never closes r, never reads it from two
	// goroutines at once, and never after it returns: r may be an upload's
	// reader that runs the image check as the bytes pass.
	Put(ctx context.Context, key string, r io.Reader, cond Cond) (Attrs, error)

	// Delete removes key. It returns ErrNotFound if the key does not
	// exist (two Deletes racing may both return nil). Deletes are not
	// conditional: S3-compatible servers do not all honour If-Match on a
	// DELETE (some ignore it and delete anyway), so nothing may rely on it.
	Delete(ctx context.Context, key string) error

	// List yields, in ascending byte order, every key that begins with
	// prefix. A key written or deleted during the listing may or may not be
	// yielded. On an error it yields ("", err) once and stops.
	List(ctx context.Context, prefix string) iter.Seq2[string, error]
}

// MaxKeyLen is the longest key ValidKey accepts.
const MaxKeyLen = 512

// ValidKey reports whether key is acceptable to every store: one or more
// slash-separated segments, each made of [a-z0-9._-], none of them empty, "."
// or "..", and none starting with a dot (names starting with a dot are kept
// for the backends' own files, such as temporary files). Such keys map to
// file names and object names without any escaping.
func ValidKey(key string) bool {
	if key == "" || len(key) > MaxKeyLen {
		return false
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg[0] == '.' {
			return false
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}

// ValidPrefix reports whether prefix can be passed to List: empty, or a valid
// key optionally followed by a slash.
func ValidPrefix(prefix string) bool {
	if prefix == "" {
		return true
	}
	return ValidKey(strings.TrimSuffix(prefix, "/"))
}

// CheckCond returns an error if cond is malformed.
func CheckCond(cond Cond) error {
	if cond.IfAbsent && cond.IfMatch != "" {
		return errors.New("storage: IfAbsent and IfMatch are exclusive")
	}
	return nil
}

// Precondition decides a conditional Put for a store: given whether
// the key exists and its current ETag, it returns nil if cond holds, and an
// error wrapping ErrPrecondition if it does not.
func Precondition(key string, cond Cond, exists bool, etag string) error {
	switch {
	case cond.IfAbsent && exists:
		return fmt.Errorf("%s exists: %w", key, ErrPrecondition)
	case cond.IfMatch != "" && !exists:
		return fmt.Errorf("%s is missing: %w", key, ErrPrecondition)
	case cond.IfMatch != "" && etag != cond.IfMatch:
		return fmt.Errorf("%s changed: %w", key, ErrPrecondition)
	}
	return nil
}

// A Stager is a Store that can also create a value in steps, so that a
// caller can overlap the durable writes of values that depend on one
// another. Put makes a new value's bytes durable, then names it, then
// makes the name durable, one wait after another; with a Stager, the
// bytes of two values can be synced at once, the second named only once
// the first is, and the two names made durable at once.
//
// Only a store whose values a crash can undo one by one implements it (a
// folder on a disk); callers fall back to Put on others.
type Stager interface {
	Store

	// Stage writes everything read from r as a new value for key, visible
	// to no reader and not yet durable. If r fails or ctx is cancelled,
	// nothing is left behind and the error is returned. r is read as Put
	// reads it. The caller must close the Staged value.
	Stage(ctx context.Context, key string, r io.Reader) (Staged, error)

	// StageNew is Stage for a key that must be absent (ErrPrecondition
	// if it is there), whose value may take its name at once: a reader
	// may find it, whole or not, before Publish, and a crash may leave a
	// part of it there. It is for keys that no one looks up until a
	// record written after Publish names them (a file store saves a
	// rename). Publish then makes the bytes durable, and Flush the name,
	// unless the key was written or removed since (ErrPrecondition);
	// Close without Publish removes the value, if the key still holds it.
	StageNew(ctx context.Context, key string, r io.Reader) (Staged, error)

	// Unlink removes key as Delete does (ErrNotFound if it does not
	// exist), but a crash may undo the removal until a Flush of its
	// folder returns nil: for values whose removal need not be durable
	// one by one, such as records a newer one makes obsolete.
	Unlink(ctx context.Context, key string) error

	// Flush makes durable the publication or removal of every value whose
	// key begins with folder (a prefix ending in "/", with no further "/"
	// in the keys) and whose Publish or Unlink returned before Flush was
	// called.
	Flush(ctx context.Context, folder string) error

	// Append adds p at the end of key's value, creating the key if it is
	// absent, and returns once p (and a new key's name) is durable: one
	// write of a log's record, without a new value each time.
	//
	// Unlike the other writes, an append is not atomic: a reader may meet
	// a part of an append in progress, and a crash may leave a part of one
	// that did not return nil, so what a log stores must let its reader
	// tell where its last whole record ends. The appends to one key must
	// take turns, and none may follow one that failed after it began to
	// write: the value may end in a part of it (a file store truncates it
	// back, but a crash can undo that).
	Append(ctx context.Context, key string, p []byte) error
}

// Staged is a value written by Stage and not yet, or just, published.
type Staged interface {
	// Size is the value's length in bytes.
	Size() int64

	// Sync makes the value's bytes durable, without publishing them.
	Sync() error

	// Publish gives the value its key if the key is absent (ErrPrecondition
	// otherwise), syncing its bytes first if Sync was not called. From then
	// on it is visible as if Put had stored it, but a crash may undo its
	// publication until a Flush of its folder returns nil. Its bytes are
	// durable whenever its key is.
	Publish(ctx context.Context) (Attrs, error)

	// Close releases the value; if it was not published, it is dropped.
	Close() error
}
