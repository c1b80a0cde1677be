package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Black-box tests of passwords, token retrieval modes, rate limits, secrets
// in logs, CORS, metrics and readiness, over the real binary.

// basicHeader is a request header with HTTP Basic credentials.
func basicHeader(user, password string) map[string]string {
	return map[string]string{"Authorization": basicAuth(user, password)}
}

// wantRetryAfter checks a 429's Retry-After: whole seconds, at least 1.
func wantRetryAfter(t *testing.T, what string, r response, max int) int {
	t.Helper()
	v := r.header.Get("Retry-After")
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		t.Errorf("%s: Retry-After got %q, want whole seconds from 1 to %d", what, v, max)
	}
	return n
}

// metricsText scrapes /metrics.
func (s *server) metricsText() string {
	s.t.Helper()
	r := s.get("/metrics")
	if r.status != 200 {
		s.t.Fatalf("GET /metrics: got %v, want 200", r)
	}
	return string(r.body)
}

// TestAuthSeedPasswords: generate-token takes a password as HTTP Basic
// credentials; retrieve-token then wants it.
func TestAuthSeedPasswords(t *testing.T) {
	s := start(t, t.TempDir())
	const password = "open sesame 42"

	r := s.do("GET", "/imageapi/generate-token/alice/", nil, basicHeader("alice", password))
	if r.status != 201 {
		t.Fatalf("generate-token with a password: got %v, want 201", r)
	}
	var v map[string]string
	json.Unmarshal(r.body, &v)
	tok := v["token"]
	if !tokenRe.MatchString(tok) || len(v) != 1 {
		t.Fatalf("generate-token: got %s, want {\"token\": ...}", r.body)
	}
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("generate-token: Cache-Control got %q, want no-store", cc)
	}
	me := s.do("GET", "/api/v1/users/me", nil, bearer(tok))
	if !strings.Contains(string(me.body), `"has_password":true`) {
		t.Errorf("me after generate-token with a password: got %v, want has_password true", me)
	}

	// Without credentials.
	r = s.get("/imageapi/retrieve-token/alice/")
	wantJSON(t, "retrieve-token without credentials", r, 401, `"Password required"`)
	if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic") {
		t.Errorf("retrieve-token without credentials: WWW-Authenticate got %q, want a Basic challenge", got)
	}
	// With the wrong password, or the right one for another name.
	for _, c := range []struct{ what, user, pw string }{
		{"wrong password", "alice", "open sesame 43"},
		{"empty password", "alice", ""},
		{"password prefix", "alice", "open sesame"},
		{"right password, another user", "mallory", password},
	} {
		r = s.do("GET", "/imageapi/retrieve-token/alice/", nil, basicHeader(c.user, c.pw))
		if r.status != 401 || strings.Contains(string(r.body), tok) {
			t.Errorf("retrieve-token, %s: got %v, want 401 without the token", c.what, r)
		}
		if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic") {
			t.Errorf("retrieve-token, %s: WWW-Authenticate got %q, want a Basic challenge", c.what, got)
		}
	}
	r = s.do("GET", "/imageapi/retrieve-token/alice/", nil, basicHeader("alice", "open sesame 43"))
	wantJSON(t, "retrieve-token with the wrong password", r, 401, `"Wrong username or password"`)
	// With the right one, with or without the user name in the credentials.
	r = s.do("GET", "/imageapi/retrieve-token/alice/", nil, basicHeader("alice", password))
	wantJSON(t, "retrieve-token with the password", r, 200, `{"alice":"`+tok+`"}`)
	r = s.do("GET", "/imageapi/retrieve-token/alice", nil, basicHeader("", password))
	wantJSON(t, "retrieve-token with the password and no user name", r, 200, `{"alice":"`+tok+`"}`)

	// A password outside the bounds is refused and makes no user.
	r = s.do("GET", "/imageapi/generate-token/weakling/", nil, basicHeader("weakling", "short"))
	if r.status != 422 || !strings.Contains(string(r.body), "8") {
		t.Errorf("generate-token with a short password: got %v, want 422 naming the bounds", r)
	}
	wantJSON(t, "the refused user", s.get("/imageapi/retrieve-token/weakling/"), 404, `"User does not exists"`)

	// Without credentials the seed behaves as the original: no password.
	bob := s.newUser("bob")
	wantJSON(t, "retrieve-token of a user without a password", s.get("/imageapi/retrieve-token/bob/"), 200, `{"bob":"`+bob+`"}`)
	me = s.do("GET", "/api/v1/users/me", nil, bearer(bob))
	if !strings.Contains(string(me.body), `"has_password":false`) {
		t.Errorf("me of bob: got %v, want has_password false", me)
	}
}

// TestAuthRetrievalModes: --token-retrieval open, password and off.
func TestAuthRetrievalModes(t *testing.T) {
	const pw = "the password"
	type tc struct {
		what   string
		user   string
		header map[string]string
		status int
		body   string // exact, if not empty; "TOKEN" stands for the user's token
	}
	// The user "nopw" has no password, "withpw" has pw, "ghost" does not
	// exist.
	modes := []struct {
		mode  string
		cases []tc
	}{
		{"open", []tc{
			{"no password, no credentials", "nopw", nil, 200, `{"nopw":"TOKEN"}`},
			{"no password, any credentials", "nopw", basicHeader("nopw", "whatever it is"), 200, `{"nopw":"TOKEN"}`},
			{"password, no credentials", "withpw", nil, 401, `"Password required"`},
			{"password, wrong one", "withpw", basicHeader("withpw", "not the password"), 401, `"Wrong username or password"`},
			{"password, right one", "withpw", basicHeader("withpw", pw), 200, `{"withpw":"TOKEN"}`},
			{"unknown user", "ghost", nil, 404, `"User does not exists"`},
		}},
		{"password", []tc{
			{"no password, no credentials", "nopw", nil, 401, `"Password required"`},
			{"no password, credentials", "nopw", basicHeader("nopw", "whatever it is"), 401, `"Wrong username or password"`},
			{"password, no credentials", "withpw", nil, 401, `"Password required"`},
			{"password, wrong one", "withpw", basicHeader("withpw", "not the password"), 401, `"Wrong username or password"`},
			{"password, right one", "withpw", basicHeader("withpw", pw), 200, `{"withpw":"TOKEN"}`},
			{"unknown user, no credentials", "ghost", nil, 401, `"Password required"`},
			{"unknown user, credentials", "ghost", basicHeader("ghost", "a guessed password"), 401, `"Wrong username or password"`},
		}},
		{"off", []tc{
			{"no password, no credentials", "nopw", nil, 403, `"Token retrieval is disabled"`},
			{"password, no credentials", "withpw", nil, 403, `"Token retrieval is disabled"`},
			{"password, right one", "withpw", basicHeader("withpw", pw), 403, `"Token retrieval is disabled"`},
			{"unknown user", "ghost", basicHeader("ghost", "a guessed password"), 403, `"Token retrieval is disabled"`},
		}},
	}
	for _, m := range modes {
		t.Run(m.mode, func(t *testing.T) {
			s := start(t, t.TempDir(), "--token-retrieval", m.mode)
			tokens := map[string]string{"nopw": s.newUser("nopw")}
			r := s.do("GET", "/imageapi/generate-token/withpw/", nil, basicHeader("withpw", pw))
			if r.status != 201 {
				t.Fatalf("generate-token withpw: got %v, want 201", r)
			}
			var v map[string]string
			json.Unmarshal(r.body, &v)
			tokens["withpw"] = v["token"]
			for _, c := range m.cases {
				r := s.do("GET", "/imageapi/retrieve-token/"+c.user+"/", nil, c.header)
				want := strings.ReplaceAll(c.body, "TOKEN", tokens[c.user])
				wantJSON(t, c.what, r, c.status, want)
				if r.status == 401 {
					if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic") {
						t.Errorf("%s: WWW-Authenticate got %q, want a Basic challenge", c.what, got)
					}
				}
				if c.status != 200 {
					for _, tok := range tokens {
						if strings.Contains(string(r.body), tok) {
							t.Errorf("%s: the refusal holds a token: %s", c.what, r.body)
						}
					}
				}
			}
			// Creating users works whatever the mode.
			if tok := s.v1CreateUser("later", ""); !tokenRe.MatchString(tok) {
				t.Errorf("creating a user under %s: got token %q", m.mode, tok)
			}
		})
	}

	// Under "password", an unknown user and a known one with the wrong
	// password look exactly alike.
	t.Run("password mode hides existence", func(t *testing.T) {
		s := start(t, t.TempDir(), "--token-retrieval", "password")
		s.do("GET", "/imageapi/generate-token/real/", nil, basicHeader("real", pw))
		known := s.do("GET", "/imageapi/retrieve-token/real/", nil, basicHeader("real", "wrong guess!"))
		unknown := s.do("GET", "/imageapi/retrieve-token/unreal/", nil, basicHeader("unreal", "wrong guess!"))
		if known.status != 401 || unknown.status != 401 || !bytes.Equal(known.body, unknown.body) ||
			known.header.Get("WWW-Authenticate") != unknown.header.Get("WWW-Authenticate") {
			t.Errorf("wrong password for a known user: got %v, for an unknown one: got %v, want the same 401", known, unknown)
		}
	})
}

// TestAuthAccountRateLimit: --account-rate bounds token generation,
// retrieval and user creation per client.
func TestAuthAccountRateLimit(t *testing.T) {
	s := start(t, t.TempDir(), "--account-rate", "5/min")
	for i, name := range []string{"u1", "u2", "u3", "u1", "u4"} {
		r := s.get("/imageapi/generate-token/" + name + "/")
		if r.status != 201 && !(name == "u1" && i == 3 && r.status == 409) {
			t.Errorf("generate-token %d (%s): got %v, want 201 (409 for the repeat)", i+1, name, r)
		}
	}
	r := s.get("/imageapi/generate-token/u5/")
	wantJSON(t, "6th generate-token", r, 429, `{"detail":"Too many requests"}`)
	wantRetryAfter(t, "6th generate-token", r, 60)
	r = s.get("/imageapi/retrieve-token/u1/")
	wantJSON(t, "retrieve-token over the limit", r, 429, `{"detail":"Too many requests"}`)
	wantRetryAfter(t, "retrieve-token over the limit", r, 60)
	r = s.do("POST", "/api/v1/users", strings.NewReader(`{"username":"u6","password":"long enough"}`), map[string]string{"Content-Type": "application/json"})
	wantProblem(t, "POST /api/v1/users over the limit", r, 429, "rate-limited")
	wantRetryAfter(t, "POST /api/v1/users over the limit", r, 60)
	// Nothing was created by the refused requests.
	if !pollMetric(t, s, "imagestore_users", nil, 5*time.Second, func(v float64) bool { return v == 4 }) {
		t.Errorf("imagestore_users after the refused requests: want 4 (u1 to u4)")
	}
	// Other routes are not limited by it.
	if r := s.get("/api/v1/limits"); r.status != 200 {
		t.Errorf("limits: got %v, want 200", r)
	}
	if v, _ := metricSum(s.metricsText(), "imagestore_rate_limited_total", map[string]string{"limit": "accounts"}); v != 3 {
		t.Errorf("imagestore_rate_limited_total{limit=\"accounts\"}: got %v, want 3", v)
	}
}

// TestAuthFailureRateLimit: after --auth-failure-rate failures, a client
// must wait, even with a right token.
func TestAuthFailureRateLimit(t *testing.T) {
	s := start(t, t.TempDir(), "--auth-failure-rate", "3/min")
	tok := s.newUser("victim")
	s.v1CreateUser("pwuser", "right password")
	if r := s.get("/imageapi/token/" + tok + "/get-image-list/"); r.status != 404 {
		t.Fatalf("list with the right token: got %v, want 404 (no images)", r)
	}
	wrong := []response{
		s.get("/imageapi/token/WrongTok3n/get-image-list/"),
		s.do("GET", "/api/v1/images", nil, bearer("WrongTok4n")),
		s.get("/imageapi/token/WrongTok5n/get-image/abcd/"),
	}
	for i, r := range wrong {
		if r.status != 401 {
			t.Errorf("wrong token %d: got %v, want 401", i+1, r)
		}
	}
	r := s.get("/imageapi/token/" + tok + "/get-image-list/")
	wantJSON(t, "seed with the right token after 3 failures", r, 429, `{"detail":"Too many requests"}`)
	wantRetryAfter(t, "seed with the right token after 3 failures", r, 60)
	r = s.do("GET", "/api/v1/images", nil, bearer(tok))
	wantProblem(t, "v1 with the right token after 3 failures", r, 429, "rate-limited")
	wantRetryAfter(t, "v1 with the right token after 3 failures", r, 60)
	r = s.do("GET", "/imageapi/retrieve-token/pwuser/", nil, basicHeader("pwuser", "right password"))
	wantJSON(t, "retrieve-token with the right password after 3 failures", r, 429, `{"detail":"Too many requests"}`)

	text := s.metricsText()
	if v, _ := metricSum(text, "imagestore_auth_failures_total", nil); v != 3 {
		t.Errorf("imagestore_auth_failures_total: got %v, want 3", v)
	}
	if v, _ := metricSum(text, "imagestore_rate_limited_total", map[string]string{"limit": "auth_failures"}); v != 3 {
		t.Errorf("imagestore_rate_limited_total{limit=\"auth_failures\"}: got %v, want 3", v)
	}
}

// TestAuthFailureRateRecovery: the failure budget refills; wrong passwords
// count as failures too.
func TestAuthFailureRateRecovery(t *testing.T) {
	s := start(t, t.TempDir(), "--auth-failure-rate", "2/s")
	tok := s.newUser("patient")
	s.do("GET", "/imageapi/generate-token/locked/", nil, basicHeader("locked", "the real one"))

	wait := func(r response) {
		n := wantRetryAfter(t, "429", r, 2)
		time.Sleep(time.Duration(n)*time.Second + 50*time.Millisecond)
	}

	// Wrong tokens.
	for i := range 2 {
		if r := s.do("GET", "/api/v1/users/me", nil, bearer("WrongTok3n")); r.status != 401 {
			t.Errorf("wrong token %d: got %v, want 401", i+1, r)
		}
	}
	r := s.do("GET", "/api/v1/users/me", nil, bearer(tok))
	wantProblem(t, "right token after 2 failures", r, 429, "rate-limited")
	wait(r)
	if r := s.do("GET", "/api/v1/users/me", nil, bearer(tok)); r.status != 200 {
		t.Errorf("right token after waiting: got %v, want 200", r)
	}

	// Wrong passwords.
	for i := range 2 {
		r := s.do("GET", "/imageapi/retrieve-token/locked/", nil, basicHeader("locked", "a guess "+strconv.Itoa(i)))
		wantJSON(t, "wrong password", r, 401, `"Wrong username or password"`)
	}
	r = s.do("GET", "/imageapi/retrieve-token/locked/", nil, basicHeader("locked", "the real one"))
	wantJSON(t, "right password after 2 failures", r, 429, `{"detail":"Too many requests"}`)
	wait(r)
	r = s.do("GET", "/imageapi/retrieve-token/locked/", nil, basicHeader("locked", "the real one"))
	if r.status != 200 || !strings.HasPrefix(string(r.body), `{"locked":"`) {
		t.Errorf("right password after waiting: got %v, want 200 with the token", r)
	}

	text := s.metricsText()
	if v, _ := metricSum(text, "imagestore_auth_failures_total", nil); v != 4 {
		t.Errorf("imagestore_auth_failures_total: got %v, want 4", v)
	}
	if v, _ := metricSum(text, "imagestore_rate_limited_total", nil); v != 2 {
		t.Errorf("imagestore_rate_limited_total: got %v, want 2", v)
	}
}

// TestAuthSecretsNeverLeak: no token or password reaches the log, the
// metrics or an error body.
func TestAuthSecretsNeverLeak(t *testing.T) {
	s := start(t, t.TempDir(), "--log-level", "debug", "--auth-failure-rate", "3/min")
	png := fixture(t, "png-rgb.png")
	secrets := []string{}
	keep := func(xs ...string) {
		for _, x := range xs {
			secrets = append(secrets, x, base64.StdEncoding.EncodeToString([]byte(x)))
		}
	}
	var errorBodies []response
	note := func(r response) response {
		if r.status >= 400 {
			errorBodies = append(errorBodies, r)
		}
		return r
	}

	pwV1, pwSeed, pwWrong, pwWeak := "Pa55word-for-v1", "Seed-pass-phrase", "Guessed-Wrongly", "Zq7weak"
	keep(pwV1, pwSeed, pwWrong, pwWeak, "seeder:"+pwSeed, "seeder:"+pwWrong, "ghost:"+pwWrong)
	v1tok := s.v1CreateUser("v1secret", pwV1)
	r := note(s.do("GET", "/imageapi/generate-token/seeder/", nil, basicHeader("seeder", pwSeed)))
	var v map[string]string
	json.Unmarshal(r.body, &v)
	seedTok := v["token"]
	wrongTok := "Wr0ngT0kn_"
	keep(v1tok, seedTok, wrongTok)

	note(s.do("POST", "/api/v1/users", strings.NewReader(`{"username":"weak","password":"`+pwWeak+`"}`), map[string]string{"Content-Type": "application/json"}))
	note(s.do("POST", "/api/v1/users", strings.NewReader(`{"username":"v1secret","password":"`+pwV1+`"}`), map[string]string{"Content-Type": "application/json"}))
	note(s.do("POST", "/api/v1/users", strings.NewReader(`{"username":"broken","password":"`+pwV1+`"`), map[string]string{"Content-Type": "application/json"}))
	note(s.do("GET", "/imageapi/retrieve-token/seeder/", nil, basicHeader("seeder", pwWrong)))
	note(s.do("GET", "/imageapi/retrieve-token/seeder/", nil, basicHeader("seeder", pwSeed)))
	note(s.do("GET", "/imageapi/retrieve-token/ghost/", nil, basicHeader("ghost", pwWrong)))
	id := s.uploadID(seedTok, "a.png", png)
	img := s.v1Upload(v1tok, "b.png", png)
	note(s.get("/imageapi/token/" + seedTok + "/get-image/" + id + "/"))
	note(s.get("/imageapi/token/" + seedTok + "/get-image/zzzz/"))
	note(s.do("GET", "/api/v1/images/"+img.ID, nil, bearer(v1tok)))
	note(s.do("GET", "/api/v1/images/zzzz/meta", nil, bearer(v1tok)))
	note(s.do("PUT", "/api/v1/images/"+img.ID, strings.NewReader("not an image"), bearer(v1tok, "Content-Type", "application/octet-stream")))
	note(s.do("PUT", "/imageapi/token/"+seedTok+"/get-image/"+id+"/", nil, nil))
	note(s.get("/imageapi/token/" + seedTok + "/no-such-route/"))
	note(s.get("/imageapi/token/" + wrongTok + "/get-image-list/"))
	note(s.do("GET", "/api/v1/images", nil, bearer(wrongTok)))
	// The third failure exhausted the budget: a 429 follows, even with a
	// right token.
	note(s.get("/imageapi/token/" + seedTok + "/get-image-list/"))
	note(s.do("GET", "/api/v1/images", nil, bearer(v1tok)))
	// Rotation: the old and the new token are both secrets.
	if v1 := s.do("POST", "/api/v1/users/me/token", nil, bearer(seedTok)); v1.status == 200 {
		t.Errorf("rotation while rate limited: got %v, want 429", v1)
	}

	metricsText := s.metricsText()
	s.stop()
	logText := s.stderr.String()
	if !strings.Contains(logText, "request") {
		t.Fatalf("the log has no request lines: %q", logText)
	}
	for _, secret := range secrets {
		if strings.Contains(logText, secret) {
			t.Errorf("the log contains the secret %q:\n%s", secret, logText)
		}
		if strings.Contains(metricsText, secret) {
			t.Errorf("/metrics contains the secret %q", secret)
		}
		for _, r := range errorBodies {
			if strings.Contains(string(r.body), secret) {
				t.Errorf("an error body contains the secret %q: %v", secret, r)
			}
			for k, vs := range r.header {
				for _, v := range vs {
					if strings.Contains(v, secret) {
						t.Errorf("an error's %s header contains the secret %q: %q", k, secret, v)
					}
				}
			}
		}
	}
	if len(errorBodies) < 12 {
		t.Errorf("got %d error answers, want at least 12: the test did not exercise what it meant to", len(errorBodies))
	}
}

// TestAuthCORS: no origin is allowed unless configured; a configured one
// gets preflight answers and marked responses.
func TestAuthCORS(t *testing.T) {
	const origin = "https://app.example"
	preflight := map[string]string{"Origin": origin, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "authorization, if-match"}

	t.Run("none configured", func(t *testing.T) {
		s := start(t, t.TempDir())
		for _, r := range []response{
			s.do("GET", "/api/v1/limits", nil, map[string]string{"Origin": origin}),
			s.do("OPTIONS", "/api/v1/images/abcd", nil, preflight),
			s.do("GET", "/healthz", nil, map[string]string{"Origin": "null"}),
		} {
			if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("no origins configured: Access-Control-Allow-Origin got %q, want none", got)
			}
			if got := r.header.Get("Access-Control-Allow-Methods"); got != "" {
				t.Errorf("no origins configured: Access-Control-Allow-Methods got %q, want none", got)
			}
		}
	})

	t.Run("one configured", func(t *testing.T) {
		s := start(t, t.TempDir(), "--cors-origins", origin)
		tok := s.v1CreateUser("browser", "")
		img := s.v1Upload(tok, "c.png", fixture(t, "png-rgb.png"))

		r := s.do("OPTIONS", "/api/v1/images/"+img.ID, nil, preflight)
		if r.status != 204 {
			t.Errorf("preflight: got %v, want 204", r)
		}
		if got := r.header.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("preflight: Access-Control-Allow-Origin got %q, want %q", got, origin)
		}
		methods := r.header.Get("Access-Control-Allow-Methods")
		for _, m := range []string{"GET", "PUT", "POST", "DELETE"} {
			if !listHas(methods, m) {
				t.Errorf("preflight: Access-Control-Allow-Methods got %q, want %s among them", methods, m)
			}
		}
		headers := r.header.Get("Access-Control-Allow-Headers")
		for _, h := range []string{"Authorization", "If-Match", "Content-Type", "Idempotency-Key"} {
			if !listHas(headers, h) {
				t.Errorf("preflight: Access-Control-Allow-Headers got %q, want %s among them", headers, h)
			}
		}
		if got := r.header.Get("Access-Control-Allow-Credentials"); got != "" {
			t.Errorf("preflight: Access-Control-Allow-Credentials got %q, want none (tokens, not cookies)", got)
		}

		// An actual request from the origin is marked, and varies by it.
		r = s.do("GET", "/api/v1/images/"+img.ID+"/meta", nil, bearer(tok, "Origin", origin))
		if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("GET from the origin: got %d with Access-Control-Allow-Origin %q, want 200 and %q", r.status, r.header.Get("Access-Control-Allow-Origin"), origin)
		}
		if !slices.ContainsFunc(r.header.Values("Vary"), func(v string) bool { return listHas(v, "Origin") }) {
			t.Errorf("GET from the origin: Vary got %q, want Origin among them", r.header.Values("Vary"))
		}
		if exp := r.header.Get("Access-Control-Expose-Headers"); !listHas(exp, "ETag") {
			t.Errorf("GET from the origin: Access-Control-Expose-Headers got %q, want ETag among them", exp)
		}
		// Errors are marked too, so the page can read them.
		r = s.do("GET", "/api/v1/images", nil, map[string]string{"Origin": origin})
		if r.status != 401 || r.header.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("401 to the origin: got %d with Access-Control-Allow-Origin %q, want 401 and %q", r.status, r.header.Get("Access-Control-Allow-Origin"), origin)
		}

		// Another origin gets nothing.
		for _, other := range []string{"https://evil.example", "https://app.example.evil", "http://app.example", "null"} {
			r = s.do("GET", "/api/v1/images/"+img.ID+"/meta", nil, bearer(tok, "Origin", other))
			if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("GET from %s: Access-Control-Allow-Origin got %q, want none", other, got)
			}
			pf := map[string]string{"Origin": other, "Access-Control-Request-Method": "PUT"}
			r = s.do("OPTIONS", "/api/v1/images/"+img.ID, nil, pf)
			if got := r.header.Get("Access-Control-Allow-Origin"); got != "" || r.header.Get("Access-Control-Allow-Methods") != "" {
				t.Errorf("preflight from %s: Access-Control-Allow-Origin %q, -Methods %q, want neither", other, got, r.header.Get("Access-Control-Allow-Methods"))
			}
		}
	})
}

// listHas reports whether a comma-separated header value lists item, case
// aside.
func listHas(list, item string) bool {
	for v := range strings.SplitSeq(list, ",") {
		if strings.EqualFold(strings.TrimSpace(v), item) {
			return true
		}
	}
	return false
}

// pollMetric scrapes /metrics until the metric satisfies ok, for up to
// within.
func pollMetric(t *testing.T, s *server, name string, labels map[string]string, within time.Duration, ok func(float64) bool) bool {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v, found := metricSum(s.withT(t).metricsText(), name, labels)
		if found && ok(v) {
			return true
		}
		if time.Now().After(deadline) {
			t.Logf("%s %v: last value %v (found %v)", name, labels, v, found)
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAuthMetrics: /metrics counts requests by route pattern, store
// operations, and users and images.
func TestAuthMetrics(t *testing.T) {
	data := t.TempDir()
	s := start(t, data)
	png := fixture(t, "png-rgb.png")
	seedTok := s.newUser("metered")
	v1Tok := s.v1CreateUser("counted", "")
	seedID := s.uploadID(seedTok, "one.png", png)
	a := s.v1Upload(v1Tok, "two.png", png)
	s.v1Upload(v1Tok, "three.png", png)
	gone := s.v1Upload(v1Tok, "four.png", png)
	if r := s.do("DELETE", "/api/v1/images/"+gone.ID, nil, bearer(v1Tok)); r.status != 204 {
		t.Fatalf("DELETE: got %v, want 204", r)
	}
	s.get("/imageapi/token/" + seedTok + "/get-image/" + seedID + "/")
	s.do("GET", "/api/v1/images/"+a.ID, nil, bearer(v1Tok))
	s.do("GET", "/api/v1/images/"+a.ID, nil, bearer(v1Tok))
	s.do("GET", "/api/v1/images/zzzz", nil, bearer(v1Tok))
	s.get("/imageapi/token/NotAT0ken_/get-image-list/")
	s.get("/no/such/" + seedTok)

	// Users and images: 2 and 3 (the fourth was deleted); refused
	// requests change nothing.
	s.v1Raw("POST", "/api/v1/images?name=x.png", v1Tok, []byte("not an image"))
	s.get("/imageapi/generate-token/metered/")
	if !pollMetric(t, s, "imagestore_users", nil, 5*time.Second, func(v float64) bool { return v == 2 }) {
		t.Errorf("imagestore_users: want 2")
	}
	if !pollMetric(t, s, "imagestore_images", nil, 5*time.Second, func(v float64) bool { return v == 3 }) {
		t.Errorf("imagestore_images: want 3")
	}

	text := s.metricsText()
	for _, c := range []struct {
		labels map[string]string
		min    float64
	}{
		{map[string]string{"route": "/api/v1/images/{id}", "method": "GET", "status": "200"}, 2},
		{map[string]string{"route": "/api/v1/images/{id}", "method": "GET", "status": "404"}, 1},
		{map[string]string{"route": "/api/v1/images/{id}", "method": "DELETE", "status": "204"}, 1},
		{map[string]string{"route": "/api/v1/images", "method": "POST", "status": "201"}, 3},
		{map[string]string{"route": "/api/v1/users", "method": "POST", "status": "201"}, 1},
		{map[string]string{"route": "/imageapi/token/{token}/get-image/{id}/", "method": "GET", "status": "200"}, 1},
		{map[string]string{"route": "/imageapi/token/{token}/get-image-list/", "method": "GET", "status": "401"}, 1},
		{map[string]string{"route": "/imageapi/generate-token/{username}/", "method": "GET", "status": "409"}, 1},
	} {
		if v, _ := metricSum(text, "imagestore_http_requests_total", c.labels); v < c.min {
			t.Errorf("imagestore_http_requests_total%v: got %v, want at least %v", c.labels, v, c.min)
		}
	}
	// Every route label is a pattern (or "unmatched"), never a path.
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "imagestore_http_") {
			continue
		}
		for _, m := range labelRe.FindAllStringSubmatch(line, -1) {
			if m[1] != "route" {
				continue
			}
			route := m[2]
			if route != "unmatched" && strings.Contains(route, "/") && !strings.Contains(route, "{") && !slices.Contains([]string{"/api/v1/users", "/api/v1/users/me", "/api/v1/users/me/token", "/api/v1/limits", "/api/v1/images", "/healthz", "/readyz", "/metrics", "/openapi.yaml"}, route) {
				t.Errorf("route label %q is not a pattern: %s", route, line)
			}
		}
		for _, secret := range []string{seedTok, v1Tok, seedID, a.ID, "NotAT0ken_", "metered", "counted", "zzzz", "/no/such"} {
			if strings.Contains(line, secret) {
				t.Errorf("a metric names %q: %s", secret, line)
			}
		}
	}
	for _, c := range []map[string]string{{"op": "put", "result": "ok"}, {"op": "get", "result": "ok"}, {"op": "get", "result": "not_found"}, {"op": "delete", "result": "ok"}} {
		if v, _ := metricSum(text, "imagestore_store_operations_total", c); v < 1 {
			t.Errorf("imagestore_store_operations_total%v: got %v, want at least 1", c, v)
		}
	}
	if v, _ := metricSum(text, "imagestore_http_request_duration_seconds_count", map[string]string{"route": "/api/v1/images/{id}"}); v < 3 {
		t.Errorf("imagestore_http_request_duration_seconds_count for /api/v1/images/{id}: got %v, want at least 3", v)
	}

	// After a restart the counts are found again in the store.
	s.stop()
	s2 := start(t, data)
	if !pollMetric(t, s2, "imagestore_users", nil, 5*time.Second, func(v float64) bool { return v == 2 }) {
		t.Errorf("imagestore_users after a restart: want 2")
	}
	if !pollMetric(t, s2, "imagestore_images", nil, 5*time.Second, func(v float64) bool { return v == 3 }) {
		t.Errorf("imagestore_images after a restart: want 3")
	}
}

// TestAuthMetricsCountsUnderLoadAtStartup: users created while the server
// recounts its store at startup are counted too. After the dust settles
// the gauge must equal the number of users, however the requests and the
// recount interleaved.
func TestAuthMetricsCountsUnderLoadAtStartup(t *testing.T) {
	data := t.TempDir()
	s := start(t, data)
	// Enough users that the startup recount takes a while. They are made
	// with a plain client: the same request is checked everywhere else, and
	// a thousand of them through the validating client take long.
	const pre = 1000
	bulk := &http.Client{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	next := make(chan int)
	var failed atomic.Int64
	for range 32 {
		wg.Go(func() {
			for i := range next {
				resp, err := bulk.Get(fmt.Sprintf("%s/imageapi/generate-token/pre%04d/", s.url, i))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					failed.Add(1)
				}
			}
		})
	}
	for i := range pre {
		next <- i
	}
	close(next)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d generate-token requests failed", n, pre)
	}
	s.stop()

	total := pre
	for round := range 8 {
		s := start(t, data)
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Go(func() {
				if r, err := s.tryDo("GET", fmt.Sprintf("/imageapi/generate-token/post%d_%02d/", round, i), nil, nil); err != nil || r.status != 201 {
					failed.Add(1)
				}
			})
		}
		wg.Wait()
		if n := failed.Load(); n > 0 {
			t.Fatalf("round %d: %d generate-token requests failed", round, n)
		}
		total += 30
		// The recount is over long before a second has passed.
		if !pollMetric(t, s, "imagestore_users", nil, time.Second, func(v float64) bool { return v == float64(total) }) {
			v, _ := metricSum(s.metricsText(), "imagestore_users", nil)
			t.Fatalf("restart %d with 30 users created at once: imagestore_users got %v, want %d (users created during the startup recount were lost from the count)", round+1, v, total)
		}
		s.stop()
	}
}

// TestAuthPasswordModeTimingHidesExistence: under --token-retrieval
// password, a wrong password for a real user and any password for an
// unknown one must not be told apart, by their answers nor by how long
// they take (a bcrypt comparison for one, none for the other, would tell).
func TestAuthPasswordModeTimingHidesExistence(t *testing.T) {
	s := start(t, t.TempDir(), "--token-retrieval", "password")
	s.do("GET", "/imageapi/generate-token/realuser/", nil, basicHeader("realuser", "the right password"))
	median := func(user string) time.Duration {
		var ds []time.Duration
		for i := range 5 {
			t0 := time.Now()
			r := s.do("GET", "/imageapi/retrieve-token/"+user+"/", nil, basicHeader(user, "wrong guess "+strconv.Itoa(i)))
			ds = append(ds, time.Since(t0))
			if r.status != 401 {
				t.Errorf("%s: got %v, want 401", user, r)
			}
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	known, unknown := median("realuser"), median("nosuchuser")
	if unknown*5 < known {
		t.Errorf("wrong password: a real user's answer took %v, an unknown user's %v: the time tells whether a user exists", known, unknown)
	}
}

// TestAuthReadiness: /readyz reports the store's state; /healthz only that
// the process runs.
func TestAuthReadiness(t *testing.T) {
	type ready struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	s := start(t, t.TempDir())
	wantJSON(t, "healthz", s.get("/healthz"), 200, `{"status":"ok"}`)
	r := s.get("/readyz")
	var got ready
	if err := json.Unmarshal(r.body, &got); err != nil || r.status != 200 || got.Status != "ready" {
		t.Errorf("readyz: got %v, want 200 with status ready", r)
	}
	for _, k := range []string{"store_writable", "free_space"} {
		if got.Checks[k] != "ok" {
			t.Errorf("readyz: check %s got %q, want ok", k, got.Checks[k])
		}
	}

	low := start(t, t.TempDir(), "--min-free", "999999GiB")
	wantJSON(t, "healthz with little free space", low.get("/healthz"), 200, `{"status":"ok"}`)
	r = low.get("/readyz")
	got = ready{}
	if err := json.Unmarshal(r.body, &got); err != nil || r.status != 503 || got.Status == "ready" {
		t.Errorf("readyz with --min-free 999999GiB: got %v, want 503, not ready", r)
	}
	if !strings.HasPrefix(got.Checks["free_space"], "low") {
		t.Errorf("readyz with --min-free 999999GiB: free_space got %q, want low: ...", got.Checks["free_space"])
	}
	if got.Checks["store_writable"] != "ok" {
		t.Errorf("readyz with --min-free 999999GiB: store_writable got %q, want ok", got.Checks["store_writable"])
	}
	// The store still works: readiness is advice to a load balancer.
	if tok := low.newUser("still"); !tokenRe.MatchString(tok) {
		t.Errorf("generate-token while not ready: got %q", tok)
	}
	// Sizes are parsed: an impossible one is refused at start.
	if _, err := tryStart(t, t.TempDir(), "--min-free", "lots"); err == nil {
		t.Errorf("--min-free lots: the server started, want it refused")
	}
}
