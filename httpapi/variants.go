package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/imagestore/imagestore/domain"
)

// Variants: GET /api/v1/images/{id}?w=&h=&fit=&format= answers a resized
// (and possibly re-encoded) copy of the image instead of its bytes. See
// domain.OpenVariant for how variants are made and kept.

// wantsVariant reports whether a download asks for a variant: it has one
// of the variant's query parameters.
func wantsVariant(r *http.Request) bool {
	q := r.URL.Query()
	return q.Has("w") || q.Has("h") || q.Has("fit") || q.Has("format")
}

// variantParams reads a variant's query parameters. Every parameter out
// of bounds is a 400 naming it; format=webp is domain.ErrVariantFormat.
func (s *Server) variantParams(r *http.Request) (domain.VariantParams, error) {
	q := r.URL.Query()
	maxSize := s.svc.Config().MaxVariantSize
	sideAllowed := fmt.Sprintf("a whole number of pixels from 1 to %d", maxSize)
	side := func(name string) (int, error) {
		if !q.Has(name) {
			return 0, nil
		}
		v := q.Get(name)
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxSize {
			return 0, &errBadQuery{param: name, allowed: sideAllowed, actual: v}
		}
		return n, nil
	}
	var p domain.VariantParams
	var err error
	if p.Width, err = side("w"); err != nil {
		return p, err
	}
	if p.Height, err = side("h"); err != nil {
		return p, err
	}
	if p.Width == 0 && p.Height == 0 {
		return p, &errBadQuery{param: "w", allowed: "set: a variant needs w, h or both, each " + sideAllowed, actual: ""}
	}
	if q.Has("fit") {
		fit, ok := domain.ParseFit(q.Get("fit"))
		if !ok {
			return p, &errBadQuery{param: "fit", allowed: "contain, cover or fill", actual: q.Get("fit")}
		}
		p.Fit = fit
	}
	if q.Has("format") {
		switch v := q.Get("format"); v {
		case "jpeg", "png":
			p.Format = v
		case "webp":
			return p, domain.ErrVariantFormat
		default:
			return p, &errBadQuery{param: "format", allowed: "jpeg or png", actual: v}
		}
	}
	return p, nil
}

// variantETag is the strong ETag of a variant: the image's SHA-256 and the
// variant's parameters, as resolved.
func variantETag(sha256 string, p domain.VariantParams) string {
	return `"` + sha256 + "-" + p.Tag() + `"`
}

// variantName is the file name a variant is offered under: the image's,
// with the variant format's extension.
func variantName(name string, p domain.VariantParams) string {
	ext := ".png"
	if p.Format == "jpeg" {
		ext = ".jpg"
	}
	return strings.TrimSuffix(name, path.Ext(name)) + ext
}

// serveVariant answers a download of a variant of the user's image: 304
// or 412 from the ETag and the image's time alone, without touching the
// variant; otherwise the variant, from the store or made now, with its
// length. Range is ignored (RFC 9110 allows it): a variant is small, and
// sent whole.
func (s *Server) serveVariant(w http.ResponseWriter, r *http.Request, u domain.User) {
	ctx := r.Context()
	id := r.PathValue("id")
	p, err := s.variantParams(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	img, err := s.svc.Image(ctx, u, id)
	if err == nil {
		p, err = s.svc.ResolveVariant(img, p)
	}
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	h := w.Header()
	etag := variantETag(img.SHA256, p)
	if status := variantPreconditions(r, etag, img.Updated); status != 0 {
		h.Set("Etag", etag)
		h.Set("Cache-Control", "private")
		h.Set("Last-Modified", img.Updated.UTC().Format(http.TimeFormat))
		w.WriteHeader(status)
		return
	}
	v, err := s.svc.OpenVariant(ctx, u, id, p)
	if err != nil {
		if errors.Is(err, domain.ErrDamaged) {
			s.log.Error("image download failed", "route", routeOf(r), "err", err)
			s.opts.Metrics.DownloadFailed()
		}
		s.writeProblem(w, r, err)
		return
	}
	defer v.Body.Close()
	h.Set("Content-Type", v.MIME())
	h.Set("Content-Length", strconv.FormatInt(v.Size, 10))
	h.Set("Etag", variantETag(v.Image.SHA256, v.Params))
	h.Set("Last-Modified", v.Image.Updated.UTC().Format(http.TimeFormat))
	h.Set("Cache-Control", "private")
	h.Set("Content-Disposition", inlineDisposition(variantName(v.Image.Name, v.Params)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	// The limit lets a file be sent with sendfile(2), knowing where it ends.
	if n, err := io.Copy(w, io.LimitReader(v.Body, v.Size)); err != nil || n != v.Size {
		s.abortDownload(r, n, v.Size, err)
	}
}

// variantPreconditions evaluates a download's conditions in RFC 9110's
// order: If-Match (strong comparison), or else If-Unmodified-Since, fail
// with 412; If-None-Match, or else If-Modified-Since, answer 304. It
// returns 0 when the variant is to be sent.
func variantPreconditions(r *http.Request, etag string, modified time.Time) int {
	if im := r.Header.Get("If-Match"); im != "" {
		match := false
		for tag := range strings.SplitSeq(im, ",") {
			if tag = strings.TrimSpace(tag); tag == "*" || tag == etag {
				match = true
			}
		}
		if !match {
			return http.StatusPreconditionFailed
		}
	} else if ius, err := http.ParseTime(r.Header.Get("If-Unmodified-Since")); err == nil && modified.Truncate(time.Second).After(ius) {
		return http.StatusPreconditionFailed
	}
	if notModified(r, etag, modified) {
		return http.StatusNotModified
	}
	return 0
}
