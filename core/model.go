package core

import (
	"encoding/json"
	"strings"
	"time"
)

// ChangeType is the kind of a change record.
type ChangeType string

// Change types. A standard change is pre-authorized by a template, a normal
// change needs approval, an emergency change bypasses the CAB and freezes
// but is flagged and must be reviewed retroactively.
const (
	ChangeStandard  ChangeType = "standard"
	ChangeNormal    ChangeType = "normal"
	ChangeEmergency ChangeType = "emergency"
)

// Valid reports whether t is one of the known change types.
func (t ChangeType) Valid() bool {
	return t == ChangeStandard || t == ChangeNormal || t == ChangeEmergency
}

// ApprovalState is a change's overall approval status.
type ApprovalState string

// Approval states.
const (
	ApprovalNotRequested ApprovalState = "not_requested"
	ApprovalRequested    ApprovalState = "requested"
	ApprovalApproved     ApprovalState = "approved"
	ApprovalRejected     ApprovalState = "rejected"
	ApprovalCanceled     ApprovalState = "canceled"
)

// Change states (canonical lifecycle, after mapping).
const (
	ChangeStateNew       = "new"
	ChangeStateAssess    = "assess"
	ChangeStateAuthorize = "authorize"
	ChangeStateScheduled = "scheduled"
	ChangeStateImplement = "implement"
	ChangeStateReview    = "review"
	ChangeStateClosed    = "closed"
	ChangeStateCanceled  = "canceled"
)

// Approval is one approver's decision on a change.
type Approval struct {
	Approver string `json:"approver"`
	// Name is the approver's display name when the source gives one
	// beside a user name in Approver (ServiceNow's approver.user_name and
	// display value): the same person is named either way elsewhere (a
	// change's requested_by is a display value).
	Name     string        `json:"name,omitempty"`
	Decision ApprovalState `json:"decision"` // requested, approved or rejected
	At       *time.Time    `json:"at,omitempty"`
	Comment  string        `json:"comment,omitempty"`
}

// Is reports whether the approval is person's, by user name or display
// name (case and surrounding space ignored).
func (a Approval) Is(person string) bool {
	person = strings.TrimSpace(person)
	return person != "" && (strings.EqualFold(strings.TrimSpace(a.Approver), person) || strings.EqualFold(strings.TrimSpace(a.Name), person))
}

// Change is the canonical change record, whatever system it came from.
type Change struct {
	Source            string        `json:"source"` // connector name
	Key               string        `json:"key"`    // CHG0000024, OPS-12 …
	Title             string        `json:"title,omitempty"`
	Type              ChangeType    `json:"type"`
	State             string        `json:"state"`
	Approval          ApprovalState `json:"approval"`
	Approvals         []Approval    `json:"approvals,omitempty"`
	Risk              string        `json:"risk,omitempty"`
	PlannedStart      *time.Time    `json:"planned_start,omitempty"`
	PlannedEnd        *time.Time    `json:"planned_end,omitempty"`
	Services          []string      `json:"services,omitempty"` // services / CIs in scope
	RequestedBy       string        `json:"requested_by,omitempty"`
	HasRiskAssessment bool          `json:"has_risk_assessment"`
	HasBackoutPlan    bool          `json:"has_backout_plan"`
	// Template is the standard-change template (catalog item / model) the
	// change was raised from, when any.
	Template string `json:"template,omitempty"`
	// ReviewedAt is when an emergency change got its retroactive review.
	ReviewedAt *time.Time `json:"reviewed_at,omitempty"`
	// PIRRequired / PIRSignedOff carry the source system's own PIR fields,
	// when it has them.
	PIRRequired  bool `json:"pir_required,omitempty"`
	PIRSignedOff bool `json:"pir_signed_off,omitempty"`
	// SourceUpdatedAt is the source system's own update stamp: an update with
	// an older stamp never overwrites a newer one.
	SourceUpdatedAt time.Time `json:"source_updated_at"`
}

// ChangeVersion is one version of a change with the time it became true.
type ChangeVersion struct {
	Version    int       `json:"version"`
	ValidFrom  time.Time `json:"valid_from"`  // when this version became true (the source's stamp)
	RecordedAt time.Time `json:"recorded_at"` // when tollgate stored it
	Change     Change    `json:"change"`
}

// Incident states (canonical).
const (
	IncidentOpen     = "open"
	IncidentResolved = "resolved"
	IncidentClosed   = "closed"
	IncidentCanceled = "canceled"
)

// Incident is the canonical incident record.
type Incident struct {
	Source   string     `json:"source"`
	Key      string     `json:"key"`
	Title    string     `json:"title,omitempty"`
	Priority int        `json:"priority"` // 1 is the most urgent; 0 unknown
	Major    bool       `json:"major"`
	State    string     `json:"state"`
	Services []string   `json:"services,omitempty"` // affected services; empty means unknown/global
	OpenedAt *time.Time `json:"opened_at,omitempty"`
	// ResolvedAt is set once the incident is resolved or closed.
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
	// FixChanges lists change keys linked as the incident's fix.
	FixChanges      []string  `json:"fix_changes,omitempty"`
	SourceUpdatedAt time.Time `json:"source_updated_at"`
}

// Active reports whether the incident is still open.
func (i Incident) Active() bool {
	return i.State != IncidentResolved && i.State != IncidentClosed && i.State != IncidentCanceled
}

// IncidentVersion is one version of an incident with the time it became true.
type IncidentVersion struct {
	Version    int       `json:"version"`
	ValidFrom  time.Time `json:"valid_from"`
	RecordedAt time.Time `json:"recorded_at"`
	Incident   Incident  `json:"incident"`
}

// Release is one version of one service bound for one environment.
type Release struct {
	ID             string    `json:"id"`
	Service        string    `json:"service"`
	Version        string    `json:"version"`
	Environment    string    `json:"environment"`
	Team           string    `json:"team,omitempty"`
	Commit         string    `json:"commit,omitempty"`
	Changes        []string  `json:"changes,omitempty"`         // linked change keys
	FixesIncidents []string  `json:"fixes_incidents,omitempty"` // incident keys this release fixes
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Deployment statuses. A run is queued while its CI holds it (waiting for
// a runner, a manual play, an approval): it has not touched the
// environment, so no report judges it, and its start is when it began
// running, not when it was queued.
const (
	DeployQueued     = "queued"
	DeployStarted    = "started"
	DeploySucceeded  = "succeeded"
	DeployFailed     = "failed"
	DeployRolledBack = "rolled_back"
)

// DeployStatuses lists the deployment statuses in the order a run moves
// through them.
func DeployStatuses() []string {
	return []string{DeployQueued, DeployStarted, DeploySucceeded, DeployFailed, DeployRolledBack}
}

// ValidDeployStatus reports whether s is a known deployment status.
func ValidDeployStatus(s string) bool {
	switch s {
	case DeployQueued, DeployStarted, DeploySucceeded, DeployFailed, DeployRolledBack:
		return true
	}
	return false
}

// Deployment is something a pipeline actually did to an environment.
// It is idempotent on Provider+RunID+Service+Environment.
type Deployment struct {
	ID          string     `json:"id"`
	ReleaseID   string     `json:"release_id,omitempty"`
	Service     string     `json:"service"`
	Environment string     `json:"environment"`
	Version     string     `json:"version"`
	Commit      string     `json:"commit,omitempty"`
	Team        string     `json:"team,omitempty"`
	Status      string     `json:"status"`
	StartedAt   time.Time  `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	Actor       string     `json:"actor,omitempty"`
	Changes     []string   `json:"changes,omitempty"`
	Incidents   []string   `json:"incidents,omitempty"`
	DecisionID  string     `json:"decision_id,omitempty"`
	Provider    string     `json:"provider"`
	RunID       string     `json:"run_id"`
	// CIDeploymentID is the CI's own id of the deployment (GitHub's
	// deployment id, GitLab's deployment_id) when its reports name one:
	// the CI gate request that held the deployment is found by it (the
	// run id is the job's or run's, which every reporter of the job
	// shares). Used while the report is recorded, not stored.
	CIDeploymentID string `json:"-"`
	URL            string `json:"url,omitempty"`
	// Source is the connector the event came from (SourceAPI for the
	// REST API).
	Source    string    `json:"source,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// LinksChangedAt is when a later report last changed the deployment's
	// links (Changes, Incidents, DecisionID); nil while they are its first
	// report's. Each change is in the audit trail (deployment.links).
	LinksChangedAt *time.Time `json:"links_changed_at,omitempty"`
}

// PIR statuses.
const (
	PIRPending   = "pending"
	PIRSignedOff = "signed_off"
)

// PIR is the post-implementation review of one release.
type PIR struct {
	ReleaseID   string `json:"release_id"`
	Service     string `json:"service"`
	Version     string `json:"version"`
	Environment string `json:"environment"`
	Team        string `json:"team"`
	// Commit is the commit whose deployment required the review (""
	// when it named none).
	Commit      string     `json:"commit,omitempty"`
	Status      string     `json:"status"` // pending or signed_off
	RequiredAt  time.Time  `json:"required_at"`
	SignedOffBy string     `json:"signed_off_by,omitempty"`
	SignedOffAt *time.Time `json:"signed_off_at,omitempty"`
	Summary     string     `json:"summary,omitempty"`
}

// HoldsBack reports whether p, if pending, holds back a release of service
// (version, environment) checked for team: the review is the team's (team
// names compared case-insensitively) or an earlier release's of the same
// service, and it is not the release's own (releaseID, or the same
// service, version and environment). The service matters besides the team
// because the team is the caller's word where the policy's catalog does
// not list the service: a check that omits the team, or spells it another
// way, is still held by its service's unreviewed releases, and a release
// reported without a team still holds its service's next one.
//
// The release's own review is left out only for its own code: when both
// the review and the release name a commit and they differ (a version
// label reused for other code), the release is held back by its own
// pending review like any other.
func (p PIR) HoldsBack(team, releaseID, service, version, env, commit string) bool {
	team, service = strings.TrimSpace(team), strings.TrimSpace(service)
	sameService := service != "" && strings.EqualFold(strings.TrimSpace(p.Service), service)
	own := p.ReleaseID == releaseID || (sameService && p.Version == strings.TrimSpace(version) && p.Environment == strings.TrimSpace(env))
	if own && SameCommit(p.Commit, commit) {
		return false
	}
	return own || sameService || (team != "" && strings.EqualFold(strings.TrimSpace(p.Team), team))
}

// SameCommit reports whether two commit references may name the same
// commit: one of them unknown (""), equal ignoring case, or one an
// abbreviation of the other (at least MinCommitPrefix characters): a
// pipeline may name a commit by its short hash in one call and its full
// hash in another.
func SameCommit(a, b string) bool {
	a, b = strings.ToLower(strings.TrimSpace(a)), strings.ToLower(strings.TrimSpace(b))
	if a == "" || b == "" || a == b {
		return true
	}
	if len(a) > len(b) {
		a, b = b, a
	}
	return len(a) >= MinCommitPrefix && strings.HasPrefix(b, a)
}

// MinCommitPrefix is the shortest abbreviation SameCommit takes for a
// commit (git's default short hash).
const MinCommitPrefix = 7

// ComparePIRs orders reviews by required time, then release id: the order
// facts and reports list pending reviews in.
func ComparePIRs(a, b PIR) int {
	if c := a.RequiredAt.Compare(b.RequiredAt); c != 0 {
		return c
	}
	return strings.Compare(a.ReleaseID, b.ReleaseID)
}

// Decision is a gate result.
type Decision string

// Gate results: allow goes ahead; wait may clear by itself (ask again);
// deny needs a person to change something.
const (
	Allow Decision = "allow"
	Wait  Decision = "wait"
	Deny  Decision = "deny"
)

// Reason codes (the DESIGN.md rule table). They are public: never rename.
const (
	CodeNoChange          = "NO_CHANGE"
	CodeChangeNotFound    = "CHANGE_NOT_FOUND"
	CodeChangeNotApproved = "CHANGE_NOT_APPROVED"
	CodeChangeIncomplete  = "CHANGE_INCOMPLETE"
	CodeOutsideWindow     = "OUTSIDE_WINDOW"
	CodeScopeMismatch     = "SCOPE_MISMATCH"
	CodeIncidentBlock     = "INCIDENT_BLOCK"
	CodePIRPending        = "PIR_PENDING"
	CodeFreeze            = "FREEZE"
	CodeSelfApproval      = "SELF_APPROVAL"
	// CodeHold: a change manager's hold on the service, team or
	// environment is in force (wait).
	CodeHold = "HOLD"
	// CodeEvidenceMissing: required evidence is absent for the artifact
	// (wait); CodeEvidenceFailed: it is there and fails (deny).
	CodeEvidenceMissing = "EVIDENCE_MISSING"
	CodeEvidenceFailed  = "EVIDENCE_FAILED"
	// CodeApproverMissing: a linked change lacks an approval from a group
	// the policy requires for its risk or tier, or, for an emergency
	// change, from the emergency approvers (wait).
	CodeApproverMissing            = "APPROVER_MISSING"
	CodeGateBypassed               = "GATE_BYPASSED"
	CodeEmergencyReviewOverdue     = "EMERGENCY_REVIEW_OVERDUE"
	CodeEmergencyValidationOverdue = "EMERGENCY_VALIDATION_OVERDUE"
	// CodeLinksChangedAfterDeploy (reconciliation only): a report changed
	// the deployment's links (changes, incidents, gate decision) more than
	// the policy's grace after it finished (or started, when it has not).
	CodeLinksChangedAfterDeploy = "LINKS_CHANGED_AFTER_DEPLOY"
	// CodeTeamIgnored is a note, not a rule: the request named a team the
	// service catalog contradicts, and the catalog's team was used. It never
	// changes the decision.
	CodeTeamIgnored = "TEAM_IGNORED"
)

// GateRules lists the codes the gate evaluates, in evaluation order.
var GateRules = []string{
	CodeNoChange, CodeChangeNotFound, CodeChangeNotApproved, CodeChangeIncomplete,
	CodeOutsideWindow, CodeScopeMismatch, CodeIncidentBlock, CodePIRPending,
	CodeFreeze, CodeSelfApproval, CodeHold, CodeEvidenceMissing, CodeEvidenceFailed,
	CodeApproverMissing,
}

// Reason explains one rule's verdict. Ref points at the record concerned
// (a change key, an incident key, a release id, a freeze name).
type Reason struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Ref     string   `json:"ref,omitempty"`
	Result  Decision `json:"result,omitempty"` // what this reason alone demands (wait/deny); empty for notes
	// Controls are the compliance control ids of the rule that fired
	// (evidence requirements), Evidence the evidence ids it judged.
	Controls []string `json:"controls,omitempty"`
	Evidence []string `json:"evidence,omitempty"`
}

// Pipeline identifies the CI run that asked.
type Pipeline struct {
	Provider string `json:"provider,omitempty"`
	RunID    string `json:"run_id,omitempty"`
	URL      string `json:"url,omitempty"`
}

// GateRequest is what a pipeline asks the gate.
type GateRequest struct {
	Service     string    `json:"service"`
	Environment string    `json:"environment"`
	Version     string    `json:"version"`
	Commit      string    `json:"commit,omitempty"`
	Team        string    `json:"team,omitempty"`
	Changes     []string  `json:"changes,omitempty"`
	Incidents   []string  `json:"incidents,omitempty"` // incident keys this release fixes
	Actor       string    `json:"actor,omitempty"`
	Pipeline    *Pipeline `json:"pipeline,omitempty"`
	// IgnoredTeam is the team the caller named when the service catalog
	// names another (set by CompiledPolicy.CanonicalRequest). It is not part
	// of the request body and selects nothing: Evaluate reports it in a
	// TEAM_IGNORED note.
	IgnoredTeam string `json:"-"`
	// Digest is the artifact's digest (sha256:…), which evidence
	// requirements with digest_matches_deployment compare.
	Digest string `json:"digest,omitempty"`
}

// Facts is everything the policy engine looks at for one release. The gate
// gathers them as of now; the reconciler as of a deployment's start.
type Facts struct {
	Request GateRequest `json:"request"`
	// Changes are the linked changes that were found, keyed by key.
	Changes map[string]Change `json:"changes"`
	// Incidents are the active incidents that affect the service or are
	// global (no services), as of the evaluation time.
	Incidents []Incident `json:"incidents"`
	// PendingPIRs are the team's earlier releases whose review is pending.
	PendingPIRs []PIR `json:"pending_pirs"`
	// ReleaseID is the release the request concerns (ReleaseID of its
	// service, version and environment).
	ReleaseID string `json:"release_id,omitempty"`
	// Holds are the holds in force at the evaluation time (every scope;
	// the HOLD rule picks those naming the release's service, team or
	// environment) and those starting or ending later (NextChange).
	Holds []Hold `json:"holds,omitempty"`
	// Evidence is what is attached to the release, as of the evaluation
	// time, oldest first.
	Evidence []Evidence `json:"evidence,omitempty"`
}

// GateDecision is one recorded answer of the gate.
type GateDecision struct {
	ID            string      `json:"decision_id"`
	ReleaseID     string      `json:"release_id"`
	Decision      Decision    `json:"decision"`
	Reasons       []Reason    `json:"reasons"`
	Emergency     bool        `json:"emergency,omitempty"`
	PolicyVersion int         `json:"policy_version"`
	EvaluatedAt   time.Time   `json:"evaluated_at"`
	Request       GateRequest `json:"request"`
	Facts         *Facts      `json:"facts,omitempty"`
	// WouldBe is, in an environment in observe mode, what enforcing would
	// have answered (wait or deny); Decision is then allow and Reasons say
	// why. Empty when enforcing, or when enforcing would allow too.
	WouldBe Decision `json:"would_be,omitempty"`
	// Evidence is how each of the environment's evidence requirements was
	// judged: rule id, controls, the evidence matched, the outcome.
	Evidence []EvidenceMatch `json:"evidence,omitempty"`
}

// Finding is one violation the reconciler found on a deployment.
type Finding struct {
	DeploymentID string          `json:"deployment_id"`
	Code         string          `json:"code"`
	Message      string          `json:"message"`
	Ref          string          `json:"ref,omitempty"`
	Evidence     json.RawMessage `json:"evidence,omitempty"`
}

// SourceAPI is the Source of a deployment reported through the REST API
// (POST /api/v1/deployments) rather than by a connector.
const SourceAPI = "api"
