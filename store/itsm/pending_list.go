package itsm

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// listedStates is core.ListedPendingStates as SQL, written out rather than
// bound: the planners use the partial index of the listed requests
// (migration 00038) only when the query names its predicate, and PostgreSQL
// cannot prove a bound parameter implies it.
const listedStates = `state IN ('pending', 'answering', 'failed', 'unknown')`

// maxPendingPage bounds one page of PendingGatesPage.
const maxPendingPage = 5000

// PendingGatesPage returns the gate requests f selects, after f.After, in
// the listing's order (created_at, then id), at most f.Limit. Answered
// requests are never listed.
func (g *PendingGates) PendingGatesPage(ctx context.Context, f core.PendingFilter) ([]core.PendingGate, error) {
	if f.Limit <= 0 || f.Limit > maxPendingPage {
		return nil, core.Invalid("limit", "must be from 1 to %d", maxPendingPage)
	}
	where, args, err := g.pendingWhere(f, true)
	if err != nil {
		return nil, err
	}
	if p := f.After; !p.IsZero() {
		if p.Check { // checks follow the stored requests of their instant
			where += ` AND created_at > ?`
			args = append(args, sqldb.TS(p.Since))
		} else {
			where += ` AND (created_at > ? OR (created_at = ? AND id > ?))`
			args = append(args, sqldb.TS(p.Since), sqldb.TS(p.Since), p.ID)
		}
	}
	var rows []pendingRow
	if err := g.db.SelectContext(ctx, &rows, g.base.Q(`SELECT `+pendingCols+` FROM pending_gates`+where+` ORDER BY created_at, id LIMIT ?`),
		append(args, f.Limit)...); err != nil {
		return nil, fmt.Errorf("list pending gates: %w", sqldb.Translate(err))
	}
	return pendingList(rows)
}

// CountPendingGates counts, by state, the listed gate requests f selects
// whatever their state, position or page (f.States, After and Limit are
// not used); every listed state has its count, zero included.
func (g *PendingGates) CountPendingGates(ctx context.Context, f core.PendingFilter) (map[string]int, error) {
	f.States = nil
	where, args, err := g.pendingWhere(f, false)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		State string `db:"state"`
		N     int    `db:"n"`
	}
	if err := g.db.SelectContext(ctx, &rows, g.base.Q(`SELECT state, count(*) AS n FROM pending_gates`+where+` GROUP BY state`), args...); err != nil {
		return nil, fmt.Errorf("count pending gates: %w", sqldb.Translate(err))
	}
	out := map[string]int{}
	for _, s := range core.ListedPendingStates() {
		out[s] = 0
	}
	for _, r := range rows {
		out[r.State] = r.N
	}
	return out, nil
}

// pendingWhere is the WHERE clause of f's filters (its states with
// states).
func (g *PendingGates) pendingWhere(f core.PendingFilter, states bool) (string, []any, error) {
	where, args := ` WHERE `+listedStates, []any{}
	if states && len(f.States) > 0 {
		listed := core.ListedPendingStates()
		for _, s := range f.States {
			if !slices.Contains(listed, s) {
				return "", nil, core.Invalid("state", "%q is not one of %s", s, strings.Join(listed, ", "))
			}
		}
		where += ` AND state IN (?` + repeatArg(len(f.States)-1) + `)`
		for _, s := range f.States {
			args = append(args, s)
		}
	}
	switch f.Kind {
	case "":
	case core.PendingKindApproval:
		where += ` AND provider = 'gitlab'`
	case core.PendingKindProtectionRule:
		where += ` AND provider <> 'gitlab'`
	default:
		return "", nil, core.Invalid("kind", "%q is not a kind of stored gate request", f.Kind)
	}
	for _, t := range []struct{ col, v string }{
		{"provider", f.Provider}, {"connector", f.Connector}, {g.requestField("service"), f.Service},
	} {
		if t.v != "" {
			where += ` AND lower(` + t.col + `) = ?`
			args = append(args, strings.ToLower(t.v))
		}
	}
	if len(f.Environments) > 0 {
		where += ` AND lower(` + g.requestField("environment") + `) IN (?` + repeatArg(len(f.Environments)-1) + `)`
		for _, e := range f.Environments {
			args = append(args, strings.ToLower(e))
		}
	}
	return where, args, nil
}

// requestField is the SQL of a text field of the stored request (its
// JSON document).
func (g *PendingGates) requestField(name string) string {
	if g.base.Dialect() == sqldb.Postgres {
		return `request->>'` + name + `'`
	}
	return `json_extract(request, '$.` + name + `')`
}
