package httpapi

import "net/http"

// routes lists every route of the server. Each seed route is served with
// and without its trailing slash; GET routes answer HEAD too, except
// generate-token, a GET that creates (as in the original, HEAD gets 405).
func (s *Server) routes() http.Handler {
	rt := &router{}
	get := func(h http.HandlerFunc) map[string]http.Handler { return map[string]http.Handler{http.MethodGet: h} }

	// The seed's API, as the original served it.
	rt.handleNoHead("/imageapi/generate-token/{username}/", get(s.limitAccounts(s.handleGenerateToken)))
	rt.handle("/imageapi/retrieve-token/{username}/", get(s.limitAccounts(s.handleRetrieveToken)))
	rt.handle("/imageapi/token/{token}/upload-image/", map[string]http.Handler{http.MethodPost: http.HandlerFunc(s.handleUpload)})
	rt.handle("/imageapi/token/{token}/get-image/{id}/", get(s.handleGetImage)) // seedGetRoute: the fast lane answers it too
	rt.handle("/imageapi/token/{token}/get-image-list/", get(s.handleListImages))
	rt.handle("/imageapi/token/{token}/delete-image/{id}/", map[string]http.Handler{http.MethodDelete: http.HandlerFunc(s.handleDeleteImage)})
	rt.handle("/imageapi/token/{token}/update-image/{id}/", map[string]http.Handler{http.MethodPatch: http.HandlerFunc(s.handleUpdateImage)})

	// The resource API.
	methods := func(m map[string]http.HandlerFunc) map[string]http.Handler {
		out := map[string]http.Handler{}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	rt.handle("/api/v1/users", methods(map[string]http.HandlerFunc{http.MethodPost: s.limitAccounts(s.handleCreateUser)}))
	rt.handle("/api/v1/users/me", get(s.handleMe))
	rt.handle("/api/v1/users/me/token", methods(map[string]http.HandlerFunc{http.MethodPost: s.handleRotateToken}))
	rt.handle("/api/v1/limits", get(s.handleLimits))
	rt.handle("/api/v1/images", methods(map[string]http.HandlerFunc{http.MethodGet: s.handleV1List, http.MethodPost: s.handleV1Upload}))
	rt.handle("/api/v1/images/{id}", methods(map[string]http.HandlerFunc{
		http.MethodGet: s.handleV1Get, http.MethodPut: s.handleV1Replace, http.MethodDelete: s.handleV1Delete}))
	rt.handle("/api/v1/images/{id}/meta", get(s.handleV1Meta))
	s.shareXRoutes(rt)

	// The web gallery.
	s.webRoutes(rt)

	// Operations.
	rt.handle("/healthz", get(s.handleHealthz))
	rt.handle("/readyz", get(s.handleReadyz))
	rt.handle("/openapi.yaml", get(s.handleOpenAPI))
	if s.opts.Metrics != nil {
		rt.handle("/metrics", map[string]http.Handler{http.MethodGet: s.opts.Metrics.Handler()})
	}
	return rt
}
