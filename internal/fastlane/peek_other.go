//go:build !linux

package fastlane

import (
	"errors"
	"syscall"
)

// supported is false: peek is written for Linux only, and a Lane hands over
// every connection as it comes.
const supported = false

func peek(syscall.RawConn, []byte) (int, error) {
	return 0, errors.ErrUnsupported
}

func consume(syscall.RawConn, []byte) error {
	return errors.ErrUnsupported
}
