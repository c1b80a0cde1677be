package httpapi

import (
	_ "embed"
	"net/http"
	"strconv"
	"time"
)

//go:embed openapi.yaml
var openAPIDocument []byte

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/yaml")
	h.Set("Content-Length", strconv.Itoa(len(openAPIDocument)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(openAPIDocument)
	}
}

// handleHealthz answers while the process runs.
func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz answers 200 when the store takes writes and has room for
// them, 503 otherwise, saying which check failed. A check writes to the
// store, so its result is reused for a second: probes cannot make the server
// write at their pace.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	s.readyMu.Lock()
	if time.Since(s.readyAt) > time.Second {
		s.readyStatus, s.readyBody = s.checkReady(r)
		s.readyAt = time.Now()
	}
	status, body := s.readyStatus, s.readyBody
	s.readyMu.Unlock()
	writeJSON(w, status, body)
}

func (s *Server) checkReady(r *http.Request) (int, map[string]any) {
	checks := map[string]string{"store_writable": "ok", "free_space": "ok"}
	status := http.StatusOK
	if err := s.svc.CheckWritable(r.Context()); err != nil {
		s.log.Warn("readiness: the store does not take writes", "err", err)
		checks["store_writable"], status = "failed", http.StatusServiceUnavailable
	}
	if free, ok, err := s.svc.FreeBytes(); err != nil {
		checks["free_space"], status = "unknown", http.StatusServiceUnavailable
	} else if ok && free < s.opts.MinFreeBytes {
		checks["free_space"], status = "low", http.StatusServiceUnavailable
	}
	state := "ready"
	if status != http.StatusOK {
		state = "not ready"
	}
	return status, map[string]any{"status": state, "checks": checks}
}
