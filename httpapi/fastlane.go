package httpapi

import (
	"bytes"
	"context"
	"net/http"
	"time"

	"github.com/imagestore/imagestore/internal/fastlane"
)

// The routes of the downloads the lane answers, as the access log and the
// metrics name them.
const (
	seedGetRoute = "/imageapi/token/{token}/get-image/{id}/"
	v1GetRoute   = "/api/v1/images/{id}"
)

// FastLane returns the Answerer of a fastlane.Lane for this server. It
// answers the downloads of an image (the seed's get-image and GET
// /api/v1/images/{id}) whose bytes the domain's memory cache holds, with
// exactly the response serveImageAs would send. It refuses every other
// request, and the lane then hands the connection to the handler
// (ServeHTTP) for good: a HEAD, a failed authentication, an image not
// cached, any header that could change the answer (Range, If-None-Match,
// Origin, ...) or that it does not know.
func (s *Server) FastLane() fastlane.Answerer { return fastAnswerer{s} }

type fastAnswerer struct{ s *Server }

// The bits of a fastlane.Response's Tag.
const (
	fastGzip = 1 << iota // the stored gzip stream
	fastV1               // GET /api/v1/images/{id}
)

// harmlessField reports whether a request header is one that no handler
// reads and that the lane's answer can ignore, as serveImageAs does. Every
// other header sends the request to ServeHTTP.
func harmlessField(name []byte) bool {
	for _, h := range [...]string{"host", "connection", "user-agent", "accept", "accept-language",
		"referer", "cache-control", "pragma", "dnt", "priority", "upgrade-insecure-requests"} {
		if fastlane.EqualFold(name, h) {
			return true
		}
	}
	// A browser's fetch metadata and client hints (Sec-Fetch-Mode, ...).
	return len(name) > 4 && fastlane.EqualFold(name[:4], "sec-")
}

func (a fastAnswerer) Answer(req *fastlane.Request, resp *fastlane.Response) bool {
	s := a.s
	if req.Method != http.MethodGet {
		return false
	}
	// The two downloads: /imageapi/token/{token}/get-image/{id}/ and
	// /api/v1/images/{id} with the token in Authorization, the final slash
	// optional, with no query (a variant's parameters) and no escapes
	// (the router unescapes).
	if bytes.IndexByte(req.Target, '%') >= 0 || bytes.IndexByte(req.Target, '?') >= 0 {
		return false
	}
	var token, id []byte
	disposition, tag := contentDisposition, 0
	if rest, ok := bytes.CutPrefix(req.Target, []byte("/imageapi/token/")); ok {
		token, rest, _ = bytes.Cut(rest, []byte("/"))
		if id, ok = bytes.CutPrefix(rest, []byte("get-image/")); !ok || len(token) == 0 {
			return false
		}
	} else if id, ok = bytes.CutPrefix(req.Target, []byte("/api/v1/images/")); ok {
		disposition, tag = inlineDisposition, fastV1
	} else {
		return false
	}
	id = bytes.TrimSuffix(id, []byte("/"))
	if len(id) == 0 || bytes.IndexByte(id, '/') >= 0 {
		return false
	}
	// A header sent twice is left to net/http, rather than read as it
	// would read it (the first one).
	gz, sawEncoding, sawAuthorization := false, false, false
	for _, f := range req.Fields {
		switch {
		case fastlane.EqualFold(f.Name, "accept-encoding") && !sawEncoding:
			gz, sawEncoding = acceptsGzipIn(string(f.Value)), true
		case fastlane.EqualFold(f.Name, "authorization") && tag&fastV1 != 0 && !sawAuthorization:
			// As bearer reads it.
			scheme, t, ok := bytes.Cut(f.Value, []byte(" "))
			if !ok || !fastlane.EqualFold(scheme, "bearer") {
				return false
			}
			token, sawAuthorization = bytes.TrimSpace(t), true
		case !harmlessField(f.Name):
			return false
		}
	}
	if len(token) == 0 {
		return false
	}
	if bad, _ := s.failureLimits.exhausted(clientAt(req.RemoteAddr)); bad {
		return false
	}
	ctx := context.Background()
	u, err := s.svc.Authenticate(ctx, string(token))
	if err != nil {
		return false
	}
	img, data, ok := s.svc.Cached(ctx, u, string(id), gz)
	if !ok {
		return false
	}
	// The headers serveImageAs sets (setImageHeaders), that
	// http.ServeContent adds for the decompressed bytes, and that cors
	// adds to every answer; in net/http's order (sorted) and spelling
	// (canonical keys). TestFastLaneParity compares them.
	h := resp.Header
	if !gz {
		h = append(h, "Accept-Ranges: bytes\r\n"...)
	}
	h = append(h, "Cache-Control: private\r\nContent-Disposition: "...)
	h = append(h, disposition(img.Name)...)
	if gz {
		h = append(h, "\r\nContent-Encoding: gzip"...)
	}
	h = append(h, "\r\nContent-Type: "...)
	h = append(h, img.MIME()...)
	h = append(h, "\r\nEtag: \""...)
	h = append(h, img.SHA256...)
	if gz {
		h = append(h, "-gz"...)
	}
	h = append(h, "\"\r\nLast-Modified: "...)
	h = img.Updated.UTC().AppendFormat(h, http.TimeFormat)
	h = append(h, "\r\n"...)
	if len(s.opts.CORSOrigins) > 0 {
		h = append(h, "Vary: Origin\r\n"...) // cors adds it to every answer
	}
	h = append(h, "Vary: Accept-Encoding\r\nX-Content-Type-Options: nosniff\r\n"...)
	if gz {
		tag |= fastGzip
	}
	resp.Header, resp.Body, resp.Tag = h, data, tag
	return true
}

// Answered logs and counts an answer as accessLog does; and a failed
// one of the stored gzip stream as abortDownload does (a failed one of the
// decompressed bytes, which http.ServeContent sends, is not).
func (a fastAnswerer) Answered(req *fastlane.Request, resp *fastlane.Response, written int64, err error) {
	s := a.s
	route := seedGetRoute
	if resp.Tag&fastV1 != 0 {
		route = v1GetRoute
	}
	if err != nil && resp.Tag&fastGzip != 0 {
		s.log.Error("image download failed", "route", route, "sent", written, "size", len(resp.Body), "err", err)
		s.opts.Metrics.DownloadFailed()
	}
	s.logRequest(context.Background(), req.Method, route, http.StatusOK, 0, written, time.Since(req.Start), req.RemoteAddr)
}
