package sqldb

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gofrs/flock"
)

// sqliteSynchronous are the accepted synchronous= values: NORMAL (the default) survives a crash of the
// process but may lose the last transactions on a power cut or OS crash;
// FULL syncs the write-ahead log on every commit and survives both.
var sqliteSynchronous = map[string]string{"normal": "NORMAL", "full": "FULL", "extra": "EXTRA"}

// SQLiteOptions splits "sqlite:PATH?synchronous=full" (or "" for
// DefaultSQLitePath) into the path and
// the synchronous setting (NORMAL when absent). Unknown parameters are
// errors.
func SQLiteOptions(u string) (path, synchronous string, err error) {
	rest := strings.TrimPrefix(u, "sqlite:")
	rest = strings.TrimPrefix(rest, "//")
	path, query, _ := strings.Cut(rest, "?")
	if path == "" {
		path = DefaultSQLitePath
	}
	synchronous = "NORMAL"
	if query == "" {
		return path, synchronous, nil
	}
	q, perr := url.ParseQuery(query)
	if perr != nil {
		return "", "", fmt.Errorf("sqlite parameters: %v", perr)
	}
	for k, vs := range q {
		switch k {
		case "synchronous":
			s, ok := sqliteSynchronous[strings.ToLower(vs[len(vs)-1])]
			if !ok {
				return "", "", fmt.Errorf("sqlite synchronous=%q: want normal, full or extra", vs[len(vs)-1])
			}
			synchronous = s
		default:
			return "", "", fmt.Errorf("unknown sqlite parameter %q (known: synchronous)", k)
		}
	}
	return path, synchronous, nil
}

// createPrivate creates the database file (and its directory) readable by
// its owner only: it holds token hashes and every raw webhook. SQLite
// gives the -wal and -shm files it creates the database file's mode. An
// existing file is left as it is, with a warning when others may read it.
func createPrivate(path string, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("create directory for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		return f.Close() // an empty file is a valid new database
	case errors.Is(err, fs.ErrExist):
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			log.Warn("the SQLite database file is readable by other users; chmod 600 it (and its -wal, -shm files)",
				"path", path, "mode", st.Mode().Perm().String())
		}
		return nil
	default:
		return fmt.Errorf("create %s: %w", path, err)
	}
}

// lockMigrations serializes migrations across processes on one SQLite
// file (a serve and a token create starting together on a fresh file
// both saw version 0 and both created the tables), as the PostgreSQL
// advisory lock does for replicas. PostgreSQL: a no-op here (goose takes
// the advisory lock).
func (b *DB) lockMigrations(ctx context.Context) (unlock func(), err error) {
	if b.dialect != SQLite || b.sqlitePath == ":memory:" {
		return func() {}, nil
	}
	unlock, err = lockSQLite(ctx, b.sqlitePath)
	if err != nil {
		return nil, fmt.Errorf("migrate sqlite: %w", err)
	}
	return unlock, nil
}

// lockSQLite takes the exclusive flock on PATH.lock (created 0600 next to
// the database), waiting up to 5 minutes. The kernel releases it when the
// process ends, so a crash never leaves it held.
func lockSQLite(ctx context.Context, path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create directory for %s: %w", path, err)
	}
	l := flock.New(path+".lock", flock.SetPermissions(0o600))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ok, err := l.TryLockContext(ctx, 20*time.Millisecond)
	if err != nil || !ok {
		return nil, fmt.Errorf("lock %s.lock: %w", path, errors.Join(err, ctx.Err()))
	}
	return func() { _ = l.Unlock() }, nil
}
