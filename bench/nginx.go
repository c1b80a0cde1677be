package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// nginx is an nginx master process started by the benchmark, serving the
// fixtures as static files: the ceiling a Go file server could hope to
// reach on this machine.
type nginx struct {
	cmd  *exec.Cmd
	dir  string
	port int
	done chan struct{}
}

// The paths nginx serves. Under / a client that accepts gzip gets the .gz
// file next to the one it asked for (gzip_static); under /plain/ every
// client gets the file as it is; under /gunzip/ only the .gz files exist
// and nginx decompresses them for clients that do not accept gzip.
const (
	nginxGzipPrefix   = "/"
	nginxPlainPrefix  = "/plain/"
	nginxGunzipPrefix = "/gunzip/"
)

// nginxRoot writes the files nginx serves: photo.jpg and big.png, their
// gzip level 6 copies, the .gz files alone under gzonly/, and the images
// of the random set (with .gz copies) under r/.
func nginxRoot(dir string, fx *fixtures, randomSet int) (string, error) {
	root := filepath.Join(dir, "root")
	files := map[string][]byte{
		"photo.jpg":           fx.photo,
		"photo.jpg.gz":        fx.photoGz,
		"big.png":             fx.bigPNG,
		"big.png.gz":          fx.bigPNGGz,
		"gzonly/photo.jpg.gz": fx.photoGz,
		"gzonly/big.png.gz":   fx.bigPNGGz,
	}
	for name, b := range files {
		if err := writeFile(filepath.Join(root, name), b); err != nil {
			return "", err
		}
	}
	for i := range randomSet {
		b := randomSetPNG(i)
		p := filepath.Join(root, "r", strconv.Itoa(i)+".png")
		if err := writeFile(p, b); err != nil {
			return "", err
		}
		if err := writeFile(p+".gz", gzipBytes(b)); err != nil {
			return "", err
		}
	}
	return root, nil
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// nginxConf is the configuration of the reference server. With sendfile
// and tcp_nopush (TCP_CORK), a single keep-alive client on loopback sees
// occasional 40 ms stalls (the tail of a response waits for a delayed
// ACK): nginx's p99 at concurrency 1 is about 40 ms and its throughput
// there about half of what it is without tcp_nopush. The concurrency 1
// reference is a low ceiling for that reason.
func nginxConf(dir, root string, port int) string {
	tmp := func(name string) string { return filepath.Join(dir, "tmp", name) }
	user := ""
	if os.Geteuid() == 0 {
		// Workers of a master started by root run as nobody, which may
		// not reach a private temporary folder.
		user = "user root;\n"
	}
	return fmt.Sprintf(`%sworker_processes auto;
daemon off;
pid %s;
error_log %s warn;

events {
    worker_connections 4096;
}

http {
    types {
        image/jpeg jpg;
        image/png png;
    }
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;

    server {
        listen 127.0.0.1:%d;
        root %s;

        location %s {
            gzip_static on;
        }
        location %s {
            alias %s/;
        }
        location %s {
            alias %s/gzonly/;
            gzip_static always;
            gunzip on;
        }
    }
}
`, user, filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "error.log"),
		tmp("body"), tmp("proxy"), tmp("fastcgi"), tmp("uwsgi"), tmp("scgi"),
		port, root, nginxGzipPrefix, nginxPlainPrefix, root, nginxGunzipPrefix, root)
}

// startNginx writes a configuration into dir and starts nginx in the
// foreground on a free loopback port, serving root.
func startNginx(ctx context.Context, dir, root string) (*nginx, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(dir, root, port)), 0o644); err != nil {
		return nil, err
	}
	errLog := filepath.Join(dir, "error.log")
	cmd := exec.Command(nginxPath(), "-p", dir, "-c", conf, "-e", errLog)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := os.Create(filepath.Join(dir, "nginx.out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting nginx: %w", err)
	}
	n := &nginx{cmd: cmd, dir: dir, port: port, done: make(chan struct{})}
	go func() { cmd.Wait(); close(n.done) }()

	url := n.url(nginxPlainPrefix + "photo.jpg")
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-n.done:
			return nil, fmt.Errorf("nginx exited at start-up: %s", n.logs())
		case <-ctx.Done():
			n.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return n, nil
			}
			n.stop()
			return nil, fmt.Errorf("nginx answers %s for %s; its log: %s", resp.Status, url, n.logs())
		}
		if time.Now().After(deadline) {
			n.stop()
			return nil, fmt.Errorf("nginx did not answer within 10 s: %s", n.logs())
		}
	}
}

func (n *nginx) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", n.port, path)
}

// pids returns the master and its workers.
func (n *nginx) pids() []int {
	pid := n.cmd.Process.Pid
	return append([]int{pid}, children(pid)...)
}

// logs returns the end of nginx's output and error log, for messages.
func (n *nginx) logs() string {
	var parts []string
	for _, name := range []string{"nginx.out", "error.log"} {
		b, _ := os.ReadFile(filepath.Join(n.dir, name))
		if s := strings.TrimSpace(string(b)); s != "" {
			parts = append(parts, tail(s, 1500))
		}
	}
	if len(parts) == 0 {
		return "(no output)"
	}
	return strings.Join(parts, "\n")
}

// stop ends nginx: a fast shutdown, then SIGKILL to the whole process
// group if it is still there after a few seconds.
func (n *nginx) stop() {
	pid := n.cmd.Process.Pid // also the process group: see Setpgid
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	<-n.done
}

// nginxPath finds nginx on PATH or, for users whose PATH lacks the
// system folders, where Debian and Ubuntu install it.
func nginxPath() string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// nginxVersion returns what nginx -v prints, such as "nginx/1.22.1".
func nginxVersion() string {
	out, err := exec.Command(nginxPath(), "-v").CombinedOutput()
	if err != nil {
		return "unknown"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
}

// wrkVersion returns the first words of what wrk -v prints.
func wrkVersion() string {
	out, _ := exec.Command("wrk", "-v").CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	if f := strings.Fields(line); len(f) >= 2 {
		return f[0] + " " + f[1]
	}
	return "unknown"
}
