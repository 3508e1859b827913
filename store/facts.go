package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/factcache"
	"github.com/tollgate-dev/tollgate/store/governance"
	"github.com/tollgate-dev/tollgate/store/records"
	"github.com/tollgate-dev/tollgate/store/reviews"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// MaxFactKeys bounds the change keys of one facts query.
const MaxFactKeys = 1000

// maxPreparedKeys: reads of up to this many change keys (the fact cache's
// misses) use a prepared statement, one per count (preparedKeyCount).
const maxPreparedKeys = 256

// preparedKeyCount is the number of keys a read of n keys asks for: n up
// to 8, else n rounded up to a power of two (n itself beyond
// maxPreparedKeys, read without preparing).
func preparedKeyCount(n int) int {
	if n <= 8 || n > maxPreparedKeys {
		return n
	}
	p := 16
	for p < n {
		p *= 2
	}
	return p
}

// Row kinds of the facts query.
const (
	factChange   = "c"
	factIncident = "i"
	factPIR      = "p"
)

// inactiveStates is the SQL list of incident states that are not active
// (core.Incident.Active), for the as-of query, which reads the state from
// the version documents.
var inactiveStates = fmt.Sprintf("'%s', '%s', '%s'", core.IncidentResolved, core.IncidentClosed, core.IncidentCanceled)

// factRow is one row of the facts query: a change or incident document, or
// a PIR's columns. The PIR branch comes first so the column types are the
// PIR table's; the time columns still scan through anyTime, because SQLite
// reports no declared type for some compound-select columns.
type factRow struct {
	Kind        string         `db:"kind"`
	Doc         sql.NullString `db:"doc"`
	ReleaseID   sql.NullString `db:"release_id"`
	Service     sql.NullString `db:"service"`
	Version     sql.NullString `db:"version"`
	Environment sql.NullString `db:"environment"`
	Team        sql.NullString `db:"team"`
	Status      sql.NullString `db:"status"`
	RequiredAt  anyTime        `db:"required_at"`
	SignedOffBy sql.NullString `db:"signed_off_by"`
	SignedOffAt anyTime        `db:"signed_off_at"`
	Summary     sql.NullString `db:"summary"`
	Commit      sql.NullString `db:"commit_sha"`
}

// docCols pads a change or incident branch to the PIR branch's columns.
const docCols = `NULL AS release_id, NULL AS service, NULL AS version, NULL AS environment, NULL AS team,
	NULL AS status, NULL AS required_at, NULL AS signed_off_by, NULL AS signed_off_at, NULL AS summary, NULL AS commit_sha`

// GateFacts gathers one release's facts: from the fact cache when it may
// answer (current facts; store/factcache), reading only what it misses, else
// in a single statement (one UNION ALL of the PIR, change and incident
// selects), on both dialects. Both give the same answer.
//
// Without AsOf it reads the current rows: the changes with the given keys,
// the active incidents that affect q.Service (matched trimmed and
// case-insensitively through incident_services) or are global, or all
// active ones with q.AllIncidents, and the pending PIRs that hold the
// release back (q.Team's or q.Service's, core.PIR.HoldsBack) except
// q.ExcludeReleaseID. With AsOf it reads the
// history: each change's and incident's newest version with valid_from <=
// AsOf, the incidents active in that version (the service match is then
// made here on the version's services), and the PIRs required by AsOf and
// not signed off by then (reported as pending).
//
// Incidents come sorted by key, PIRs by required time then release id.
func (d *DB) GateFacts(ctx context.Context, q core.FactsQuery) (core.Facts, error) {
	keys, err := factKeys(q.ChangeKeys)
	if err != nil {
		return core.Facts{}, err
	}
	facts, ok, err := d.facts.Facts(ctx, q, keys, records.NormService(q.Service))
	if err != nil {
		return core.Facts{}, fmt.Errorf("gather facts: %w", err)
	}
	if !ok {
		if facts, err = d.gateFactsDB(ctx, q, keys); err != nil {
			return core.Facts{}, err
		}
	}
	if err := d.governanceFacts(ctx, q, &facts); err != nil {
		return core.Facts{}, err
	}
	return facts, nil
}

// gateFactsDB is GateFacts read from the database in one statement.
func (d *DB) gateFactsDB(ctx context.Context, q core.FactsQuery, keys []string) (core.Facts, error) {
	query, args := d.factsQuery(q, keys)
	service, asOf := records.NormService(q.Service), !q.AsOf.IsZero()
	st, err := d.base.Stmts().Get(ctx, query)
	if err != nil {
		return core.Facts{}, fmt.Errorf("gather facts: %w", translate(err))
	}
	rows, err := st.QueryxContext(ctx, args...)
	if err != nil {
		return core.Facts{}, fmt.Errorf("gather facts: %w", translate(err))
	}
	defer rows.Close()

	facts := core.Facts{Changes: map[string]core.Change{}, Incidents: []core.Incident{}, PendingPIRs: []core.PIR{}}
	for rows.Next() {
		var r factRow
		// Positional scan (every branch selects kind, doc, then reviews.Cols):
		// no reflection on the gate's hot path.
		if err := rows.Scan(&r.Kind, &r.Doc, &r.ReleaseID, &r.Service, &r.Version, &r.Environment, &r.Team,
			&r.Status, &r.RequiredAt, &r.SignedOffBy, &r.SignedOffAt, &r.Summary, &r.Commit); err != nil {
			return core.Facts{}, fmt.Errorf("gather facts: read row: %w", translate(err))
		}
		switch r.Kind {
		case factChange:
			var c core.Change
			if err := decodeDoc([]byte(r.Doc.String), &c); err != nil {
				return core.Facts{}, fmt.Errorf("gather facts: decode change: %w", err)
			}
			facts.Changes[c.Key] = c
		case factIncident:
			var i core.Incident
			if err := decodeDoc([]byte(r.Doc.String), &i); err != nil {
				return core.Facts{}, fmt.Errorf("gather facts: decode incident: %w", err)
			}
			if asOf && (!i.Active() || (!q.AllIncidents && !records.Affects(i, service))) {
				continue
			}
			facts.Incidents = append(facts.Incidents, i)
		case factPIR:
			p := core.PIR{
				ReleaseID: r.ReleaseID.String, Service: r.Service.String, Version: r.Version.String,
				Environment: r.Environment.String, Team: r.Team.String, Commit: r.Commit.String, Status: r.Status.String,
				RequiredAt: r.RequiredAt.Time, SignedOffBy: r.SignedOffBy.String, Summary: r.Summary.String,
			}
			if r.SignedOffAt.Valid {
				t := r.SignedOffAt.Time
				p.SignedOffAt = &t
			}
			if asOf {
				// As it stood then: still pending.
				p.Status, p.SignedOffBy, p.SignedOffAt, p.Summary = core.PIRPending, "", nil, ""
			}
			facts.PendingPIRs = append(facts.PendingPIRs, p)
		default:
			return core.Facts{}, fmt.Errorf("gather facts: unexpected row kind %q", r.Kind)
		}
	}
	if err := rows.Err(); err != nil {
		return core.Facts{}, fmt.Errorf("gather facts: %w", translate(err))
	}
	slices.SortFunc(facts.Incidents, func(a, b core.Incident) int { return strings.Compare(a.Key, b.Key) })
	slices.SortFunc(facts.PendingPIRs, core.ComparePIRs)
	return facts, nil
}

// docText reads a record document column as text (it is jsonb on
// PostgreSQL).
func (d *DB) docText(col string) string {
	if d.dialect == Postgres {
		return col + "::text"
	}
	return col
}

// factKeys dedupes a query's change keys (dropping empty ones) and bounds
// their number.
func factKeys(in []string) ([]string, error) {
	keys := make([]string, 0, len(in))
	for _, k := range in {
		if k != "" && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	if len(keys) > MaxFactKeys {
		return nil, core.Invalid("changes", "at most %d change keys, got %d", MaxFactKeys, len(keys))
	}
	return keys, nil
}

// factsQuery builds GateFacts' statement for the deduplicated keys.
func (d *DB) factsQuery(q core.FactsQuery, keys []string) (string, []any) {
	service := records.NormService(q.Service)
	team := strings.TrimSpace(q.Team)
	asOf := !q.AsOf.IsZero()
	at := ts(q.AsOf)

	doc, vdoc, idoc := d.docText("doc"), d.docText("v.doc"), d.docText("i.doc")
	var parts []string
	var args []any
	version, env := strings.TrimSpace(q.Version), strings.TrimSpace(q.Environment)
	// A pending review holds the release back when it is the team's or the
	// service's (core.PIR.HoldsBack; lower() compares as strings.EqualFold
	// does for ASCII names), never the release's own (by id or by name)
	// unless the review names another commit than the check.
	var whos []string
	var whoArgs []any
	if service != "" {
		whos, whoArgs = append(whos, `lower(service) = ?`), append(whoArgs, service)
	}
	if team != "" {
		whos, whoArgs = append(whos, `lower(team) = ?`), append(whoArgs, strings.ToLower(team))
	}
	who := "(" + strings.Join(whos, " OR ") + ")"
	// The same commit as core.SameCommit: unknown on either side, equal,
	// or one an abbreviation of the other.
	commit := strings.ToLower(strings.TrimSpace(q.Commit))
	self := `NOT ((release_id = ? OR (lower(service) = ? AND version = ? AND environment = ?))
		AND (commit_sha = '' OR ? = '' OR lower(commit_sha) = ?
			OR (? >= ` + strconv.Itoa(core.MinCommitPrefix) + ` AND substr(lower(commit_sha), 1, ?) = ?)
			OR (length(commit_sha) >= ` + strconv.Itoa(core.MinCommitPrefix) + ` AND substr(?, 1, length(commit_sha)) = lower(commit_sha))))`
	selfArgs := []any{q.ExcludeReleaseID, service, version, env, commit, commit, len(commit), len(commit), commit, commit}
	if len(whos) > 0 {
		if asOf {
			parts = append(parts, `SELECT 'p' AS kind, NULL AS doc, `+reviews.Cols+` FROM pirs
				WHERE `+who+` AND `+self+` AND required_at <= ? AND (signed_off_at IS NULL OR signed_off_at > ?)`)
			args = append(append(append(args, whoArgs...), selfArgs...), at, at)
		} else {
			parts = append(parts, `SELECT 'p' AS kind, NULL AS doc, `+reviews.Cols+` FROM pirs
				WHERE status = '`+core.PIRPending+`' AND `+who+` AND `+self)
			// The status is a literal, not a parameter: it matches the partial
			// indexes pirs_pending_team and pirs_pending_service, so PostgreSQL
			// can keep one generic plan for the prepared statement instead of
			// planning every execution.
			args = append(append(args, whoArgs...), selfArgs...)
		}
	}
	if len(keys) > 0 {
		if asOf {
			parts = append(parts, `SELECT 'c' AS kind, `+vdoc+` AS doc, `+docCols+` FROM change_versions v
				WHERE v.key IN (?) AND v.version = (SELECT w.version FROM change_versions w WHERE w.key = v.key AND w.valid_from <= ?
				ORDER BY w.valid_from DESC, w.version DESC LIMIT 1)`)
			args = append(args, keys, at)
		} else {
			parts = append(parts, `SELECT 'c' AS kind, `+doc+` AS doc, `+docCols+` FROM changes WHERE key IN (?)`)
			args = append(args, keys)
		}
	}
	switch {
	case asOf:
		parts = append(parts, `SELECT 'i' AS kind, `+vdoc+` AS doc, `+docCols+` FROM incident_versions v
			WHERE v.version = (SELECT w.version FROM incident_versions w WHERE w.key = v.key AND w.valid_from <= ?
				ORDER BY w.valid_from DESC, w.version DESC LIMIT 1)
			AND COALESCE(v.doc ->> 'state', '') NOT IN (`+inactiveStates+`)`)
		args = append(args, at)
	case q.AllIncidents:
		parts = append(parts, `SELECT 'i' AS kind, `+doc+` AS doc, `+docCols+` FROM incidents WHERE active`)
	default:
		// Global incidents have no incident_services rows, so the two
		// branches never return the same incident.
		parts = append(parts,
			`SELECT 'i' AS kind, `+doc+` AS doc, `+docCols+` FROM incidents WHERE active AND global`,
			`SELECT 'i' AS kind, `+idoc+` AS doc, `+docCols+` FROM incident_services s JOIN incidents i ON i.key = s.incident_key
			WHERE s.service = ? AND s.active AND i.active`)
		args = append(args, service)
	}
	// Expand the change keys' IN (?) and rebind once per statement shape:
	// the text depends only on which branches there are and how many keys,
	// so the hot path reuses it (and its prepared statement) instead of
	// running sqlx.In and Rebind on every check.
	text := strings.Join(parts, "\nUNION ALL\n")
	flat := make([]any, 0, len(args)+len(keys))
	for _, a := range args {
		if ks, ok := a.([]string); ok {
			for _, k := range ks {
				flat = append(flat, k)
			}
			continue
		}
		flat = append(flat, a)
	}
	shape := text + "\x00" + strconv.Itoa(len(keys))
	if cached, ok := d.factsTexts.Load(shape); ok {
		return cached.(string), flat
	}
	if len(keys) > 0 {
		text = strings.Replace(text, "IN (?)", "IN ("+strings.TrimSuffix(strings.Repeat("?, ", len(keys)), ", ")+")", 1)
	}
	final := d.q(text)
	d.factsTexts.Store(shape, final)
	return final, flat
}

// governanceFacts adds to facts the holds in force at the facts' moment
// (q.AsOf, else now: from the fact cache when it may answer) and, when
// q.Evidence, the release's evidence recorded by then (read from the
// database: it is per release, and only environments requiring evidence
// ask for it).
func (d *DB) governanceFacts(ctx context.Context, q core.FactsQuery, facts *core.Facts) error {
	var (
		holds []core.Hold
		err   error
	)
	if q.AsOf.IsZero() {
		holds, err = d.CurrentHolds(ctx)
	} else {
		holds, err = d.HoldsAt(ctx, q.AsOf)
	}
	if err != nil {
		return fmt.Errorf("gather facts: %w", err)
	}
	facts.Holds = holds
	if q.Evidence {
		id := core.ReleaseID(q.Service, q.Version, q.Environment)
		ev, err := d.ListEvidence(ctx, id, q.AsOf)
		if err != nil {
			return fmt.Errorf("gather facts: %w", err)
		}
		facts.Evidence = core.CurrentEvidence(ev)
	}
	return nil
}

// holdRow and holdCols are a holds row as governance scans it, for the
// reconciler's bulk read of holds.
type holdRow governance.HoldRow

func (r holdRow) hold() core.Hold { return governance.HoldRow(r).Hold() }

const holdCols = governance.HoldCols

// anyTime scans a nullable time delivered as time.Time or text (sqldb.AnyTime).
type anyTime = sqldb.AnyTime

// factSource reads the fact cache's misses (factcache.Source).
type factSource struct{ d *DB }

var _ factcache.Source = factSource{}

// ChangesByKey reads the current changes with the given keys. Every read
// of up to maxPreparedKeys keys goes through a statement prepared per
// count of keys: `key IN ($1, $2)` keeps PostgreSQL on a generic plan,
// where `key = ANY($1)` would be planned again on every execution. The
// fact cache's shared fills read more keys at once; their count is rounded
// up to a power of two (the last key repeated) so that few statements
// serve every size.
func (s factSource) ChangesByKey(ctx context.Context, keys []string) (map[string]core.Change, error) {
	if len(keys) == 0 {
		return map[string]core.Change{}, nil
	}
	n := preparedKeyCount(len(keys))
	doc := s.d.docText("doc")
	text := s.d.q(`SELECT ` + doc + ` FROM changes WHERE key IN (` + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + `)`)
	args := make([]any, n)
	for i := range args {
		args[i] = keys[min(i, len(keys)-1)]
	}
	var (
		rows *sqlx.Rows
		err  error
	)
	if n <= maxPreparedKeys {
		st, serr := s.d.base.Stmts().Get(ctx, text)
		if serr != nil {
			return nil, fmt.Errorf("read changes: %w", translate(serr))
		}
		rows, err = st.QueryxContext(ctx, args...)
	} else {
		rows, err = s.d.db.QueryxContext(ctx, text, args...)
	}
	if err != nil {
		return nil, fmt.Errorf("read changes: %w", translate(err))
	}
	defer rows.Close()
	out := make(map[string]core.Change, len(keys))
	for rows.Next() {
		var doc []byte
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("read changes: %w", translate(err))
		}
		var ch core.Change
		if err := decodeDoc(doc, &ch); err != nil {
			return nil, fmt.Errorf("read changes: decode: %w", err)
		}
		out[ch.Key] = ch
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read changes: %w", translate(err))
	}
	return out, nil
}

// ActiveIncidents reads every active incident, sorted by key.
func (s factSource) ActiveIncidents(ctx context.Context) ([]factcache.Incident, error) {
	doc := s.d.docText("doc")
	var docs [][]byte
	if err := s.d.db.SelectContext(ctx, &docs, `SELECT `+doc+` FROM incidents WHERE active ORDER BY key`); err != nil {
		return nil, fmt.Errorf("read active incidents: %w", translate(err))
	}
	out := make([]factcache.Incident, 0, len(docs))
	for _, b := range docs {
		var i core.Incident
		if err := decodeDoc(b, &i); err != nil {
			return nil, fmt.Errorf("read active incidents: decode: %w", err)
		}
		out = append(out, factcache.Incident{Incident: i, Services: records.ServiceSet(i.Services)})
	}
	return out, nil
}

// PendingPIRs reads every pending PIR, by required time then release id.
func (s factSource) PendingPIRs(ctx context.Context) ([]core.PIR, error) {
	var rows []reviews.Row
	if err := s.d.db.SelectContext(ctx, &rows, s.d.q(`SELECT `+reviews.Cols+` FROM pirs WHERE status = ? ORDER BY required_at, release_id`), core.PIRPending); err != nil {
		return nil, fmt.Errorf("read pending PIRs: %w", translate(err))
	}
	out := make([]core.PIR, len(rows))
	for i, r := range rows {
		out[i] = r.PIR()
	}
	return out, nil
}
