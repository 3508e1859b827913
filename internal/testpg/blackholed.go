package testpg

import (
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/blackhole"
)

// Blackholed returns dbURL reached through a blackhole proxy
// (internal/blackhole) with params added to its query — the TCP timeouts
// a test shortens, say — and the proxy, whose Drop makes the database
// vanish from the network without closing a connection. It skips t where
// the server is reached through a Unix socket, which cannot be proxied.
func Blackholed(t testing.TB, dbURL string, params url.Values) (string, *blackhole.Proxy) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("parse database URL: %v", err)
	}
	host, port := u.Hostname(), u.Port()
	if h := u.Query().Get("host"); h != "" {
		host = h
	}
	if host == "" || strings.HasPrefix(host, "/") {
		t.Skip("the test server is reached through a Unix socket: no TCP to blackhole")
	}
	if port == "" {
		port = "5432"
	}
	if p := u.Query().Get("port"); p != "" {
		port = p
	}
	p := blackhole.Start(t, net.JoinHostPort(host, port))
	u.Host = p.Addr()
	q := u.Query()
	q.Del("host")
	q.Del("port")
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String(), p
}
