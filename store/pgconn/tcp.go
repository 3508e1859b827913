package pgconn

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
)

// TCP is how a connection's socket is kept: its keepalives and, on Linux,
// its TCP user timeout (0: the system's).
type TCP struct {
	KeepAlive   net.KeepAliveConfig
	UserTimeout time.Duration
}

// DefaultTCP is the socket settings of a URL that sets none of libpq's TCP
// parameters.
func DefaultTCP() TCP {
	return TCP{
		KeepAlive:   net.KeepAliveConfig{Enable: true, Idle: keepAliveIdle, Interval: keepAliveInterval, Count: keepAliveCount},
		UserTimeout: userTimeout,
	}
}

// tcpParams are libpq's connection parameters for the socket, which
// lib/pq leaves in Config.Runtime (it would send them to the server, which
// refuses them: its own are named tcp_keepalives_*).
var tcpParams = []string{"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"}

// splitTCP takes libpq's TCP parameters out of cfg: the settings they
// give (DefaultTCP where absent; libpq's units: seconds, a count,
// milliseconds for tcp_user_timeout, 0 for the system's value) and cfg
// without them.
func splitTCP(cfg pq.Config) (TCP, pq.Config, error) {
	tcp := DefaultTCP()
	found := false
	for _, k := range tcpParams {
		if _, ok := cfg.Runtime[k]; ok {
			found = true
		}
	}
	if !found {
		return tcp, cfg, nil
	}
	cfg = cfg.Clone()
	cfg.Runtime = maps.Clone(cfg.Runtime)
	for _, k := range tcpParams {
		v, ok := cfg.Runtime[k]
		if !ok {
			continue
		}
		delete(cfg.Runtime, k)
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return TCP{}, pq.Config{}, &ParamError{Key: k, Value: v}
		}
		switch k {
		case "keepalives":
			tcp.KeepAlive.Enable = n != 0
		case "keepalives_idle":
			tcp.KeepAlive.Idle = secondsOrSystem(n)
		case "keepalives_interval":
			tcp.KeepAlive.Interval = secondsOrSystem(n)
		case "keepalives_count":
			tcp.KeepAlive.Count = n
			if n == 0 {
				tcp.KeepAlive.Count = -1 // the system's
			}
		case "tcp_user_timeout":
			tcp.UserTimeout = time.Duration(n) * time.Millisecond
		}
	}
	return tcp, cfg, nil
}

// ParamError is a socket parameter of the database URL whose value is not
// one libpq would take. Its message quotes the parameter and its value
// (a number, never a credential), nothing else of the URL.
type ParamError struct{ Key, Value string }

func (e *ParamError) Error() string {
	return fmt.Sprintf("%s=%q: want a whole number of %s, 0 or more", e.Key, e.Value, tcpUnit(e.Key))
}

// CheckParams reports a socket parameter of url (a postgres:// URL or a
// key=value string) that Open would refuse, as a *ParamError; nil when
// there is none or when lib/pq cannot read url at all (Open reports that).
func CheckParams(url string) error {
	cfg, err := pq.NewConfig(url)
	if err != nil {
		return nil
	}
	_, _, err = splitTCP(cfg)
	return err
}

func tcpUnit(k string) string {
	switch k {
	case "keepalives":
		return "0 or 1"
	case "keepalives_count":
		return "probes"
	case "tcp_user_timeout":
		return "milliseconds"
	}
	return "seconds"
}

// secondsOrSystem is n seconds, or for 0 the system's value (which
// net.KeepAliveConfig asks for with a negative duration).
func secondsOrSystem(n int) time.Duration {
	if n == 0 {
		return -1
	}
	return time.Duration(n) * time.Second
}

// withoutParams returns dsn (a postgres:// URL or a key=value string)
// without the parameters named in drop, for a consumer that takes only a
// DSN (lib/pq's Listener).
func withoutParams(dsn string, drop []string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse database URL: %w", err)
		}
		q := u.Query()
		for _, k := range drop {
			q.Del(k)
		}
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	pairs, err := Pairs(dsn)
	if err != nil {
		return "", err
	}
	var kept []string
	for _, p := range pairs {
		if !slices.Contains(drop, p.Key) {
			kept = append(kept, p.Text)
		}
	}
	return strings.Join(kept, " "), nil
}

// Pair is one parameter of a libpq key=value connection string: Text as
// written (the key, '=', the value, and any spaces between them), Key
// its name.
type Pair struct{ Text, Key string }

// Pairs splits a libpq key=value connection string by libpq's rules
// (spaces around '='; a value in single quotes, or up to the next space;
// a backslash escapes the next byte). Its errors never quote the string,
// which may hold a password.
func Pairs(s string) ([]Pair, error) {
	var pairs []Pair
	for {
		s = strings.TrimLeft(s, " \t\n\r\f\v")
		if s == "" {
			return pairs, nil
		}
		i := 0
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if key == "" || i == len(s) || s[i] != '=' {
			return nil, errors.New("database connection string: a parameter without \"=\" and a value")
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i < len(s) && s[i] == '\'' {
			for i++; ; i++ {
				if i >= len(s) {
					return nil, errors.New("database connection string: a quoted value without its closing quote")
				}
				if s[i] == '\\' {
					i++
					continue
				}
				if s[i] == '\'' {
					i++
					break
				}
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			i = min(i, len(s))
		}
		pairs = append(pairs, Pair{Text: s[:i], Key: key})
		s = s[i:]
	}
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f' || b == '\v'
}
