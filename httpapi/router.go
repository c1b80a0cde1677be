package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// router matches request paths against patterns of literal segments and
// {name} parameters. Unlike http.ServeMux it serves a path with or without
// its trailing slash (the original's clients use both, and a redirect would
// break a POST), splits the escaped path so that an encoded slash stays
// inside its segment, and answers 404 and 405 with the original's JSON.
type router struct {
	routes []*route
}

type route struct {
	pattern  string
	segments []string
	methods  map[string]http.Handler
}

func (rt *router) handle(pattern string, methods map[string]http.Handler) {
	rt.add(pattern, methods, true)
}

// handleNoHead registers a GET that changes state (the seed's
// generate-token): HEAD must not run it, since its answer would be lost.
func (rt *router) handleNoHead(pattern string, methods map[string]http.Handler) {
	rt.add(pattern, methods, false)
}

func (rt *router) add(pattern string, methods map[string]http.Handler, head bool) {
	segs := strings.Split(strings.Trim(pattern, "/"), "/")
	if _, ok := methods[http.MethodGet]; ok && head {
		if _, ok := methods[http.MethodHead]; !ok {
			methods[http.MethodHead] = methods[http.MethodGet]
		}
	}
	rt.routes = append(rt.routes, &route{pattern: pattern, segments: segs, methods: methods})
}

// match returns the route for path and its parameters.
func (rt *router) match(escapedPath string) (*route, map[string]string) {
	p := strings.TrimPrefix(escapedPath, "/")
	p = strings.TrimSuffix(p, "/")
	segs := strings.Split(p, "/")
	for _, r := range rt.routes {
		if len(r.segments) != len(segs) {
			continue
		}
		params := map[string]string{}
		ok := true
		for i, want := range r.segments {
			got, err := url.PathUnescape(segs[i])
			if err != nil {
				ok = false
				break
			}
			if strings.HasPrefix(want, "{") {
				if got == "" {
					ok = false
					break
				}
				params[want[1:len(want)-1]] = got
			} else if got != want || segs[i] != want {
				ok = false
				break
			}
		}
		if ok {
			return r, params
		}
	}
	return nil, nil
}

func (r *route) allow() string {
	var ms []string
	for m := range r.methods {
		ms = append(ms, m)
	}
	ms = append(ms, http.MethodOptions)
	slices.Sort(ms)
	return strings.Join(ms, ", ")
}

func (rt *router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	// A path with "//" inside names no route: segments are never empty.
	r, params := rt.match(req.URL.EscapedPath())
	// The seed's clients expect the original framework's {"detail": ...};
	// /api/v1 speaks RFC 9457 everywhere.
	refuse := writeDetail
	if strings.HasPrefix(req.URL.Path, "/api/") {
		refuse = writeSimpleProblem
	}
	if r == nil {
		refuse(w, http.StatusNotFound, "Not found.")
		return
	}
	setRoute(req, r.pattern)
	h, ok := r.methods[req.Method]
	switch {
	case ok:
		for k, v := range params {
			req.SetPathValue(k, v)
		}
		h.ServeHTTP(w, req)
	case req.Method == http.MethodOptions:
		w.Header().Set("Allow", r.allow())
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", r.allow())
		refuse(w, http.StatusMethodNotAllowed, `Method "`+req.Method+`" not allowed.`)
	}
}
