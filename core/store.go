package core

import (
	"context"
	"time"
)

// The types below are the vocabulary between tollgate's use cases and its
// storage. core declares no store interfaces: each consumer (the services,
// the HTTP layer's reader) declares the small interface it needs, and the
// store package implements them on PostgreSQL and SQLite (app asserts it
// at compile time). Store errors are wrapped *Error values: KindNotFound for
// a missing record, KindConflict for a uniqueness clash, KindUnavailable
// when the database cannot be reached.

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

// WithReplayableWrites marks the writes made under ctx as derived from
// input that is durable already and processed again when they are lost:
// the normalizer's records and outcomes, rebuilt from the inbox's stored
// deliveries. A store may acknowledge such a write before it is durable
// (on PostgreSQL its commit does not wait for the WAL flush), which takes
// the normalizer's flushes off the path of the writes that must wait for
// theirs (webhook deliveries, gate decisions). A crash of the database
// can then lose the last such commits — never part of one — and their
// events are pending again. Nothing answered to a caller outside
// tollgate may be written under it.
func WithReplayableWrites(ctx context.Context) context.Context {
	return context.WithValue(ctx, replayableKey{}, true)
}

// ReplayableWrites reports whether ctx is under WithReplayableWrites.
func ReplayableWrites(ctx context.Context) bool {
	v, _ := ctx.Value(replayableKey{}).(bool)
	return v
}

type replayableKey struct{}

// UpsertResult says what an upsert of a versioned record did.
type UpsertResult string

// Upsert outcomes.
const (
	UpsertCreated   UpsertResult = "created"   // first version stored
	UpsertUpdated   UpsertResult = "updated"   // a new version stored
	UpsertUnchanged UpsertResult = "unchanged" // same content as the newest version: nothing stored
	UpsertStale     UpsertResult = "stale"     // older than the newest version, and what the history already says at its stamp: nothing stored
	// UpsertPast: older than the newest version but not what the history
	// says at its stamp: kept in the history as what was true from then
	// (for the facts as of a moment and the reconciler); the current
	// state is unchanged.
	UpsertPast UpsertResult = "past"
)

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
	// ExcludeReleaseID leaves the release itself out of PendingPIRs
	// (core.PIR.HoldsBack: unless its review names another commit than
	// Commit).
	ExcludeReleaseID string
	// Commit is the commit checked, when the check names one.
	Commit string
	// Evidence reads the release's evidence too (the environment requires
	// some). Holds are always read.
	Evidence bool
}

// ReleaseFilter narrows a release or deployment listing.
type ReleaseFilter struct {
	Service     string
	Environment string
	// AlsoEnvironments are other names Environment's records may carry
	// (its names before a rename, kept as aliases): records of any match.
	AlsoEnvironments []string
	Team             string
	From, To         time.Time // on created_at (releases) / started_at (deployments)
	// Status narrows deployments to one status (queued: the runs their CI
	// still holds); releases have none.
	Status string
	Limit  int
	After  string // opaque cursor: the last id of the previous page
}

// AuditFilter pages through the audit log.
type AuditFilter struct {
	AfterSeq int64 // rows with Seq > AfterSeq
	Limit    int
	Subject  string
	Action   string
}

// EventFilter narrows an inbox listing.
type EventFilter struct {
	Status    string
	Connector string
	Limit     int
	After     string // the last id of the previous page
}
