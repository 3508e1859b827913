//go:build !linux

package pgconn

import (
	"syscall"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not available: the
// keepalives still find a dead peer of an idle connection.
func setUserTimeout(string, syscall.RawConn, time.Duration) error { return nil }
