package fastlane

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// TestHandedConnReads checks that both ways of reading a handed-over
// connection, Read and WriteTo (which io.Copy prefers), return the bytes
// the lane read first, then the socket's.
func TestHandedConnReads(t *testing.T) {
	for _, way := range []string{"Read", "WriteTo"} {
		t.Run(way, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			peer, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			peer.Write([]byte("socket"))
			peer.Close()
			h := &handedConn{TCPConn: c.(*net.TCPConn), pending: []byte("pending-")}
			var out bytes.Buffer
			if way == "Read" {
				_, err = io.Copy(&out, struct{ io.Reader }{h}) // Read only
			} else {
				_, err = h.WriteTo(&out)
			}
			if err != nil || out.String() != "pending-socket" {
				t.Errorf("read %q, %v; want %q", out.String(), err, "pending-socket")
			}
			if h.pending != nil {
				t.Errorf("%d pending bytes kept after they were read", len(h.pending))
			}
		})
	}
}
