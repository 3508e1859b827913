// Package envhistory lists the environments the stored history names:
// releases and deployments keep the environment name they were recorded
// with, whatever the policy has called it since, so reads of history can
// accept a name the policy no longer lists.
package envhistory

import (
	"context"
	"fmt"
	"slices"

	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Names are the environment names on one database.
type Names struct{ base *sqldb.DB }

// New returns the names on db.
func New(db *sqldb.DB) *Names { return &Names{base: db} }

// maxNames bounds the names read from one table.
const maxNames = 1000

// skipScan lists a table's distinct environments from its index on
// environment, one probe per name rather than a read of every row: years
// of deployments hold a handful of environments.
const skipScan = `WITH RECURSIVE envs(name, n) AS (
	SELECT (SELECT environment FROM %[1]s ORDER BY environment LIMIT 1), 1
	UNION ALL
	SELECT (SELECT environment FROM %[1]s WHERE environment > envs.name ORDER BY environment LIMIT 1), envs.n + 1
	FROM envs WHERE envs.name IS NOT NULL AND envs.n < %[2]d
) SELECT name FROM envs WHERE name IS NOT NULL`

// HistoryEnvironments returns the distinct environment names of the
// stored releases and deployments, sorted (at most a thousand of each).
func (h *Names) HistoryEnvironments(ctx context.Context) ([]string, error) {
	var out []string
	for _, table := range []string{"releases", "deployments"} {
		var names []string
		if err := h.base.SQLX().SelectContext(ctx, &names, fmt.Sprintf(skipScan, table, maxNames)); err != nil {
			return nil, fmt.Errorf("list the environments of %s: %w", table, sqldb.Translate(err))
		}
		out = append(out, names...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
