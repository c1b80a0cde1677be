package client_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"
)

// serverBinary is the real server, built once for the package's tests.
var serverBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imagestore-client-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverBinary = filepath.Join(dir, "imagestore")
	build := exec.Command("go", "build", "-o", serverBinary, "../cmd/imagestore")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the server:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var listenRe = regexp.MustCompile(`msg=listening addr=([0-9.:]+)`)

// startServer runs the server on a free loopback port over a new data
// folder, with args added to the defaults, and returns its URL. It is
// killed when the test ends.
func startServer(t *testing.T, args ...string) string {
	t.Helper()
	defaults := []string{"--addr", "127.0.0.1:0", "--data", t.TempDir(),
		"--account-rate", "0", "--auth-failure-rate", "0", "--min-free", "0"}
	cmd := exec.Command(serverBinary, append(defaults, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no IMAGESTORE_* from outside
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		select {
		case <-done:
			t.Fatalf("the server exited:\n%s", stderr.String())
		default:
		}
		if m := listenRe.FindStringSubmatch(stderr.String()); m != nil {
			url := "http://" + m[1]
			if resp, err := http.Get(url + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return url
				}
			}
		}
	}
	t.Fatalf("the server did not start:\n%s", stderr.String())
	return ""
}

// fixture returns a test image of imagetype/testdata.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "imagetype", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
