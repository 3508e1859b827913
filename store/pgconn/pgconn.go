// Package pgconn is how every PostgreSQL pool of tollgate's connects: one
// place that parses the database URL into lib/pq's configuration and sets
// the session defaults tollgate's queries are written for.
//
// The one default today is jit=off. tollgate's statements are short
// lookups and writes, and its reports scan in pages; PostgreSQL's JIT
// compiles a statement whose estimated cost passes jit_above_cost on every
// execution, which for these statements costs tens to hundreds of
// milliseconds of CPU and returns nothing (the release metrics, an hourly
// job, took several times as long with it on, and starved the gate on the
// same cores while they ran). A URL that names jit (…?jit=on) keeps its
// own setting.
//
// Every connection is dialled with TCP keepalives and (on Linux) a TCP
// user timeout, so a database that vanishes from the network — a cut
// link, a host that died without closing its sockets — fails the
// connection within about half a minute instead of leaving a statement
// waiting for an answer that will never come. A context's deadline does
// not do that: lib/pq, when a context ends, sends a cancel request on a
// new connection (which cannot arrive either) and keeps reading. The URL
// changes them with libpq's parameters for the socket (keepalives,
// keepalives_idle, keepalives_interval, keepalives_count,
// tcp_user_timeout), which lib/pq itself does not know.
//
// The writers that run one statement after another on a connection of
// their own (the audit chain's group commit, the inbox writer) bound
// their statements with the session's statement_timeout (Bounded) and
// run them under a context that never ends: lib/pq starts a goroutine to
// watch every statement whose context can end, a goroutine per group at
// thousands of groups a second.
package pgconn

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/lib/pq"
)

const (
	// keepAliveIdle, keepAliveInterval and keepAliveCount: an idle
	// connection whose peer stopped answering is probed after 15 s, then
	// every 5 s, and dropped after 4 unanswered probes — or, on Linux,
	// once the user timeout has passed since the peer last answered
	// (TCP_USER_TIMEOUT overrides the count there).
	keepAliveIdle     = 15 * time.Second
	keepAliveInterval = 5 * time.Second
	keepAliveCount    = 4
	// userTimeout is how long sent data may stay unacknowledged before the
	// kernel drops the connection (TCP_USER_TIMEOUT, Linux).
	userTimeout = 30 * time.Second
)

// Defaults are the run-time parameters set on every session unless the URL
// sets them.
var defaults = map[string]string{"jit": "off"}

// Config parses url (postgres://…, postgresql://… or a key=value string)
// with the session defaults added; application names the connections in
// pg_stat_activity unless the URL names them ("" leaves lib/pq's default).
//
// The URL may set libpq's parameters for the TCP connection itself —
// keepalives, keepalives_idle, keepalives_interval, keepalives_count and
// tcp_user_timeout, in libpq's units — which lib/pq does not know: Open
// applies them to the dialer instead of sending them to the server.
func Config(url, application string) (pq.Config, error) {
	cfg, err := pq.NewConfig(url)
	if err != nil {
		return pq.Config{}, fmt.Errorf("open postgres: %w", err)
	}
	if _, _, err := splitTCP(cfg); err != nil {
		return pq.Config{}, fmt.Errorf("open postgres: %w", err)
	}
	if cfg.Runtime == nil {
		cfg.Runtime = map[string]string{}
	}
	for k, v := range defaults {
		if _, set := cfg.Runtime[k]; !set {
			cfg.Runtime[k] = v
		}
	}
	if application != "" && cfg.ApplicationName == "" {
		cfg.ApplicationName = application
	}
	return cfg, nil
}

// Bounded sets the session's statement_timeout to d unless the URL sets
// one: for a connection whose statements run under a context that never
// ends, the server's own bound on each of them.
func Bounded(cfg *pq.Config, d time.Duration) {
	if cfg.Runtime == nil {
		cfg.Runtime = map[string]string{}
	}
	if _, set := cfg.Runtime["statement_timeout"]; !set {
		cfg.Runtime["statement_timeout"] = strconv.FormatInt(d.Milliseconds(), 10)
	}
}

// Open returns a pool connecting with cfg, its TCP connections dialled by
// a Dialer with the URL's TCP parameters (see Config).
func Open(cfg pq.Config) (*sql.DB, error) {
	tcp, cfg, err := splitTCP(cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	conn, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	conn.Dialer(Dialer{TCP: &tcp})
	return sql.OpenDB(conn), nil
}

// NewListener is pq.NewDialListener on dsn with the dialer its TCP
// parameters give (see Config), which are taken out of the DSN lib/pq
// sees.
func NewListener(dsn string, minReconnect, maxReconnect time.Duration, cb pq.EventCallbackType) (*pq.Listener, error) {
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres listener: %w", err)
	}
	tcp, _, err := splitTCP(cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres listener: %w", err)
	}
	dsn, err = withoutParams(dsn, tcpParams)
	if err != nil {
		return nil, fmt.Errorf("open postgres listener: %w", err)
	}
	return pq.NewDialListener(Dialer{TCP: &tcp}, dsn, minReconnect, maxReconnect, cb), nil
}

// Dialer dials PostgreSQL with TCP keepalives and a TCP user timeout (see
// the package comment); a Unix socket is dialled plainly.
type Dialer struct {
	// TCP is how the sockets are kept; nil is DefaultTCP.
	TCP *TCP
}

func (d Dialer) dialer() *net.Dialer {
	tcp := DefaultTCP()
	if d.TCP != nil {
		tcp = *d.TCP
	}
	nd := &net.Dialer{KeepAliveConfig: tcp.KeepAlive}
	if !tcp.KeepAlive.Enable {
		nd.KeepAlive = -1 // off: net.Dialer's own default is on
	}
	if tcp.UserTimeout > 0 {
		ut := tcp.UserTimeout
		nd.Control = func(network, address string, c syscall.RawConn) error {
			return setUserTimeout(network, c, ut)
		}
	}
	return nd
}

// Dial implements pq.Dialer.
func (d Dialer) Dial(network, address string) (net.Conn, error) {
	return d.dialer().Dial(network, address)
}

// DialTimeout implements pq.Dialer.
func (d Dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	nd := d.dialer()
	nd.Timeout = timeout
	return nd.Dial(network, address)
}

// DialContext implements pq.DialerContext.
func (d Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return d.dialer().DialContext(ctx, network, address)
}
