package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/imagetype"
)

// The /api/v1 handlers: a resource API over the same domain and store as
// the seed's routes, with bearer tokens, JSON bodies and RFC 9457 problems.

// imageJSON is an image's description in /api/v1.
type imageJSON struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	StoredSize  int64     `json:"stored_size"`
	Width       int64     `json:"width"`
	Height      int64     `json:"height"`
	SHA256      string    `json:"sha256"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	URL         string    `json:"url"`
}

func toJSON(img domain.Image) imageJSON {
	return imageJSON{
		ID: img.ID, Name: img.Name, ContentType: img.MIME(),
		Size: img.Size, StoredSize: img.StoredSize, Width: img.Width, Height: img.Height,
		SHA256: img.SHA256, Created: img.Created, Updated: img.Updated,
		URL: "/api/v1/images/" + img.ID,
	}
}

// etagOf is the strong ETag of an image's bytes as uploaded.
func etagOf(img domain.Image) string { return `"` + img.SHA256 + `"` }

// bearer authenticates an /api/v1 request by its Authorization: Bearer
// token, or answers 401 and returns false.
func (s *Server) bearer(w http.ResponseWriter, r *http.Request) (domain.User, bool) {
	if s.failuresExhausted(w, r) {
		return domain.User{}, false
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		w.Header().Set("WWW-Authenticate", `Bearer realm="imagestore"`)
		s.writeProblem(w, r, errNeedToken)
		return domain.User{}, false
	}
	u, err := s.svc.Authenticate(r.Context(), strings.TrimSpace(token))
	if err != nil {
		if errors.Is(err, domain.ErrUnauthorized) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="imagestore", error="invalid_token"`)
			s.authFailed(r)
		}
		s.writeProblem(w, r, err)
		return domain.User{}, false
	}
	return u, true
}

// maxJSONBody bounds a JSON request body.
const maxJSONBody = 64 << 10

var errJSONTooLarge = fmt.Errorf("a JSON body is at most %d bytes", maxJSONBody)

// readJSON decodes a small JSON request body into v.
func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, maxJSONBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errJSONTooLarge
		}
		return fmt.Errorf("%w: %w", errBadJSON, err)
	}
	return nil
}

func (s *Server) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := readJSON(w, r, &req); err != nil {
		s.writeProblem(w, r, err)
		return
	}
	u, err := s.svc.CreateUser(r.Context(), req.Username, req.Password)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]string{"username": u.Name, "token": u.Token})
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	u, ok := s.bearer(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"username": u.Name, "created": u.Created, "has_password": u.HasPassword()})
}

func (s *Server) handleRotateToken(w http.ResponseWriter, r *http.Request) {
	u, ok := s.bearer(w, r)
	if !ok {
		return
	}
	u, err := s.svc.RotateToken(r.Context(), u)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"username": u.Name, "token": u.Token})
}

func (s *Server) handleLimits(w http.ResponseWriter, r *http.Request) {
	types := make([]string, 0, len(imagetype.Formats))
	for _, f := range imagetype.Formats {
		types = append(types, f.MIME)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"max_upload_bytes": s.opts.MaxUploadBytes,
		"max_pixels":       s.svc.Config().MaxPixels,
		"accepted_types":   types,
		"max_page_size":    domain.MaxPageSize,
		"max_variant_size": s.svc.Config().MaxVariantSize,
	})
}

// imageBody returns the image sent with an upload or a replacement: the
// first file part of a multipart form, or else the raw body, named by the
// "name" query parameter. needName says whether a raw body must be named.
func (s *Server) imageBody(w http.ResponseWriter, r *http.Request, needName bool) (name string, body io.Reader, err error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "multipart/form-data" {
		part, err := s.firstFile(w, r)
		if err != nil {
			return "", nil, err
		}
		return part.name, part, nil
	}
	if r.ContentLength > s.opts.MaxUploadBytes {
		return "", nil, &uploadTooLargeError{limit: s.opts.MaxUploadBytes, actual: r.ContentLength}
	}
	name = r.URL.Query().Get("name")
	if name == "" && needName {
		return "", nil, errNoFile
	}
	if _, ok := domain.CleanName(name); !ok && name != "" {
		return "", nil, errNoFile
	}
	return name, http.MaxBytesReader(w, r.Body, s.opts.MaxUploadBytes), nil
}

// v1UploadStart does what upload and replace have in common: the token, a
// turn to upload, the image's body and name. If it returns false, it has
// answered.
func (s *Server) v1UploadStart(w http.ResponseWriter, r *http.Request, needName bool) (u domain.User, name string, body io.Reader, release func(), ok bool) {
	if u, ok = s.bearer(w, r); !ok {
		return
	}
	release, err := s.uploadTurn(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return u, "", nil, nil, false
	}
	if name, body, err = s.imageBody(w, r, needName); err != nil {
		release()
		s.writeProblem(w, r, err)
		return u, "", nil, nil, false
	}
	if part, ok := body.(*filePart); ok {
		turn := release
		return u, name, body, func() { turn(); part.release() }, true
	}
	return u, name, body, release, true
}

func (s *Server) handleV1Upload(w http.ResponseWriter, r *http.Request) {
	u, name, body, release, ok := s.v1UploadStart(w, r, true)
	if !ok {
		return
	}
	defer release()
	var err error
	var img domain.Image
	replayed := false
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		img, replayed, err = s.svc.UploadOnce(r.Context(), u, key, name, body)
	} else {
		img, err = s.svc.Upload(r.Context(), u, name, body)
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Location", "/api/v1/images/"+img.ID)
	h.Set("Etag", etagOf(img))
	if replayed {
		h.Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusCreated, toJSON(img))
}

// encodeCursor and decodeCursor turn a list position into an opaque token.
func encodeCursor(c domain.Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(c.Created.UTC().Format(time.RFC3339Nano) + " " + c.ID))
}

func decodeCursor(s string) (domain.Cursor, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return domain.Cursor{}, false
	}
	ts, id, ok := strings.Cut(string(b), " ")
	t, err := time.Parse(time.RFC3339Nano, ts)
	if !ok || err != nil || !domain.ValidID(id) {
		return domain.Cursor{}, false
	}
	return domain.Cursor{Created: t, ID: id}, true
}

// errBadQuery is a query parameter out of its bounds.
type errBadQuery struct {
	param   string
	allowed string
	actual  string
}

func (e *errBadQuery) Error() string {
	return fmt.Sprintf("query parameter %s: %q is not %s", e.param, e.actual, e.allowed)
}

func (s *Server) handleV1List(w http.ResponseWriter, r *http.Request) {
	u, ok := s.bearer(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > domain.MaxPageSize {
			s.writeProblem(w, r, &errBadQuery{param: "limit", allowed: fmt.Sprintf("a whole number from 1 to %d", domain.MaxPageSize), actual: v})
			return
		}
		limit = n
	}
	var after domain.Cursor
	if v := q.Get("cursor"); v != "" {
		c, ok := decodeCursor(v)
		if !ok {
			s.writeProblem(w, r, &errBadQuery{param: "cursor", allowed: "a cursor this server returned", actual: v})
			return
		}
		after = c
	}
	page, next, err := s.svc.ListPage(r.Context(), u, after, limit)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	out := struct {
		Images     []imageJSON `json:"images"`
		NextCursor string      `json:"next_cursor,omitempty"`
	}{Images: make([]imageJSON, 0, len(page))}
	for _, img := range page {
		out.Images = append(out.Images, toJSON(img))
	}
	if !next.IsZero() {
		out.NextCursor = encodeCursor(next)
		w.Header().Set("Link", fmt.Sprintf(`</api/v1/images?limit=%d&cursor=%s>; rel="next"`, limit, url.QueryEscape(out.NextCursor)))
	}
	w.Header().Set("Cache-Control", "private, no-cache")
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleV1Get(w http.ResponseWriter, r *http.Request) {
	u, ok := s.bearer(w, r)
	if !ok {
		return
	}
	if wantsVariant(r) {
		s.serveVariant(w, r, u) // see variants.go
		return
	}
	s.serveImageAs(w, r, u, r.PathValue("id"), inlineDisposition, s.writeProblem)
}

func (s *Server) handleV1Meta(w http.ResponseWriter, r *http.Request) {
	u, ok := s.bearer(w, r)
	if !ok {
		return
	}
	img, err := s.svc.Image(r.Context(), u, r.PathValue("id"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("Etag", etagOf(img))
	w.Header().Set("Cache-Control", "private, no-cache")
	if notModified(r, etagOf(img), img.Updated) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeJSON(w, http.StatusOK, toJSON(img))
}

// ifMatch turns an If-Match header into the content hash the image must
// still have when the change happens: "" for no condition ("*" asks only
// that the image exist, which the change checks anyway), the current hash
// if one of the listed tags is the image's (a strong comparison: weak tags
// never match), and a hash that matches nothing otherwise.
func (s *Server) ifMatch(r *http.Request, u domain.User, id string) (string, error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" || v == "*" {
		return "", nil
	}
	img, err := s.svc.Image(r.Context(), u, id)
	if err != nil {
		return "", err
	}
	for tag := range strings.SplitSeq(v, ",") {
		tag = strings.TrimSpace(tag)
		if tag == etagOf(img) || tag == `"`+img.SHA256+`-gz"` {
			return img.SHA256, nil
		}
	}
	return "-", nil
}

func (s *Server) handleV1Replace(w http.ResponseWriter, r *http.Request) {
	u, name, body, release, ok := s.v1UploadStart(w, r, false)
	if !ok {
		return
	}
	defer release()
	cond, err := s.ifMatch(r, u, r.PathValue("id"))
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	img, err := s.svc.ReplaceIf(r.Context(), u, r.PathValue("id"), name, cond, body)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.Header().Set("Etag", etagOf(img))
	writeJSON(w, http.StatusOK, toJSON(img))
}

func (s *Server) handleV1Delete(w http.ResponseWriter, r *http.Request) {
	u, ok := s.bearer(w, r)
	if !ok {
		return
	}
	cond, err := s.ifMatch(r, u, r.PathValue("id"))
	if err == nil {
		err = s.svc.DeleteIf(r.Context(), u, r.PathValue("id"), cond)
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// inlineDisposition lets a browser show the image, under its name when
// saved.
func inlineDisposition(name string) string {
	return "inline" + strings.TrimPrefix(contentDisposition(name), "attachment")
}
