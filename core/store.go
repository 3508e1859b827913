package core

import (
	"context"
	"time"
)

// The interfaces below are what tollgate's services need from storage. The
// store package implements all of them on PostgreSQL and SQLite; consumers
// should depend on the smallest one that serves them. Unless a method says
// otherwise, errors are wrapped *Error values: KindNotFound for a missing
// record, KindConflict for a uniqueness clash, KindUnavailable when the
// database cannot be reached.

// Clock tells the time. Production uses the wall clock; tests a fixed one.
type Clock interface {
	Now() time.Time
}

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Time

// Now returns f().
func (f ClockFunc) Now() time.Time { return f() }

// SystemClock is the wall clock, in UTC.
var SystemClock Clock = ClockFunc(func() time.Time { return time.Now().UTC() })

// UpsertResult says what an upsert of a versioned record did.
type UpsertResult string

// Upsert outcomes.
const (
	UpsertCreated   UpsertResult = "created"   // first version stored
	UpsertUpdated   UpsertResult = "updated"   // a new version stored
	UpsertUnchanged UpsertResult = "unchanged" // same content as the newest version: nothing stored
	UpsertStale     UpsertResult = "stale"     // older than the newest version: nothing stored
)

// ChangeStore keeps change records with their full version history.
type ChangeStore interface {
	// UpsertChange stores c as a new version when its SourceUpdatedAt is not
	// older than the newest stored version and its content differs. The
	// version's ValidFrom is c.SourceUpdatedAt (or now, when zero).
	UpsertChange(ctx context.Context, c Change) (UpsertResult, error)
	// GetChange returns the newest version of the change with key.
	GetChange(ctx context.Context, key string) (Change, error)
	// ChangeHistory returns every version of the change, oldest first.
	ChangeHistory(ctx context.Context, key string) ([]ChangeVersion, error)
}

// IncidentStore keeps incidents with their full version history.
type IncidentStore interface {
	UpsertIncident(ctx context.Context, i Incident) (UpsertResult, error)
	GetIncident(ctx context.Context, key string) (Incident, error)
	IncidentHistory(ctx context.Context, key string) ([]IncidentVersion, error)
}

// FactsQuery asks for the facts about one release.
type FactsQuery struct {
	Service     string
	Team        string
	Environment string
	// Version, with Service and Environment, names the release (its id is
	// ReleaseID of the three): its own pending PIR is left out.
	Version    string
	ChangeKeys []string
	// AllIncidents returns every active incident, not only those affecting
	// Service or global ones (policy: a major incident blocks everything).
	AllIncidents bool
	// AsOf, when set, answers as the records stood at that instant (the
	// reconciler); zero means the newest versions (the gate).
	AsOf time.Time
	// ExcludeReleaseID leaves the release itself out of PendingPIRs.
	ExcludeReleaseID string
}

// FactStore gathers a release's facts in one round trip where it can.
type FactStore interface {
	// GateFacts returns the linked changes that exist (keyed by key), the
	// active incidents affecting the service (or global ones, or all active
	// ones), and the team's pending PIRs. Keys not found are simply absent.
	GateFacts(ctx context.Context, q FactsQuery) (Facts, error)
}

// ReleaseFilter narrows a release or deployment listing.
type ReleaseFilter struct {
	Service     string
	Environment string
	Team        string
	From, To    time.Time // on created_at (releases) / started_at (deployments)
	Limit       int
	After       string // opaque cursor: the last id of the previous page
}

// ReleaseStore keeps releases, deployments and post-implementation reviews.
type ReleaseStore interface {
	// UpsertRelease creates the release for (service, version, environment)
	// or updates its team, commit and links; it returns the stored release.
	UpsertRelease(ctx context.Context, r Release) (Release, error)
	GetRelease(ctx context.Context, id string) (Release, error)
	ListReleases(ctx context.Context, f ReleaseFilter) ([]Release, error)
	// RecordDeployment is idempotent on Provider+RunID+Service+Environment:
	// a repeat updates status, finished_at and the rest, and created is false.
	RecordDeployment(ctx context.Context, d Deployment) (stored Deployment, created bool, err error)
	GetDeployment(ctx context.Context, id string) (Deployment, error)
	ListDeployments(ctx context.Context, f ReleaseFilter) ([]Deployment, error)
	// RequirePIR records that the release's review is required (pending);
	// a repeat is a no-op.
	RequirePIR(ctx context.Context, p PIR) error
	// SignOffPIR marks the release's review signed off, with an audit entry.
	// KindNotFound when no review is required for the release.
	SignOffPIR(ctx context.Context, releaseID, by, summary string, at time.Time) (PIR, error)
	GetPIR(ctx context.Context, releaseID string) (PIR, error)
}

// DecisionStore records gate decisions. SaveDecision is durable and in the
// audit chain before it returns.
type DecisionStore interface {
	SaveDecision(ctx context.Context, d GateDecision, actor string) error
	GetDecision(ctx context.Context, id string) (GateDecision, error)
}

// AuditFilter pages through the audit log.
type AuditFilter struct {
	AfterSeq int64 // rows with Seq > AfterSeq
	Limit    int
	Subject  string
	Action   string
}

// AuditLog is the append-only, hash-chained audit trail.
type AuditLog interface {
	// Append adds entries to the chain (Seq, PrevHash and Hash are assigned)
	// and returns once they are committed.
	Append(ctx context.Context, entries ...AuditEntry) error
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error)
	// VerifyAudit walks the whole chain; nil break means intact. rows is the
	// number of rows checked.
	VerifyAudit(ctx context.Context) (brk *AuditBreak, rows int64, err error)
}

// TokenStore keeps API tokens (hashes only).
type TokenStore interface {
	// CreateToken stores t (ID, Hash, Name, Role set) with an audit entry.
	CreateToken(ctx context.Context, t Token, actor string) error
	// TokenByHash returns the token with that hash, revoked or not.
	TokenByHash(ctx context.Context, hash string) (Token, error)
	ListTokens(ctx context.Context) ([]Token, error)
	// RevokeToken sets RevokedAt, with an audit entry.
	RevokeToken(ctx context.Context, id, actor string, at time.Time) error
}

// PolicyStore keeps the versioned policy document.
type PolicyStore interface {
	// PutPolicy stores source as the next version, with an audit entry, and
	// returns the version number.
	PutPolicy(ctx context.Context, source, actor string) (int, error)
	// CurrentPolicy returns the newest version; KindNotFound when none.
	CurrentPolicy(ctx context.Context) (PolicyVersion, error)
}

// MappingStore keeps versioned mapping profiles.
type MappingStore interface {
	// PutMapping stores a new version of the named profile (the old kept),
	// with an audit entry, and returns the version.
	PutMapping(ctx context.Context, name, source, actor string) (int, error)
	GetMapping(ctx context.Context, name string) (MappingProfile, error)
	ListMappings(ctx context.Context) ([]MappingProfile, error)
	MappingVersions(ctx context.Context, name string) ([]MappingProfile, error)
	// DeleteMapping marks the profile deleted (a new version), with an audit
	// entry.
	DeleteMapping(ctx context.Context, name, actor string) error
}

// EventFilter narrows an inbox listing.
type EventFilter struct {
	Status    string
	Connector string
	Limit     int
	After     string // the last id of the previous page
}

// EventStore is the durable inbox.
type EventStore interface {
	// InsertEvent stores e (pending) unless an event with the same connector
	// and dedupe key exists: then it returns that event's id and duplicate.
	// Deduplication is the database's unique index, not check-then-insert.
	InsertEvent(ctx context.Context, e Event) (id string, duplicate bool, err error)
	// ClaimEvents leases up to limit pending events to one worker for lease;
	// a crashed worker's events become claimable again when the lease ends.
	ClaimEvents(ctx context.Context, limit int, lease time.Duration) ([]Event, error)
	// FinishEvent sets the outcome (processed, quarantined or ignored).
	FinishEvent(ctx context.Context, id, status, reason, record string) error
	// RetryEvent records a transient failure of a pending event (its last
	// error) and makes it claimable again at retryAt.
	RetryEvent(ctx context.Context, id, lastError string, retryAt time.Time) error
	GetEvent(ctx context.Context, id string) (Event, error)
	ListEvents(ctx context.Context, f EventFilter) ([]Event, error)
	// ReplayEvent puts one event back to pending, claimable at once with
	// its attempts counted afresh (a pending one too), with an audit entry.
	ReplayEvent(ctx context.Context, id, actor string) error
	// ReplayQuarantined puts every quarantined event of a connector back to
	// pending, with an audit entry, and returns how many.
	ReplayQuarantined(ctx context.Context, connector, actor string) (int, error)
	// InboxLag returns the received time of the oldest pending event (zero
	// when none) and the number pending.
	InboxLag(ctx context.Context) (oldest time.Time, pending int, err error)
}
