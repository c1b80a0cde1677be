// Package miniotest runs a real MinIO server on loopback for tests of the
// S3 store, the end-to-end tests of several servers sharing a bucket, and
// the benchmark. MinIO is only ever run as a separate test server: the
// project's scripts build it (scripts/minio.sh) and name the binary in
// IMAGESTORE_MINIO; nothing of it is linked into imagestore.
package miniotest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The credentials of every test server: it listens on loopback only.
const (
	AccessKey = "imagestore-test"
	SecretKey = "imagestore-test-secret"
)

// Binary returns the MinIO server to run: $IMAGESTORE_MINIO, or minio on
// the PATH.
func Binary() (string, error) {
	if p := os.Getenv("IMAGESTORE_MINIO"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("IMAGESTORE_MINIO: %w", err)
		}
		return p, nil
	}
	p, err := exec.LookPath("minio")
	if err != nil {
		return "", errors.New("no MinIO server: run ./scripts/minio.sh, or the tests through ./scripts/test.sh, which builds it and sets IMAGESTORE_MINIO")
	}
	return p, nil
}

// Server is one running MinIO process.
type Server struct {
	// Endpoint is the server's URL, http://127.0.0.1:port.
	Endpoint string
	cmd      *exec.Cmd
	done     chan struct{}
	log      *lockedBuffer
}

// Start runs MinIO over dir and waits until it serves.
func Start(dir string) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	console, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "server", "--quiet", "--address", addr, "--console-address", fmt.Sprintf("127.0.0.1:%d", console), dir)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+AccessKey, "MINIO_ROOT_PASSWORD="+SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=on",
	)
	s := &Server{Endpoint: "http://" + addr, cmd: cmd, done: make(chan struct{}), log: &lockedBuffer{}}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting MinIO: %w", err)
	}
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("MinIO exited at start:\n%s", s.log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("MinIO did not become ready in 60s:\n%s", s.log.String())
		}
	}
}

// Stop ends the server.
func (s *Server) Stop() {
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// Client returns a client of the server with its root credentials.
func (s *Server) Client() *minio.Client {
	c, err := minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(AccessKey, SecretKey, ""), Region: "us-east-1",
	})
	if err != nil {
		panic(err) // the endpoint is ours and well formed
	}
	return c
}

// NewBucket makes a bucket with a fresh random name and returns the name.
func (s *Server) NewBucket(ctx context.Context) (string, error) {
	name := "test-" + strings.ToLower(rand.Text()[:12])
	if err := s.Client().MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		return "", err
	}
	return name, nil
}

// Env returns the environment variables that point an imagestore process
// at this server.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + AccessKey, "AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_ENDPOINT_URL=" + s.Endpoint, "AWS_REGION=us-east-1",
	}
}

// PID is the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Log returns what the server printed.
func (s *Server) Log() string { return s.log.String() }

var (
	shared     *Server
	sharedErr  error
	sharedOnce sync.Once
	sharedDir  string
)

// Shared starts one server for the whole test binary on first use, or
// stops the test if there is no MinIO: with a printed reason, or as a
// failure under CI (CI=true), where nothing may be skipped. Call StopShared
// from TestMain after the tests.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	sharedOnce.Do(func() {
		if _, sharedErr = Binary(); sharedErr != nil {
			return
		}
		sharedDir, sharedErr = os.MkdirTemp("", "imagestore-minio-")
		if sharedErr != nil {
			return
		}
		shared, sharedErr = Start(filepath.Join(sharedDir, "data"))
	})
	if sharedErr != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("S3 tests need MinIO: %v", sharedErr)
		}
		tb.Skipf("skipping the S3 tests: %v", sharedErr)
	}
	return shared
}

// StopShared stops the server Shared started, if any, and removes its data.
func StopShared() {
	if shared != nil {
		shared.Stop()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf) < 1<<20 { // enough to explain a failure
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
