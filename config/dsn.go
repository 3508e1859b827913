package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// The database URL takes three forms: "sqlite:PATH[?synchronous=…]",
// a PostgreSQL URL ("postgres://user:pw@host/db?sslmode=…"), or a
// PostgreSQL key=value string ("host=db dbname=tollgate password='a b'"),
// which lib/pq accepts as libpq does.

// kvPair is one key=value of a libpq connection string: the value is bare
// (no space) or single-quoted with backslash escapes.
var kvPair = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']*)`)

// isKeyValueDSN reports whether s is a libpq key=value string: nothing but
// key=value pairs separated by spaces.
func isKeyValueDSN(s string) bool {
	if strings.TrimSpace(s) == "" || strings.Contains(s, "://") {
		return false
	}
	rest := kvPair.ReplaceAllString(s, "")
	return strings.TrimSpace(rest) == ""
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
		return nil
	case isKeyValueDSN(u):
		return nil
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
	case isKeyValueDSN(u):
		return kvPair.ReplaceAllStringFunc(u, func(m string) string {
			sub := kvPair.FindStringSubmatch(m)
			if isSecretKey(sub[1]) {
				return sub[1] + "=" + masked
			}
			return m
		})
	}
	return masked
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
