package connectors

import (
	"context"
	"errors"
	"time"

	"github.com/tollgate-dev/tollgate/internal/inert"
)

// The API side of a connector (ServiceNow, Jira): what tollgate asks the
// ITSM or tells it. The service layer declares the interfaces it uses;
// these are the values that cross them, free of vendor types.

// Record is one raw record read from an ITSM's API, ready for the inbox:
// Type and Body are what a webhook delivery of it would carry (the
// ServiceNow record with its sys_class_name; a Jira issue wrapped as a
// jira:issue_updated delivery), so the same mapping profiles apply.
type Record struct {
	Type string
	// Key is the record's number or issue key.
	Key string
	// UpdatedAt is the source's own update stamp (the poll watermark).
	UpdatedAt time.Time
	Body      []byte
}

// NewChange describes the change tollgate opens for a release that links
// none.
type NewChange struct {
	ReleaseID   string
	Service     string
	Environment string
	Version     string
	Commit      string
	Team        string
	Actor       string
	RunURL      string
}

// Title is the change's short description.
func (n NewChange) Title() string {
	return "Deploy " + n.Service + " " + n.Version + " to " + n.Environment
}

// Description is the change's description: everything a reviewer needs
// to find the release and the pipeline.
// Each value is one line (inert.Line): a pipeline-given actor or commit
// must not add lines of its own.
func (n NewChange) Description() string {
	l := inert.Line
	s := "Opened by tollgate for release " + l(n.ReleaseID) + ".\n" +
		"Service: " + l(n.Service) + "\nVersion: " + l(n.Version) + "\nEnvironment: " + l(n.Environment)
	if n.Commit != "" {
		s += "\nCommit: " + l(n.Commit)
	}
	if n.Team != "" {
		s += "\nTeam: " + l(n.Team)
	}
	if n.Actor != "" {
		s += "\nRequested by pipeline actor: " + l(n.Actor)
	}
	if n.RunURL != "" {
		s += "\nRun: " + l(n.RunURL)
	}
	return s
}

// ErrCircuitOpen is what outbound clients return (wrapped) for a call
// their open circuit kept back: the system failed for every call lately,
// so the failure says nothing about what was asked.
var ErrCircuitOpen = errors.New("circuit open: the instance failed repeatedly; calls resume after a pause")

// ErrNotFound is what ITSM clients return (wrapped) for a record the
// instance does not have.
var ErrNotFound = notFound{}

type notFound struct{}

func (notFound) Error() string { return "not found" }

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// IsPermanent reports whether err is an answer that asking again will not
// change (a 4xx other than 408 and 429: bad credentials, a refused
// payload), as opposed to an outage worth retrying.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// APIHooks observe a connector's outbound calls.
type APIHooks struct {
	// Observe is told each call's outcome: ok, client_error,
	// server_error, error or circuit_open.
	Observe func(outcome string)
	// OnCircuit is told each circuit state change: closed, half-open,
	// open.
	OnCircuit func(state string)
	// Retry, when set, replaces the outbound client's retry and circuit
	// defaults (tests that fail an instance and heal it in seconds).
	Retry *RetryPolicy
}

// RetryPolicy tunes a connector's outbound client; zero fields keep the
// defaults (3 retries, 250ms-5s backoff, Retry-After capped at 60s, the
// circuit open for 30s after 5 failed calls).
type RetryPolicy struct {
	Max              int // retries after the first attempt; negative: none
	WaitMin, WaitMax time.Duration
	MaxRetryAfter    time.Duration
	FailuresToOpen   uint32
	OpenFor          time.Duration
}
