package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/imagestore/imagestore/domain"
)

// The handlers of the seed's routes. Each checks what the original checked,
// in the same order, so that a request with several faults gets the same
// answer as before.

func (s *Server) handleGenerateToken(w http.ResponseWriter, r *http.Request) {
	username := r.PathValue("username")
	// A password may come as HTTP Basic credentials on the same request;
	// the original had none.
	_, password, given := r.BasicAuth()
	if given && password == "" {
		given = false
	}
	u, err := s.svc.CreateUser(r.Context(), username, password)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]string{"token": u.Token})
}

func (s *Server) handleRetrieveToken(w http.ResponseWriter, r *http.Request) {
	if s.failuresExhausted(w, r) {
		return
	}
	username := r.PathValue("username")
	if !domain.ValidUsername(username) {
		s.writeError(w, r, domain.ErrInvalidUsername, nil)
		return
	}
	basicUser, password, given := r.BasicAuth()
	if given && basicUser != "" && basicUser != username {
		given, password = true, "" // credentials for someone else: wrong
	}
	u, err := s.svc.RetrieveToken(r.Context(), username, password, given)
	if err != nil {
		if errors.Is(err, domain.ErrPasswordRequired) || errors.Is(err, domain.ErrWrongPassword) {
			w.Header().Set("WWW-Authenticate", `Basic realm="imagestore", charset="UTF-8"`)
			if errors.Is(err, domain.ErrWrongPassword) {
				s.authFailed(r)
			}
		}
		s.writeError(w, r, err, nil)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{u.Name: u.Token})
}

// authenticate returns the user owning the token in the path, or answers
// 401 and returns false.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (domain.User, bool) {
	if s.failuresExhausted(w, r) {
		return domain.User{}, false
	}
	u, err := s.svc.Authenticate(r.Context(), r.PathValue("token"))
	if err != nil {
		if errors.Is(err, domain.ErrUnauthorized) {
			s.authFailed(r)
		}
		s.writeError(w, r, err, nil)
		return domain.User{}, false
	}
	return u, true
}

// seedUploadStart does what upload and update have in common, in the
// original's order: the token, a turn to upload, the file part. If it
// returns false, it has answered.
func (s *Server) seedUploadStart(w http.ResponseWriter, r *http.Request) (domain.User, *filePart, func(), bool) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return domain.User{}, nil, nil, false
	}
	release, err := s.uploadTurn(r)
	if err != nil {
		s.writeError(w, r, err, nil)
		return domain.User{}, nil, nil, false
	}
	part, err := s.firstFile(w, r)
	if err != nil {
		release()
		s.writeError(w, r, err, nil)
		return domain.User{}, nil, nil, false
	}
	return u, part, func() { release(); part.release() }, true
}

func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	u, part, release, ok := s.seedUploadStart(w, r)
	if !ok {
		return
	}
	defer release()
	img, err := s.svc.Upload(r.Context(), u, part.name, part)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"File ID": img.ID})
}

func (s *Server) handleUpdateImage(w http.ResponseWriter, r *http.Request) {
	u, part, release, ok := s.seedUploadStart(w, r)
	if !ok {
		return
	}
	defer release()
	_, err := s.svc.Replace(r.Context(), u, r.PathValue("id"), part.name, part)
	if err != nil {
		s.writeError(w, r, err, map[error]string{domain.ErrNameTaken: "Cannot patch. File exists."})
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleGetImage(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	s.serveImageAs(w, r, u, r.PathValue("id"), contentDisposition, func(w http.ResponseWriter, r *http.Request, err error) {
		s.writeError(w, r, err, nil)
	})
}

func (s *Server) handleListImages(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	imgs, err := s.svc.List(r.Context(), u)
	if err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	if len(imgs) == 0 {
		s.writeError(w, r, domain.ErrImageNotFound, nil)
		return
	}
	// A JSON object whose keys keep upload order: {"name":"id",...}.
	var buf bytes.Buffer
	buf.Grow(len(imgs) * 32)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	buf.WriteByte('{')
	for i, img := range imgs {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeJSONString(&buf, enc, img.Name)
		buf.WriteByte(':')
		writeJSONString(&buf, enc, img.ID)
	}
	buf.WriteByte('}')
	writeRawJSON(w, http.StatusOK, buf.Bytes())
}

// writeJSONString writes s as a JSON string, as enc would: directly when s
// is printable ASCII with nothing to escape (every id, most names), which
// makes a list of many images several times cheaper, and through enc
// otherwise.
func writeJSONString(buf *bytes.Buffer, enc *json.Encoder, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			enc.Encode(s)
			buf.Truncate(buf.Len() - 1) // Encode's newline
			return
		}
	}
	buf.WriteByte('"')
	buf.WriteString(s)
	buf.WriteByte('"')
}

func (s *Server) handleDeleteImage(w http.ResponseWriter, r *http.Request) {
	u, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if err := s.svc.Delete(r.Context(), u, r.PathValue("id")); err != nil {
		s.writeError(w, r, err, nil)
		return
	}
	w.WriteHeader(http.StatusOK)
}
