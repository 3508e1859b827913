package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// The reads behind release metrics (service.Reconciler.Metrics): set-based
// aggregates where SQL can count, streams where Go must (percentiles).

// IncidentsOpenedBetween calls fn with each incident (newest version)
// opened in [from, to]. The database narrows by the opening date's text
// (a day either side); the exact bound is applied here.
func (d *DB) IncidentsOpenedBetween(ctx context.Context, from, to time.Time, fn func(core.Incident)) error {
	doc := "doc"
	if d.dialect == Postgres {
		doc = "doc::text"
	}
	lo, hi := from.UTC().Add(-24*time.Hour).Format(time.DateOnly), to.UTC().Add(48*time.Hour).Format(time.DateOnly)
	rs, err := d.db.QueryContext(ctx, d.q(`SELECT `+doc+` FROM incidents
		WHERE COALESCE(doc ->> 'opened_at', '') >= ? AND COALESCE(doc ->> 'opened_at', '') < ? ORDER BY key`), lo, hi)
	if err != nil {
		return fmt.Errorf("metrics: read incidents: %w", translate(err))
	}
	defer rs.Close()
	for rs.Next() {
		var body []byte
		if err := rs.Scan(&body); err != nil {
			return fmt.Errorf("metrics: read incident: %w", translate(err))
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
		return fmt.Errorf("metrics: read incidents: %w", translate(err))
	}
	return nil
}

// IncidentsByKey calls fn with the newest version of each incident with
// one of keys (unknown keys are skipped).
func (d *DB) IncidentsByKey(ctx context.Context, keys []string, fn func(core.Incident)) error {
	doc := "doc"
	if d.dialect == Postgres {
		doc = "doc::text"
	}
	for chunk := range slices.Chunk(keys, maxInList) {
		args := make([]any, len(chunk))
		for i, k := range chunk {
			args[i] = k
		}
		var bodies []string
		if err := d.db.SelectContext(ctx, &bodies, d.q(`SELECT `+doc+` FROM incidents WHERE key IN (`+placeholders(len(chunk))+`) ORDER BY key`), args...); err != nil {
			return fmt.Errorf("metrics: read fixed incidents: %w", translate(err))
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
func (d *DB) GateOutcomes(ctx context.Context, from, to time.Time, fn func(service, environment, team string, dec core.Decision, n int)) error {
	rs, err := d.db.QueryContext(ctx, d.q(`SELECT r.service, r.environment, r.team, g.decision, COUNT(*)
		FROM gate_decisions g JOIN releases r ON r.id = g.release_id
		WHERE g.evaluated_at >= ? AND g.evaluated_at < ?
		GROUP BY r.service, r.environment, r.team, g.decision
		ORDER BY r.service, r.environment, r.team, g.decision`), ts(from), ts(to))
	if err != nil {
		return fmt.Errorf("metrics: count gate decisions: %w", translate(err))
	}
	defer rs.Close()
	for rs.Next() {
		var service, env, team, dec string
		var n int
		if err := rs.Scan(&service, &env, &team, &dec, &n); err != nil {
			return fmt.Errorf("metrics: count gate decisions: %w", translate(err))
		}
		fn(service, env, team, core.Decision(dec), n)
	}
	return rs.Err()
}

// GateWaits calls fn for each release with a wait decision in [from, to):
// its first wait and its first allow in the period (zero when none).
func (d *DB) GateWaits(ctx context.Context, from, to time.Time, fn func(service, environment, team string, firstWait, firstAllow time.Time)) error {
	rs, err := d.db.QueryContext(ctx, d.q(`SELECT r.service, r.environment, r.team,
			MIN(CASE WHEN g.decision = 'wait' THEN g.evaluated_at END) AS first_wait,
			MIN(CASE WHEN g.decision = 'allow' THEN g.evaluated_at END) AS first_allow
		FROM gate_decisions g JOIN releases r ON r.id = g.release_id
		WHERE g.evaluated_at >= ? AND g.evaluated_at < ?
		GROUP BY g.release_id, r.service, r.environment, r.team
		HAVING MIN(CASE WHEN g.decision = 'wait' THEN g.evaluated_at END) IS NOT NULL
		ORDER BY g.release_id`), ts(from), ts(to))
	if err != nil {
		return fmt.Errorf("metrics: read gate waits: %w", translate(err))
	}
	defer rs.Close()
	for rs.Next() {
		var service, env, team string
		var wait, allow anyTime
		if err := rs.Scan(&service, &env, &team, &wait, &allow); err != nil {
			return fmt.Errorf("metrics: read gate waits: %w", translate(err))
		}
		fn(service, env, team, wait.Time, allow.Time)
	}
	return rs.Err()
}
