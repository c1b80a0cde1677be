package httpapi

import (
	"context"
	"net"
)

type connKey struct{}

// ConnContext is for http.Server.ConnContext: it makes each request's
// connection known to the handlers, which cork it while they send a
// response of headers and a file (see corked).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// corked holds back the connection's partial TCP segments until the
// returned function is called, as nginx's tcp_nopush does: the headers,
// written on their own, then leave in the same packets as the start of
// the body that follows them (sent by sendfile), not in a small packet of
// their own. Without ConnContext, or on a system without TCP_CORK, it does
// nothing.
func corked(ctx context.Context) (uncork func()) {
	nc, _ := ctx.Value(connKey{}).(net.Conn)
	if w, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = w.NetConn() // handed over by the fast lane
	}
	c, ok := nc.(*net.TCPConn)
	if !ok || !setCork(c, true) {
		return func() {}
	}
	return func() { setCork(c, false) }
}
