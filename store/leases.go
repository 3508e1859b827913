package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// AcquireLease takes or renews the named lease for holder until now+ttl
// and reports whether holder has it. It succeeds when the lease is free,
// expired, or already holder's (a renewal); one upsert decides, so two
// replicas racing for it cannot both win. Scheduled work (polling,
// reports) runs on the replica holding its lease.
func (d *DB) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if d.leaseGuard != nil && d.leaseGuard() != nil {
		return false, nil // unfit to hold a lease: another replica takes it
	}
	switch {
	case strings.TrimSpace(name) == "":
		return false, core.Invalid("name", "is required")
	case strings.TrimSpace(holder) == "":
		return false, core.Invalid("holder", "is required")
	case ttl <= 0:
		return false, core.Invalid("ttl", "must be positive")
	}
	now := d.now()
	var got string
	err := d.db.GetContext(ctx, &got, d.q(`INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.expires_at < ? OR leases.holder = excluded.holder
		RETURNING holder`), name, holder, ts(now.Add(ttl)), now)
	switch {
	case errors.Is(err, sql.ErrNoRows): // held by someone else
		return false, nil
	case err != nil:
		return false, fmt.Errorf("acquire lease %s: %w", name, translate(err))
	}
	return got == holder, nil
}

// GuardLeases makes AcquireLease refuse (as if another replica held the
// lease) while unfit answers an error: leases expire by the clock of the
// replica that reads them, so one whose clock is off from the database's
// (gate.max_clock_skew) would take every lease ahead of time, or write
// leases the others take as already expired. Set it before the work that
// takes leases starts.
func (d *DB) GuardLeases(unfit func() error) { d.leaseGuard = unfit }

// ReleaseLease gives up holder's lease so another replica can take it at
// once; it is a no-op when holder does not hold it.
func (d *DB) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := d.db.ExecContext(ctx, d.q("DELETE FROM leases WHERE name = ? AND holder = ?"), name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, translate(err))
	}
	return nil
}
