// Package relmetrics reads what release metrics are computed from
// (service.Reconciler.Metrics): set-based aggregates where SQL can count
// (gate outcomes, first waits), streams where Go must (incidents for the
// failure rate and restore times).
package relmetrics

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Reads are the release metrics' reads on one database.
type Reads struct{ base *sqldb.DB }

// New returns the reads on db.
func New(db *sqldb.DB) *Reads { return &Reads{base: db} }

// maxInList bounds the values of one IN (…) list.
const maxInList = 1000

func placeholders(n int) string { return strings.TrimSuffix(strings.Repeat("?, ", n), ", ") }

// IncidentsOpenedBetween calls fn with each incident (newest version)
// opened in [from, to]. The database narrows by the opening date's text
// (a day either side); the exact bound is applied here.
func (m *Reads) IncidentsOpenedBetween(ctx context.Context, from, to time.Time, fn func(core.Incident)) error {
	doc := "doc"
	if m.base.Dialect() == sqldb.Postgres {
		doc = "doc::text"
	}
	lo, hi := from.UTC().Add(-24*time.Hour).Format(time.DateOnly), to.UTC().Add(48*time.Hour).Format(time.DateOnly)
	rs, err := m.base.SQLX().QueryContext(ctx, m.base.Q(`SELECT `+doc+` FROM incidents
		WHERE COALESCE(doc ->> 'opened_at', '') >= ? AND COALESCE(doc ->> 'opened_at', '') < ? ORDER BY key`), lo, hi)
	if err != nil {
		return fmt.Errorf("metrics: read incidents: %w", sqldb.Translate(err))
	}
	defer rs.Close()
	for rs.Next() {
		var body []byte
		if err := rs.Scan(&body); err != nil {
			return fmt.Errorf("metrics: read incident: %w", sqldb.Translate(err))
		}
		var i core.Incident
		if err := json.Unmarshal(body, &i); err != nil {
			return fmt.Errorf("metrics: decode incident: %w", err)
		}
		if i.OpenedAt != nil && !i.OpenedAt.Before(from) && !i.OpenedAt.After(to) {
			fn(i)
		}
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("metrics: read incidents: %w", sqldb.Translate(err))
	}
	return nil
}

// IncidentsByKey calls fn with the newest version of each incident with
// one of keys (unknown keys are skipped).
func (m *Reads) IncidentsByKey(ctx context.Context, keys []string, fn func(core.Incident)) error {
	doc := "doc"
	if m.base.Dialect() == sqldb.Postgres {
		doc = "doc::text"
	}
	for chunk := range slices.Chunk(keys, maxInList) {
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = k
		}
		var bodies []string
		if err := m.base.SQLX().SelectContext(ctx, &bodies, m.base.Q(`SELECT `+doc+` FROM incidents WHERE key IN (`+placeholders(len(chunk))+`) ORDER BY key`), args...); err != nil {
			return fmt.Errorf("metrics: read fixed incidents: %w", sqldb.Translate(err))
		}
		for _, b := range bodies {
			var i core.Incident
			if err := json.Unmarshal([]byte(b), &i); err != nil {
				return fmt.Errorf("metrics: decode incident: %w", err)
			}
			fn(i)
		}
	}
	return nil
}

// GateOutcomes calls fn with the number of gate decisions of each kind
// made in [from, to), per release service, environment and team (one
// grouped count, joined to releases).
func (m *Reads) GateOutcomes(ctx context.Context, from, to time.Time, fn func(service, environment, team string, dec core.Decision, n int)) error {
	rs, err := m.base.SQLX().QueryContext(ctx, m.base.Q(`SELECT r.service, r.environment, r.team, g.decision, COUNT(*)
		FROM gate_decisions g JOIN releases r ON r.id = g.release_id
		WHERE g.evaluated_at >= ? AND g.evaluated_at < ?
		GROUP BY r.service, r.environment, r.team, g.decision
		ORDER BY r.service, r.environment, r.team, g.decision`), sqldb.TS(from), sqldb.TS(to))
	if err != nil {
		return fmt.Errorf("metrics: count gate decisions: %w", sqldb.Translate(err))
	}
	defer rs.Close()
	for rs.Next() {
		var service, env, team, dec string
		var n int
		if err := rs.Scan(&service, &env, &team, &dec, &n); err != nil {
			return fmt.Errorf("metrics: count gate decisions: %w", sqldb.Translate(err))
		}
		fn(service, env, team, core.Decision(dec), n)
	}
	return rs.Err()
}

// GateWaits calls fn for each release with a wait decision in [from, to):
// its first wait and its first allow in the period (zero when none).
func (m *Reads) GateWaits(ctx context.Context, from, to time.Time, fn func(service, environment, team string, firstWait, firstAllow time.Time)) error {
	rs, err := m.base.SQLX().QueryContext(ctx, m.base.Q(`SELECT r.service, r.environment, r.team,
			MIN(CASE WHEN g.decision = 'wait' THEN g.evaluated_at END) AS first_wait,
			MIN(CASE WHEN g.decision = 'allow' THEN g.evaluated_at END) AS first_allow
		FROM gate_decisions g JOIN releases r ON r.id = g.release_id
		WHERE g.evaluated_at >= ? AND g.evaluated_at < ?
		GROUP BY g.release_id, r.service, r.environment, r.team
		HAVING MIN(CASE WHEN g.decision = 'wait' THEN g.evaluated_at END) IS NOT NULL
		ORDER BY g.release_id`), sqldb.TS(from), sqldb.TS(to))
	if err != nil {
		return fmt.Errorf("metrics: read gate waits: %w", sqldb.Translate(err))
	}
	defer rs.Close()
	for rs.Next() {
		var service, env, team string
		var wait, allow sqldb.AnyTime
		if err := rs.Scan(&service, &env, &team, &wait, &allow); err != nil {
			return fmt.Errorf("metrics: read gate waits: %w", sqldb.Translate(err))
		}
		fn(service, env, team, wait.Time, allow.Time)
	}
	return rs.Err()
}
