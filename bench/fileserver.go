package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// serveFilesFlag, as the first argument, turns the benchmark binary into
// the Go reference for downloads: a process that does nothing but
// http.ListenAndServe(addr, http.FileServer(http.Dir(dir))). It is not in
// the usage text; the benchmark starts it itself.
const serveFilesFlag = "-serve-files"

// serveFiles is the main function of the file server process.
func serveFiles(args []string) int {
	fs := flag.NewFlagSet("bench "+serveFilesFlag, flag.ContinueOnError)
	dir := fs.String(serveFilesFlag[1:], "", "the `folder` to serve")
	addr := fs.String("addr", "127.0.0.1:0", "the `address` to listen on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "usage: bench %s DIR -addr HOST:PORT\n", serveFilesFlag)
		return 2
	}
	err := http.ListenAndServe(*addr, http.FileServer(http.Dir(*dir)))
	fmt.Fprintln(os.Stderr, "bench file server:", err)
	return 1
}

// fileServer is the benchmark binary running as a Go file server (see
// serveFiles) over the same web root as nginx: Go's standard HTTP server
// on this machine, in a process of its own so that the benchmark's CPU use
// does not mix in.
type fileServer struct {
	cmd     *exec.Cmd
	port    int
	logPath string
	done    chan struct{}
}

// startFileServer starts the file server on a free loopback port, serving
// root, and waits until it answers 200 for probe.
func startFileServer(ctx context.Context, dir, root, probe string) (*fileServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the benchmark binary for the file server: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "fileserver.log")
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(exe, serveFilesFlag, root, "-addr", fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the file server: %w", err)
	}
	f := &fileServer{cmd: cmd, port: port, logPath: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); close(f.done) }()

	url := f.url(probe)
	deadline := time.Now().Add(10 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-f.done:
			return nil, fmt.Errorf("the file server exited at start-up: %s", f.logs())
		case <-ctx.Done():
			f.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return f, nil
			}
			f.stop()
			return nil, fmt.Errorf("the file server answers %s for %s", resp.Status, url)
		}
		if time.Now().After(deadline) {
			f.stop()
			return nil, fmt.Errorf("the file server did not answer within 10 s: %s", f.logs())
		}
	}
}

func (f *fileServer) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", f.port, path)
}

func (f *fileServer) pid() int { return f.cmd.Process.Pid }

// alive reports an error if the file server has exited.
func (f *fileServer) alive() error {
	select {
	case <-f.done:
		return fmt.Errorf("the file server exited: %s", f.logs())
	default:
		return nil
	}
}

// logs returns the end of the file server's output, for messages.
func (f *fileServer) logs() string {
	b, _ := os.ReadFile(f.logPath)
	if s := strings.TrimSpace(string(b)); s != "" {
		return tail(s, 1500)
	}
	return "(no output)"
}

// stop kills the file server and waits for it.
func (f *fileServer) stop() {
	syscall.Kill(-f.pid(), syscall.SIGKILL) // its own process group: see Setpgid
	<-f.done
}
