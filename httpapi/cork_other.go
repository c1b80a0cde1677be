//go:build !linux

package httpapi

import "net"

func setCork(c *net.TCPConn, on bool) bool { return false }
