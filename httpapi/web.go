package httpapi

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// The web gallery: a page at / and its files under /assets/, embedded in
// the binary. The page is plain HTML, CSS and JavaScript that talks only to
// this server's /api/v1; nothing is built, and nothing is fetched from
// elsewhere.

//go:embed web
var webFS embed.FS

// webIndex is the page's file; the others are assets.
const webIndex = "index.html"

// webTypes gives each kind of file its media type: set here rather than
// guessed from the system's tables, which differ between machines.
var webTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// webCSP allows the page its own files, its own API (connect-src falls
// back to default-src) and images from blob: URLs (thumbnails are fetched
// with the token, then shown from object URLs); nothing inline, nothing
// from another origin, no plugins, no framing.
const webCSP = "default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// webFile is one embedded file, ready to serve.
type webFile struct {
	body        []byte
	contentType string
	etag        string
}

// webFiles are the gallery's files by name, read once.
var webFiles = loadWebFiles()

func loadWebFiles() map[string]webFile {
	files := map[string]webFile{}
	err := fs.WalkDir(webFS, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ct, ok := webTypes[path.Ext(p)]
		if !ok {
			panic("httpapi/web: no media type for " + p)
		}
		body, err := webFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		files[path.Base(p)] = webFile{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		panic(err) // an embedded file system cannot fail to read
	}
	return files
}

// webRoutes registers the web gallery's routes: the page at / and its
// assets, for GET and HEAD.
func (s *Server) webRoutes(rt *router) {
	rt.handle("/", map[string]http.Handler{http.MethodGet: http.HandlerFunc(s.handleWebIndex)})
	rt.handle("/assets/{name}", map[string]http.Handler{http.MethodGet: http.HandlerFunc(s.handleWebAsset)})
}

func (s *Server) handleWebIndex(w http.ResponseWriter, r *http.Request) {
	if r.URL.EscapedPath() != "/" {
		// The router also matches "//", where the page's relative
		// addresses would not work.
		serveWebFile(w, r, "")
		return
	}
	serveWebFile(w, r, webIndex)
}

func (s *Server) handleWebAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == webIndex {
		name = "" // the page is served at / only
	}
	serveWebFile(w, r, name)
}

// serveWebFile answers with one of the gallery's files, or 404. Every
// answer carries the security headers; a file is revalidated on every use
// (no-cache with a strong ETag, so an unchanged file costs a 304), so that
// a new binary's page never runs with an old script.
func serveWebFile(w http.ResponseWriter, r *http.Request, name string) {
	h := w.Header()
	h.Set("Content-Security-Policy", webCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	f, ok := webFiles[name]
	if !ok {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("Etag", f.etag)
	// ServeContent answers If-None-Match (304), HEAD and ranges; without a
	// modification time it sends no Last-Modified.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
