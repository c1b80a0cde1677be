package httpapi

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate is a number of events per period, such as "20/min".
type Rate struct {
	N   int
	Per time.Duration
}

// ParseRate reads "N/s", "N/min" or "N/h"; "0" disables the limit.
func ParseRate(s string) (Rate, error) {
	if s == "0" {
		return Rate{}, nil
	}
	n, unit, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(n)
	per := map[string]time.Duration{"s": time.Second, "min": time.Minute, "h": time.Hour}[unit]
	if !ok || err != nil || count < 1 || per == 0 {
		return Rate{}, fmt.Errorf("%q is not a rate such as 20/min (or 0 for none)", s)
	}
	return Rate{N: count, Per: per}, nil
}

func (r Rate) String() string {
	if r.N == 0 {
		return "0"
	}
	return fmt.Sprintf("%d/%s", r.N, map[time.Duration]string{time.Second: "s", time.Minute: "min", time.Hour: "h"}[r.Per])
}

// clientLimits keeps a token bucket per client address: a client may spend
// N at once, and regains them at N per period.
type clientLimits struct {
	name  string
	limit rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*clientBucket
	swept   time.Time
}

type clientBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newClientLimits(name string, r Rate) *clientLimits {
	if r.N == 0 {
		return nil
	}
	return &clientLimits{name: name, limit: rate.Limit(float64(r.N) / r.Per.Seconds()), burst: r.N, clients: map[string]*clientBucket{}}
}

// clientOf is the key of a request's client: its address, without the port.
// An IPv6 client is its /64: one host usually has a whole /64 to pick
// addresses from.
func clientOf(r *http.Request) string { return clientAt(r.RemoteAddr) }

// clientAt is clientOf for a connection's remote address.
func clientAt(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return host
}

// maxClients bounds the table of client budgets: past it the table starts
// afresh (forgetting spent budgets is the lesser harm).
const maxClients = 100_000

// bucket returns the client's bucket, creating it if create is set, or nil.
func (c *clientLimits) bucket(client string, now time.Time, create bool) *rate.Limiter {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Forget clients whose buckets have been full for a while.
	if now.Sub(c.swept) > time.Minute {
		full := time.Duration(float64(c.burst)/float64(c.limit)*float64(time.Second)) + time.Minute
		for k, b := range c.clients {
			if now.Sub(b.seen) > full {
				delete(c.clients, k)
			}
		}
		c.swept = now
	}
	b, ok := c.clients[client]
	if !ok {
		if !create {
			return nil
		}
		if len(c.clients) >= maxClients {
			clear(c.clients)
		}
		b = &clientBucket{lim: rate.NewLimiter(c.limit, c.burst)}
		c.clients[client] = b
	}
	b.seen = now
	return b.lim
}

// take spends one event of the client's budget; if there is none left it
// returns how long until there is.
func (c *clientLimits) take(client string) (ok bool, retryAfter time.Duration) {
	if c == nil {
		return true, 0
	}
	now := time.Now()
	lim := c.bucket(client, now, true)
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// exhausted reports, without spending, whether the client has no budget
// left, and how long until it has.
func (c *clientLimits) exhausted(client string) (bool, time.Duration) {
	if c == nil {
		return false, 0
	}
	now := time.Now()
	lim := c.bucket(client, now, false) // a client that never failed has no bucket
	if lim == nil || lim.TokensAt(now) >= 1 {
		return false, 0
	}
	res := lim.ReserveN(now, 1)
	d := res.DelayFrom(now)
	res.CancelAt(now)
	return true, d
}

// tooMany answers 429 with Retry-After in whole seconds, in the words of
// the API the route belongs to.
func (s *Server) tooMany(w http.ResponseWriter, r *http.Request, which string, after time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(after.Seconds()))))
	s.opts.Metrics.RateLimited(which)
	err := &rateLimitedError{limit: "account_rate", allowed: s.opts.AccountRate.String()}
	if which == "auth_failures" {
		err = &rateLimitedError{limit: "auth_failure_rate", allowed: s.opts.FailureRate.String()}
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		s.writeProblem(w, r, err)
	} else {
		s.writeError(w, r, err, nil)
	}
}

// rateLimitedError names the limit a client went over.
type rateLimitedError struct{ limit, allowed string }

func (e *rateLimitedError) Error() string { return "over the " + e.limit + " of " + e.allowed }
func (e *rateLimitedError) Unwrap() error { return errRateLimited }

// limitAccounts wraps the handlers that create users or hand out tokens:
// each request spends from its client's budget.
func (s *Server) limitAccounts(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, after := s.accountLimits.take(clientOf(r)); !ok {
			s.tooMany(w, r, "accounts", after)
			return
		}
		next(w, r)
	}
}

// authFailed records a failed authentication from r's client.
func (s *Server) authFailed(r *http.Request) {
	s.opts.Metrics.AuthFailure()
	s.failureLimits.take(clientOf(r))
}

// failuresExhausted answers 429, and returns true, for a client that failed
// to authenticate too often: it must wait before trying any token again.
func (s *Server) failuresExhausted(w http.ResponseWriter, r *http.Request) bool {
	if bad, after := s.failureLimits.exhausted(clientOf(r)); bad {
		s.tooMany(w, r, "auth_failures", after)
		return true
	}
	return false
}
