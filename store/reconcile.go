package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
	segjson "github.com/segmentio/encoding/json"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/records"
	"github.com/tollgate-dev/tollgate/store/reviews"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// DefaultReconcilePage is how many deployments ReconcileScan reads per page.
const DefaultReconcilePage = 2000

// maxInList bounds the values of one IN (…) list.
const maxInList = 1000

// reconcileDeploymentsSQL reads one keyset page of deployments in start
// order. %s is the filter.
const reconcileDeploymentsSQL = `SELECT d.id, d.release_id, d.service, d.environment, d.version, d.commit_sha, d.team, d.status,
	d.started_at, d.finished_at, d.actor, d.changes, d.incidents, d.decision_id, d.provider, d.run_id, d.url,
	d.links_changed_at
FROM deployments d
WHERE d.started_at >= ? AND d.started_at < ? AND d.created_at <= ?%s
	AND (d.started_at, d.id) > (?, ?)
ORDER BY d.started_at, d.id
LIMIT ?`

// decisionCols are what a finding needs of a gate decision; %s is the
// dialect's extraction of commit, reasons and digest from its document.
const decisionCols = `g.id, g.release_id, g.decision, g.evaluated_at, g.policy_version, g.actor, %s`

// decisionsSpanningSQL reads, for the releases listed, the gate decisions
// that may be the release's newest at some instant of [$min, $max]: those
// evaluated by $max, except those superseded by a decision evaluated by
// $min (an anti-join), in (evaluated_at, id) order — the order the
// deployment's lookup breaks ties by. The %s are the columns and the
// release placeholders.
const decisionsSpanningSQL = `SELECT %s FROM gate_decisions g
	WHERE g.release_id IN (%s) AND g.evaluated_at <= ?
	AND NOT EXISTS (SELECT 1 FROM gate_decisions w
		WHERE w.release_id = g.release_id AND w.evaluated_at <= ?
		AND (w.evaluated_at > g.evaluated_at OR (w.evaluated_at = g.evaluated_at AND w.id > g.id)))
	ORDER BY g.release_id, g.evaluated_at, g.id`

// decisionsSpanningPGSQL is decisionsSpanningSQL for PostgreSQL: the
// releases as one array, each looked up by index (gate_decisions_release)
// in a LATERAL subquery kept from being flattened (OFFSET 0).
const decisionsSpanningPGSQL = `SELECT %s FROM unnest(?::text[]) AS k(id)
	CROSS JOIN LATERAL (SELECT g.*, g.doc::json AS j FROM gate_decisions g
		WHERE g.release_id = k.id AND g.evaluated_at <= ?
		AND NOT EXISTS (SELECT 1 FROM gate_decisions w
			WHERE w.release_id = g.release_id AND w.evaluated_at <= ?
			AND (w.evaluated_at > g.evaluated_at OR (w.evaluated_at = g.evaluated_at AND w.id > g.id)))
		OFFSET 0) g
	ORDER BY g.release_id, g.evaluated_at, g.id`

// decisionsByIDSQL reads the decisions deployments name (%s: columns and
// id placeholders; PostgreSQL takes them as one array).
const (
	decisionsByIDSQL   = `SELECT %s FROM gate_decisions g WHERE g.id IN (%s)`
	decisionsByIDPGSQL = `SELECT %s FROM (SELECT g.*, g.doc::json AS j FROM gate_decisions g WHERE g.id = ANY(?::text[])) g`
)

// decisionExtract is each dialect's extraction of a decision document's
// commit, reasons and digest (PostgreSQL parses the document once, as j).
var decisionExtract = map[string]string{
	SQLite:   `json_extract(g.doc, '$.request.commit'), json_extract(g.doc, '$.reasons'), json_extract(g.doc, '$.request.digest')`,
	Postgres: `(g.j -> 'request' ->> 'commit'), (g.j -> 'reasons')::text, (g.j -> 'request' ->> 'digest')`,
}

// pageDecisions are the gate decisions a page of deployments may rely on.
type pageDecisions struct {
	byRelease map[string][]reliedRow // in (evaluated_at, id) order
	byID      map[string]reliedRow   // those named by a deployment
}

// relied returns the decision dep relied on: the one it names, else its
// release's newest at or before its start (ties: the greatest id). A named
// allow is superseded by a later wait or deny of the release for the same
// code made by the start: the gate's last word before the deployment (a
// job re-run days later reuses its gate job's old allow, though the gate
// has since refused the release).
func (p pageDecisions) relied(dep core.Deployment) (reliedRow, bool) {
	var newest reliedRow
	hasNewest := false
	gs := p.byRelease[dep.ReleaseID]
	for i := len(gs) - 1; i >= 0; i-- {
		if !gs[i].at.Time.After(dep.StartedAt) {
			newest, hasNewest = gs[i], true
			break
		}
	}
	if dep.DecisionID == "" {
		return newest, hasNewest
	}
	g, ok := p.byID[dep.DecisionID]
	if ok && g.decision == string(core.Allow) && hasNewest && newest.release == g.release && newest.id != g.id &&
		newest.at.Time.After(g.at.Time) && newest.decision != string(core.Allow) && core.SameCommit(newest.commit.String, dep.Commit) {
		return newest, true
	}
	return g, ok
}

// reliedRow is one row of the decision statements.
type reliedRow struct {
	id, release, decision string
	at                    anyTime
	policy                sql.NullInt64
	actor                 sql.NullString
	commit                sql.NullString
	reasons               sql.NullString
	digest                sql.NullString
}

// decisionsFor reads the decisions the page's deployments may rely on:
// those of releases that may be in force during [from, to] and those
// named by id.
func (d *DB) decisionsFor(ctx context.Context, releases, named []string, from, to time.Time) (pageDecisions, error) {
	out := pageDecisions{byRelease: make(map[string][]reliedRow, len(releases)), byID: make(map[string]reliedRow, len(named))}
	cols := fmt.Sprintf(decisionCols, decisionExtract[d.dialect])
	add := func(rows []reliedRow, byID bool) {
		for _, g := range rows {
			if byID {
				out.byID[g.id] = g
			} else {
				out.byRelease[g.release] = append(out.byRelease[g.release], g)
			}
		}
	}
	for chunk := range slices.Chunk(releases, maxInList) {
		query, args := fmt.Sprintf(decisionsSpanningSQL, cols, placeholders(len(chunk))), make([]any, 0, len(chunk)+2)
		for _, r := range chunk {
			args = append(args, r)
		}
		args = append(args, to, from)
		if d.dialect == Postgres {
			query, args = fmt.Sprintf(decisionsSpanningPGSQL, cols), []any{pq.Array(chunk), to, from}
		}
		rows, err := d.queryDecisions(ctx, query, args)
		if err != nil {
			return out, err
		}
		add(rows, false)
	}
	for chunk := range slices.Chunk(named, maxInList) {
		query, args := fmt.Sprintf(decisionsByIDSQL, cols, placeholders(len(chunk))), make([]any, 0, len(chunk))
		for _, id := range chunk {
			args = append(args, id)
		}
		if d.dialect == Postgres {
			query, args = fmt.Sprintf(decisionsByIDPGSQL, cols), []any{pq.Array(chunk)}
		}
		rows, err := d.queryDecisions(ctx, query, args)
		if err != nil {
			return out, err
		}
		add(rows, true)
	}
	return out, nil
}

func (d *DB) queryDecisions(ctx context.Context, query string, args []any) ([]reliedRow, error) {
	rs, err := d.db.QueryContext(ctx, d.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("reconcile: read decisions: %w", translate(err))
	}
	defer rs.Close()
	var out []reliedRow
	for rs.Next() {
		var g reliedRow
		if err := rs.Scan(&g.id, &g.release, &g.decision, &g.at, &g.policy, &g.actor, &g.commit, &g.reasons, &g.digest); err != nil {
			return nil, fmt.Errorf("reconcile: read decision: %w", translate(err))
		}
		out = append(out, g)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("reconcile: read decisions: %w", translate(err))
	}
	return out, nil
}

// reconcileRow is one row of reconcileDeploymentsSQL.
type reconcileRow struct {
	dep          deploymentRow
	finishedAt   anyTime
	linksChanged anyTime
}

// ReconcileScan streams the deployments of q (started in [From, To),
// recorded by the cut-off, of the environment, service and team when set)
// in start order, a page of pageSize at a time (DefaultReconcilePage when
// <= 0), each with its facts as of its start (core.DeploymentFacts), and
// calls fn once per page. Memory holds a few pages (the next ones are read
// while fn runs: prefetchPages) and the incidents that may block around
// them, whatever the period;
// no cursor stays open while fn runs, so fn may write to the same database
// (SQLite has one connection).
//
// Per page it runs one statement for the deployments, one for the gate
// decisions they may rely on (of the page's releases, those that may be
// the newest during the page: a release is deployed many times, so this
// reads far fewer decisions than a lookup per deployment; and those named
// by id), one for the versions of the page's changes that may be in force during
// it (an anti-join with NOT EXISTS; emergency changes again as of the
// cut-off), one for the teams' reviews that may be pending in the page's
// time span, one for the evidence of the page's releases recorded by its
// last start (unless q.SkipEvidence), and one for the incident versions that begin within it (on
// the first page, the versions in force at From: an anti-join). keep
// filters incidents (the policy's IsMajor; nil keeps all). The holds that
// may be in force during the period are read once, first. Data recorded
// after q.Cutoff is not read.
func (d *DB) ReconcileScan(ctx context.Context, q core.ReconcileQuery, keep func(core.Incident) bool, pageSize int, fn func([]core.DeploymentFacts) error) error {
	if err := q.Validate(); err != nil {
		return err
	}
	if pageSize <= 0 {
		pageSize = DefaultReconcilePage
	}
	cutoff := ts(q.Cutoff)
	if q.Cutoff.IsZero() {
		cutoff = d.now()
	}
	from, to := ts(q.From), ts(q.To)
	timeline := core.NewIncidentTimeline(keep)
	if err := d.loadIncidentsInForce(ctx, timeline, from, cutoff); err != nil {
		return err
	}
	// Holds are few (a change manager's explicit stops): those that may be
	// in force at some instant of the period are read once.
	holds, err := d.holdsSpanning(ctx, from, to, cutoff)
	if err != nil {
		return err
	}
	pages, stop := d.prefetchPages(ctx, q, from, to, cutoff, pageSize)
	defer stop()
	loadedTo := from
	for ch := range pages {
		cur := <-ch
		if cur.err != nil {
			return cur.err
		}
		rows := cur.rows
		pageMax := rows[len(rows)-1].dep.StartedAt.UTC()
		if pageMax.After(loadedTo) {
			if err := d.loadIncidentVersions(ctx, timeline, loadedTo, pageMax, cutoff); err != nil {
				return err
			}
			loadedTo = pageMax
		}
		cur.holds = holds
		page, err := pageFacts(cur, timeline, cutoff)
		if err != nil {
			return err
		}
		if err := fn(page); err != nil {
			return err
		}
		timeline.Prune(pageMax)
	}
	return ctx.Err()
}

// reconcileAhead is how many pages ReconcileScan reads ahead of the one
// being evaluated.
const reconcileAhead = 3

// prefetchPages reads the pages of a scan ahead of their use: one
// goroutine walks the keyset (a cheap statement per page), and each page's
// changes, decisions, reviews and evidence are read by a goroutine of its
// own, so that on PostgreSQL several pages' statements run at once, on
// several connections, while the caller evaluates an earlier page. The
// pages come out in order, each a channel that yields it; no page is read
// more than reconcileAhead ahead of the one received last, so memory stays
// a few pages whatever the period. A page with an error ends the scan.
// stop cancels what is still running and waits for it: nothing uses the
// store after it returns. On SQLite (one connection) the statements queue
// for the connection, the caller's writes among them.
func (d *DB) prefetchPages(ctx context.Context, q core.ReconcileQuery, from, to, cutoff time.Time, pageSize int) (<-chan chan fetchedPage, func()) {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan chan fetchedPage, reconcileAhead-1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(out)
		afterAt, afterID := from.Add(-time.Microsecond), ""
		listed := q.Deployments
		for {
			ch := make(chan fetchedPage, 1)
			var (
				rows []reconcileRow
				err  error
			)
			if q.ByID {
				n := min(len(listed), pageSize, maxInList)
				rows, err = d.reconcilePageByID(ctx, listed[:n])
				listed = listed[n:]
			} else {
				rows, err = d.reconcilePage(ctx, q, from, to, cutoff, afterAt, afterID, pageSize)
			}
			switch {
			case err != nil:
				ch <- fetchedPage{err: err}
			case len(rows) > 0:
				wg.Add(1)
				go func() {
					defer wg.Done()
					ch <- d.pageDetails(ctx, q, rows, cutoff)
				}()
			default:
				return
			}
			select {
			case out <- ch:
			case <-ctx.Done():
				return
			}
			if err != nil || (!q.ByID && len(rows) < pageSize) || (q.ByID && len(listed) == 0) {
				return
			}
			last := rows[len(rows)-1].dep
			afterAt, afterID = last.StartedAt.UTC(), last.ID
		}
	}()
	return out, func() {
		cancel()
		wg.Wait()
	}
}

// fetchedPage is one page of deployments with the changes' versions and
// the teams' reviews it needs.
type fetchedPage struct {
	rows      []reconcileRow
	deps      []core.Deployment
	versions  map[string][]core.ChangeVersion // those that may be in force during the page
	atCutoff  map[string][]core.ChangeVersion // emergency changes as of the cut-off
	pirs      []core.PIR
	holds     []core.Hold                // those that may be in force during the period
	evidence  map[string][]core.Evidence // by release id, recorded by the page's last start
	decisions pageDecisions
	err       error
}

// pageDetails reads what one page of deployments needs: the versions of
// their changes up to the cut-off, the gate decisions they may rely on,
// their teams' reviews that may be pending in the page's span and their
// releases' evidence.
func (d *DB) pageDetails(ctx context.Context, q core.ReconcileQuery, rows []reconcileRow, cutoff time.Time) fetchedPage {
	var err error
	p := fetchedPage{rows: rows, deps: make([]core.Deployment, len(rows))}
	var keys, teams, services, releases, decReleases, named []string
	seenNamed, seenDecRel, seenSvc := map[string]struct{}{}, make(map[string]struct{}, len(rows)), map[string]struct{}{}
	seen := make(map[string]struct{}, len(rows))
	seenRel := make(map[string]struct{}, len(rows))
	for i, r := range rows {
		dep, err := r.dep.deployment()
		if err != nil {
			return fetchedPage{err: err}
		}
		dep.FinishedAt, dep.LinksChangedAt = r.finishedAt.Ptr(), r.linksChanged.Ptr()
		p.deps[i] = dep
		for _, k := range dep.Changes {
			if _, ok := seen[k]; !ok {
				seen[k] = struct{}{}
				keys = append(keys, k)
			}
		}
		// Reviews hold a release back by team or by service
		// (core.PIR.HoldsBack), both compared case-insensitively.
		if t := strings.ToLower(strings.TrimSpace(dep.Team)); t != "" && !slices.Contains(teams, t) {
			teams = append(teams, t)
		}
		if s := records.NormService(dep.Service); s != "" {
			if _, ok := seenSvc[s]; !ok {
				seenSvc[s] = struct{}{}
				services = append(services, s)
			}
		}
		// The decision relied on: the one named, else the release's
		// newest by the start (the release_id column, as stored), which
		// may also supersede a named allow.
		if id := dep.DecisionID; id != "" {
			if _, ok := seenNamed[id]; !ok {
				seenNamed[id] = struct{}{}
				named = append(named, id)
			}
		}
		if _, ok := seenDecRel[dep.ReleaseID]; !ok {
			seenDecRel[dep.ReleaseID] = struct{}{}
			decReleases = append(decReleases, dep.ReleaseID)
		}
		if rel := releaseOf(dep); rel != "" {
			if _, ok := seenRel[rel]; !ok {
				seenRel[rel] = struct{}{}
				releases = append(releases, rel)
			}
		}
	}
	pageMin, pageMax := rows[0].dep.StartedAt.UTC(), rows[len(rows)-1].dep.StartedAt.UTC()
	if p.versions, err = d.changeVersionsSpanning(ctx, keys, pageMin, pageMax, cutoff); err != nil {
		return fetchedPage{err: err}
	}
	// The emergency rules look at an emergency change as of the cut-off
	// (its retrospective review comes after the deployment).
	var emergency []string
	for k, vs := range p.versions {
		if slices.ContainsFunc(vs, func(v core.ChangeVersion) bool { return v.Change.Type == core.ChangeEmergency }) {
			emergency = append(emergency, k)
		}
	}
	if len(emergency) > 0 {
		slices.Sort(emergency)
		if p.atCutoff, err = d.changeVersionsSpanning(ctx, emergency, cutoff, cutoff, cutoff); err != nil {
			return fetchedPage{err: err}
		}
	}
	if p.decisions, err = d.decisionsFor(ctx, decReleases, named, pageMin, pageMax); err != nil {
		return fetchedPage{err: err}
	}
	if p.pirs, err = d.pirsSpanning(ctx, teams, services, pageMin, pageMax); err != nil {
		return fetchedPage{err: err}
	}
	if !q.SkipEvidence {
		if p.evidence, err = d.evidenceBy(ctx, releases, pageMax, cutoff); err != nil {
			return fetchedPage{err: err}
		}
	}
	return p
}

// releaseOf is the release a deployment belongs to.
func releaseOf(dep core.Deployment) string {
	if dep.ReleaseID != "" {
		return dep.ReleaseID
	}
	return core.ReleaseID(dep.Service, dep.Version, dep.Environment)
}

// holdsSpanning returns the holds that may be in force at some instant of
// [from, to], as recorded by the cut-off: placed by to (and the cut-off),
// not lifted by from, not expired by from. A lift after the cut-off is not
// read.
func (d *DB) holdsSpanning(ctx context.Context, from, to, cutoff time.Time) ([]core.Hold, error) {
	var rows []holdRow
	err := d.db.SelectContext(ctx, &rows, d.q("SELECT "+holdCols+` FROM holds
		WHERE created_at <= ? AND created_at <= ? AND (lifted_at IS NULL OR lifted_at > ?) AND (until IS NULL OR until > ?)
		ORDER BY created_at, id`), to, cutoff, from, from)
	if err != nil {
		return nil, fmt.Errorf("reconcile: read holds: %w", translate(err))
	}
	out := make([]core.Hold, len(rows))
	for i, r := range rows {
		out[i] = r.hold()
		if h := &out[i]; h.LiftedAt != nil && h.LiftedAt.After(cutoff) {
			h.LiftedAt, h.LiftedBy = nil, ""
		}
	}
	return out, nil
}

// evidenceByPGSQL reads the evidence of a page's releases, the release ids
// as one array looked up by index (evidence_release).
const evidenceByPGSQL = `SELECT e.release_id, e.doc FROM unnest(?::text[]) AS k(id)
	JOIN evidence e ON e.release_id = k.id
	WHERE e.recorded_at <= ? AND e.recorded_at <= ?
	ORDER BY e.release_id, e.recorded_at, e.id`

// evidenceBy returns, by release id, the releases' evidence recorded by
// upTo (the page's last start) and the cut-off, oldest first; the policy
// judges each deployment with what was recorded by its own start.
func (d *DB) evidenceBy(ctx context.Context, releases []string, upTo, cutoff time.Time) (map[string][]core.Evidence, error) {
	out := map[string][]core.Evidence{}
	for chunk := range slices.Chunk(releases, maxInList) {
		query := `SELECT e.release_id, e.doc FROM evidence e WHERE e.release_id IN (` + placeholders(len(chunk)) + `)
			AND e.recorded_at <= ? AND e.recorded_at <= ? ORDER BY e.release_id, e.recorded_at, e.id`
		args := make([]any, 0, len(chunk)+2)
		for _, r := range chunk {
			args = append(args, r)
		}
		args = append(args, upTo, cutoff)
		if d.dialect == Postgres {
			query, args = evidenceByPGSQL, []any{pq.Array(chunk), upTo, cutoff}
		}
		rs, err := d.db.QueryContext(ctx, d.q(query), args...)
		if err != nil {
			return nil, fmt.Errorf("reconcile: read evidence: %w", translate(err))
		}
		for rs.Next() {
			var (
				rel  string
				body []byte
				e    core.Evidence
			)
			if err := rs.Scan(&rel, &body); err != nil {
				rs.Close()
				return nil, fmt.Errorf("reconcile: read evidence: %w", translate(err))
			}
			if err := segjson.Unmarshal(body, &e); err != nil {
				rs.Close()
				return nil, fmt.Errorf("reconcile: decode evidence of release %s: %w", rel, err)
			}
			out[rel] = append(out[rel], e)
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return nil, fmt.Errorf("reconcile: read evidence: %w", translate(err))
		}
	}
	return out, nil
}

func (d *DB) reconcilePage(ctx context.Context, q core.ReconcileQuery, from, to, cutoff, afterAt time.Time, afterID string, limit int) ([]reconcileRow, error) {
	var filter strings.Builder
	scope, scopeArgs := sqldb.ScopeFilter("d", q.Environment, q.Service, q.Team)
	filter.WriteString(sqldb.Ran("d") + scope)
	args := append([]any{from, to, cutoff}, scopeArgs...)
	late, lateArgs := sqldb.RecordedLate("d", q)
	filter.WriteString(late)
	args = append(args, lateArgs...)
	args = append(args, afterAt, afterID, limit)
	return d.scanReconcileRows(ctx, d.q(fmt.Sprintf(reconcileDeploymentsSQL, filter.String())), args, limit)
}

// reconcileByIDSQL reads the deployments listed (%s: the id placeholders)
// in start order.
const reconcileByIDSQL = `SELECT d.id, d.release_id, d.service, d.environment, d.version, d.commit_sha, d.team, d.status,
	d.started_at, d.finished_at, d.actor, d.changes, d.incidents, d.decision_id, d.provider, d.run_id, d.url,
	d.links_changed_at
FROM deployments d WHERE d.id IN (%s) ORDER BY d.started_at, d.id`

// reconcilePageByID reads one page of listed deployments (q.ByID).
func (d *DB) reconcilePageByID(ctx context.Context, ids []string) ([]reconcileRow, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return d.scanReconcileRows(ctx, d.q(fmt.Sprintf(reconcileByIDSQL, placeholders(len(ids)))), args, len(ids))
}

// scanReconcileRows runs a statement of reconcileDeploymentsSQL's columns.
func (d *DB) scanReconcileRows(ctx context.Context, text string, args []any, limit int) ([]reconcileRow, error) {
	rs, err := d.db.QueryContext(ctx, text, args...)
	if err != nil {
		return nil, fmt.Errorf("reconcile: read deployments: %w", translate(err))
	}
	defer rs.Close()
	out := make([]reconcileRow, 0, limit)
	for rs.Next() {
		// Scanned in place, the JSON lists straight into strings (through
		// []byte they were copied twice).
		out = append(out, reconcileRow{})
		r := &out[len(out)-1]
		var started anyTime
		if err := rs.Scan(&r.dep.ID, &r.dep.ReleaseID, &r.dep.Service, &r.dep.Environment, &r.dep.Version, &r.dep.Commit,
			&r.dep.Team, &r.dep.Status, &started, &r.finishedAt, &r.dep.Actor, &r.dep.Changes, &r.dep.Incidents, &r.dep.DecisionID,
			&r.dep.Provider, &r.dep.RunID, &r.dep.URL, &r.linksChanged); err != nil {
			return nil, fmt.Errorf("reconcile: read deployment row: %w", translate(err))
		}
		r.dep.StartedAt = started.Time
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("reconcile: read deployments: %w", translate(err))
	}
	return out, nil
}

// pageFacts assembles each deployment's as-of facts for one page.
func pageFacts(p fetchedPage, timeline *core.IncidentTimeline, cutoff time.Time) ([]core.DeploymentFacts, error) {
	out := make([]core.DeploymentFacts, len(p.rows))
	// A release is deployed many times: each decision's reasons are decoded
	// once per page and shared, read-only, by the deployments relying on it.
	reasons := make(map[string][]core.Reason)
	for i, dep := range p.deps {
		df := &out[i] // built in place: the struct is large
		*df = core.DeploymentFacts{Deployment: dep, ChangesAtCutoff: map[string]core.ChangeVersion{}}
		for _, k := range dep.Changes {
			vs := p.versions[k]
			if cv, ok := core.ChangeAsOf(vs, dep.StartedAt); ok {
				df.Changes = append(df.Changes, cv)
				if later, ok := core.ChangeAsOf(p.atCutoff[k], cutoff); ok {
					df.ChangesAtCutoff[k] = later
				}
			}
		}
		df.Incidents = timeline.ActiveAt(dep.StartedAt)
		relID := releaseOf(dep)
		df.Holds = p.holds
		for _, e := range p.evidence[relID] {
			if !e.RecordedAt.After(dep.StartedAt) {
				df.Evidence = append(df.Evidence, e)
			}
		}
		df.PendingPIRs = core.PIRsPendingAt(p.pirs, dep.Team, relID, dep.Service, dep.Version, dep.Environment, dep.Commit, dep.StartedAt)
		if r, ok := p.decisions.relied(dep); ok {
			g := &core.DecisionRef{
				ID: r.id, ReleaseID: r.release, Decision: core.Decision(r.decision),
				EvaluatedAt: r.at.Time, PolicyVersion: int(r.policy.Int64), Commit: r.commit.String, Actor: r.actor.String,
				Digest: r.digest.String,
			}
			rs, ok := reasons[r.id]
			if !ok {
				rs = []core.Reason{}
				if r.reasons.Valid && r.reasons.String != "" && r.reasons.String != "null" {
					if err := segjson.Unmarshal([]byte(r.reasons.String), &rs); err != nil {
						return nil, fmt.Errorf("reconcile: decode reasons of decision %s: %w", g.ID, err)
					}
				}
				reasons[r.id] = rs
			}
			g.Reasons = rs
			df.Decision = g
		}
	}
	return out, nil
}

// becameTrueAfter holds when version w of a record became true after
// version v: a later valid_from, or the same with a higher number (a
// version recorded late, older than the newest, is numbered after newer
// ones). The anti-joins below keep the versions nothing superseded so.
const becameTrueAfter = `(w.valid_from > v.valid_from OR (w.valid_from = v.valid_from AND w.version > v.version))`

// placeholders returns "?, ?, …" for n values.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// changeVersionsSQL reads, for the changes with the listed keys, the
// versions that may be in force at some instant of [$min, $max]: those
// that became true by $max, except those superseded by a version that
// became true by $min (an anti-join); only versions recorded by the
// cut-off count. %s is the document column, %s the key placeholders.
const changeVersionsSQL = `SELECT v.key, v.version, v.valid_from, v.recorded_at, %s FROM change_versions v
	WHERE v.key IN (%s) AND v.valid_from <= ? AND v.recorded_at <= ?
	AND NOT EXISTS (SELECT 1 FROM change_versions w
		WHERE w.key = v.key AND ` + becameTrueAfter + ` AND w.valid_from <= ? AND w.recorded_at <= ?)
	ORDER BY v.key, v.valid_from, v.version`

// changeVersionsPGSQL is changeVersionsSQL for PostgreSQL: the keys come
// as one array, and each key's versions are looked up by index in a
// LATERAL subquery kept from being flattened (OFFSET 0). With an IN list
// of a page's keys the planner chose a parallel sequential scan of
// change_versions and its anti-join, several times slower (measurements
// in docs/benchmarks.md).
const changeVersionsPGSQL = `SELECT v.key, v.version, v.valid_from, v.recorded_at, v.doc::text
	FROM unnest(?::text[]) AS k(key)
	CROSS JOIN LATERAL (SELECT * FROM change_versions v
		WHERE v.key = k.key AND v.valid_from <= ? AND v.recorded_at <= ?
		AND NOT EXISTS (SELECT 1 FROM change_versions w
			WHERE w.key = v.key AND ` + becameTrueAfter + ` AND w.valid_from <= ? AND w.recorded_at <= ?)
		OFFSET 0) v
	ORDER BY v.key, v.valid_from, v.version`

// changeVersionsSpanning returns, by key, the versions of the changes that
// may be in force at some instant of [from, to] (see changeVersionsSQL);
// with from = to = the cut-off, each change's version as of the cut-off.
func (d *DB) changeVersionsSpanning(ctx context.Context, keys []string, from, to, cutoff time.Time) (map[string][]core.ChangeVersion, error) {
	out := make(map[string][]core.ChangeVersion, len(keys))
	doc := "v.doc"
	if d.dialect == Postgres {
		doc = "v.doc::text"
	}
	for chunk := range slices.Chunk(keys, maxInList) {
		args := make([]any, 0, len(chunk)+4)
		for _, k := range chunk {
			args = append(args, k)
		}
		args = append(args, to, cutoff, from, cutoff)
		query := fmt.Sprintf(changeVersionsSQL, doc, placeholders(len(chunk)))
		if d.dialect == Postgres {
			query, args = changeVersionsPGSQL, []any{pq.Array(chunk), to, cutoff, from, cutoff}
		}
		rs, err := d.db.QueryContext(ctx, d.q(query), args...)
		if err != nil {
			return nil, fmt.Errorf("reconcile: read change versions: %w", translate(err))
		}
		for rs.Next() {
			var (
				key      string
				cv       core.ChangeVersion
				from, at anyTime
				body     []byte
			)
			if err := rs.Scan(&key, &cv.Version, &from, &at, &body); err != nil {
				rs.Close()
				return nil, fmt.Errorf("reconcile: read change version: %w", translate(err))
			}
			cv.ValidFrom, cv.RecordedAt = from.Time, at.Time
			if err := segjson.Unmarshal(body, &cv.Change); err != nil {
				rs.Close()
				return nil, fmt.Errorf("reconcile: decode change %s version %d: %w", key, cv.Version, err)
			}
			out[key] = append(out[key], cv)
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return nil, fmt.Errorf("reconcile: read change versions: %w", translate(err))
		}
	}
	return out, nil
}

// pirsSpanning returns the reviews of the teams or the services (both
// lower-cased) that may be pending at some instant of [from, to]: required
// by to, not signed off by from. A review of one of the teams and one of
// the services is returned once (a release has one per commit).
func (d *DB) pirsSpanning(ctx context.Context, teams, services []string, from, to time.Time) ([]core.PIR, error) {
	var out []core.PIR
	seen := map[string]struct{}{}
	for _, by := range []struct {
		col  string
		vals []string
	}{{"team", teams}, {"service", services}} {
		for chunk := range slices.Chunk(by.vals, maxInList) {
			args := make([]any, 0, len(chunk)+2)
			for _, v := range chunk {
				args = append(args, v)
			}
			args = append(args, to, from)
			var rows []reviews.Row
			err := d.db.SelectContext(ctx, &rows, d.q(`SELECT `+reviews.Cols+` FROM pirs WHERE lower(`+by.col+`) IN (`+placeholders(len(chunk))+`)
				AND required_at <= ? AND (signed_off_at IS NULL OR signed_off_at > ?)`), args...)
			if err != nil {
				return nil, fmt.Errorf("reconcile: read reviews: %w", translate(err))
			}
			for _, r := range rows {
				key := r.ReleaseID + "\x00" + r.Commit
				if _, ok := seen[key]; !ok {
					seen[key] = struct{}{}
					out = append(out, r.PIR())
				}
			}
		}
	}
	slices.SortFunc(out, core.ComparePIRs)
	return out, nil
}

// incidentVersionCols are what the timeline needs of an incident version.
const incidentVersionCols = `v.version, v.valid_from, v.recorded_at, %s`

func (d *DB) incidentDoc() string {
	if d.dialect == Postgres {
		return "v.doc::text"
	}
	return "v.doc"
}

// loadIncidentsInForce adds to tl the active incident versions in force at
// at (recorded by cutoff): per incident the newest version that became true
// by then, found with an anti-join.
func (d *DB) loadIncidentsInForce(ctx context.Context, tl *core.IncidentTimeline, at, cutoff time.Time) error {
	query := `SELECT ` + fmt.Sprintf(incidentVersionCols, d.incidentDoc()) + ` FROM incident_versions v
		WHERE v.valid_from <= ? AND v.recorded_at <= ?
		AND COALESCE(v.doc ->> 'state', '') NOT IN (` + inactiveStates + `)
		AND NOT EXISTS (SELECT 1 FROM incident_versions w
			WHERE w.key = v.key AND ` + becameTrueAfter + ` AND w.valid_from <= ? AND w.recorded_at <= ?)
		ORDER BY v.key, v.valid_from, v.version`
	return d.addIncidentVersions(ctx, tl, query, at, cutoff, at, cutoff)
}

// loadIncidentVersions adds to tl every incident version that became true
// in (after, upTo] and was recorded by cutoff.
func (d *DB) loadIncidentVersions(ctx context.Context, tl *core.IncidentTimeline, after, upTo, cutoff time.Time) error {
	query := `SELECT ` + fmt.Sprintf(incidentVersionCols, d.incidentDoc()) + ` FROM incident_versions v
		WHERE v.valid_from > ? AND v.valid_from <= ? AND v.recorded_at <= ?
		ORDER BY v.valid_from, v.key, v.version`
	return d.addIncidentVersions(ctx, tl, query, after, upTo, cutoff)
}

func (d *DB) addIncidentVersions(ctx context.Context, tl *core.IncidentTimeline, query string, args ...any) error {
	rs, err := d.db.QueryContext(ctx, d.q(query), args...)
	if err != nil {
		return fmt.Errorf("reconcile: read incident versions: %w", translate(err))
	}
	defer rs.Close()
	for rs.Next() {
		var (
			iv       core.IncidentVersion
			from, at anyTime
			body     []byte
		)
		if err := rs.Scan(&iv.Version, &from, &at, &body); err != nil {
			return fmt.Errorf("reconcile: read incident version: %w", translate(err))
		}
		iv.ValidFrom, iv.RecordedAt = from.Time, at.Time
		if err := segjson.Unmarshal(body, &iv.Incident); err != nil {
			return fmt.Errorf("reconcile: decode incident version: %w", err)
		}
		tl.Add(iv)
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("reconcile: read incident versions: %w", translate(err))
	}
	return nil
}
