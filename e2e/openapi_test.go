package e2e

// The black-box suite checks httpapi/openapi.yaml against the real server:
// every request sent through the harness's client (and the raw client of
// the download tests), and the response to it, is validated against the
// document with kin-openapi. Failures are collected here and reported at
// the end of TestMain, which then fails the run.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// oaDocPath is the document the server embeds and serves at /openapi.yaml.
const oaDocPath = "../httpapi/openapi.yaml"

// oaImageTypes are the media types the server serves images with; their
// bodies are raw bytes for kin-openapi.
var oaImageTypes = []string{
	"image/jpeg", "image/png", "image/gif", "image/bmp", "image/tiff", "image/webp",
	"image/x-portable-bitmap", "image/x-portable-graymap", "image/x-portable-pixmap",
	"image/x-sun-raster", "image/x-xbitmap", "image/x-rgb", "image/x-exr",
	"multipart/byteranges",
}

func init() {
	// Image bodies (and ranges of them) are bytes, never decoded. The
	// document's binary schemas already say so; registering a decoder also
	// covers a body whose media type has no schema of its own.
	for _, mt := range oaImageTypes {
		openapi3filter.RegisterBodyDecoder(mt, openapi3filter.FileBodyDecoder)
	}
	// The download tests' raw client shows responses as sent: validate its
	// exchanges too, as they are.
	raw.Transport = &oaTransport{next: raw.Transport}
}

// oaClientTransport is the harness client's transport: it validates what
// goes on the wire. It does what http.Transport's transparent gzip does
// itself, so that the validator sees the exchange as sent (the gzip
// pass-through of images included) while the tests see what they always
// saw.
func oaClientTransport() http.RoundTripper {
	wire := http.DefaultTransport.(*http.Transport).Clone()
	wire.DisableCompression = true
	return &oaTransport{next: wire, emulateGzip: true}
}

// oaTransport is an http.RoundTripper that validates each request and its
// response against the OpenAPI document. It reads the response body into
// memory and hands it back unchanged (a read error included).
type oaTransport struct {
	next        http.RoundTripper
	emulateGzip bool
}

// oaCapture keeps a copy of a streamed request body as the transport sends
// it.
type oaCapture struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	complete bool // the body was read to its end
	closed   chan struct{}
	once     sync.Once
}

type oaTee struct {
	rc  io.ReadCloser
	cap *oaCapture
}

func (t *oaTee) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	t.cap.mu.Lock()
	t.cap.buf.Write(p[:n])
	if err == io.EOF {
		t.cap.complete = true
	}
	t.cap.mu.Unlock()
	return n, err
}

func (t *oaTee) Close() error {
	t.cap.once.Do(func() { close(t.cap.closed) })
	return t.rc.Close()
}

// oaBody replays a response body read in full, then its read error if any.
type oaBody struct {
	r   *bytes.Reader
	err error
}

func (b *oaBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF && b.err != nil {
		return n, b.err
	}
	return n, err
}

func (b *oaBody) Close() error { return nil }

func (t *oaTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	wire := req.Clone(req.Context())
	var reqBody []byte
	hasBody := req.Body != nil && req.Body != http.NoBody
	bodyKnown := false
	var capture *oaCapture
	if hasBody {
		if req.GetBody != nil {
			if rc, err := req.GetBody(); err == nil {
				reqBody, err = io.ReadAll(rc)
				rc.Close()
				bodyKnown = err == nil
			}
		}
		if !bodyKnown {
			// A streamed body (a pipe, say): copy it as it is sent, never
			// ahead of the test that feeds it.
			capture = &oaCapture{closed: make(chan struct{})}
			wire.Body = &oaTee{rc: req.Body, cap: capture}
		}
	}
	addedGzip := false
	if t.emulateGzip && wire.Header.Get("Accept-Encoding") == "" && wire.Header.Get("Range") == "" && wire.Method != http.MethodHead {
		wire.Header.Set("Accept-Encoding", "gzip")
		addedGzip = true
	}
	resp, err := t.next.RoundTrip(wire)
	if err != nil {
		return nil, err
	}
	data, readErr := io.ReadAll(resp.Body)
	resp.Body.Close()

	if capture != nil {
		// The transport may still be finishing the body: wait until it
		// closes it, a little.
		select {
		case <-capture.closed:
		case <-time.After(500 * time.Millisecond):
		}
		capture.mu.Lock()
		reqBody = bytes.Clone(capture.buf.Bytes())
		bodyKnown = capture.complete || (wire.ContentLength > 0 && int64(len(reqBody)) == wire.ContentLength)
		capture.mu.Unlock()
	}
	if readErr == nil {
		// Validate in the background, on copies: the test gets its answer
		// as soon as it came, and timings it measures are the server's.
		vresp := *resp
		vresp.Header = resp.Header.Clone()
		oaCheck.wg.Go(func() { oaCheck.exchange(wire, hasBody, reqBody, bodyKnown, &vresp, data) })
	} else {
		oaCheck.count(func(c *oaChecker) { c.unread++ })
	}

	// Hand the test what the transport it replaces would have.
	body, bodyErr := data, readErr
	if addedGzip && resp.ContentLength != 0 && strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		resp.Header.Del("Content-Encoding")
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
		resp.Uncompressed = true
		plain, err := oaGunzip(data)
		body = plain
		if bodyErr == nil {
			bodyErr = err
		}
	}
	resp.Body = &oaBody{r: bytes.NewReader(body), err: bodyErr}
	resp.Request = req
	return resp, nil
}

// oaGunzip decompresses as http.Transport's gzip reader would: an empty
// body is empty, and what was decompressed before an error is kept.
func oaGunzip(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err == io.EOF {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	plain, err := io.ReadAll(zr)
	return plain, err
}

// oaChecker validates exchanges and collects what it found.
type oaChecker struct {
	loadOnce sync.Once
	doc      *openapi3.T
	router   routers.Router
	loadErr  error
	wg       oaPending // validations in progress

	mu        sync.Mutex
	requests  int // requests validated
	responses int // responses validated
	refused   map[string]int
	refusedBy map[string]map[string]bool // why, by operation
	unrouted  int                        // answers to unknown paths checked
	disallow  int                        // answers to methods a path does not serve checked
	unread    int                        // responses whose body could not be read (cut short): not validated
	partial   int                        // request bodies not entirely sent: validated without the body
	failures  map[oaFailure]int
	example   map[oaFailure]string // the first message of each kind, values included
	order     []oaFailure
	seen      map[string]map[int]bool // "METHOD /path" → statuses seen
}

type oaFailure struct {
	method, pattern string
	status          int
	err             string
}

var oaCheck = &oaChecker{}

// oaPending counts the validations in progress. Unlike a sync.WaitGroup,
// it may be waited for while requests keep coming.
type oaPending struct {
	mu   sync.Mutex
	n    int
	done *sync.Cond
}

func (p *oaPending) Go(f func()) {
	p.mu.Lock()
	p.n++
	p.mu.Unlock()
	go func() {
		defer func() {
			p.mu.Lock()
			p.n--
			if p.n == 0 && p.done != nil {
				p.done.Broadcast()
			}
			p.mu.Unlock()
		}()
		f()
	}()
}

func (p *oaPending) Wait() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		p.done = sync.NewCond(&p.mu)
	}
	for p.n > 0 {
		p.done.Wait()
	}
}

func (c *oaChecker) count(f func(*oaChecker)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

// oaValueRe matches the value kin-openapi quotes in an error message: the
// same mismatch with different values (ids, tokens) is one kind.
var oaValueRe = regexp.MustCompile(`(?m)^Value:\n(?:[ \t]+.*\n?)*`)

func (c *oaChecker) fail(method, pattern string, status int, err string) {
	if len(err) > 800 {
		err = err[:800] + "…"
	}
	f := oaFailure{method, pattern, status, oaValueRe.ReplaceAllString(err, "Value: …\n")}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failures == nil {
		c.failures = map[oaFailure]int{}
		c.example = map[oaFailure]string{}
	}
	if c.failures[f] == 0 {
		c.order = append(c.order, f)
		c.example[f] = err
	}
	c.failures[f]++
}

func (c *oaChecker) load() error {
	c.loadOnce.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromFile(oaDocPath)
		if err != nil {
			c.loadErr = fmt.Errorf("loading %s: %w", oaDocPath, err)
			return
		}
		if err := doc.Validate(loader.Context); err != nil {
			c.loadErr = fmt.Errorf("%s is not a valid OpenAPI document: %w", oaDocPath, err)
			return
		}
		router, err := gorillamux.NewRouter(doc)
		if err != nil {
			c.loadErr = fmt.Errorf("routing %s: %w", oaDocPath, err)
			return
		}
		c.doc, c.router = doc, router
	})
	if c.loadErr != nil {
		c.fail("", "", 0, c.loadErr.Error())
	}
	return c.loadErr
}

// oaAuthenticate checks that the credentials a security scheme asks for are
// present and well formed; whether the server knows them is the server's
// business, and its answer (401) is validated as any other.
func oaAuthenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s := in.SecurityScheme
	if s.Type != "http" {
		return fmt.Errorf("security scheme %q: unexpected type %q", in.SecuritySchemeName, s.Type)
	}
	scheme, cred, ok := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, s.Scheme) || strings.TrimSpace(cred) == "" {
		return fmt.Errorf("no Authorization: %s credentials", s.Scheme)
	}
	if strings.EqualFold(s.Scheme, "basic") {
		if _, err := base64.StdEncoding.DecodeString(cred); err != nil {
			return fmt.Errorf("basic credentials are not base64: %v", err)
		}
	}
	return nil
}

// findRoute finds the operation of req. Paths are served with or without
// their trailing slash: the document has the seed routes with it and the
// /api/v1 ones without, so the other form is tried too.
func (c *oaChecker) findRoute(req *http.Request) (*routers.Route, map[string]string, error) {
	route, params, err := c.router.FindRoute(req)
	if !errors.Is(err, routers.ErrPathNotFound) {
		return route, params, err
	}
	alt := *req
	u := *req.URL
	alt.URL = &u
	p := u.EscapedPath()
	if strings.HasSuffix(p, "/") && len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	} else {
		p += "/"
	}
	if u.Path, err = url.PathUnescape(p); err != nil {
		return nil, nil, routers.ErrPathNotFound
	}
	u.RawPath = p
	return c.router.FindRoute(&alt)
}

// exchange validates one request and its response.
func (c *oaChecker) exchange(req *http.Request, hasBody bool, reqBody []byte, bodyKnown bool, resp *http.Response, body []byte) {
	if c.load() != nil {
		return
	}
	status := resp.StatusCode
	route, rawParams, err := c.findRoute(req)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		c.count(func(c *oaChecker) { c.unrouted++ })
		c.checkUnknownPath(req, resp, body)
		return
	case errors.Is(err, routers.ErrMethodNotAllowed):
		c.count(func(c *oaChecker) { c.disallow++ })
		c.checkMethodNotAllowed(req, resp, body)
		return
	case err != nil:
		c.fail(req.Method, req.URL.Path, status, "finding the route: "+err.Error())
		return
	}
	key := req.Method + " " + route.Path
	c.count(func(c *oaChecker) {
		if c.seen == nil {
			c.seen = map[string]map[int]bool{}
		}
		if c.seen[key] == nil {
			c.seen[key] = map[int]bool{}
		}
		c.seen[key][status] = true
	})
	params := map[string]string{}
	for k, v := range rawParams {
		if u, err := url.PathUnescape(v); err == nil {
			v = u
		}
		params[k] = v
	}

	// The request.
	vreq := req.Clone(context.Background())
	opts := &openapi3filter.Options{
		AuthenticationFunc:  oaAuthenticate,
		SkipSettingDefaults: true,
		MultiError:          true,
	}
	switch {
	case !hasBody:
		vreq.Body, vreq.GetBody, vreq.ContentLength = http.NoBody, nil, 0
	case bodyKnown:
		vreq.Body = io.NopCloser(bytes.NewReader(reqBody))
		vreq.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(reqBody)), nil }
		vreq.ContentLength = int64(len(reqBody))
	default:
		// The server answered before the whole body was sent (a 413 or a
		// 408, say): the body cannot be checked.
		vreq.Body, vreq.GetBody = http.NoBody, nil
		opts.ExcludeRequestBody = true
		c.count(func(c *oaChecker) { c.partial++ })
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: opts}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	c.count(func(c *oaChecker) { c.requests++ })
	if reqErr != nil {
		if status >= 400 && status < 500 {
			// A request outside the document, refused: what tests of bad
			// input do on purpose.
			c.count(func(c *oaChecker) {
				if c.refused == nil {
					c.refused = map[string]int{}
				}
				c.refused[key]++
				if c.refusedBy == nil {
					c.refusedBy = map[string]map[string]bool{}
				}
				if c.refusedBy[key] == nil {
					c.refusedBy[key] = map[string]bool{}
				}
				why, _, _ := strings.Cut(reqErr.Error(), "\n")
				c.refusedBy[key][fmt.Sprintf("%d: %.200s", status, why)] = true
			})
		} else {
			c.fail(req.Method, route.Path, status, "the request does not match the document, yet the server answered "+strconv.Itoa(status)+": "+reqErr.Error())
		}
	}

	// The response.
	for _, e := range c.checkResponse(in, route, resp, body) {
		c.fail(req.Method, route.Path, status, "response: "+e)
	}
	c.count(func(c *oaChecker) { c.responses++ })
	if req.Method == http.MethodOptions {
		c.checkAllow(req, route.PathItem, resp, route.Path)
	}
}

func (c *oaChecker) checkResponse(in *openapi3filter.RequestValidationInput, route *routers.Route, resp *http.Response, body []byte) []string {
	status := resp.StatusCode
	ref := route.Operation.Responses.Status(status)
	if ref == nil {
		ref = route.Operation.Responses.Default()
	}
	if ref == nil || ref.Value == nil {
		return []string{fmt.Sprintf("status %d is not documented for this operation", status)}
	}
	doc := ref.Value
	var errs []string
	if in.Request.Method == http.MethodHead || status == http.StatusNotModified {
		// kin-openapi skips these entirely: check the status, the headers
		// and the media type here, and that there is no body.
		errs = append(errs, c.checkHeaders(doc, resp.Header)...)
		if ct := resp.Header.Get("Content-Type"); ct != "" && len(doc.Content) > 0 && doc.Content.Get(ct) == nil {
			errs = append(errs, fmt.Sprintf("Content-Type %q is not documented", ct))
		}
		if len(body) > 0 {
			errs = append(errs, fmt.Sprintf("a %d-byte body where there must be none", len(body)))
		}
		return errs
	}
	rin := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	rin.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), rin); err != nil {
		errs = append(errs, err.Error())
	}
	if len(doc.Content) == 0 && len(body) > 0 {
		errs = append(errs, fmt.Sprintf("a %d-byte body where the document has none: %.200q", len(body), body))
	}
	return errs
}

// checkHeaders validates the documented headers of a response that
// kin-openapi does not look at (HEAD, 304).
func (c *oaChecker) checkHeaders(doc *openapi3.Response, h http.Header) []string {
	var errs []string
	for _, name := range slices.Sorted(maps.Keys(doc.Headers)) {
		hdr := doc.Headers[name].Value
		vals := h.Values(name)
		if len(vals) == 0 {
			if hdr.Required {
				errs = append(errs, fmt.Sprintf("response header %q missing", name))
			}
			continue
		}
		if hdr.Schema == nil || hdr.Schema.Value == nil {
			continue
		}
		s := hdr.Schema.Value
		var v any = vals[0]
		if s.Type.Is("array") {
			var items []any
			for part := range strings.SplitSeq(strings.Join(vals, ","), ",") {
				items = append(items, strings.TrimSpace(part))
			}
			v = items
		} else if s.Type.Is("integer") || s.Type.Is("number") {
			f, err := strconv.ParseFloat(vals[0], 64)
			if err != nil {
				errs = append(errs, fmt.Sprintf("response header %q: %q is not a number", name, vals[0]))
				continue
			}
			v = f
		}
		if err := s.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
			errs = append(errs, fmt.Sprintf("response header %q doesn't match schema: %v", name, err))
		}
	}
	return errs
}

// checkAllow compares an Allow header with the methods the document lists
// for the path.
func (c *oaChecker) checkAllow(req *http.Request, item *openapi3.PathItem, resp *http.Response, pattern string) {
	allow := resp.Header.Get("Allow")
	if allow == "" {
		return // a CORS preflight is answered before routing, without Allow
	}
	got := strings.Split(allow, ", ")
	slices.Sort(got)
	want := slices.Sorted(maps.Keys(item.Operations()))
	if !slices.Equal(got, want) {
		c.fail(req.Method, pattern, resp.StatusCode, fmt.Sprintf("Allow: %s, but the document lists %s", allow, strings.Join(want, ", ")))
	}
}

// checkUnknownPath checks the answer to a path the document does not have:
// 404 in the words of the API the path looks like (or 204 to a CORS
// preflight, answered before routing).
func (c *oaChecker) checkUnknownPath(req *http.Request, resp *http.Response, body []byte) {
	if req.Method == http.MethodOptions && req.Header.Get("Access-Control-Request-Method") != "" && resp.StatusCode == http.StatusNoContent {
		return
	}
	pattern := "(no documented path: " + req.URL.EscapedPath() + ")"
	if resp.StatusCode != http.StatusNotFound {
		c.fail(req.Method, pattern, resp.StatusCode, "an unknown path must get 404")
		return
	}
	c.checkRefusal(req, resp, body, pattern, "Not found.")
}

// checkMethodNotAllowed checks the answer to a method the document does not
// list for a path: 405, with an Allow header naming exactly the methods the
// document lists.
func (c *oaChecker) checkMethodNotAllowed(req *http.Request, resp *http.Response, body []byte) {
	opt := *req
	opt.Method = http.MethodOptions
	route, _, err := c.findRoute(&opt)
	if err != nil {
		c.fail(req.Method, req.URL.Path, resp.StatusCode, "no OPTIONS operation for this path: "+err.Error())
		return
	}
	if resp.StatusCode != http.StatusMethodNotAllowed {
		c.fail(req.Method, route.Path, resp.StatusCode, "a method the document does not list for this path must get 405")
		return
	}
	if resp.Header.Get("Allow") == "" {
		c.fail(req.Method, route.Path, resp.StatusCode, "405 without an Allow header")
	}
	c.checkAllow(req, route.PathItem, resp, route.Path)
	c.checkRefusal(req, resp, body, route.Path, `Method "`+req.Method+`" not allowed.`)
}

// checkRefusal checks the body of a 404 for an unknown path or a 405: a
// problem document under /api/, the original framework's {"detail": ...}
// elsewhere.
func (c *oaChecker) checkRefusal(req *http.Request, resp *http.Response, body []byte, pattern, detail string) {
	if req.Method == http.MethodHead {
		if len(body) > 0 {
			c.fail(req.Method, pattern, resp.StatusCode, "a body in the answer to HEAD")
		}
		return
	}
	ct := resp.Header.Get("Content-Type")
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		c.fail(req.Method, pattern, resp.StatusCode, fmt.Sprintf("body %q is not a JSON object: %v", body, err))
		return
	}
	if strings.HasPrefix(req.URL.Path, "/api/") {
		if ct != "application/problem+json" {
			c.fail(req.Method, pattern, resp.StatusCode, fmt.Sprintf("Content-Type %q, want application/problem+json", ct))
		}
		var generic any
		json.Unmarshal(body, &generic)
		if err := c.doc.Components.Schemas["Problem"].Value.VisitJSON(generic, openapi3.EnableJSONSchema2020()); err != nil {
			c.fail(req.Method, pattern, resp.StatusCode, "not a problem document: "+err.Error())
		}
		if v["type"] != "about:blank" || v["status"] != float64(resp.StatusCode) || v["detail"] != detail {
			c.fail(req.Method, pattern, resp.StatusCode, fmt.Sprintf("problem %s, want type about:blank, status %d, detail %q", body, resp.StatusCode, detail))
		}
		return
	}
	if ct != "application/json" {
		c.fail(req.Method, pattern, resp.StatusCode, fmt.Sprintf("Content-Type %q, want application/json", ct))
	}
	if len(v) != 1 || v["detail"] != detail {
		c.fail(req.Method, pattern, resp.StatusCode, fmt.Sprintf("body %s, want {\"detail\": %q}", body, detail))
	}
}

// oaReport prints what the validator did and every failure; it returns
// false if there were failures.
func oaReport(w io.Writer) bool {
	c := oaCheck
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	refused := 0
	for _, n := range c.refused {
		refused += n
	}
	fmt.Fprintf(w, "openapi: validated %d requests and %d responses against %s (%d requests outside the document were refused with a 4xx, as tests of bad input expect; %d request bodies not sent in full were left out), and checked %d answers to unknown paths and %d to methods a path does not serve; %d responses cut short were not validated\n",
		c.requests, c.responses, oaDocPath, refused, c.partial, c.unrouted, c.disallow, c.unread)
	if c.doc != nil && testing.Verbose() {
		var missing []string
		for _, path := range c.doc.Paths.InMatchingOrder() {
			for method, op := range c.doc.Paths.Value(path).Operations() {
				for code := range op.Responses.Map() {
					n, _ := strconv.Atoi(code)
					if !c.seen[method+" "+path][n] {
						missing = append(missing, fmt.Sprintf("%s %s %s", method, path, code))
					}
				}
			}
		}
		for _, key := range slices.Sorted(maps.Keys(c.refused)) {
			fmt.Fprintf(w, "openapi: %d requests to %s outside the document, refused:\n  %s\n", c.refused[key], key,
				strings.Join(slices.Sorted(maps.Keys(c.refusedBy[key])), "\n  "))
		}
		sort.Strings(missing)
		fmt.Fprintf(w, "openapi: %d documented responses were not exercised by this run:\n  %s\n", len(missing), strings.Join(missing, "\n  "))
	}
	if len(c.order) == 0 {
		return true
	}
	fmt.Fprintf(w, "openapi: %d kinds of mismatch between the document and the server:\n", len(c.order))
	for _, f := range c.order {
		fmt.Fprintf(w, "--- %s %s -> %d (%d times)\n    %s\n", f.method, f.pattern, f.status, c.failures[f],
			strings.ReplaceAll(c.example[f], "\n", "\n    "))
	}
	return false
}

// ---------------------------------------------------------------- tests

// oaRouteFiles are the files of httpapi that register API routes:
// routes.go, and the features whose routes.go calls register their own.
var oaRouteFiles = []string{"../httpapi/routes.go", "../httpapi/sharex.go"}

// oaRoutes reads oaRouteFiles: each rt.handle pattern and the methods
// its handler map names (GET for the get helper). The router adds HEAD to
// GET routes (not to those of handleNoHead), and OPTIONS to every route.
func oaRoutes(t *testing.T) map[string][]string {
	t.Helper()
	fset := token.NewFileSet()
	routes := map[string][]string{}
	for _, file := range oaRouteFiles {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		oaRoutesOf(t, fset, f, routes)
	}
	if len(routes) < 18 {
		t.Fatalf("found %d routes in routes.go: the parser missed some", len(routes))
	}
	return routes
}

// oaRoutesOf adds the routes one file registers.
func oaRoutesOf(t *testing.T, fset *token.FileSet, f *ast.File, routes map[string][]string) {
	t.Helper()
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "handle" && sel.Sel.Name != "handleNoHead") || len(call.Args) != 2 {
			return true
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Errorf("%s: a route pattern that is not a string literal", fset.Position(call.Pos()))
			return true
		}
		pattern, _ := strconv.Unquote(lit.Value)
		methods := map[string]bool{http.MethodOptions: true}
		ast.Inspect(call.Args[1], func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := n.X.(*ast.Ident); ok && id.Name == "http" && strings.HasPrefix(n.Sel.Name, "Method") {
					methods[strings.ToUpper(strings.TrimPrefix(n.Sel.Name, "Method"))] = true
				}
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "get" {
					methods[http.MethodGet] = true
				}
			}
			return true
		})
		if methods[http.MethodGet] && sel.Sel.Name == "handle" {
			methods[http.MethodHead] = true
		}
		routes[pattern] = slices.Sorted(maps.Keys(methods))
		return true
	})
}

// TestOpenAPIDocument: /openapi.yaml serves httpapi/openapi.yaml as it is;
// it is a valid OpenAPI 3.1 document; and it documents every route of
// routes.go with exactly the methods the server serves.
func TestOpenAPIDocument(t *testing.T) {
	want, err := os.ReadFile(oaDocPath)
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, t.TempDir())
	r := s.get("/openapi.yaml")
	if r.status != 200 || !bytes.Equal(r.body, want) {
		t.Fatalf("GET /openapi.yaml: %d, %d bytes, want 200 and the %d bytes of %s", r.status, len(r.body), len(want), oaDocPath)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type %q, want application/yaml", ct)
	}

	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(r.body)
	if err != nil {
		t.Fatalf("the served document does not load: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("the served document does not validate: %v", err)
	}
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi: %q, want 3.1.0", doc.OpenAPI)
	}
	if _, err := gorillamux.NewRouter(doc); err != nil {
		t.Errorf("no router from the document: %v", err)
	}

	routes := oaRoutes(t)
	for pattern, methods := range routes {
		item := doc.Paths.Value(pattern)
		if item == nil {
			t.Errorf("route %s is not in the document", pattern)
			continue
		}
		if got := slices.Sorted(maps.Keys(item.Operations())); !slices.Equal(got, methods) {
			t.Errorf("%s: the document lists %v, the server serves %v", pattern, got, methods)
		}
	}
	for _, path := range doc.Paths.InMatchingOrder() {
		if _, ok := routes[path]; !ok {
			t.Errorf("the document has %s, which routes.go does not serve", path)
		}
	}
	// Every operation says what it answers, and has an id.
	for _, path := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(path).Operations() {
			if op.OperationID == "" || op.Responses.Len() == 0 {
				t.Errorf("%s %s: operationId %q, %d responses", method, path, op.OperationID, op.Responses.Len())
			}
		}
	}
}

// oaStep is one request of the tour and the status it must get.
type oaStep struct {
	what   string
	method string
	path   string
	body   []byte
	header map[string]string
	want   int
}

func oaRun(t *testing.T, s *server, steps ...oaStep) []response {
	t.Helper()
	var out []response
	for _, st := range steps {
		var body io.Reader
		if st.body != nil {
			body = bytes.NewReader(st.body)
		}
		r := s.do(st.method, st.path, body, st.header)
		if r.status != st.want {
			t.Errorf("%s: %s %s: %d %.300q, want %d", st.what, st.method, st.path, r.status, r.body, st.want)
		}
		out = append(out, r)
	}
	return out
}

func oaBasic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func oaJSONField(t *testing.T, r response, field string) string {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("%q: %v", r.body, err)
	}
	s, _ := v[field].(string)
	return s
}

// TestOpenAPITour drives every operation of the document, with its common
// answers, so that the validator checks each against the server, whatever
// else the suite covers.
func TestOpenAPITour(t *testing.T) {
	s := start(t, t.TempDir(), "--cors-origins", "https://app.example")
	png, gif := fixture(t, "png-rgb.png"), fixture(t, "gif-still.gif")
	ppm := fixture(t, "ppm-plain.ppm")
	oaForm := func(field, name string, data []byte) ([]byte, map[string]string) {
		b, ct := form(formPart{field, name, data})
		return b, map[string]string{"Content-Type": ct}
	}

	// The seed API.
	var tok string
	t.Run("seed", func(t *testing.T) {
		r := oaRun(t, s,
			oaStep{"generate-token", "GET", "/imageapi/generate-token/tour/", nil, nil, 201},
			oaStep{"generate-token, taken", "GET", "/imageapi/generate-token/tour", nil, nil, 409},
			oaStep{"generate-token, invalid", "GET", "/imageapi/generate-token/a-b/", nil, nil, 404},
			oaStep{"generate-token, weak password", "GET", "/imageapi/generate-token/tour_pw/", nil, map[string]string{"Authorization": oaBasic("", "short")}, 422},
			oaStep{"generate-token, password", "GET", "/imageapi/generate-token/tour_pw/", nil, map[string]string{"Authorization": oaBasic("tour_pw", "long enough")}, 201},
			oaStep{"retrieve-token", "GET", "/imageapi/retrieve-token/tour/", nil, nil, 200},
			oaStep{"HEAD retrieve-token", "HEAD", "/imageapi/retrieve-token/tour", nil, nil, 200},
			oaStep{"retrieve-token, unknown", "GET", "/imageapi/retrieve-token/nobody/", nil, nil, 404},
			oaStep{"retrieve-token, invalid", "GET", "/imageapi/retrieve-token/a.b/", nil, nil, 404},
			oaStep{"retrieve-token, password required", "GET", "/imageapi/retrieve-token/tour_pw/", nil, nil, 401},
			oaStep{"retrieve-token, wrong password", "GET", "/imageapi/retrieve-token/tour_pw/", nil, map[string]string{"Authorization": oaBasic("", "wrong password")}, 401},
			oaStep{"retrieve-token, password", "GET", "/imageapi/retrieve-token/tour_pw/", nil, map[string]string{"Authorization": oaBasic("tour_pw", "long enough")}, 200},
		)
		tok = oaJSONField(t, r[0], "token")
		base := "/imageapi/token/" + tok
		oaRun(t, s,
			oaStep{"list, empty", "GET", base + "/get-image-list/", nil, nil, 404},
			oaStep{"HEAD list, empty", "HEAD", base + "/get-image-list/", nil, nil, 404},
			oaStep{"list, bad token", "GET", "/imageapi/token/AAAAAAAAAA/get-image-list/", nil, nil, 401},
		)
		b, h := oaForm("file", "tour.ppm", ppm)
		r = oaRun(t, s, oaStep{"upload", "POST", base + "/upload-image/", b, h, 201})
		id := oaJSONField(t, r[0], "File ID")
		b2, h2 := oaForm("file", "other.png", png)
		oaRun(t, s, oaStep{"upload other", "POST", base + "/upload-image", b2, h2, 201})
		nb, nh := oaForm("text", "", []byte("no file"))
		txt, txth := oaForm("file", "notes.txt", []byte("not an image"))
		patch := base + "/update-image/" + id + "/"
		img := base + "/get-image/" + id + "/"
		oaRun(t, s,
			oaStep{"upload, taken", "POST", base + "/upload-image/", b, h, 409},
			oaStep{"upload, no file", "POST", base + "/upload-image/", nb, nh, 204},
			oaStep{"upload, not a form", "POST", base + "/upload-image/", []byte("{}"), map[string]string{"Content-Type": "application/json"}, 204},
			oaStep{"upload, not an image", "POST", base + "/upload-image/", txt, txth, 406},
			oaStep{"upload, bad token", "POST", "/imageapi/token/AAAAAAAAAA/upload-image/", b, h, 401},
			oaStep{"upload, broken form", "POST", base + "/upload-image/", []byte("--x\r\nbroken"), map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, 400},
			oaStep{"list", "GET", base + "/get-image-list/", nil, nil, 200},
			oaStep{"HEAD list", "HEAD", base + "/get-image-list", nil, nil, 200},
			oaStep{"get-image (gzip)", "GET", img, nil, nil, 200},
			oaStep{"get-image identity", "GET", img, nil, map[string]string{"Accept-Encoding": "identity"}, 200},
			oaStep{"HEAD get-image", "HEAD", img, nil, nil, 200},
			oaStep{"get-image range", "GET", img, nil, map[string]string{"Range": "bytes=0-9"}, 206},
			oaStep{"get-image ranges", "GET", img, nil, map[string]string{"Range": "bytes=20-29,0-9"}, 206},
			oaStep{"get-image range beyond", "GET", img, nil, map[string]string{"Range": "bytes=99999999-"}, 416},
			oaStep{"get-image If-None-Match", "GET", img, nil, map[string]string{"If-None-Match": "*"}, 304},
			oaStep{"get-image If-None-Match identity", "GET", img, nil, map[string]string{"If-None-Match": "*", "Accept-Encoding": "identity"}, 304},
			oaStep{"get-image If-Match", "GET", img, nil, map[string]string{"If-Match": `"nope"`, "Accept-Encoding": "identity"}, 412},
			oaStep{"get-image unknown", "GET", base + "/get-image/zzzz/", nil, nil, 404},
			oaStep{"HEAD get-image unknown", "HEAD", base + "/get-image/zzzz/", nil, nil, 404},
			oaStep{"HEAD get-image range", "HEAD", img, nil, map[string]string{"Range": "bytes=0-9"}, 206},
			oaStep{"HEAD get-image If-None-Match", "HEAD", img, nil, map[string]string{"If-None-Match": "*"}, 304},
			oaStep{"HEAD get-image bad token", "HEAD", "/imageapi/token/AAAAAAAAAA/get-image/" + id, nil, nil, 401},
			oaStep{"get-image bad token", "GET", "/imageapi/token/AAAAAAAAAA/get-image/" + id, nil, nil, 401},
			oaStep{"patch", "PATCH", patch, b2, h2, 409},
			oaStep{"patch, no file", "PATCH", patch, nb, nh, 204},
			oaStep{"patch, not an image", "PATCH", patch, txt, txth, 406},
			oaStep{"patch, unknown", "PATCH", base + "/update-image/zzzz/", b, h, 404},
			oaStep{"patch, bad token", "PATCH", "/imageapi/token/AAAAAAAAAA/update-image/" + id, b, h, 401},
		)
		b3, h3 := oaForm("f", "tour.gif", gif)
		oaRun(t, s,
			oaStep{"patch", "PATCH", patch, b3, h3, 200},
			oaStep{"delete, unknown", "DELETE", base + "/delete-image/zzzz/", nil, nil, 404},
			oaStep{"delete, bad token", "DELETE", "/imageapi/token/AAAAAAAAAA/delete-image/" + id + "/", nil, nil, 401},
			oaStep{"delete", "DELETE", base + "/delete-image/" + id + "/", nil, nil, 200},
		)
	})

	// /api/v1.
	t.Run("v1", func(t *testing.T) {
		js := map[string]string{"Content-Type": "application/json"}
		r := oaRun(t, s,
			oaStep{"create user", "POST", "/api/v1/users", []byte(`{"username":"tour_v1","password":"long enough"}`), js, 201},
			oaStep{"create user, taken", "POST", "/api/v1/users", []byte(`{"username":"tour_v1"}`), js, 409},
			oaStep{"create user, invalid", "POST", "/api/v1/users", []byte(`{"username":"a b"}`), js, 422},
			oaStep{"create user, weak password", "POST", "/api/v1/users", []byte(`{"username":"tour_v2","password":"short"}`), js, 422},
			oaStep{"create user, bad JSON", "POST", "/api/v1/users", []byte(`{"username":`), js, 400},
			oaStep{"create user, unknown member", "POST", "/api/v1/users", []byte(`{"username":"x","admin":true}`), js, 400},
		)
		v1tok := oaJSONField(t, r[0], "token")
		auth := map[string]string{"Authorization": "Bearer " + v1tok}
		with := func(kv ...string) map[string]string {
			h := maps.Clone(auth)
			for i := 0; i+1 < len(kv); i += 2 {
				h[kv[i]] = kv[i+1]
			}
			return h
		}
		oaRun(t, s,
			oaStep{"me", "GET", "/api/v1/users/me", nil, auth, 200},
			oaStep{"HEAD me", "HEAD", "/api/v1/users/me", nil, auth, 200},
			oaStep{"me, no token", "GET", "/api/v1/users/me", nil, nil, 401},
			oaStep{"me, bad token", "GET", "/api/v1/users/me", nil, map[string]string{"Authorization": "Bearer AAAAAAAAAA"}, 401},
			oaStep{"limits", "GET", "/api/v1/limits", nil, nil, 200},
			oaStep{"HEAD limits", "HEAD", "/api/v1/limits", nil, nil, 200},
			oaStep{"list, empty", "GET", "/api/v1/images", nil, auth, 200},
		)
		r = oaRun(t, s,
			oaStep{"upload raw", "POST", "/api/v1/images?name=a.png", png, with("Content-Type", "image/png", "Idempotency-Key", "tour-1"), 201},
			oaStep{"upload raw, replayed", "POST", "/api/v1/images?name=a.png", png, with("Content-Type", "image/png", "Idempotency-Key", "tour-1"), 201},
			oaStep{"upload raw, no type", "POST", "/api/v1/images?name=b.ppm", ppm, auth, 201},
		)
		id := oaJSONField(t, r[0], "id")
		ppmID := oaJSONField(t, r[2], "id")
		etag := r[0].header.Get("Etag")
		if r[1].header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replayed upload: no Idempotent-Replayed: true")
		}
		mb, mct := oaForm("file", "c.gif", gif)
		mb2, mct2 := oaForm("file", "d.gif", gif)
		txt, txth := oaForm("file", "notes.txt", []byte("not an image"))
		nb, nh := oaForm("text", "", []byte("no file"))
		r = oaRun(t, s,
			oaStep{"upload form", "POST", "/api/v1/images", mb, with("Content-Type", mct["Content-Type"]), 201},
			oaStep{"upload, no name", "POST", "/api/v1/images", png, with("Content-Type", "image/png"), 400},
			oaStep{"upload, form without file", "POST", "/api/v1/images", nb, with("Content-Type", nh["Content-Type"]), 400},
			oaStep{"upload, not an image", "POST", "/api/v1/images", txt, with("Content-Type", txth["Content-Type"]), 406},
			oaStep{"upload, taken", "POST", "/api/v1/images?name=a.png", png, with("Content-Type", "application/octet-stream"), 409},
			oaStep{"upload, bad key", "POST", "/api/v1/images?name=z.png", png, with("Idempotency-Key", "has space"), 400},
			oaStep{"upload, no token", "POST", "/api/v1/images?name=z.png", png, nil, 401},
			oaStep{"list", "GET", "/api/v1/images", nil, auth, 200},
			oaStep{"HEAD list", "HEAD", "/api/v1/images", nil, auth, 200},
			oaStep{"list, page", "GET", "/api/v1/images?limit=2", nil, auth, 200},
			oaStep{"list, bad limit", "GET", "/api/v1/images?limit=0", nil, auth, 400},
			oaStep{"list, bad cursor", "GET", "/api/v1/images?cursor=nope", nil, auth, 400},
		)
		var page struct {
			NextCursor string `json:"next_cursor"`
		}
		json.Unmarshal(r[9].body, &page)
		if page.NextCursor == "" || r[9].header.Get("Link") == "" {
			t.Errorf("a page of 2 of 3 images: no next_cursor or Link: %v", r[9])
		}
		img := "/api/v1/images/" + id
		oaRun(t, s,
			oaStep{"list, next page", "GET", "/api/v1/images?limit=2&cursor=" + url.QueryEscape(page.NextCursor), nil, auth, 200},
			oaStep{"get (gzip)", "GET", img, nil, auth, 200},
			oaStep{"variant", "GET", img + "?w=8", nil, auth, 200},
			oaStep{"HEAD variant", "HEAD", img + "?w=8&h=8&fit=cover&format=jpeg", nil, auth, 200},
			oaStep{"variant If-None-Match", "GET", img + "?w=8", nil, with("If-None-Match", strings.TrimSuffix(etag, `"`)+`-8x0-contain.png"`), 304},
			oaStep{"HEAD variant If-None-Match", "HEAD", img + "?w=8", nil, with("If-None-Match", strings.TrimSuffix(etag, `"`)+`-8x0-contain.png"`), 304},
			oaStep{"variant If-Match", "GET", img + "?w=8", nil, with("If-Match", `"nope"`), 412},
			oaStep{"variant, bad w", "GET", img + "?w=0", nil, auth, 400},
			oaStep{"HEAD variant, bad h", "HEAD", img + "?h=x", nil, auth, 400},
			oaStep{"variant, webp", "GET", img + "?w=8&format=webp", nil, auth, 422},
			oaStep{"HEAD variant, webp", "HEAD", img + "?w=8&format=webp", nil, auth, 422},
			oaStep{"variant of a PPM", "GET", "/api/v1/images/" + ppmID + "?w=8", nil, auth, 422},
			oaStep{"get identity", "GET", img, nil, with("Accept-Encoding", "identity"), 200},
			oaStep{"get, CORS", "GET", img, nil, with("Origin", "https://app.example"), 200},
			oaStep{"HEAD get, CORS", "HEAD", img, nil, with("Origin", "https://app.example"), 200},
			oaStep{"HEAD get", "HEAD", img, nil, auth, 200},
			oaStep{"get range", "GET", img, nil, with("Range", "bytes=0-9"), 206},
			oaStep{"get range beyond", "GET", img, nil, with("Range", "bytes=99999999-"), 416},
			oaStep{"get If-None-Match", "GET", img, nil, with("If-None-Match", etag, "Accept-Encoding", "identity"), 304},
			oaStep{"get If-Match", "GET", img, nil, with("If-Match", `"nope"`, "Accept-Encoding", "identity"), 412},
			oaStep{"get unknown", "GET", "/api/v1/images/zzzz", nil, auth, 404},
			oaStep{"HEAD get unknown", "HEAD", "/api/v1/images/zzzz", nil, auth, 404},
			oaStep{"HEAD get range", "HEAD", img, nil, with("Range", "bytes=0-9"), 206},
			oaStep{"HEAD get If-None-Match", "HEAD", img, nil, with("If-None-Match", etag, "Accept-Encoding", "identity"), 304},
			oaStep{"HEAD meta If-None-Match", "HEAD", img + "/meta", nil, with("If-None-Match", etag), 304},
			oaStep{"HEAD me, no token", "HEAD", "/api/v1/users/me", nil, nil, 401},
			oaStep{"get, no token", "GET", img, nil, nil, 401},
			oaStep{"meta", "GET", img + "/meta", nil, auth, 200},
			oaStep{"HEAD meta", "HEAD", img + "/meta", nil, auth, 200},
			oaStep{"meta If-None-Match", "GET", img + "/meta", nil, with("If-None-Match", etag), 304},
			oaStep{"meta unknown", "GET", "/api/v1/images/zzzz/meta", nil, auth, 404},
			oaStep{"replace, stale If-Match", "PUT", img, gif, with("If-Match", `"`+strings.Repeat("0", 64)+`"`), 412},
			oaStep{"replace, taken", "PUT", img + "?name=b.ppm", gif, auth, 409},
			oaStep{"replace, not an image", "PUT", img, []byte("text"), auth, 406},
			oaStep{"replace, unknown", "PUT", "/api/v1/images/zzzz", gif, auth, 404},
			oaStep{"replace", "PUT", img, gif, with("If-Match", etag, "Content-Type", "image/gif"), 200},
			oaStep{"replace form", "PUT", img, mb2, with("Content-Type", mct2["Content-Type"]), 200},
			oaStep{"delete, stale If-Match", "DELETE", img, nil, with("If-Match", etag), 412},
			oaStep{"delete", "DELETE", img, nil, auth, 204},
			oaStep{"delete again", "DELETE", img, nil, auth, 404},
			oaStep{"sharex", "GET", "/api/v1/sharex.sxcu", nil, auth, 200},
			oaStep{"HEAD sharex", "HEAD", "/api/v1/sharex.sxcu", nil, auth, 200},
			oaStep{"sharex, behind TLS", "GET", "/api/v1/sharex.sxcu", nil, with("X-Forwarded-Proto", "https"), 200},
			oaStep{"sharex, no token", "GET", "/api/v1/sharex.sxcu", nil, nil, 401},
			oaStep{"HEAD sharex, no token", "HEAD", "/api/v1/sharex.sxcu", nil, nil, 401},
			oaStep{"rotate, no token", "POST", "/api/v1/users/me/token", nil, nil, 401},
			oaStep{"rotate", "POST", "/api/v1/users/me/token", nil, auth, 200},
			oaStep{"rotated token is dead", "GET", "/api/v1/users/me", nil, auth, 401},
		)
	})

	// Operations, OPTIONS, CORS, unknown paths and methods.
	t.Run("operations", func(t *testing.T) {
		oaRun(t, s,
			oaStep{"healthz", "GET", "/healthz", nil, nil, 200},
			oaStep{"HEAD healthz", "HEAD", "/healthz", nil, nil, 200},
			oaStep{"readyz", "GET", "/readyz", nil, nil, 200},
			oaStep{"HEAD readyz", "HEAD", "/readyz", nil, nil, 200},
			oaStep{"openapi", "GET", "/openapi.yaml", nil, nil, 200},
			oaStep{"HEAD openapi", "HEAD", "/openapi.yaml", nil, nil, 200},
			oaStep{"metrics", "GET", "/metrics", nil, nil, 200},
			oaStep{"metrics identity", "GET", "/metrics", nil, map[string]string{"Accept-Encoding": "identity"}, 200},
			oaStep{"HEAD metrics", "HEAD", "/metrics", nil, nil, 200},
			oaStep{"preflight", "OPTIONS", "/api/v1/images", nil, map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}, 204},
			oaStep{"preflight, unknown path", "OPTIONS", "/nowhere", nil, map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}, 204},
			oaStep{"CORS GET", "GET", "/api/v1/limits", nil, map[string]string{"Origin": "https://app.example"}, 200},
			oaStep{"CORS OPTIONS", "OPTIONS", "/api/v1/limits", nil, map[string]string{"Origin": "https://app.example"}, 204},
			oaStep{"unknown path", "GET", "/nowhere", nil, nil, 404},
			oaStep{"unknown path, v1", "GET", "/api/v1/nowhere", nil, nil, 404},
			oaStep{"405 seed", "PUT", "/imageapi/generate-token/x/", nil, nil, 405},
			oaStep{"405 v1", "PATCH", "/api/v1/images", nil, nil, 405},
			oaStep{"405 HEAD", "HEAD", "/api/v1/users", nil, nil, 405},
		)
		oaCheck.wg.Wait()
		doc := oaCheck.doc
		if doc == nil {
			t.Fatal("the document did not load")
		}
		for _, path := range doc.Paths.InMatchingOrder() {
			p := strings.NewReplacer("{username}", "tour", "{token}", "AAAAAAAAAA", "{id}", "zzzz").Replace(path)
			oaRun(t, s, oaStep{"OPTIONS", "OPTIONS", p, nil, nil, 204})
		}
	})

	// What needs a server set up for it.
	t.Run("limits", func(t *testing.T) {
		small := start(t, t.TempDir(), "--max-upload", "1KiB", "--token-retrieval", "off")
		stok := small.newUser("small")
		b, h := oaForm("file", "big.ppm", ppm)
		nb, nh := oaForm("text", "", []byte("no file"))
		sauth := map[string]string{"Authorization": "Bearer " + stok}
		sid := small.uploadID(stok, "small.webp", fixture(t, "webp-lossy.webp"))
		oaRun(t, small,
			oaStep{"seed upload too large", "POST", "/imageapi/token/" + stok + "/upload-image/", b, h, 413},
			oaStep{"seed patch too large", "PATCH", "/imageapi/token/" + stok + "/update-image/" + sid + "/", b, h, 413},
			oaStep{"seed patch, broken form", "PATCH", "/imageapi/token/" + stok + "/update-image/" + sid + "/", []byte("--x\r\nbroken"), map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, 400},
			oaStep{"v1 upload too large", "POST", "/api/v1/images?name=big.ppm", ppm, sauth, 413},
			oaStep{"v1 replace too large", "PUT", "/api/v1/images/" + sid, ppm, sauth, 413},
			oaStep{"v1 replace, form without file", "PUT", "/api/v1/images/" + sid, nb, map[string]string{"Authorization": "Bearer " + stok, "Content-Type": nh["Content-Type"]}, 400},
			oaStep{"v1 user, body too large", "POST", "/api/v1/users", []byte(`{"username":"` + strings.Repeat("x", 70<<10) + `"}`), map[string]string{"Content-Type": "application/json"}, 413},
			oaStep{"retrieval off", "GET", "/imageapi/retrieve-token/small/", nil, nil, 403},
			oaStep{"HEAD retrieval off", "HEAD", "/imageapi/retrieve-token/small/", nil, nil, 403},
		)
		full := start(t, t.TempDir(), "--min-free", "1000000GiB")
		ftok := full.newUser("full")
		fb, fh := oaForm("file", "a.webp", fixture(t, "webp-lossy.webp"))
		oaRun(t, full,
			oaStep{"seed upload, disk below the reserve", "POST", "/imageapi/token/" + ftok + "/upload-image/", fb, fh, 507},
			oaStep{"v1 upload, disk below the reserve", "POST", "/api/v1/images?name=a.webp", fixture(t, "webp-lossy.webp"), map[string]string{"Authorization": "Bearer " + ftok}, 507},
			oaStep{"readyz, low space", "GET", "/readyz", nil, nil, 503},
			oaStep{"HEAD readyz, low space", "HEAD", "/readyz", nil, nil, 503},
		)
		limited := start(t, t.TempDir(), "--account-rate", "1/h", "--auth-failure-rate", "1/h")
		oaRun(t, limited,
			oaStep{"first account", "GET", "/imageapi/generate-token/one/", nil, nil, 201},
			oaStep{"second account", "GET", "/imageapi/generate-token/two/", nil, nil, 429},
			oaStep{"v1 account", "POST", "/api/v1/users", []byte(`{"username":"three"}`), map[string]string{"Content-Type": "application/json"}, 429},
			oaStep{"bad token", "GET", "/imageapi/token/AAAAAAAAAA/get-image-list/", nil, nil, 401},
			oaStep{"seed, after a failure", "GET", "/imageapi/token/AAAAAAAAAA/get-image-list/", nil, nil, 429},
			oaStep{"v1, after a failure", "GET", "/api/v1/users/me", nil, map[string]string{"Authorization": "Bearer AAAAAAAAAA"}, 429},
		)
		// A stalled upload, through the validating client.
		slow := start(t, t.TempDir(), "--body-timeout", "1s")
		sltok := slow.newUser("slow")
		slid := slow.uploadID(sltok, "first.png", png)
		for _, mp := range [][2]string{
			{"POST", "/imageapi/token/" + sltok + "/upload-image/"},
			{"PATCH", "/imageapi/token/" + sltok + "/update-image/" + slid + "/"},
			{"POST", "/api/v1/images"},
			{"PUT", "/api/v1/images/" + slid},
		} {
			method, path := mp[0], mp[1]
			body, ct := oaForm("file", "slow.png", png)
			pr, pw := io.Pipe()
			req, _ := http.NewRequest(method, slow.url+path, pr)
			req.Header.Set("Content-Type", ct["Content-Type"])
			req.Header.Set("Authorization", "Bearer "+sltok)
			req.ContentLength = int64(len(body))
			go pw.Write(body[:300]) // past the part's headers
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("stalled upload, %s %s: %v", method, path, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			pw.CloseWithError(errors.New("given up"))
			if resp.StatusCode != 408 {
				t.Errorf("stalled upload, %s %s: %d, want 408", method, path, resp.StatusCode)
			}
		}
	})

	// Every documented operation was checked against the server.
	oaCheck.wg.Wait()
	oaCheck.mu.Lock()
	defer oaCheck.mu.Unlock()
	if oaCheck.doc == nil {
		t.Fatal("the document did not load")
	}
	for _, path := range oaCheck.doc.Paths.InMatchingOrder() {
		for method := range oaCheck.doc.Paths.Value(path).Operations() {
			if len(oaCheck.seen[method+" "+path]) == 0 {
				t.Errorf("%s %s was never exercised", method, path)
			}
		}
	}
}
