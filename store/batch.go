package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
)

// batchInsert is an INSERT that group commit merges across the callers of
// one group into multi-row statements: the hot path (a gate decision and
// its release row per check) then costs a few statements per group instead
// of a few per caller.
type batchInsert struct {
	head  string // "INSERT INTO t (a, b, c) VALUES "
	tail  string // " ON CONFLICT … DO NOTHING", or ""
	width int    // columns per row
}

// batchRow is one row of a batchInsert.
type batchRow struct {
	ins  *batchInsert
	args []any
}

// maxBatchParams keeps one statement under both drivers' parameter limits.
const maxBatchParams = 30000

// values returns n placeholders rows "(?, ?), (?, ?)".
func (b *batchInsert) values(n int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", b.width), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
}

// execRows inserts rows, one multi-row statement per batchInsert (split to
// stay under the parameter limit), in the order the inserts first appear.
func (d *DB) execRows(ctx context.Context, tx *sqlx.Tx, rows []batchRow) error {
	var order []*batchInsert
	byIns := map[*batchInsert][]batchRow{}
	for _, r := range rows {
		if _, seen := byIns[r.ins]; !seen {
			order = append(order, r.ins)
		}
		byIns[r.ins] = append(byIns[r.ins], r)
	}
	for _, ins := range order {
		all := byIns[ins]
		per := max(1, maxBatchParams/ins.width)
		for start := 0; start < len(all); start += per {
			chunk := all[start:min(start+per, len(all))]
			args := make([]any, 0, len(chunk)*ins.width)
			for _, r := range chunk {
				if len(r.args) != ins.width {
					return fmt.Errorf("batch insert: row has %d values, want %d", len(r.args), ins.width)
				}
				args = append(args, r.args...)
			}
			if _, err := tx.ExecContext(ctx, d.q(ins.head+ins.values(len(chunk))+ins.tail), args...); err != nil {
				return err
			}
		}
	}
	return nil
}
