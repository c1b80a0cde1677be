package httpapi

import "net/http"

// routes lists every route of the server. Each seed route is served with
// and without its trailing slash; GET routes answer HEAD too.
func (s *Server) routes() http.Handler {
	rt := &router{}
	get := func(h http.HandlerFunc) map[string]http.Handler { return map[string]http.Handler{http.MethodGet: h} }

	// The seed's API, as the original served it.
	rt.handle("/imageapi/generate-token/{username}/", get(s.handleGenerateToken))
	rt.handle("/imageapi/retrieve-token/{username}/", get(s.handleRetrieveToken))
	rt.handle("/imageapi/token/{token}/upload-image/", map[string]http.Handler{http.MethodPost: http.HandlerFunc(s.handleUpload)})
	rt.handle("/imageapi/token/{token}/get-image/{id}/", get(s.handleGetImage))
	rt.handle("/imageapi/token/{token}/get-image-list/", get(s.handleListImages))
	rt.handle("/imageapi/token/{token}/delete-image/{id}/", map[string]http.Handler{http.MethodDelete: http.HandlerFunc(s.handleDeleteImage)})
	rt.handle("/imageapi/token/{token}/update-image/{id}/", map[string]http.Handler{http.MethodPatch: http.HandlerFunc(s.handleUpdateImage)})

	// Operations.
	rt.handle("/healthz", get(s.handleHealthz))
	return rt
}
