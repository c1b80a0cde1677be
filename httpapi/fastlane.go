package httpapi

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/imagestore/imagestore/internal/fastlane"
)

// seedGetRoute is the route of the seed's download, as the access log and
// the metrics name it.
const seedGetRoute = "/imageapi/token/{token}/get-image/{id}/"

// FastLane returns the Answerer of a fastlane.Lane for this server. It
// answers the seed's download of an image whose bytes the domain's memory
// cache holds (the hot images of a server), with exactly the response
// serveImageAs would send, and leaves every other request to the handler
// (ServeHTTP): a HEAD, a failed authentication, an image not cached, any
// header that could change the answer (Range, If-None-Match, Origin, ...)
// or that it does not know.
func (s *Server) FastLane() fastlane.Answerer { return fastAnswerer{s} }

type fastAnswerer struct{ s *Server }

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
	// /imageapi/token/{token}/get-image/{id}/, the final slash optional,
	// with no query and no escapes (the router unescapes).
	rest, ok := bytes.CutPrefix(req.Target, []byte("/imageapi/token/"))
	if !ok || bytes.IndexByte(rest, '%') >= 0 || bytes.IndexByte(rest, '?') >= 0 {
		return false
	}
	token, rest, _ := bytes.Cut(rest, []byte("/"))
	rest, ok = bytes.CutPrefix(rest, []byte("get-image/"))
	if !ok {
		return false
	}
	id := bytes.TrimSuffix(rest, []byte("/"))
	if len(token) == 0 || len(id) == 0 || bytes.IndexByte(id, '/') >= 0 {
		return false
	}
	gz := false
	for _, f := range req.Fields {
		switch {
		case fastlane.EqualFold(f.Name, "accept-encoding"):
			gz = acceptsGzipIn(string(f.Value))
		case !harmlessField(f.Name):
			return false
		}
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
	h = append(h, contentDisposition(img.Name)...)
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
	resp.Header, resp.Body = h, data
	return true
}

// Answered logs and counts an answer as accessLog does, and a failed one
// as abortDownload does.
func (a fastAnswerer) Answered(req *fastlane.Request, resp *fastlane.Response, written int64, err error) {
	s := a.s
	if err != nil {
		s.log.Error("image download failed", "route", seedGetRoute, "sent", written, "size", len(resp.Body), "err", err)
		s.opts.Metrics.DownloadFailed()
	}
	d := time.Since(req.Start)
	s.opts.Metrics.Request(seedGetRoute, req.Method, http.StatusOK, 0, written, d)
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("method", req.Method),
		slog.String("route", seedGetRoute),
		slog.Int("status", http.StatusOK),
		slog.Int64("bytes", written),
		slog.Duration("duration", d),
		slog.String("remote", req.RemoteAddr),
	)
}
