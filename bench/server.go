package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// repoRoot returns the folder of the module's go.mod.
func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the imagestore module: run the benchmark from the repository")
	}
	return filepath.Dir(gomod), nil
}

// buildServer compiles cmd/imagestore into bin.
func buildServer(ctx context.Context, root, bin string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/imagestore")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the server: %v\n%s", err, out)
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// server is an imagestore process started by the benchmark.
type server struct {
	cmd       *exec.Cmd
	base      string // http://127.0.0.1:PORT
	debugBase string // the profiler's listener, or ""
	logPath   string
	args      []string
	started   time.Time
	done      chan struct{}
	exitErr   error
	client    *http.Client
}

// startServer starts bin on a free port with data as its data folder and
// waits until /readyz answers 200.
func startServer(ctx context.Context, bin, data, logPath string, flags []string, profile bool, env ...string) (*server, error) {
	s, err := launchServer(bin, data, logPath, flags, profile, env...)
	if err != nil {
		return nil, err
	}
	if _, err := s.waitReady(ctx, 60*time.Second); err != nil {
		s.kill()
		return nil, err
	}
	return s, nil
}

// launchServer starts the process without waiting for it to be ready.
func launchServer(bin, data, logPath string, flags []string, profile bool, env ...string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{"--addr", fmt.Sprintf("127.0.0.1:%d", port), "--data", data}
	args = append(args, flags...)
	s := &server{
		base:    fmt.Sprintf("http://127.0.0.1:%d", port),
		logPath: logPath,
		done:    make(chan struct{}),
		client:  &http.Client{Transport: newTransport(4, nil), Timeout: 5 * time.Minute},
	}
	if profile {
		dport, err := freePort()
		if err != nil {
			return nil, err
		}
		args = append(args, "--debug-addr", fmt.Sprintf("127.0.0.1:%d", dport))
		s.debugBase = fmt.Sprintf("http://127.0.0.1:%d", dport)
	}
	s.args = args
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	if len(env) > 0 {
		s.cmd.Env = append(os.Environ(), env...)
	}
	// Its own process group, so a Ctrl-C reaches the benchmark only and
	// the benchmark decides how the server stops; and killed if the
	// benchmark dies without cleaning up.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	s.started = time.Now()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	go func() { s.exitErr = s.cmd.Wait(); close(s.done) }()
	return s, nil
}

// waitReady polls /readyz until it answers 200, and returns the time
// since the process was started.
func (s *server) waitReady(ctx context.Context, limit time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: 2 * time.Second}
	last := "no answer"
	for {
		select {
		case <-s.done:
			return 0, s.exitedError()
		case <-ctx.Done():
			return 0, ctx.Err()
		default:
		}
		resp, err := client.Get(s.base + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(s.started), nil
			}
			last = fmt.Sprintf("%s %s", resp.Status, strings.TrimSpace(string(body)))
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the server was not ready within %s (last /readyz: %s); its log:\n%s", limit, last, s.logTail())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exitedError explains an early exit of the server.
func (s *server) exitedError() error {
	logs := s.logTail()
	if i := strings.Index(logs, "\nUsage:"); i >= 0 {
		logs = logs[:i] // a refused flag: the usage text adds nothing
	}
	if s.debugBase != "" && strings.Contains(logs, "debug-addr") {
		return fmt.Errorf("the server refused --debug-addr, which -profile needs (this build has no profiler listener): %s", logs)
	}
	return fmt.Errorf("the server exited (%v); its log:\n%s", s.exitErr, logs)
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(bytes.TrimSpace(b)) == 0 {
		return "(empty)"
	}
	return tail(strings.TrimSpace(string(b)), 3000)
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// alive reports an error if the server has exited.
func (s *server) alive() error {
	select {
	case <-s.done:
		return s.exitedError()
	default:
		return nil
	}
}

// stop asks the server to shut down gracefully and waits for it; after
// limit it is killed.
func (s *server) stop(limit time.Duration) error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if s.exitErr != nil {
			return fmt.Errorf("the server's graceful shutdown failed (%v): %s", s.exitErr, s.logTail())
		}
		return nil
	case <-time.After(limit):
		s.kill()
		return fmt.Errorf("the server did not stop within %s of SIGTERM and was killed", limit)
	}
}

// kill ends the server at once and waits for it.
func (s *server) kill() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Kill()
	<-s.done
}

// seedURL returns the URL of a seed route under /imageapi/.
func (s *server) seedURL(format string, a ...any) string {
	return s.base + "/imageapi/" + fmt.Sprintf(format, a...)
}

// newUser creates a user by the seed route and returns its token.
func (s *server) newUser(ctx context.Context, name string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	if err := s.fetchJSON(ctx, http.MethodGet, s.seedURL("generate-token/%s/", name), nil, "", http.StatusCreated, &out); err != nil {
		return "", fmt.Errorf("creating user %s: %w", name, err)
	}
	if out.Token == "" {
		return "", fmt.Errorf("creating user %s: no token in the answer", name)
	}
	return out.Token, nil
}

// upload stores one image by the seed route and returns its id.
func (s *server) upload(ctx context.Context, token, filename, contentType string, data []byte) (string, error) {
	parts, ct := multipartBody(filename, contentType, data)
	var out struct {
		ID string `json:"File ID"`
	}
	if err := s.fetchJSON(ctx, http.MethodPost, s.seedURL("token/%s/upload-image/", token), bytes.Join(parts, nil), ct, http.StatusCreated, &out); err != nil {
		return "", fmt.Errorf("uploading %s: %w", filename, err)
	}
	if out.ID == "" {
		return "", fmt.Errorf("uploading %s: no File ID in the answer", filename)
	}
	return out.ID, nil
}

// fetchJSON sends one request and decodes a JSON answer with the wanted
// status into out.
func (s *server) fetchJSON(ctx context.Context, method, url string, body []byte, contentType string, want int, out any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d (want %d): %s", method, routeOf(url), resp.StatusCode, want, tail(strings.TrimSpace(string(b)), 300))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: bad JSON answer: %v", method, routeOf(url), err)
		}
	}
	return nil
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
