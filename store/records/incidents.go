package records

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store/sqldb"
)

// Incidents are the incident records of one database.
type Incidents struct {
	base *sqldb.DB
	db   *sqlx.DB
}

// NewIncidents returns the incidents in db.
func NewIncidents(db *sqldb.DB) *Incidents { return &Incidents{base: db, db: db.SQLX()} }

// normIncident returns i ready to store (see normChange).
func normIncident(i core.Incident, now time.Time) core.Incident {
	i.OpenedAt = sqldb.TSP(i.OpenedAt)
	i.ResolvedAt = sqldb.TSP(i.ResolvedAt)
	if i.Services != nil {
		i.Services = append([]string(nil), i.Services...)
	}
	if i.FixChanges != nil {
		i.FixChanges = append([]string(nil), i.FixChanges...)
	}
	if i.SourceUpdatedAt.IsZero() {
		i.SourceUpdatedAt = now
	}
	i.SourceUpdatedAt = sqldb.TS(i.SourceUpdatedAt)
	sqldb.CleanStrings(&i)
	return i
}

func incidentCanon(i core.Incident) string {
	i.SourceUpdatedAt = time.Time{}
	return sqldb.MustJSON(i)
}

// ServiceSet returns the distinct normalized, non-empty services, sorted.
// An incident whose set is empty is global: it affects every service.
func ServiceSet(services []string) []string {
	var out []string
	for _, s := range services {
		if s = NormService(s); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// Affects reports whether the incident affects service (normalized), or is
// global.
func Affects(i core.Incident, service string) bool {
	set := ServiceSet(i.Services)
	return len(set) == 0 || slices.Contains(set, service)
}

// UpsertIncident stores i as a new version unless it is older than the
// newest stored version (UpsertStale) or has the same content
// (UpsertUnchanged). It maintains the active and global flags and the
// incident_services index of the newest version. An incident belongs to
// the source that created it: a write from another source is refused with
// KindForbidden.
func (in *Incidents) UpsertIncident(ctx context.Context, i core.Incident) (core.UpsertResult, error) {
	if err := checkKey(i.Key); err != nil {
		return "", err
	}
	if strings.TrimSpace(i.Source) == "" || !sqldb.TextOK(i.Source) {
		return "", core.Invalid("source", "is required (valid text)")
	}
	if i.Priority < 0 {
		return "", core.Invalid("priority", "must not be negative, got %d", i.Priority)
	}
	i = normIncident(i, in.base.Now())
	doc := sqldb.MustJSON(i)
	services := ServiceSet(i.Services)
	global := len(services) == 0
	res, err := upsertVersioned(ctx, in.base, versionedUpsert{
		what:     "incident",
		table:    "incidents",
		versions: "incident_versions",
		key:      i.Key,
		source:   i.Source,
		stamp:    i.SourceUpdatedAt,
		doc:      doc,
		canon:    incidentCanon(i),
		canonOf: func(stored []byte) (string, error) {
			var old core.Incident
			if err := json.Unmarshal(stored, &old); err != nil {
				return "", err
			}
			return incidentCanon(old), nil
		},
		insert: func(ctx context.Context, tx *sqlx.Tx, now time.Time) (sql.Result, error) {
			return in.base.ExecTx(ctx, tx, in.base.Q(`INSERT INTO incidents (key, source, version, priority, major, state, active, global, doc, source_updated_at, updated_at)
				VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING`),
				i.Key, i.Source, i.Priority, i.Major, i.State, i.Active(), global, doc, i.SourceUpdatedAt, now)
		},
		update: func(ctx context.Context, tx *sqlx.Tx, version int, now time.Time) (sql.Result, error) {
			return in.base.ExecTx(ctx, tx, in.base.Q(`UPDATE incidents SET version = ?, priority = ?, major = ?, state = ?, active = ?, global = ?,
				doc = ?, source_updated_at = ?, updated_at = ? WHERE key = ? AND source = ?`),
				version, i.Priority, i.Major, i.State, i.Active(), global, doc, i.SourceUpdatedAt, now, i.Key, i.Source)
		},
		after: func(ctx context.Context, tx *sqlx.Tx) error {
			if _, err := in.base.ExecTx(ctx, tx, in.base.Q(`DELETE FROM incident_services WHERE incident_key = ?`), i.Key); err != nil {
				return fmt.Errorf("clear services: %w", err)
			}
			if len(services) == 0 {
				return nil
			}
			var b strings.Builder
			args := make([]any, 0, 2*len(services))
			b.WriteString(`INSERT INTO incident_services (incident_key, service, active) VALUES `)
			for n, s := range services {
				if n > 0 {
					b.WriteString(", ")
				}
				b.WriteString("(?, ?, ?)")
				args = append(args, i.Key, s, i.Active())
			}
			if _, err := tx.ExecContext(ctx, in.base.Q(b.String()), args...); err != nil {
				return fmt.Errorf("index services: %w", err)
			}
			return nil
		},
	})
	if err != nil {
		return "", fmt.Errorf("upsert incident %s: %w", i.Key, err)
	}
	return res, nil
}

// GetIncident returns the newest version of the incident.
func (in *Incidents) GetIncident(ctx context.Context, key string) (core.Incident, error) {
	if !lookupKey(key) {
		return core.Incident{}, core.NotFound("incident", key)
	}
	var doc []byte
	err := in.db.GetContext(ctx, &doc, in.base.Q(`SELECT doc FROM incidents WHERE key = ?`), key)
	if errors.Is(err, sql.ErrNoRows) {
		return core.Incident{}, core.NotFound("incident", key)
	}
	if err != nil {
		return core.Incident{}, fmt.Errorf("load incident %s: %w", key, sqldb.Translate(err))
	}
	var i core.Incident
	if err := json.Unmarshal(doc, &i); err != nil {
		return core.Incident{}, fmt.Errorf("decode incident %s: %w", key, err)
	}
	return i, nil
}

// IncidentHistory returns every version of the incident, oldest first.
func (in *Incidents) IncidentHistory(ctx context.Context, key string) ([]core.IncidentVersion, error) {
	if !lookupKey(key) {
		return nil, core.NotFound("incident", key)
	}
	rows, err := history(ctx, in.base, "incident_versions", key)
	if err != nil {
		return nil, fmt.Errorf("load incident %s history: %w", key, err)
	}
	if len(rows) == 0 {
		return nil, core.NotFound("incident", key)
	}
	out := make([]core.IncidentVersion, len(rows))
	for n, r := range rows {
		out[n] = core.IncidentVersion{Version: r.Version, ValidFrom: r.ValidFrom.UTC(), RecordedAt: r.RecordedAt.UTC()}
		if err := json.Unmarshal(r.Doc, &out[n].Incident); err != nil {
			return nil, fmt.Errorf("decode incident %s version %d: %w", key, r.Version, err)
		}
	}
	return out, nil
}

// ActiveIncidents returns the incidents that are not resolved, closed or
// canceled, most urgent first.
func (in *Incidents) ActiveIncidents(ctx context.Context) ([]core.Incident, error) {
	var docs []string
	if err := in.db.SelectContext(ctx, &docs, "SELECT doc FROM incidents WHERE active ORDER BY priority, key LIMIT 200"); err != nil {
		return nil, fmt.Errorf("list active incidents: %w", sqldb.Translate(err))
	}
	out := make([]core.Incident, 0, len(docs))
	for _, doc := range docs {
		var in core.Incident
		if err := json.Unmarshal([]byte(doc), &in); err != nil {
			return nil, fmt.Errorf("decode incident: %w", err)
		}
		out = append(out, in)
	}
	return out, nil
}
