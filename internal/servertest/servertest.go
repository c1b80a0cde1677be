// Package servertest runs the real imagestore server for tests of other
// packages: it builds commands once per test binary, and starts the server
// as a process on a free loopback port, waiting until it answers.
//
// A package's tests use it from TestMain and a helper of their own:
//
//	var serverBinary string
//
//	func TestMain(m *testing.M) {
//		servertest.Main(m, map[string]*string{servertest.ServerPackage: &serverBinary})
//	}
//
//	func TestSomething(t *testing.T) {
//		s := servertest.Start(t, serverBinary, "", servertest.Options{})
//		resp, err := http.Get(s.URL + "/healthz")
//		...
//	}
package servertest

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ServerPackage is the import path of the server command.
const ServerPackage = "github.com/imagestore/imagestore/cmd/imagestore"

// Main builds the commands of a package's tests, runs the tests, and exits.
// Each key of bins is a main package, an import path or a path from the
// test's folder such as "."; it is built with `go build` into one new
// temporary folder, and the binary's path stored where its value points.
// Then m runs, the folder is removed, and the process exits with m's code.
// A build that fails exits with 1 before any test runs, the go command's
// output printed.
func Main(m *testing.M, bins map[string]*string) {
	dir, err := os.MkdirTemp("", "imagestore-servertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "servertest:", err)
		os.Exit(1)
	}
	for pkg, bin := range bins {
		*bin = filepath.Join(dir, binaryName(pkg))
		build := exec.Command("go", "build", "-o", *bin, pkg)
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "servertest: building %s: %v\n", pkg, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binaryName is the name go build gives pkg's binary: the last element of
// its import path, or of its folder for a relative path.
func binaryName(pkg string) string {
	if pkg == "." || pkg == ".." || strings.HasPrefix(pkg, "./") || strings.HasPrefix(pkg, "../") {
		if abs, err := filepath.Abs(pkg); err == nil {
			return filepath.Base(abs)
		}
	}
	return path.Base(pkg)
}

// Options are what a test adds to the server that Start runs.
type Options struct {
	// Args come after Start's defaults, and so override them.
	Args []string
	// Env holds "KEY=value" entries. The server's environment has only
	// PATH besides these, so no IMAGESTORE_* setting from outside the
	// test reaches it.
	Env []string
}

// Server is one running server process.
type Server struct {
	URL    string    // where it listens: "http://127.0.0.1:port"
	Data   string    // its data folder
	Cmd    *exec.Cmd // the process
	Stderr *Buffer   // its log so far

	tb   testing.TB
	args []string // the test's, for messages
	done chan struct{}
	err  error // cmd.Wait's, once done is closed
}

// startTimeout is how long Start waits for the server to answer /healthz.
const startTimeout = 10 * time.Second

// listenRe finds the listening address in a text or JSON log line.
var listenRe = regexp.MustCompile(`msg"?[=:]"?listening"?[ ,]"?addr"?[=:]"?([0-9.:]+)`)

// Start runs binary, the server, over dataDir (a new temporary folder if
// it is ""), and waits until it logs the address it listens on and answers
// GET /healthz with 200. When the test ends the server is killed, if it
// still runs. If it exits or does not answer in 10 seconds, Start fails the
// test with the server's log.
//
// The defaults are a free port on 127.0.0.1, and no limits a test would
// meet by accident: no per-account or auth-failure rate limits, which many
// requests and bad tokens from one address would hit, and no free-space
// reserve, which a small disk would hit. opts.Args can set them again.
func Start(tb testing.TB, binary, dataDir string, opts Options) *Server {
	tb.Helper()
	if dataDir == "" {
		dataDir = tb.TempDir()
	}
	args := append([]string{"--addr", "127.0.0.1:0", "--data", dataDir,
		"--account-rate", "0", "--auth-failure-rate", "0", "--min-free", "0"}, opts.Args...)
	s := &Server{
		Data:   dataDir,
		Cmd:    exec.Command(binary, args...),
		Stderr: &Buffer{},
		tb:     tb,
		args:   opts.Args,
		done:   make(chan struct{}),
	}
	s.Cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, opts.Env...)
	s.Cmd.Stderr = s.Stderr
	if err := s.Cmd.Start(); err != nil {
		tb.Fatalf("servertest: starting %s: %v", binary, err)
	}
	go func() {
		s.err = s.Cmd.Wait()
		close(s.done)
	}()
	tb.Cleanup(s.Kill)

	health := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(startTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case <-s.done:
			tb.Fatalf("servertest: server %q exited before it answered /healthz: %v\nits log:\n%s", s.args, s.err, s.Stderr)
		default:
		}
		m := listenRe.FindStringSubmatch(s.Stderr.String())
		if m == nil {
			continue
		}
		s.URL = "http://" + m[1]
		if resp, err := health.Get(s.URL + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
	}
	tb.Fatalf("servertest: server %q did not answer /healthz with 200 in %v\nits log:\n%s", s.args, startTimeout, s.Stderr)
	return nil
}

// Stop sends SIGTERM and waits for the server to exit, failing the test,
// with the server's log, unless it exits with status 0 within 15 seconds.
func (s *Server) Stop() {
	s.tb.Helper()
	s.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if s.err != nil {
			s.tb.Fatalf("servertest: server %q exited with %v after SIGTERM\nits log:\n%s", s.args, s.err, s.Stderr)
		}
	case <-time.After(15 * time.Second):
		s.tb.Fatalf("servertest: server %q did not stop within 15s of SIGTERM\nits log:\n%s", s.args, s.Stderr)
	}
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it to
// exit. It does nothing if the server has exited already.
func (s *Server) Kill() {
	select {
	case <-s.done:
		return
	default:
	}
	s.Cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.tb.Errorf("servertest: server %q still runs 10s after SIGKILL", s.args)
	}
}

// Buffer collects a process's output while it runs: the process writes
// and the test reads at the same time.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
