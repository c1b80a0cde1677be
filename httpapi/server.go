// Package httpapi is imagestore's HTTP adapter: it turns requests into calls
// on the domain service and the service's answers and errors into
// responses. The seed's routes under /imageapi/ answer exactly as the
// original program did (see COMPAT in the README), without its bugs.
//
// Every route is listed in routes.go; errors become status codes in one
// place, errors.go.
package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/imagestore/imagestore/domain"
	"github.com/imagestore/imagestore/metrics"
)

// Options configure the HTTP layer.
type Options struct {
	// MaxUploadBytes bounds a request body that carries an image.
	MaxUploadBytes int64
	// Logger receives the access log and errors. Nil discards them.
	Logger *slog.Logger
	// BodyTimeout is how long a client may leave a request body or a
	// response without progress; 0 means no limit.
	BodyTimeout time.Duration
	// MaxUploads bounds the uploads and replacements in progress at once;
	// more wait for a turn. 0 means DefaultMaxUploads.
	MaxUploads int
	// UploadWait is how long an upload may wait for its turn before it is
	// refused with 503; 0 means DefaultUploadWait.
	UploadWait time.Duration
	// AccountRate limits, per client address, the requests that create
	// users or hand out tokens; FailureRate the failed authentications
	// after which a client must wait. The zero Rate means no limit.
	AccountRate, FailureRate Rate
	// CORSOrigins lists the origins whose pages may call the API ("*" for
	// any); none by default.
	CORSOrigins []string
	// Metrics receives the server's measurements; nil records nothing.
	Metrics *metrics.Metrics
	// MinFreeBytes is the free space below which /readyz reports the store
	// not ready.
	MinFreeBytes int64
}

// DefaultMaxUploads is the default of Options.MaxUploads.
const DefaultMaxUploads = 64

// DefaultMaxUploadBytes is the default of Options.MaxUploadBytes: 32 MiB.
const DefaultMaxUploadBytes = 32 << 20

// Server serves the API over a domain service.
type Server struct {
	svc     *domain.Service
	opts    Options
	log     *slog.Logger
	handler http.Handler
	slots   *uploadSlots

	accountLimits *clientLimits
	failureLimits *clientLimits

	readyMu     sync.Mutex // guards the last readiness check
	readyAt     time.Time
	readyStatus int
	readyBody   map[string]any
}

// NewServer returns the HTTP handler of the whole API.
func NewServer(svc *domain.Service, opts Options) *Server {
	if opts.MaxUploadBytes <= 0 {
		opts.MaxUploadBytes = DefaultMaxUploadBytes
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxUploads <= 0 {
		opts.MaxUploads = DefaultMaxUploads
	}
	if opts.UploadWait <= 0 {
		opts.UploadWait = DefaultUploadWait
	}
	s := &Server{svc: svc, opts: opts, log: log, slots: newUploadSlots(opts.MaxUploads),
		accountLimits: newClientLimits("accounts", opts.AccountRate),
		failureLimits: newClientLimits("auth_failures", opts.FailureRate),
	}
	s.handler = s.accessLog(s.recoverPanics(s.cors(s.progressDeadlines(s.routes()))))
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// requestInfo is filled in as a request is served, for the access log.
type requestInfo struct {
	route string
}

type infoKey struct{}

func setRoute(r *http.Request, route string) {
	if info, ok := r.Context().Value(infoKey{}).(*requestInfo); ok {
		info.route = route
	}
}

// routeOf returns the pattern of the route serving r: never the path itself,
// which may hold a token.
func routeOf(r *http.Request) string {
	if info, ok := r.Context().Value(infoKey{}).(*requestInfo); ok && info.route != "" {
		return info.route
	}
	return "unmatched"
}

// statusWriter records what a handler wrote. It forwards ReadFrom, so that
// copying a file to it can still use sendfile(2).
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom lets io.Copy reach the connection's own ReadFrom, which sends an
// *os.File with sendfile(2).
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, ok, err := writeInMemory(writerOnly{w.ResponseWriter}, r)
	if !ok {
		n, err = io.Copy(w.ResponseWriter, r)
	}
	w.bytes += n
	return n, err
}

// writerOnly hides every method of a writer but Write.
type writerOnly struct{ io.Writer }

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// accessLog logs one line per request: method, route pattern, status, bytes
// written and duration, and counts it in the metrics. The path is not
// logged: it may contain a token.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{}
		r = r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
		sw := &statusWriter{ResponseWriter: w}
		in := &countingBody{ReadCloser: r.Body}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = in
		}
		defer func() {
			status, bytes := sw.status, sw.bytes
			if status == 0 {
				status = http.StatusOK
			}
			if r.Method == http.MethodHead {
				bytes = 0 // the server drops a HEAD response's body
			}
			s.logRequest(r.Context(), r.Method, routeOf(r), status, in.n, bytes, time.Since(start), r.RemoteAddr)
		}()
		next.ServeHTTP(sw, r)
	})
}

// logRequest counts a request in the metrics and writes its line of the
// access log (for accessLog, and for the fast lane's answers).
func (s *Server) logRequest(ctx context.Context, method, route string, status int, in, out int64, d time.Duration, remote string) {
	s.opts.Metrics.Request(route, method, status, in, out, d)
	s.log.LogAttrs(ctx, slog.LevelInfo, "request",
		slog.String("method", method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Int64("bytes", out),
		slog.Duration("duration", d),
		slog.String("remote", remote),
	)
}

// recoverPanics turns a panic in a handler into a 500, except for
// http.ErrAbortHandler, which handlers use to cut a response short.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panic", "route", routeOf(r), "panic", v)
				if strings.HasPrefix(r.URL.Path, "/api/") {
					s.writeProblem(w, r, errors.New("panic"))
				} else {
					writeDetail(w, http.StatusInternalServerError, "Internal server error")
				}
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// countingBody counts the bytes read from a request body.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}
