package store

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/tollgate-dev/tollgate/core"
)

// Backup writes a consistent copy of an embedded (SQLite) store to path
// while the store stays in use — other processes, a running server
// included, go on reading and writing — and returns the audit head of the
// copy, to be kept beside it: after a restore, `tollgate audit verify
// --expect-head` proves the restored chain reaches it. The file must not
// exist; it is created readable by its owner only, as the store is (it
// holds token hashes and every raw webhook). A PostgreSQL store is backed
// up with PostgreSQL's own tools (pg_dump, base backups): Backup refuses
// it.
func (d *DB) Backup(ctx context.Context, path string) (core.AuditHead, error) {
	if d.dialect != SQLite {
		return core.AuditHead{}, core.Errorf(core.KindInvalid,
			"the store is PostgreSQL: back it up with pg_dump or the server's base backups; tollgate audit verify --expect-head checks a restore")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return core.AuditHead{}, fmt.Errorf("backup file: %w", err)
	}
	f.Close()
	// VACUUM INTO reads one snapshot (WAL mode: writers go on meanwhile)
	// and writes it into the empty file, keeping its mode.
	if _, err := d.db.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		return core.AuditHead{}, errors.Join(fmt.Errorf("back up the store: %w", err), os.Remove(path))
	}
	cp, err := Open(ctx, "sqlite:"+path, Options{Logger: d.base.Log()})
	if err != nil {
		return core.AuditHead{}, fmt.Errorf("open the backup: %w", err)
	}
	head, err := cp.AuditHead(ctx)
	cp.Close()
	_ = os.Remove(path + ".lock") // the copy's own, made by opening it: a restored store makes its own
	if err != nil {
		return core.AuditHead{}, fmt.Errorf("read the backup's audit head: %w", err)
	}
	return head, nil
}
