//go:build linux

package httpapi

import (
	"context"
	"net"
	"syscall"
	"testing"
)

// wrappedConn is a connection that shows the one under it, as the fast
// lane's handed-over connections and tls.Conn do.
type wrappedConn struct{ net.Conn }

func (w wrappedConn) NetConn() net.Conn { return w.Conn }

// TestCorked checks that corked sets TCP_CORK on the request's connection,
// also through a wrapper, and that uncork clears it.
func TestCorked(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	cork := func() int {
		raw, _ := server.(*net.TCPConn).SyscallConn()
		v := -1
		raw.Control(func(fd uintptr) { v, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK) })
		return v
	}
	for name, c := range map[string]net.Conn{"tcp": server, "wrapped": wrappedConn{server}} {
		uncork := corked(ConnContext(context.Background(), c))
		if got := cork(); got != 1 {
			t.Errorf("%s: TCP_CORK %d while corked, want 1", name, got)
		}
		uncork()
		if got := cork(); got != 0 {
			t.Errorf("%s: TCP_CORK %d after uncork, want 0", name, got)
		}
	}
}
