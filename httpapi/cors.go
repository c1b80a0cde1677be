package httpapi

import (
	"net/http"
	"slices"
)

// cors lets pages from the configured origins call the API from a browser:
// it answers preflight requests and marks responses for those origins. No
// origin is allowed unless configured. Credentials are tokens sent in the
// Authorization header, never cookies, so no origin gets
// Access-Control-Allow-Credentials.
func (s *Server) cors(next http.Handler) http.Handler {
	origins := s.opts.CORSOrigins
	if len(origins) == 0 {
		return next
	}
	anyOrigin := slices.Contains(origins, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every answer depends on the Origin header now, for caches.
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin == "" || !anyOrigin && !slices.Contains(origins, origin) {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", "ETag, Location, Content-Disposition, Content-Length, Content-Range, Retry-After, Idempotent-Replayed, Link")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match, If-None-Match, If-Modified-Since, If-Range, Idempotency-Key, Range")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
