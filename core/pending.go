package core

import "time"

// CodeDeadline is the reason a CI-side gate request (a GitHub deployment
// protection rule, a GitLab deployment approval) is rejected when it is
// still waiting at its deadline: fail closed.
const CodeDeadline = "DEADLINE"

// CodeTooManyWaiting is the reason a CI-side gate request is rejected on
// arrival when its repository (GitHub) or project (GitLab) already has
// as many requests waiting as its connector allows (max_open): fail
// closed, and the pipeline's author is told why, rather than one
// pipeline's flood crowding out every other team's requests.
const CodeTooManyWaiting = "TOO_MANY_WAITING"

// States of a PendingGate.
const (
	// PendingWaiting: the decision is wait; re-evaluated when a fact
	// changes, at the next time-flip moment and at the deadline.
	PendingWaiting = "pending"
	// PendingAnswering: decided (allow or deny, recorded); the answer to
	// the CI is being sent or retried.
	PendingAnswering = "answering"
	// PendingAnswered: the CI took the answer.
	PendingAnswered = "answered"
	// PendingFailed: the answer could not be delivered (the CI refused it,
	// or the retries ran out).
	PendingFailed = "failed"
	// PendingUnknown: an earlier delivery attempt may have been taken
	// (its reply was lost), the CI refused a later one, and the CI's own
	// state could not show whether the answer was taken; LastError says
	// what it shows. Never counted as answered.
	PendingUnknown = "unknown"
)

// PendingGate is a gate request from a CI that waits at its own gate for
// tollgate's answer: GitHub's deployment protection rule, GitLab's
// deployment approval. It is stored durably until answered, so any
// replica (or the same one after a restart) can answer it.
type PendingGate struct {
	ID         string `json:"id"`
	Connector  string `json:"connector"`
	Provider   string `json:"provider"`    // github, gitlab
	ExternalID string `json:"external_id"` // the CI's identity of the request (unique per connector)
	// Repository is where the request comes from: the GitHub repository
	// (owner/name) or GitLab project path, lower case. The requests
	// waiting at once are capped per repository.
	Repository string      `json:"repository,omitempty"`
	Request    GateRequest `json:"request"`
	// Target is what the connector needs to answer (callback run id,
	// installation, environment name, project and deployment ids).
	Target      map[string]string `json:"target,omitempty"`
	RunURL      string            `json:"run_url,omitempty"`
	State       string            `json:"state"`
	Decision    Decision          `json:"decision,omitempty"`
	DecisionID  string            `json:"decision_id,omitempty"`
	Reasons     []Reason          `json:"reasons"`
	Comment     string            `json:"comment,omitempty"`
	CreatedAt   time.Time         `json:"created_at"`
	Deadline    time.Time         `json:"deadline"`
	NextCheckAt time.Time         `json:"next_check_at"`
	Attempts    int               `json:"attempts,omitempty"`
	LastError   string            `json:"last_error,omitempty"`
	AnsweredAt  *time.Time        `json:"answered_at,omitempty"`
	// Claim is when the claim this copy was read under ends, as claimed
	// (zero: read unclaimed). The outcome of a claimed copy is saved only
	// while that claim still holds: a replica that outran its claim must
	// not overwrite what the replica that took the request over did.
	Claim time.Time `json:"-"`
}

// Kinds of waiting gate, as GET /api/v1/gate/pending names them.
const (
	// PendingKindProtectionRule is a GitHub deployment protection rule.
	PendingKindProtectionRule = "protection_rule"
	// PendingKindApproval is a GitLab deployment approval.
	PendingKindApproval = "approval"
	// PendingKindCheck is a long-polled gate check: held by the process
	// that serves it, never stored.
	PendingKindCheck = "check"
)

// Kind is the kind of CI gate p waits at: GitLab's deployment approval,
// else GitHub's deployment protection rule.
func (p PendingGate) Kind() string {
	if p.Provider == "gitlab" {
		return PendingKindApproval
	}
	return PendingKindProtectionRule
}

// ListedPendingStates are the states of the gate requests the listing of
// waiting gates shows: those a CI still waits on (waiting, answering)
// and those whose answer may never have reached it (failed, unknown).
// Answered ones are history.
func ListedPendingStates() []string {
	return []string{PendingWaiting, PendingAnswering, PendingFailed, PendingUnknown}
}

// PendingFilter selects a page of the stored gate requests in the order
// the listing of waiting gates shows them: oldest first (CreatedAt), then
// by id. Text filters compare case-insensitively, as the names a CI sends
// are spelled as it spells them.
type PendingFilter struct {
	// States are some of ListedPendingStates; none is all of them.
	States []string
	// Kind is PendingKindProtectionRule or PendingKindApproval; "" is any.
	Kind      string
	Provider  string
	Connector string
	// Service is the request's service.
	Service string
	// Environments are lower-case names, the request's environment one of
	// them (an environment's canonical name and aliases); none is any.
	Environments []string
	// After is the position of the previous page's last item; zero: from
	// the first.
	After PendingPosition
	Limit int
}

// PendingPosition is a place in the listing of waiting gates, which is
// ordered by Since (to the microsecond, as stored), stored requests
// before long-polled checks of the same instant, then by ID (a check's:
// the order it began waiting in its process).
type PendingPosition struct {
	Since time.Time
	Check bool
	ID    string
}

// IsZero reports whether p is the listing's start.
func (p PendingPosition) IsZero() bool { return p.Since.IsZero() && p.ID == "" }
