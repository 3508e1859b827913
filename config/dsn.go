package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/tollgate-dev/tollgate/store/pgconn"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// The database URL takes three forms: "sqlite:PATH[?synchronous=…]",
// a PostgreSQL URL ("postgres://user:pw@host/db?sslmode=…"), or a
// PostgreSQL key=value string ("host=db dbname=tollgate password='a b'"),
// which lib/pq accepts as libpq does.

// paramName is a libpq connection parameter's name.
var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// keyValuePairs splits s if it is a libpq key=value string — nothing but
// key=value pairs separated by spaces (pgconn.Pairs) — and reports
// whether it is.
func keyValuePairs(s string) ([]pgconn.Pair, bool) {
	if strings.Contains(s, "://") {
		return nil, false
	}
	pairs, err := pgconn.Pairs(s)
	if err != nil || len(pairs) == 0 {
		return nil, false
	}
	for _, p := range pairs {
		if !paramName.MatchString(p.Key) {
			return nil, false
		}
	}
	return pairs, true
}

// validateDatabaseURL checks the form without echoing the string (it may
// hold a password).
func validateDatabaseURL(u string) error {
	switch {
	case u == "", strings.HasPrefix(u, "sqlite:"):
		_, _, err := sqldb.SQLiteOptions(u)
		return err
	case strings.Contains(u, "://"):
		p, err := url.Parse(u)
		if err != nil {
			return fmt.Errorf("not a valid URL (postgres://user:password@host:5432/db?sslmode=…)")
		}
		if p.Scheme != "postgres" && p.Scheme != "postgresql" {
			return fmt.Errorf("want postgres://…, postgresql://…, a key=value string (host=… dbname=…) or sqlite:PATH")
		}
		return pgconn.CheckParams(u)
	}
	if _, ok := keyValuePairs(u); ok {
		return pgconn.CheckParams(u)
	}
	return fmt.Errorf("want postgres://…, postgresql://…, a key=value string (host=… dbname=…) or sqlite:PATH")
}

// MaskDatabaseURL hides every credential in a database URL or key=value
// string: the URL's userinfo password and any parameter whose name says
// secret (password, sslpassword, …). A string it cannot read is masked
// whole.
func MaskDatabaseURL(u string) string {
	switch {
	case u == "", strings.HasPrefix(u, "sqlite:"):
		return u
	case strings.Contains(u, "://"):
		p, err := url.Parse(u)
		if err != nil {
			return masked
		}
		p.RawQuery = maskQuery(p.RawQuery)
		return p.Redacted() // the userinfo password as "xxxxx"
	}
	pairs, ok := keyValuePairs(u)
	if !ok {
		return masked
	}
	out := make([]string, len(pairs))
	for i, p := range pairs {
		out[i] = p.Text
		if isSecretKey(p.Key) {
			out[i] = p.Key + "=" + masked
		}
	}
	return strings.Join(out, " ")
}

// maskQuery masks secret parameters of a raw query, keeping its order.
func maskQuery(raw string) string {
	if raw == "" {
		return raw
	}
	parts := strings.Split(raw, "&")
	for i, part := range parts {
		k, _, _ := strings.Cut(part, "=")
		if name, err := url.QueryUnescape(k); err != nil || isSecretKey(name) {
			parts[i] = k + "=" + masked
		}
	}
	return strings.Join(parts, "&")
}
