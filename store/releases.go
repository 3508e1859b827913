package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/attempts"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Listing limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// listLimit applies the default and the cap to a requested page size.
func listLimit(n int) (int, error) {
	switch {
	case n < 0:
		return 0, core.Invalid("limit", "must not be negative, got %d", n)
	case n == 0:
		return DefaultListLimit, nil
	case n > MaxListLimit:
		return MaxListLimit, nil
	}
	return n, nil
}

// required trims v and fails naming field when it is empty.
func required(field, v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", core.Invalid(field, "is required")
	}
	return v, nil
}

// --- releases

const releaseCols = `id, service, version, environment, team, commit_sha, changes, fixes_incidents, created_at, updated_at`

type releaseRow struct {
	ID             string    `db:"id"`
	Service        string    `db:"service"`
	Version        string    `db:"version"`
	Environment    string    `db:"environment"`
	Team           string    `db:"team"`
	Commit         string    `db:"commit_sha"`
	Changes        string    `db:"changes"`
	FixesIncidents string    `db:"fixes_incidents"`
	CreatedAt      time.Time `db:"created_at"`
	UpdatedAt      time.Time `db:"updated_at"`
}

func (r releaseRow) release() (core.Release, error) {
	changes, err := parseList(r.Changes)
	if err != nil {
		return core.Release{}, fmt.Errorf("release %s changes: %w", r.ID, err)
	}
	fixes, err := parseList(r.FixesIncidents)
	if err != nil {
		return core.Release{}, fmt.Errorf("release %s fixes_incidents: %w", r.ID, err)
	}
	return core.Release{
		ID: r.ID, Service: r.Service, Version: r.Version, Environment: r.Environment,
		Team: r.Team, Commit: r.Commit, Changes: changes, FixesIncidents: fixes,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
	}, nil
}

// UpsertRelease creates the release for (service, version, environment),
// or updates the existing one: a non-empty team, commit or link list in r
// replaces the stored one, an empty one keeps it (a later gate check that
// omits them does not erase them). A new release gets the id
// core.ReleaseID gives it; r.ID is ignored. Service, version and environment are trimmed and otherwise kept
// as given.
func (d *DB) UpsertRelease(ctx context.Context, r core.Release) (core.Release, error) {
	var err error
	if r.Service, err = required("service", r.Service); err != nil {
		return core.Release{}, err
	}
	if r.Version, err = required("version", r.Version); err != nil {
		return core.Release{}, err
	}
	if r.Environment, err = required("environment", r.Environment); err != nil {
		return core.Release{}, err
	}
	now := d.now()
	var row releaseRow
	query := d.q(`INSERT INTO releases (` + releaseCols + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (service, version, environment) DO UPDATE SET
			team = CASE WHEN excluded.team <> '' THEN excluded.team ELSE releases.team END,
			commit_sha = CASE WHEN excluded.commit_sha <> '' THEN excluded.commit_sha ELSE releases.commit_sha END,
			changes = CASE WHEN excluded.changes <> '[]' THEN excluded.changes ELSE releases.changes END,
			fixes_incidents = CASE WHEN excluded.fixes_incidents <> '[]' THEN excluded.fixes_incidents ELSE releases.fixes_incidents END,
			updated_at = excluded.updated_at
		RETURNING ` + releaseCols)
	args := []any{core.ReleaseID(r.Service, r.Version, r.Environment), r.Service, r.Version, r.Environment, strings.TrimSpace(r.Team), strings.TrimSpace(r.Commit),
		strList(r.Changes), strList(r.FixesIncidents), now, now}
	if tx := d.base.TogetherTx(ctx); tx != nil {
		// In a shared transaction a unique violation aborts it: the
		// caller makes the write again on its own, where it is retried.
		if err = d.base.QueryRowTx(ctx, tx, query, args...).StructScan(&row); sqldb.IsUniqueViolation(err) {
			err = fmt.Errorf("%w: %w", core.ErrOwnCommit, err)
		}
		if err != nil {
			return core.Release{}, fmt.Errorf("upsert release %s %s %s: %w", r.Service, r.Version, r.Environment, translate(err))
		}
		return row.release()
	}
	st, err := d.base.Stmts().Get(ctx, query)
	if err != nil {
		return core.Release{}, translate(err)
	}
	// The conflict target is the release's key, and its id, derived from
	// the same three values, is unique too. PostgreSQL's speculative
	// insertion turns a conflict into the update only on the target's
	// index: when two transactions insert a new release at once, the one
	// that meets the other's row on the id instead fails with a unique
	// violation, after the other has committed. Asked again, it finds
	// that row and updates it.
	for attempt := 1; ; attempt++ {
		err = st.GetContext(ctx, &row, args...)
		if err == nil || attempt == 3 || !sqldb.IsUniqueViolation(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return core.Release{}, fmt.Errorf("upsert release %s %s %s: %w", r.Service, r.Version, r.Environment, translate(err))
	}
	return row.release()
}

// GetRelease returns the release with id.
func (d *DB) GetRelease(ctx context.Context, id string) (core.Release, error) {
	var row releaseRow
	err := d.db.GetContext(ctx, &row, d.q(`SELECT `+releaseCols+` FROM releases WHERE id = ?`), id)
	if errors.Is(err, sql.ErrNoRows) {
		return core.Release{}, core.NotFound("release", id)
	}
	if err != nil {
		return core.Release{}, fmt.Errorf("load release %s: %w", id, translate(err))
	}
	return row.release()
}

// listWhere builds the WHERE clause shared by the release and deployment
// listings; timeCol is the column From/To apply to (From inclusive, To
// exclusive). Filters match exactly.
//
// after is the cursor condition, with one ? for f.After.
func listWhere(f core.ReleaseFilter, timeCol, after string) (string, []any, error) {
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return "", nil, core.Invalid("from", "must be before to")
	}
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		conds = append(conds, cond)
		args = append(args, arg)
	}
	if f.Service != "" {
		add("service = ?", f.Service)
	}
	if f.Environment != "" {
		envs := append([]string{f.Environment}, f.AlsoEnvironments...)
		conds = append(conds, "environment IN (?"+strings.Repeat(", ?", len(envs)-1)+")")
		for _, e := range envs {
			args = append(args, e)
		}
	}
	if f.Team != "" {
		add("team = ?", f.Team)
	}
	if f.Status != "" {
		add("status = ?", f.Status)
	}
	if !f.From.IsZero() {
		add(timeCol+" >= ?", ts(f.From))
	}
	if !f.To.IsZero() {
		add(timeCol+" < ?", ts(f.To))
	}
	if f.After != "" {
		add(after, f.After)
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, nil
}

// ListReleases returns releases matching f, oldest first (by created_at,
// then id: release ids are name-based, see core.ReleaseID), one page of at
// most f.Limit (default 100, at most 1000); pass the last id as f.After for
// the next page. An f.After that is no release's id is KindInvalid: the
// cursor is a position in the listing, and an unknown one has none.
func (d *DB) ListReleases(ctx context.Context, f core.ReleaseFilter) ([]core.Release, error) {
	limit, err := listLimit(f.Limit)
	if err != nil {
		return nil, err
	}
	where, args, err := listWhere(f, "created_at", "(created_at, id) > (SELECT c.created_at, c.id FROM releases c WHERE c.id = ?)")
	if err != nil {
		return nil, err
	}
	var rows []releaseRow
	if err := d.db.SelectContext(ctx, &rows, d.q(`SELECT `+releaseCols+` FROM releases`+where+` ORDER BY created_at, id LIMIT ?`), append(args, limit)...); err != nil {
		return nil, fmt.Errorf("list releases: %w", translate(err))
	}
	if len(rows) == 0 {
		if err := d.knownCursor(ctx, "releases", "release", f.After); err != nil {
			return nil, err
		}
	}
	out := make([]core.Release, 0, len(rows))
	for _, row := range rows {
		r, err := row.release()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// --- deployments

const deploymentCols = `id, release_id, service, environment, version, commit_sha, team, status, started_at, finished_at,
	actor, changes, incidents, decision_id, provider, run_id, url, source, created_at, updated_at`

// deploymentReadCols are what a read returns: the inserted columns and
// links_changed_at, which only relinkDeployment sets.
const deploymentReadCols = deploymentCols + `, links_changed_at`

type deploymentRow struct {
	ID          string       `db:"id"`
	ReleaseID   string       `db:"release_id"`
	Service     string       `db:"service"`
	Environment string       `db:"environment"`
	Version     string       `db:"version"`
	Commit      string       `db:"commit_sha"`
	Team        string       `db:"team"`
	Status      string       `db:"status"`
	StartedAt   time.Time    `db:"started_at"`
	FinishedAt  sql.NullTime `db:"finished_at"`
	Actor       string       `db:"actor"`
	Changes     string       `db:"changes"`
	Incidents   string       `db:"incidents"`
	DecisionID  string       `db:"decision_id"`
	Provider    string       `db:"provider"`
	RunID       string       `db:"run_id"`
	URL         string       `db:"url"`
	Source      string       `db:"source"`
	CreatedAt   time.Time    `db:"created_at"`
	UpdatedAt   time.Time    `db:"updated_at"`
	// LinksChanged is when a report last changed the links.
	LinksChanged sql.NullTime `db:"links_changed_at"`
}

func (r deploymentRow) deployment() (core.Deployment, error) {
	changes, err := parseList(r.Changes)
	if err != nil {
		return core.Deployment{}, fmt.Errorf("deployment %s changes: %w", r.ID, err)
	}
	incidents, err := parseList(r.Incidents)
	if err != nil {
		return core.Deployment{}, fmt.Errorf("deployment %s incidents: %w", r.ID, err)
	}
	return core.Deployment{
		ID: r.ID, ReleaseID: r.ReleaseID, Service: r.Service, Environment: r.Environment,
		Version: r.Version, Commit: r.Commit, Team: r.Team, Status: r.Status,
		StartedAt: r.StartedAt.UTC(), FinishedAt: timePtr(r.FinishedAt), Actor: r.Actor,
		Changes: changes, Incidents: incidents, DecisionID: r.DecisionID,
		Provider: r.Provider, RunID: r.RunID, URL: r.URL, Source: r.Source,
		CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), LinksChangedAt: timePtr(r.LinksChanged),
	}, nil
}

// statusRank orders deployment statuses for RecordDeployment: a run moves
// from queued to started to an outcome (succeeded or failed, equal rank)
// and may end rolled back. The SQL below must agree with it.
func statusRank(status string) int {
	switch status {
	case core.DeployQueued:
		return -1
	case core.DeployStarted:
		return 0
	case core.DeployRolledBack:
		return 2
	}
	return 1
}

// rankSQL is statusRank in SQL.
func rankSQL(col string) string {
	return fmt.Sprintf("(CASE %s WHEN '%s' THEN -1 WHEN '%s' THEN 0 WHEN '%s' THEN 2 ELSE 1 END)", col, core.DeployQueued, core.DeployStarted, core.DeployRolledBack)
}

// startSQL is the stored start after a repeat: the earliest reported,
// except that a queued run's start is when it was queued, not when it
// ran. The first report that it left the queue gives its start (a GitLab
// manual job played days after its pipeline was created is judged by what
// was in force when it ran), and a queued report arriving after one that
// it ran moves nothing.
var startSQL = fmt.Sprintf(`started_at = CASE
			WHEN deployments.status = '%[1]s' AND excluded.status <> '%[1]s' THEN excluded.started_at
			WHEN excluded.status = '%[1]s' AND deployments.status <> '%[1]s' THEN deployments.started_at
			WHEN excluded.started_at < deployments.started_at THEN excluded.started_at
			ELSE deployments.started_at END`, core.DeployQueued)

// adoptSQL decides whether a repeated delivery's status replaces the stored
// one: a higher rank always does; an equal rank does when it finished no
// earlier (a re-run of the same run id that now succeeds), so a late
// "started" after "succeeded", or a stale "failed" delivered after a newer
// "succeeded", never moves the status backwards.
var adoptSQL = fmt.Sprintf(`(%[1]s > %[2]s OR (%[1]s = %[2]s AND (deployments.finished_at IS NULL
	OR (excluded.finished_at IS NOT NULL AND excluded.finished_at >= deployments.finished_at))))`,
	rankSQL("excluded.status"), rankSQL("deployments.status"))

// nonEmpty keeps the stored value of col when the repeat leaves it empty.
func nonEmpty(col, empty string) string {
	return fmt.Sprintf("%[1]s = CASE WHEN excluded.%[1]s <> '%[2]s' THEN excluded.%[1]s ELSE deployments.%[1]s END", col, empty)
}

// apiKept is true when the stored col came with a REST report and the
// repeat is a CI webhook's: the pipeline named the version it gated
// (v1.4.2), the webhook names what its payload has (the commit, GitHub's
// deployment sha), and taking it would move the deployment to a release
// nobody gated. The REST report's source stays (sticky), so later
// webhooks of the run keep it too.
func apiKept(col string) string {
	return fmt.Sprintf("(deployments.source = '%[2]s' AND excluded.source <> '%[2]s' AND deployments.%[1]s <> '')", col, core.SourceAPI)
}

// notAPIKept is nonEmpty, but for what apiKept keeps.
func notAPIKept(col string) string {
	return fmt.Sprintf("%[1]s = CASE WHEN excluded.%[1]s <> '' AND NOT %[2]s THEN excluded.%[1]s ELSE deployments.%[1]s END", col, apiKept(col))
}

// recordDeploymentSQL is the deployment upsert. relinkGuard, when set,
// makes the update conditional: a repeat that would change the stored
// row's links (changes, incidents, decision_id) updates nothing and
// returns no row, so RecordDeployment can redo it with the audit entry
// that change needs. A repeat that leaves the links as they are, or names
// none, stays one statement.
func recordDeploymentSQL(relinkGuard bool) string {
	q := `INSERT INTO deployments (` + deploymentCols + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (provider, run_id, service, environment) DO UPDATE SET
		` + strings.Join([]string{
		notAPIKept("release_id"), notAPIKept("version"), nonEmpty("commit_sha", ""), nonEmpty("team", ""),
		nonEmpty("actor", ""), nonEmpty("changes", "[]"), nonEmpty("incidents", "[]"), nonEmpty("decision_id", ""),
		nonEmpty("url", ""), fmt.Sprintf("source = CASE WHEN deployments.source = '%[1]s' THEN deployments.source WHEN excluded.source <> '' THEN excluded.source ELSE deployments.source END", core.SourceAPI),
		"status = CASE WHEN " + adoptSQL + " THEN excluded.status ELSE deployments.status END",
		"finished_at = CASE WHEN " + adoptSQL + " THEN COALESCE(excluded.finished_at, deployments.finished_at) ELSE deployments.finished_at END",
		startSQL,
		// A run leaving the queue is recorded as a deployment now: a
		// report that already covered its new start counts it as a late
		// arrival (LateDeployments, ReconcileQuery.RecordedAfter).
		fmt.Sprintf("created_at = CASE WHEN deployments.status = '%[1]s' AND excluded.status <> '%[1]s' THEN excluded.created_at ELSE deployments.created_at END", core.DeployQueued),
		"updated_at = excluded.updated_at",
	}, ",\n\t\t")
	if relinkGuard {
		// The last placeholder is the report's start plus startGrace. A
		// queued run was judged by nothing yet: any report may set what it
		// will be. A queued report of a run that already ran changes
		// nothing (ranAlready).
		q += fmt.Sprintf(`
	WHERE deployments.status = '%[1]s' OR (excluded.status <> '%[1]s' AND `, core.DeployQueued) + strings.Join([]string{keeps("changes", "[]"), keeps("incidents", "[]"), keeps("decision_id", ""),
			"(" + fills("version") + " OR " + apiKept("version") + ")", fills("commit_sha"), fills("actor"), fills("team"), notRerun, "deployments.started_at <= ?"}, " AND ") + ")"
	}
	return q + `
	RETURNING ` + deploymentReadCols
}

// notRerun is false for a report that starts after the stored run
// finished: perhaps another attempt under the same run id (GitHub's
// "Re-run jobs", a GitLab retry), which relinkDeployment records as a
// deployment of its own when it says it started more than rerunGrace
// later (a report naming no start, whose start is taken to be its finish,
// stays the run's). A queued report is never one: the attempt is
// recorded when it starts, at its start (see ranAlready).
const notRerun = `NOT (deployments.finished_at IS NOT NULL AND excluded.started_at > deployments.finished_at)`

// rerunGrace is how long after a run finished a report of the same run id
// may say it started and still be that run (reporters' clocks differ by
// seconds); later, it is another attempt, judged at its own start with
// what was in force then.
const rerunGrace = time.Minute

// keeps is true when a repeat leaves the stored col as it is: it names
// nothing (empty) or the same value.
func keeps(col, empty string) string {
	return fmt.Sprintf("(excluded.%[1]s = '%[2]s' OR excluded.%[1]s = deployments.%[1]s)", col, empty)
}

// fills is keeps for a text column a repeat may also fill in when the
// stored one is empty.
func fills(col string) string {
	return fmt.Sprintf("(excluded.%[1]s = '' OR deployments.%[1]s = '' OR excluded.%[1]s = deployments.%[1]s)", col)
}

var (
	recordDeploymentGuardedSQL = recordDeploymentSQL(true)
	recordDeploymentAnySQL     = recordDeploymentSQL(false)
)

// ActionDeploymentLinks is the audit action of a report that changed the
// links of a deployment already recorded.
const ActionDeploymentLinks = core.ActionDeploymentLinks

// deploymentLinks are what a deployment's reconciliation is judged by
// besides its release: the changes it implements, the incidents it fixes
// and the gate decision it names.
type deploymentLinks struct {
	Changes    []string `json:"changes"`
	Incidents  []string `json:"incidents"`
	DecisionID string   `json:"decision_id"`
	// What else the reconciler judges the deployment by. A report that
	// fills one in (the stored one empty) changes nothing recorded; one
	// that rewrites it — or moves the start earlier by more than
	// startGrace — does, as a change of the links does.
	Version   string    `json:"version,omitempty"`
	Commit    string    `json:"commit,omitempty"`
	Actor     string    `json:"actor,omitempty"`
	Team      string    `json:"team,omitempty"`
	StartedAt time.Time `json:"started_at"`
}

// startGrace is how much earlier than the stored start a repeat may say
// its run started without that being a change of the record (two
// reporters of one run — a pipeline's call and its CI's webhook — stamp
// its start apart by seconds); maxBackdate how far before the run was
// first reported a repeat may move its start at all. Past it the stored
// start is kept and the report's is only audited: moving a deployment
// out of the periods its reports cover would hide it from them.
const (
	startGrace  = time.Hour
	maxBackdate = 24 * time.Hour
)

func linksOf(d core.Deployment) deploymentLinks {
	return deploymentLinks{Changes: nonNil(d.Changes), Incidents: nonNil(d.Incidents), DecisionID: d.DecisionID,
		Version: d.Version, Commit: d.Commit, Actor: d.Actor, Team: d.Team, StartedAt: d.StartedAt.UTC()}
}

// sameLinks reports whether after records what before did: the same
// links, and the rest kept or only filled in.
func sameLinks(before, after deploymentLinks) bool {
	kept := func(b, a string) bool { return b == "" || b == a }
	return slices.Equal(before.Changes, after.Changes) && slices.Equal(before.Incidents, after.Incidents) && before.DecisionID == after.DecisionID &&
		kept(before.Version, after.Version) && kept(before.Commit, after.Commit) && kept(before.Actor, after.Actor) && kept(before.Team, after.Team) &&
		!after.StartedAt.Before(before.StartedAt.Add(-startGrace))
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// RecordDeployment stores a deployment event, idempotent on provider, run
// id, service and environment. A repeat merges into the stored row: the
// status never moves backwards (see adoptSQL), non-empty fields replace
// stored ones, and started_at keeps the earliest value seen, except that
// a queued run takes the start of its first report that it ran
// (startSQL); a queued report of a run that ran changes nothing
// (ranAlready). A zero StartedAt means FinishedAt, or now when that is
// unset too. A queued report with a finish says the run ended without its
// CI reporting that it ran: a run stored as having run failed then; any
// other stays queued, unfinished (a queued row never has a finish). The
// id is assigned on the first insert; d.ID is ignored. created is true
// only for the first insert.
//
// A repeat that changes the stored links — fills links the row lacked or
// replaces them, as a pipeline's report after a CI webhook's, or a re-run
// under the same run id, does — is committed with an audit entry
// (ActionDeploymentLinks, actor by) holding the links before and after, so
// a deployment whose links were changed after the fact cannot look as if
// it had always named them.
func (d *DB) RecordDeployment(ctx context.Context, dep core.Deployment, by string) (core.Deployment, bool, error) {
	var err error
	for _, f := range []struct {
		name string
		v    *string
	}{
		{"service", &dep.Service}, {"environment", &dep.Environment}, {"version", &dep.Version},
		{"provider", &dep.Provider}, {"run_id", &dep.RunID}, {"status", &dep.Status},
	} {
		if *f.v, err = required(f.name, *f.v); err != nil {
			return core.Deployment{}, false, err
		}
	}
	if !core.ValidDeployStatus(dep.Status) {
		return core.Deployment{}, false, core.Invalid("status", "unknown deployment status %q (want one of %s)", dep.Status, strings.Join(core.DeployStatuses(), ", "))
	}
	now := d.now()
	dep.FinishedAt = tsp(dep.FinishedAt) // a zero time is no time
	startGiven := !dep.StartedAt.IsZero()
	switch {
	case !dep.StartedAt.IsZero():
		dep.StartedAt = ts(dep.StartedAt) // as stored, and as precise as the finish it is compared with
	case dep.FinishedAt != nil:
		dep.StartedAt = *dep.FinishedAt
	default:
		dep.StartedAt = now
	}
	if dep.FinishedAt != nil && dep.FinishedAt.Before(dep.StartedAt) {
		return core.Deployment{}, false, core.Invalid("finished_at", "is before started_at")
	}
	tx := d.base.TogetherTx(ctx)
	get := func(dest any, query string, args ...any) error { return d.db.GetContext(ctx, dest, query, args...) }
	if tx != nil {
		get = func(dest any, query string, args ...any) error {
			return d.base.QueryRowTx(ctx, tx, query, args...).StructScan(dest)
		}
	}
	if dep.Status == core.DeployQueued && dep.FinishedAt != nil {
		// Ended without the CI reporting that it ran (rejected at its
		// gate, canceled while waiting). If a report said it ran, that run
		// failed; else it deployed nothing and stays queued, unfinished.
		_, ran, err := d.ranAlready(ctx, dep, get)
		if err != nil {
			return core.Deployment{}, false, fmt.Errorf("record deployment %s/%s %s %s: %w", dep.Provider, dep.RunID, dep.Service, dep.Environment, translate(err))
		}
		if ran {
			dep.Status = core.DeployFailed
		} else {
			dep.FinishedAt = nil
		}
	}
	id := newID()
	args := []any{id, dep.ReleaseID, dep.Service, dep.Environment, dep.Version, dep.Commit, dep.Team, dep.Status,
		ts(dep.StartedAt), nullTime(dep.FinishedAt), dep.Actor, strList(dep.Changes), strList(dep.Incidents),
		dep.DecisionID, dep.Provider, dep.RunID, dep.URL, dep.Source, now, now}
	var row deploymentRow
	guarded := append(slices.Clip(args), ts(dep.StartedAt.Add(startGrace)))
	if tx != nil {
		err = d.base.QueryRowTx(ctx, tx, d.q(recordDeploymentGuardedSQL), guarded...).StructScan(&row)
		if errors.Is(err, sql.ErrNoRows) {
			var ran bool
			if row, ran, err = d.ranAlready(ctx, dep, get); err == nil && !ran {
				// A relink goes through the group commit, which may wait
				// for the row this transaction now holds locked.
				err = core.ErrOwnCommit
			}
		}
	} else {
		err = d.db.GetContext(ctx, &row, d.q(recordDeploymentGuardedSQL), guarded...)
		if errors.Is(err, sql.ErrNoRows) {
			var ran bool
			if row, ran, err = d.ranAlready(ctx, dep, get); err == nil && !ran {
				row, err = d.relinkDeployment(ctx, dep, startGiven, by, now, args)
			}
		}
	}
	if err != nil {
		return core.Deployment{}, false, fmt.Errorf("record deployment %s/%s %s %s: %w", dep.Provider, dep.RunID, dep.Service, dep.Environment, translate(err))
	}
	stored, err := row.deployment()
	if err != nil {
		return core.Deployment{}, false, err
	}
	// Only an insert keeps the id generated here; a conflict returns the
	// stored row's id. This works the same on both dialects.
	return stored, row.ID == id, nil
}

// ranAlready returns the stored row of a queued report's run when that
// run left the queue: the report is stale (a redelivery, one overtaken by
// the run's start, the queued report of a later attempt of a finished
// run) and changes nothing. Stored runs never return to the queue, so
// the answer holds without a lock.
func (d *DB) ranAlready(ctx context.Context, dep core.Deployment, get func(dest any, query string, args ...any) error) (deploymentRow, bool, error) {
	if dep.Status != core.DeployQueued {
		return deploymentRow{}, false, nil
	}
	var row deploymentRow
	err := get(&row, d.q(`SELECT `+deploymentReadCols+` FROM deployments
		WHERE provider = ? AND run_id = ? AND service = ? AND environment = ?`), dep.Provider, dep.RunID, dep.Service, dep.Environment)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return deploymentRow{}, false, nil
	case err != nil:
		return deploymentRow{}, false, err
	}
	return row, row.Status != core.DeployQueued, nil
}

// relinkDeployment is RecordDeployment's upsert for a repeat that changes
// the stored row's links: in one transaction of the audit chain's group
// commit it locks the row, reads its links, upserts and appends what
// changed.
func (d *DB) relinkDeployment(ctx context.Context, dep core.Deployment, startGiven bool, by string, now time.Time, args []any) (deploymentRow, error) {
	lock := ""
	if d.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	if by == "" {
		by = "source:" + dep.Source
	}
	entries := []core.AuditEntry{{Actor: by, Action: ActionDeploymentLinks, At: now}}
	var row deploymentRow
	err := d.appendWith(ctx, entries, func(ctx context.Context, tx *sqlx.Tx) error {
		var before deploymentRow
		err := tx.GetContext(ctx, &before, d.q(`SELECT `+deploymentReadCols+` FROM deployments
			WHERE provider = ? AND run_id = ? AND service = ? AND environment = ?`+lock),
			dep.Provider, dep.RunID, dep.Service, dep.Environment)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		var rerunOf string
		if startGiven && before.ID != "" && before.FinishedAt.Valid && dep.StartedAt.After(before.FinishedAt.Time.Add(rerunGrace)) {
			// Another attempt: a deployment of its own, under the run id and
			// its start, so each of its reports lands on it.
			rerunOf, args = before.ID, slices.Clone(args)
			attempt, err := attempts.RunID(ctx, d.base, tx, dep, before.FinishedAt.Time, rerunGrace)
			if err != nil {
				return err
			}
			dep.RunID = attempt
			args[15] = dep.RunID
			before = deploymentRow{}
			if err := tx.GetContext(ctx, &before, d.q(`SELECT `+deploymentReadCols+` FROM deployments
				WHERE provider = ? AND run_id = ? AND service = ? AND environment = ?`+lock),
				dep.Provider, dep.RunID, dep.Service, dep.Environment); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		var refusedStart *time.Time
		if before.ID != "" && dep.StartedAt.Before(before.CreatedAt.Add(-maxBackdate)) {
			// Kept as stored: the report's start is only audited.
			at := dep.StartedAt.UTC()
			refusedStart, args = &at, slices.Clone(args)
			args[8] = ts(before.StartedAt)
		}
		row = deploymentRow{}
		if err := tx.GetContext(ctx, &row, d.q(recordDeploymentAnySQL), args...); err != nil {
			return err
		}
		after, err := row.deployment()
		if err != nil {
			return err
		}
		rec := struct {
			Provider    string           `json:"provider"`
			RunID       string           `json:"run_id"`
			Service     string           `json:"service"`
			Environment string           `json:"environment"`
			Version     string           `json:"version"`
			Status      string           `json:"status"`
			Source      string           `json:"source"`
			Before      *deploymentLinks `json:"before"`
			After       deploymentLinks  `json:"after"`
			// StartRefused is a start the report gave more than
			// maxBackdate before the run was first reported: not taken.
			StartRefused *time.Time `json:"start_refused,omitempty"`
			// RerunOf is the deployment of the same run id that had
			// finished before this attempt started.
			RerunOf string `json:"rerun_of,omitempty"`
		}{Provider: after.Provider, RunID: after.RunID, Service: after.Service, Environment: after.Environment,
			Version: after.Version, Status: after.Status, Source: dep.Source, After: linksOf(after), StartRefused: refusedStart, RerunOf: rerunOf}
		if before.ID != "" { // nil: the row was not there (removed since the guarded upsert)
			b, err := before.deployment()
			if err != nil {
				return err
			}
			l := linksOf(b)
			rec.Before = &l
			if !sameLinks(l, rec.After) {
				if err := tx.GetContext(ctx, &row.LinksChanged, d.q(`UPDATE deployments SET links_changed_at = ? WHERE id = ? RETURNING links_changed_at`), now, row.ID); err != nil {
					return err
				}
			}
		}
		entries[0].Subject = "deployment:" + row.ID
		entries[0].Data = mustJSONBytes(rec)
		return nil
	})
	return row, err
}

// knownCursor refuses a listing's cursor (after) that names no row of
// table, asked when a page came back empty: an unknown id matched
// nothing, and the empty page would read as the listing's end.
func (d *DB) knownCursor(ctx context.Context, table, noun, after string) error {
	if after == "" {
		return nil
	}
	var one int
	err := d.db.GetContext(ctx, &one, d.q(`SELECT 1 FROM `+table+` WHERE id = ?`), after)
	if errors.Is(err, sql.ErrNoRows) {
		return core.Invalid("after", "%q is not a %s id: pass the next cursor of the previous page", after, noun)
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", table, translate(err))
	}
	return nil
}

// GetDeployment returns the deployment with id.
func (d *DB) GetDeployment(ctx context.Context, id string) (core.Deployment, error) {
	var row deploymentRow
	err := d.db.GetContext(ctx, &row, d.q(`SELECT `+deploymentReadCols+` FROM deployments WHERE id = ?`), id)
	if errors.Is(err, sql.ErrNoRows) {
		return core.Deployment{}, core.NotFound("deployment", id)
	}
	if err != nil {
		return core.Deployment{}, fmt.Errorf("load deployment %s: %w", id, translate(err))
	}
	return row.deployment()
}

// ListDeployments returns deployments matching f (From/To on started_at),
// in id order (the order they were first recorded), paged like
// ListReleases.
func (d *DB) ListDeployments(ctx context.Context, f core.ReleaseFilter) ([]core.Deployment, error) {
	limit, err := listLimit(f.Limit)
	if err != nil {
		return nil, err
	}
	where, args, err := listWhere(f, "started_at", "id > ?")
	if err != nil {
		return nil, err
	}
	var rows []deploymentRow
	if err := d.db.SelectContext(ctx, &rows, d.q(`SELECT `+deploymentReadCols+` FROM deployments`+where+` ORDER BY id LIMIT ?`), append(args, limit)...); err != nil {
		return nil, fmt.Errorf("list deployments: %w", translate(err))
	}
	if len(rows) == 0 {
		if err := d.knownCursor(ctx, "deployments", "deployment", f.After); err != nil {
			return nil, err
		}
	}
	out := make([]core.Deployment, 0, len(rows))
	for _, row := range rows {
		dep, err := row.deployment()
		if err != nil {
			return nil, err
		}
		out = append(out, dep)
	}
	return out, nil
}
