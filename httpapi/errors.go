package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/imagestore/imagestore/domain"
)

// errNoFile means the request had no file part: the original answered 204.
var errNoFile = errors.New("no file in the request")

// errMalformed wraps an unreadable request body (a broken multipart form).
var errMalformed = errors.New("malformed request body")

// errBadJSON wraps a JSON request body that does not parse.
var errBadJSON = errors.New("malformed JSON body")

// errRateLimited refuses a client over its rate limit.
var errRateLimited = errors.New("rate limited")

// uploadTooLargeError refuses a body whose Content-Length is over the
// limit, before reading it.
type uploadTooLargeError struct{ limit, actual int64 }

func (e *uploadTooLargeError) Error() string {
	return fmt.Sprintf("upload of %d bytes over the limit of %d", e.actual, e.limit)
}

// errNeedToken: an /api/v1 request without a bearer token.
var errNeedToken = errors.New("no bearer token")

// errBadHost: a request whose Host header cannot be part of a URL (the
// ShareX configuration is built from it).
var errBadHost = errors.New("bad Host header")

// problem is what an error means to a client: a status, and how each API
// words it. It is decided once, in classify, for both APIs.
type problem struct {
	status int
	// slug names the problem type of the /api/v1 answer (RFC 9457).
	slug  string
	title string
	// detail explains this occurrence; extra holds the limit, the allowed
	// and the actual value where there is one.
	detail string
	extra  map[string]any
	// seed is the original's body for the seed API: a JSON string, or with
	// seedDetail a {"detail": ...} object; "" with a 204 for none.
	seed       string
	seedDetail bool
	internal   bool // an error of the server's: logged, never explained
}

// errorTable maps the domain's errors to status codes: the one place where
// that happens. A seed route may reword a message (see writeError), never
// change a status.
var errorTable = []struct {
	target error
	p      problem
}{
	{domain.ErrInvalidUsername, problem{status: 404, slug: "invalid-username", title: "Invalid username", detail: "A username is 1 to 150 characters of A-Z, a-z, 0-9 and _.", seed: "Not found.", seedDetail: true}},
	{domain.ErrUserExists, problem{status: 409, slug: "user-exists", title: "User exists", seed: "User exists"}},
	{domain.ErrUserNotFound, problem{status: 404, slug: "user-not-found", title: "User not found", seed: "User does not exists"}},
	{domain.ErrUnauthorized, problem{status: 401, slug: "unauthorized", title: "Token not recognized", seed: "Token not recognized"}},
	{domain.ErrImageNotFound, problem{status: 404, slug: "image-not-found", title: "Image not found", seed: "Image[s] not found on the server"}},
	{domain.ErrNameTaken, problem{status: 409, slug: "name-taken", title: "An image of that name exists", seed: "File exists"}},
	{domain.ErrNotImage, problem{status: 406, slug: "not-an-image", title: "Not an image of an accepted type", seed: "Unrecognized file type"}},
	{domain.ErrInsufficientStorage, problem{status: 507, slug: "insufficient-storage", title: "Insufficient storage", seed: "Insufficient storage: the server cannot store more data now"}},
	{domain.ErrChanged, problem{status: 412, slug: "changed", title: "The image changed", detail: "The image no longer matches If-Match.", seed: "Precondition failed", seedDetail: true}},
	{domain.ErrWeakPassword, problem{status: 422, slug: "weak-password", title: "Unacceptable password", detail: fmt.Sprintf("A password is %d to %d bytes long.", domain.MinPasswordLen, domain.MaxPasswordLen), extra: map[string]any{"limit": "password_length", "allowed": fmt.Sprintf("%d-%d", domain.MinPasswordLen, domain.MaxPasswordLen)}, seed: "Password must be 8 to 72 bytes long"}},
	{domain.ErrPasswordRequired, problem{status: 401, slug: "password-required", title: "Password required", seed: "Password required"}},
	{domain.ErrWrongPassword, problem{status: 401, slug: "wrong-password", title: "Wrong username or password", seed: "Wrong username or password"}},
	{domain.ErrRetrievalDisabled, problem{status: 403, slug: "retrieval-disabled", title: "Token retrieval is disabled", seed: "Token retrieval is disabled"}},
	{domain.ErrIdempotencyInProgress, problem{status: 409, slug: "idempotency-in-progress", title: "A request with this Idempotency-Key is in progress", seed: "Request in progress"}},
	{domain.ErrIdempotencyMismatch, problem{status: 422, slug: "idempotency-key-reused", title: "Idempotency-Key reused for another upload", detail: "A retry must send the same name and bytes as the first request with its key.", seed: "Idempotency-Key reused for another upload"}},
	{domain.ErrIdempotencyKey, problem{status: 400, slug: "bad-idempotency-key", title: "Invalid Idempotency-Key", detail: fmt.Sprintf("An Idempotency-Key is 1 to %d printable ASCII characters.", domain.MaxIdempotencyKeyLen), seed: "Invalid Idempotency-Key"}},
	{errNoFile, problem{status: 204, slug: "no-file", title: "No file in the request"}},
	{errMalformed, problem{status: 400, slug: "malformed-body", title: "Malformed request body", seed: "Multipart form parse error", seedDetail: true}},
	{errBadJSON, problem{status: 400, slug: "malformed-body", title: "Malformed request body", seed: "JSON parse error", seedDetail: true}},
	{errRateLimited, problem{status: 429, slug: "rate-limited", title: "Too many requests", seed: "Too many requests", seedDetail: true}},
	{errBusy, problem{status: 503, slug: "busy", title: "Too many uploads in progress", detail: "No turn for this upload came within 30 seconds; try again later.", extra: map[string]any{"limit": "max_uploads"}, seed: "Too many uploads in progress, try again later", seedDetail: true}},
	{errNeedToken, problem{status: 401, slug: "unauthorized", title: "Authorization: Bearer <token> required", seed: "Token not recognized"}},
	{errBadHost, problem{status: 400, slug: "bad-host", title: "Bad Host header", detail: "The Host header must name this server: a host name or an IP address, and a port if any.", seed: "Bad Host header", seedDetail: true}},
	// A variant in a format there is no encoder for is a request the
	// server understands and cannot carry out: 422, not 400 (the parameter
	// is well formed and names a real format) nor 406 (which answers the
	// Accept header's negotiation, not a query parameter).
	{domain.ErrVariantFormat, problem{status: 422, slug: "variant-format-unavailable", title: "No encoder for that format", detail: "No WebP encoder is available on this server: ask for format=jpeg or format=png.", extra: map[string]any{"limit": "format", "allowed": "jpeg, png", "actual": "webp"}, seed: "No WebP encoder is available", seedDetail: true}},
	{domain.ErrVariantUnavailable, problem{status: 422, slug: "variant-unavailable", title: "No variant can be made of this image", seed: "No variant can be made of this image", seedDetail: true}},
}

// classify decides what err means to a client.
func (s *Server) classify(err error) problem {
	var tooBig *http.MaxBytesError
	var tooMany *domain.TooManyPixelsError
	var badQuery *errBadQuery
	var limited *rateLimitedError
	var tooLong *uploadTooLargeError
	var noVariant *domain.VariantUnavailableError
	switch {
	case errors.As(err, &noVariant):
		p := s.classify(domain.ErrVariantUnavailable)
		p.detail = "No variant can be made of this image: " + noVariant.Reason + "."
		return p
	case errors.As(err, &limited):
		return problem{status: 429, slug: "rate-limited", title: "Too many requests",
			detail: "Over the " + limited.limit + " of " + limited.allowed + " per client; try again after Retry-After.",
			extra:  map[string]any{"limit": limited.limit, "allowed": limited.allowed},
			seed:   "Too many requests", seedDetail: true}
	case errors.As(err, &tooLong):
		return problem{status: 413, slug: "upload-too-large", title: "Upload too large",
			detail: fmt.Sprintf("The limit is %d bytes; the request says %d.", tooLong.limit, tooLong.actual),
			extra:  map[string]any{"limit": "max_upload_bytes", "allowed": tooLong.limit, "actual": tooLong.actual},
			seed:   fmt.Sprintf("Upload too large: the limit is %d bytes", tooLong.limit)}
	case errors.As(err, &badQuery):
		return problem{status: 400, slug: "bad-query", title: "Bad query parameter", detail: badQuery.Error() + ".",
			extra: map[string]any{"limit": badQuery.param, "allowed": badQuery.allowed, "actual": badQuery.actual},
			seed:  badQuery.Error(), seedDetail: true}
	case errors.As(err, &tooBig):
		return problem{status: 413, slug: "upload-too-large", title: "Upload too large",
			detail: fmt.Sprintf("The limit is %d bytes.", tooBig.Limit),
			extra:  map[string]any{"limit": "max_upload_bytes", "allowed": tooBig.Limit},
			seed:   fmt.Sprintf("Upload too large: the limit is %d bytes", tooBig.Limit)}
	case errors.As(err, &tooMany):
		n := tooMany.Width * tooMany.Height
		return problem{status: 413, slug: "too-many-pixels", title: "Image too large",
			detail: fmt.Sprintf("%dx%d is %d pixels; the limit is %d.", tooMany.Width, tooMany.Height, n, tooMany.Max),
			extra:  map[string]any{"limit": "max_pixels", "allowed": tooMany.Max, "actual": n},
			seed:   fmt.Sprintf("Image too large: %dx%d is %d pixels, the limit is %d pixels", tooMany.Width, tooMany.Height, n, tooMany.Max)}
	case errors.Is(err, errJSONTooLarge):
		return problem{status: 413, slug: "json-too-large", title: "JSON body too large",
			detail: errJSONTooLarge.Error() + ".",
			extra:  map[string]any{"limit": "json_body_bytes", "allowed": maxJSONBody},
			seed:   errJSONTooLarge.Error(), seedDetail: true}
	case errors.Is(err, errFormPrefixTooLarge):
		return problem{status: 413, slug: "form-too-large", title: "Form too large",
			detail: errFormPrefixTooLarge.Error() + ".",
			extra:  map[string]any{"limit": "form_fields_before_file_bytes", "allowed": maxFormPrefix},
			seed:   "Form too large: " + errFormPrefixTooLarge.Error()}
	case errors.Is(err, errSlowClient):
		return problem{status: 408, slug: "body-timeout", title: "Request body too slow",
			detail: "No data for " + s.opts.BodyTimeout.String() + ".",
			extra:  map[string]any{"limit": "body_timeout_seconds", "allowed": s.opts.BodyTimeout.Seconds()},
			seed:   "Request body too slow: no data for " + s.opts.BodyTimeout.String(), seedDetail: true}
	case (errors.Is(err, context.Canceled) || errors.Is(err, io.ErrUnexpectedEOF)) && !errors.Is(err, domain.ErrDamaged):
		// The client went away, or its body ended early: no one may be
		// listening, but answer in case someone is. (A stored image cut
		// short is the server's fault: see the table.)
		return problem{status: 400, slug: "body-ended-early", title: "Request body ended early", seed: "Request body ended early", seedDetail: true}
	}
	for _, e := range errorTable {
		if errors.Is(err, e.target) {
			return e.p
		}
	}
	return problem{status: 500, slug: "internal", title: "Internal server error", seed: "Internal server error", seedDetail: true, internal: true}
}

// writeError answers a seed route's request that failed with err, in the
// original's words. messages rewords some errors for one route (the
// original said "Cannot patch. File exists." for a PATCH). Internal errors
// are logged, and the client learns only that something went wrong.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error, messages map[error]string) {
	p := s.classify(err)
	s.noteFailure(w, r, p, err)
	switch {
	case p.status == http.StatusNoContent:
		w.WriteHeader(p.status)
	case p.seedDetail:
		writeDetail(w, p.status, p.seed)
	default:
		body := p.seed
		for target, m := range messages {
			if errors.Is(err, target) {
				body = m
			}
		}
		writeString(w, p.status, body)
	}
}

// writeProblem answers an /api/v1 request that failed with err, as an RFC
// 9457 problem document.
func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	p := s.classify(err)
	s.noteFailure(w, r, p, err)
	switch {
	case p.status == http.StatusNoContent: // no file: for this API, a bad request
		p.status, p.title = http.StatusBadRequest, "No file in the request"
		p.detail = "Send the image as the body, or as a file part of a multipart form."
	case errors.Is(err, domain.ErrInvalidUsername):
		// The seed's 404 says its route did not match; here the username
		// is a field of a body, and a field can be invalid.
		p.status = http.StatusUnprocessableEntity
	}
	body := map[string]any{
		"type":   "urn:imagestore:problem:" + p.slug,
		"title":  p.title,
		"status": p.status,
	}
	if p.detail != "" {
		body["detail"] = p.detail
	}
	for k, v := range p.extra {
		body[k] = v
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(body)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(p.status)
	w.Write(buf.Bytes())
}

// noteFailure logs what must be logged of a failure, and sets the headers
// its status calls for.
func (s *Server) noteFailure(w http.ResponseWriter, r *http.Request, p problem, err error) {
	if p.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	switch {
	case p.internal:
		s.log.Error("request failed", "route", routeOf(r), "err", err)
	case p.status == http.StatusBadRequest && (errors.Is(err, context.Canceled) || errors.Is(err, io.ErrUnexpectedEOF)):
		s.log.Info("request abandoned by the client", "route", routeOf(r), "err", err)
	}
}

// writeJSON writes v as the original's JSON renderer did: compact, UTF-8,
// without escaping HTML characters.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only values built by this package are written; they always encode.
		panic(err)
	}
	writeRawJSON(w, status, bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

func writeRawJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// writeString writes a JSON string body, as the seed's errors are.
func writeString(w http.ResponseWriter, status int, msg string) { writeJSON(w, status, msg) }

// writeSimpleProblem writes a problem document of a status alone.
func writeSimpleProblem(w http.ResponseWriter, status int, detail string) {
	b, _ := json.Marshal(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail})
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// writeDetail writes the framework's error shape: {"detail": msg}.
func writeDetail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"detail": msg})
}
