package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors, for errors.Is. An *Error matches the one its status
// code stands for; ErrUnavailable also matches a request that never got an
// answer (the server could not be reached, or the connection broke).
var (
	// ErrUnauthorized: no token, or one the server does not know (401).
	ErrUnauthorized = errors.New("imagestore: unauthorized")
	// ErrNotFound: no image of this user has this id (404), or the id
	// cannot name an image at all.
	ErrNotFound = errors.New("imagestore: not found")
	// ErrConflict: the name or username is taken, or a request with the
	// same Idempotency-Key is in progress (409).
	ErrConflict = errors.New("imagestore: conflict")
	// ErrPreconditionFailed: the image no longer matches If-Match (412).
	ErrPreconditionFailed = errors.New("imagestore: precondition failed")
	// ErrTooLarge: the upload is over the size limit, or the image has
	// too many pixels (413).
	ErrTooLarge = errors.New("imagestore: too large")
	// ErrNotImage: the bytes are not an image of an accepted type (406 or
	// 415).
	ErrNotImage = errors.New("imagestore: not an image")
	// ErrRateLimited: over a rate limit; see Error.RetryAfter (429).
	ErrRateLimited = errors.New("imagestore: rate limited")
	// ErrUnavailable: the server could not be reached, the connection
	// broke, or the server answered with a 5xx status (an internal error,
	// 503 busy, 507 insufficient storage...).
	ErrUnavailable = errors.New("imagestore: server unavailable")
)

// Error is an error answer of the server: its HTTP status and the RFC 9457
// problem document it sent (whose fields are empty if it sent none).
type Error struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Type names the kind of problem, such as
	// "urn:imagestore:problem:image-not-found".
	Type string
	// Title is a short, human-readable summary of the kind of problem.
	Title string
	// Detail explains this occurrence, when the server said more.
	Detail string
	// Limit names the limit that was hit, such as "max_upload_bytes",
	// when one was; Allowed and Actual are what it allows and what the
	// request had, as the server wrote them (numbers in decimal).
	Limit, Allowed, Actual string
	// RetryAfter is how long the server asked the client to wait before
	// trying again (429, 503), or 0.
	RetryAfter time.Duration
}

// Error returns the problem's title and detail, and the status code.
func (e *Error) Error() string {
	msg := e.Title
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return fmt.Sprintf("%s (HTTP %d)", msg, e.StatusCode)
}

// Is reports whether the sentinel target stands for e's status code, so
// that errors.Is(err, client.ErrNotFound) works on any error wrapping e.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	case ErrPreconditionFailed:
		return e.StatusCode == http.StatusPreconditionFailed
	case ErrTooLarge:
		return e.StatusCode == http.StatusRequestEntityTooLarge
	case ErrNotImage:
		return e.StatusCode == http.StatusNotAcceptable || e.StatusCode == http.StatusUnsupportedMediaType
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	case ErrUnavailable:
		return e.StatusCode >= 500
	}
	return false
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// errorFrom builds the *Error of a non-2xx answer, reading (and not
// closing) its body.
func errorFrom(resp *http.Response) *Error {
	e := &Error{StatusCode: resp.StatusCode}
	if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s >= 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "application/problem+json" && mt != "application/json" {
		return e
	}
	var p struct {
		Type, Title, Detail string
		Limit               string
		Allowed, Actual     json.RawMessage
	}
	if json.Unmarshal(body, &p) != nil {
		return e
	}
	e.Type, e.Title, e.Detail, e.Limit = p.Type, p.Title, p.Detail, p.Limit
	e.Allowed, e.Actual = rawString(p.Allowed), rawString(p.Actual)
	return e
}

// rawString is a JSON string's value, or another JSON value's text.
func rawString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(bytes.TrimSpace(raw))
}
