package fastlane

import "syscall"

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
