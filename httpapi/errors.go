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

// seedError is the status and the JSON string body the original gave for
// an error.
type seedError struct {
	target error
	status int
	body   string
}

// seedErrors maps the domain's errors to the original's answers. It is the
// one place where errors become status codes; a route may reword a message
// (see messages in writeError), never change a status.
var seedErrors = []seedError{
	{domain.ErrInvalidUsername, http.StatusNotFound, ""}, // the original's route did not match
	{domain.ErrUserExists, http.StatusConflict, "User exists"},
	{domain.ErrUserNotFound, http.StatusNotFound, "User does not exists"},
	{domain.ErrUnauthorized, http.StatusUnauthorized, "Token not recognized"},
	{domain.ErrImageNotFound, http.StatusNotFound, "Image[s] not found on the server"},
	{domain.ErrNameTaken, http.StatusConflict, "File exists"},
	{domain.ErrNotImage, http.StatusNotAcceptable, "Unrecognized file type"},
	{domain.ErrInsufficientStorage, http.StatusInsufficientStorage, "Insufficient storage: the server cannot store more data now"},
	{errNoFile, http.StatusNoContent, ""},
}

// writeError answers a request that failed with err. messages rewords some
// errors for one route (the original said "Cannot patch. File exists." for a
// PATCH). Internal errors are logged, and the client learns only that
// something went wrong.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error, messages map[error]string) {
	var tooBig *http.MaxBytesError
	var tooMany *domain.TooManyPixelsError
	switch {
	case errors.As(err, &tooBig):
		writeString(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Upload too large: the limit is %d bytes", tooBig.Limit))
		return
	case errors.As(err, &tooMany):
		writeString(w, http.StatusRequestEntityTooLarge, fmt.Sprintf(
			"Image too large: %dx%d is %d pixels, the limit is %d pixels", tooMany.Width, tooMany.Height, tooMany.Width*tooMany.Height, tooMany.Max))
		return
	case errors.Is(err, errFormPrefixTooLarge):
		writeString(w, http.StatusRequestEntityTooLarge, "Form too large: "+errFormPrefixTooLarge.Error())
		return
	case errors.Is(err, errSlowClient):
		writeDetail(w, http.StatusRequestTimeout, "Request body too slow: no data for "+s.opts.BodyTimeout.String())
		return
	case errors.Is(err, errMalformed):
		writeDetail(w, http.StatusBadRequest, "Multipart form parse error")
		return
	case errors.Is(err, context.Canceled) || errors.Is(err, io.ErrUnexpectedEOF):
		// The client went away, or its body ended early: no one is
		// listening, but answer in case someone is.
		s.log.Info("request abandoned by the client", "route", routeOf(r), "err", err)
		writeDetail(w, http.StatusBadRequest, "Request body ended early")
		return
	}
	for _, e := range seedErrors {
		if !errors.Is(err, e.target) {
			continue
		}
		switch {
		case e.status == http.StatusNoContent:
			w.WriteHeader(e.status)
		case e.body == "":
			writeDetail(w, e.status, "Not found.")
		default:
			body := e.body
			if m, ok := messages[e.target]; ok {
				body = m
			}
			writeString(w, e.status, body)
		}
		return
	}
	s.log.Error("request failed", "route", routeOf(r), "err", err)
	writeDetail(w, http.StatusInternalServerError, "Internal server error")
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

// writeDetail writes the framework's error shape: {"detail": msg}.
func writeDetail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"detail": msg})
}
