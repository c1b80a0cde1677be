package httpapi

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// ShareX (https://getsharex.com) uploads screenshots through "custom
// uploaders" described by a .sxcu file. GET /api/v1/sharex.sxcu answers
// one for the signed-in user: opened in ShareX, it uploads each capture
// to this server's POST /api/v1/images with the user's token, and copies
// the image's link.

// shareXRoutes registers the ShareX uploader configuration's route.
func (s *Server) shareXRoutes(rt *router) {
	rt.handle("/api/v1/sharex.sxcu", map[string]http.Handler{http.MethodGet: http.HandlerFunc(s.handleShareX)})
}

// shareXConfig is a ShareX custom uploader, in the field order ShareX
// itself writes.
type shareXConfig struct {
	Version         string            `json:"Version"`
	Name            string            `json:"Name"`
	DestinationType string            `json:"DestinationType"`
	RequestMethod   string            `json:"RequestMethod"`
	RequestURL      string            `json:"RequestURL"`
	Headers         map[string]string `json:"Headers"`
	Body            string            `json:"Body"`
	FileFormName    string            `json:"FileFormName"`
	URL             string            `json:"URL"`
	ErrorMessage    string            `json:"ErrorMessage"`
}

// shareXVersion is the ShareX version the configuration is written for:
// the {json:...} syntax needs 13.7 or later.
const shareXVersion = "14.0.0"

// hostRe is what a Host header may be here: a name or an IPv4 address, or
// an IPv6 address in brackets, and an optional port.
var hostRe = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$`)

// requestBase returns the scheme and host this request reached the server
// at, as a client would write them: https if the connection is TLS, or if
// a proxy in front says so in X-Forwarded-Proto (only "http" and "https"
// are taken from it); the host from the Host header. Both are the
// client's word: whoever spoofs them only gets a configuration of their
// own that points elsewhere.
func requestBase(r *http.Request) (string, error) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	} else {
		proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
		if p := strings.ToLower(strings.TrimSpace(proto)); p == "https" || p == "http" {
			scheme = p
		}
	}
	if !hostRe.MatchString(r.Host) {
		return "", errBadHost
	}
	return scheme + "://" + r.Host, nil
}

// handleShareX answers the ShareX custom uploader of the signed-in user.
// It holds the user's token, so no one may cache it.
func (s *Server) handleShareX(w http.ResponseWriter, r *http.Request) {
	u, ok := s.bearer(w, r)
	if !ok {
		return
	}
	base, err := requestBase(r)
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	cfg := shareXConfig{
		Version:         shareXVersion,
		Name:            "imagestore (" + u.Name + " on " + r.Host + ")",
		DestinationType: "ImageUploader",
		RequestMethod:   http.MethodPost,
		RequestURL:      base + "/api/v1/images",
		Headers:         map[string]string{"Authorization": "Bearer " + u.Token},
		Body:            "MultipartFormData",
		FileFormName:    "file",
		// The upload's answer names the image by a path (its "url"); the
		// link is that path on this server.
		URL: base + "{json:url}",
		// An error is a problem document: its title is always there, its
		// detail only for some problems (not for a file that is not an
		// image, say), so ShareX shows both.
		ErrorMessage: "{json:title}: {json:detail}",
	}
	body, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		s.writeProblem(w, r, err)
		return
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Content-Disposition", `attachment; filename="imagestore.sxcu"`)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}
