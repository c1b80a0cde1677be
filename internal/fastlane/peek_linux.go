package fastlane

import (
	"io"
	"syscall"
)

const supported = true

// peek waits until the socket has bytes to read, and copies as many as fit
// into buf without taking them off the socket. It returns 0 at the end of
// the stream.
func peek(rc syscall.RawConn, buf []byte) (int, error) {
	var n int
	var serr error
	err := rc.Read(func(fd uintptr) bool {
		n, _, serr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK)
		return serr != syscall.EAGAIN
	})
	if err == nil {
		err = serr
	}
	return n, err
}

// consume takes the len(b) bytes that peek put in b off the socket, by
// reading them into b again. The bytes are there, so the read does not
// wait, and it ignores the connection's deadlines: a Shutdown that wakes
// the connection at that moment does not lose the request.
func consume(rc syscall.RawConn, b []byte) error {
	for len(b) > 0 {
		var n int
		var rerr error
		if err := rc.Control(func(fd uintptr) {
			n, rerr = syscall.Read(int(fd), b)
		}); err != nil {
			return err
		}
		if rerr != nil {
			return rerr
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		b = b[n:]
	}
	return nil
}
