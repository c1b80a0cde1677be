// Package client is a Go client of imagestore's /api/v1 API.
//
// A Client holds the server's address and a user's token:
//
//	c := client.New("http://127.0.0.1:8000", os.Getenv("IMAGESTORE_TOKEN"))
//	f, _ := os.Open("cat.png")
//	st, _ := f.Stat()
//	up, err := c.Upload(ctx, "cat.png", f, st.Size(), nil)
//	...
//	for img, err := range c.All(ctx, 0) {
//		...
//	}
//
// Every method takes a context, which bounds the whole request, body
// included; a Client sets no timeout of its own, so that a large upload on a
// slow link succeeds as long as it moves.
//
// An error answer of the server is an *Error, which carries the HTTP status
// and the RFC 9457 problem document; errors.Is matches it against the
// sentinels ErrNotFound, ErrUnauthorized, ErrConflict and the others. A
// request that got no answer at all matches ErrUnavailable.
//
// The token travels only in the Authorization header: it is never part of a
// URL, so it never appears in an error message.
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Client is a client of one imagestore server, as one user (or as nobody,
// for CreateUser and Limits). It is safe for concurrent use.
type Client struct {
	base  string // the server's URL, without a trailing slash
	token atomic.Pointer[string]
	hc    *http.Client
	ua    string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the Client send its requests with hc rather than
// with a client of its own (which has no timeout, and follows redirects).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.hc = hc }
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.ua = ua }
}

// New returns a client of the server at baseURL (such as
// "http://127.0.0.1:8000", or "https://host/prefix" behind a reverse
// proxy), authenticating with token. The token may be empty for CreateUser
// and Limits.
func New(baseURL, token string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), hc: &http.Client{}, ua: "imagestore-client-go/1"}
	c.token.Store(&token)
	for _, o := range opts {
		o(c)
	}
	return c
}

// User is the owner of a token.
type User struct {
	Username    string    `json:"username"`
	Created     time.Time `json:"created"`
	HasPassword bool      `json:"has_password"`
}

// Limits are what a server accepts.
type Limits struct {
	// MaxUploadBytes is the largest request body that carries an image.
	MaxUploadBytes int64 `json:"max_upload_bytes"`
	// MaxPixels is the most pixels (width × height) an image may claim;
	// 0 for no limit.
	MaxPixels int64 `json:"max_pixels"`
	// AcceptedTypes are the media types of the accepted formats.
	AcceptedTypes []string `json:"accepted_types"`
	// MaxPageSize is the largest page List accepts.
	MaxPageSize int `json:"max_page_size"`
	// MaxVariantSize is the largest width or height of a variant (a
	// resized copy) of an image.
	MaxVariantSize int `json:"max_variant_size"`
}

// Image is an image's description.
type Image struct {
	// ID names the image; it never changes.
	ID string `json:"id"`
	// Name is the file name, at most 255 bytes, without any folder.
	Name string `json:"name"`
	// ContentType is the media type the image is served with.
	ContentType string `json:"content_type"`
	// Size is the length of the image's bytes, as uploaded.
	Size int64 `json:"size"`
	// StoredSize is the length of the gzip stream the server keeps.
	StoredSize int64 `json:"stored_size"`
	// Width and Height are the image's dimensions in pixels.
	Width  int64 `json:"width"`
	Height int64 `json:"height"`
	// SHA256 is the hex SHA-256 of the image's bytes.
	SHA256 string `json:"sha256"`
	// Created is when the image was first uploaded, Updated when it was
	// last uploaded or replaced.
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// URL is the image's path on the server, such as "/api/v1/images/x7_K".
	URL string `json:"url"`
}

// ETag is the image's strong entity tag, as If-Match takes it.
func (img Image) ETag() string { return `"` + img.SHA256 + `"` }

// UploadResult is the outcome of an upload.
type UploadResult struct {
	Image
	// Replayed reports that the server had already stored this upload,
	// under the same Idempotency-Key: Image is that first result, and
	// nothing was stored twice.
	Replayed bool `json:"replayed"`
}

// Page is one page of a user's images.
type Page struct {
	// Images are in upload order (a replaced image keeps its place).
	Images []Image `json:"images"`
	// NextCursor asks List for the next page; it is empty on the last one.
	NextCursor string `json:"next_cursor,omitempty"`
}

// UploadOptions are the optional parts of an upload.
type UploadOptions struct {
	// IdempotencyKey, when set (1 to 255 printable ASCII characters), makes
	// a retry of the same upload (same name, same bytes) store nothing and
	// answer the first result again, for 24 hours.
	IdempotencyKey string
	// Progress, when set, is called as the body is sent, with the bytes
	// sent so far and the size given (-1 if unknown). It is called from
	// the goroutine that sends the request, not necessarily the caller's.
	Progress func(sent, total int64)
}

// ReplaceOptions are the optional parts of a replacement.
type ReplaceOptions struct {
	// Name renames the image; empty keeps its name.
	Name string
	// IfMatch, when set, is the ETag the image must still have (see
	// Image.ETag); otherwise the server answers 412 and nothing changes.
	IfMatch string
	// Progress is as in UploadOptions.
	Progress func(sent, total int64)
}

// CreateUser creates a user, with a password if password is not empty (8
// to 72 bytes), and returns its token. It needs no token: the Client's own
// is neither used nor changed.
func (c *Client) CreateUser(ctx context.Context, username, password string) (string, error) {
	body, err := json.Marshal(struct {
		Username string `json:"username"`
		Password string `json:"password,omitempty"`
	}{username, password})
	if err != nil {
		return "", err
	}
	req, err := c.request(ctx, http.MethodPost, "/api/v1/users", nil, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	var out struct{ Token string }
	if err := c.doJSON(req, false, &out); err != nil {
		return "", err
	}
	return out.Token, nil
}

// Me returns the token's owner.
func (c *Client) Me(ctx context.Context) (User, error) {
	var u User
	req, err := c.request(ctx, http.MethodGet, "/api/v1/users/me", nil, nil)
	if err == nil {
		err = c.doJSON(req, true, &u)
	}
	return u, err
}

// RotateToken gives the user a new token and returns it. The old one stops
// working at once; c uses the new one from then on.
func (c *Client) RotateToken(ctx context.Context) (string, error) {
	req, err := c.request(ctx, http.MethodPost, "/api/v1/users/me/token", nil, nil)
	if err != nil {
		return "", err
	}
	var out struct{ Token string }
	if err := c.doJSON(req, true, &out); err != nil {
		return "", err
	}
	c.token.Store(&out.Token)
	return out.Token, nil
}

// Limits returns what the server accepts. It needs no token.
func (c *Client) Limits(ctx context.Context) (Limits, error) {
	var l Limits
	req, err := c.request(ctx, http.MethodGet, "/api/v1/limits", nil, nil)
	if err == nil {
		err = c.doJSON(req, false, &l)
	}
	return l, err
}

// Upload stores the size bytes read from r as a new image named name (the
// server keeps the part after the last / or \). size may be -1 if unknown;
// the body is then sent chunked. The bytes are streamed: r is read as the
// request is sent. opts may be nil.
func (c *Client) Upload(ctx context.Context, name string, r io.Reader, size int64, opts *UploadOptions) (UploadResult, error) {
	if opts == nil {
		opts = &UploadOptions{}
	}
	body := newBody(r, size, opts.Progress)
	req, err := c.request(ctx, http.MethodPost, "/api/v1/images", url.Values{"name": {name}}, body.reader())
	if err != nil {
		return UploadResult{}, err
	}
	body.set(req)
	if opts.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", opts.IdempotencyKey)
	}
	resp, err := c.do(req, true, body)
	if err != nil {
		return UploadResult{}, err
	}
	defer closeBody(resp)
	var out UploadResult
	if err := decode(resp, &out.Image); err != nil {
		return UploadResult{}, err
	}
	out.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	return out, nil
}

// List returns a page of at most limit images (0 for the server's default,
// 100), starting after cursor ("" for the first page).
func (c *Client) List(ctx context.Context, cursor string, limit int) (Page, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var p Page
	req, err := c.request(ctx, http.MethodGet, "/api/v1/images", q, nil)
	if err == nil {
		err = c.doJSON(req, true, &p)
	}
	return p, err
}

// All iterates over all the user's images in upload order, fetching
// pageSize at a time (0 for the server's default). An error ends the
// iteration: it is yielded once, with a zero Image.
func (c *Client) All(ctx context.Context, pageSize int) iter.Seq2[Image, error] {
	return func(yield func(Image, error) bool) {
		cursor := ""
		for {
			page, err := c.List(ctx, cursor, pageSize)
			if err != nil {
				yield(Image{}, err)
				return
			}
			for _, img := range page.Images {
				if !yield(img, nil) {
					return
				}
			}
			if page.NextCursor == "" {
				return
			}
			cursor = page.NextCursor
		}
	}
}

// Meta returns the description of the image id.
func (c *Client) Meta(ctx context.Context, id string) (Image, error) {
	var img Image
	p, err := imagePath(id)
	if err != nil {
		return img, err
	}
	req, err := c.request(ctx, http.MethodGet, p+"/meta", nil, nil)
	if err == nil {
		err = c.doJSON(req, true, &img)
	}
	return img, err
}

// Download writes the bytes of the image id to w and returns how many it
// wrote. It checks them against the SHA-256 the server announces: if they
// differ (or the answer is cut short) it returns an error, and what was
// written to w must be discarded.
func (c *Client) Download(ctx context.Context, id string, w io.Writer) (int64, error) {
	p, err := imagePath(id)
	if err != nil {
		return 0, err
	}
	req, err := c.request(ctx, http.MethodGet, p, nil, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.do(req, true, nil)
	if err != nil {
		return 0, err
	}
	defer closeBody(resp)
	// The ETag is the hex SHA-256 of the image's bytes (with "-gz" when the
	// gzip stream was sent, which the transport decompressed).
	want := strings.TrimSuffix(strings.Trim(strings.TrimPrefix(resp.Header.Get("Etag"), "W/"), `"`), "-gz")
	var h hash.Hash
	if len(want) == sha256.Size*2 {
		h = sha256.New()
		w = io.MultiWriter(w, h)
	}
	src := &readErr{r: resp.Body}
	n, err := io.Copy(w, src)
	switch {
	case src.err != nil: // the answer broke off
		return n, c.transportError(ctx, fmt.Errorf("downloading image %s: %w", id, src.err))
	case err != nil: // w failed
		return n, err
	}
	if h != nil && hex.EncodeToString(h.Sum(nil)) != want {
		return n, fmt.Errorf("downloading image %s: the bytes received do not match the image's SHA-256", id)
	}
	return n, nil
}

// Replace replaces the content of the image id with the size bytes read
// from r (size -1 if unknown), keeping its id and its place in the list.
// It returns the image as it is now. opts may be nil.
func (c *Client) Replace(ctx context.Context, id string, r io.Reader, size int64, opts *ReplaceOptions) (Image, error) {
	if opts == nil {
		opts = &ReplaceOptions{}
	}
	p, err := imagePath(id)
	if err != nil {
		return Image{}, err
	}
	q := url.Values{}
	if opts.Name != "" {
		q.Set("name", opts.Name)
	}
	body := newBody(r, size, opts.Progress)
	req, err := c.request(ctx, http.MethodPut, p, q, body.reader())
	if err != nil {
		return Image{}, err
	}
	body.set(req)
	if opts.IfMatch != "" {
		req.Header.Set("If-Match", opts.IfMatch)
	}
	resp, err := c.do(req, true, body)
	if err != nil {
		return Image{}, err
	}
	defer closeBody(resp)
	var img Image
	return img, decode(resp, &img)
}

// Delete deletes the image id. If ifMatch is not empty, only while the
// image still has that ETag (see Image.ETag); otherwise it returns an
// error matching ErrPreconditionFailed and nothing changes.
func (c *Client) Delete(ctx context.Context, id, ifMatch string) error {
	p, err := imagePath(id)
	if err != nil {
		return err
	}
	req, err := c.request(ctx, http.MethodDelete, p, nil, nil)
	if err != nil {
		return err
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := c.do(req, true, nil)
	if err != nil {
		return err
	}
	closeBody(resp)
	return nil
}

// imagePath is the path of the image id. An id that cannot name an image
// (empty, or with characters ids never have) is not sent: no image has it.
func imagePath(id string) (string, error) {
	valid := id != ""
	for _, r := range id {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-') {
			valid = false
			break
		}
	}
	if !valid {
		return "", fmt.Errorf("%w: %q is not an image id", ErrNotFound, id)
	}
	return "/api/v1/images/" + id, nil
}

// request builds a request to the server's path with the query q.
func (c *Client) request(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if c.ua != "" {
		req.Header.Set("User-Agent", c.ua)
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	return req, nil
}

// do sends req, with the token if auth, and returns the answer if it is a
// success; otherwise an *Error, or a transport error matching
// ErrUnavailable. body, if not nil, is the request's body, whose own read
// errors are returned as they are.
func (c *Client) do(req *http.Request, auth bool, body *countingBody) (*http.Response, error) {
	if tok := *c.token.Load(); auth && tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if body != nil {
			if berr := body.readErr(); berr != nil {
				return nil, berr
			}
		}
		return nil, c.transportError(req.Context(), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer closeBody(resp)
		return nil, errorFrom(resp)
	}
	return resp, nil
}

// transportError marks err, a request that got no (whole) answer, as
// ErrUnavailable, unless the context ended it.
func (c *Client) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// doJSON sends req and decodes the JSON answer into v.
func (c *Client) doJSON(req *http.Request, auth bool, v any) error {
	resp, err := c.do(req, auth, nil)
	if err != nil {
		return err
	}
	defer closeBody(resp)
	return decode(resp, v)
}

// decode decodes a JSON answer into v.
func decode(resp *http.Response, v any) error {
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("imagestore: reading the answer to %s %s: %w", resp.Request.Method, resp.Request.URL.Path, err)
	}
	return nil
}

// closeBody reads what is left of a (small) answer, so that the connection
// can be used again, and closes it.
func closeBody(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// countingBody is an upload's body: it reports progress, and remembers its
// reader's own error, so that a file that cannot be read is not mistaken
// for a server that cannot be reached.
type countingBody struct {
	r        io.Reader
	size     int64
	sent     int64
	progress func(sent, total int64)

	mu  sync.Mutex // the transport may still read after Do returned
	err error
}

func newBody(r io.Reader, size int64, progress func(sent, total int64)) *countingBody {
	if size < 0 {
		size = -1
	}
	return &countingBody{r: r, size: size, progress: progress}
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.sent += int64(n)
		if b.progress != nil {
			b.progress(b.sent, b.size)
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

func (b *countingBody) readErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// readErr is a reader that remembers its error other than io.EOF.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// reader is the body to give http.NewRequest: http.NoBody for an empty one.
func (b *countingBody) reader() io.Reader {
	if b.size == 0 {
		return http.NoBody
	}
	return b
}

// set gives req the body's length, if known.
func (b *countingBody) set(req *http.Request) {
	req.ContentLength = b.size
	req.Header.Set("Content-Type", "application/octet-stream")
}
