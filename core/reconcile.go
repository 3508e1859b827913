package core

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The reconciler answers, for a deployment that already happened, "was it
// authorized?". It evaluates the gate's own rules (Evaluate) at the
// deployment's start with the facts as they stood then, so the gate and the
// reconciler are one implementation asked at two moments, and adds the
// reconcile-only rules below, each a small function saying when it fires.

// Finding severities.
const (
	// SeverityHigh: the deployment should not have happened (a rule that
	// denies, or the gate was bypassed).
	SeverityHigh = "high"
	// SeverityMedium: the deployment should have waited, or a follow-up
	// obligation (review, validation) was missed.
	SeverityMedium = "medium"
)

// ReconcileOptions are the reconcile-only rules' thresholds.
type ReconcileOptions struct {
	// ReviewWithin is how many business hours (the policy's calendar) an
	// emergency change has for its retrospective review (default 24h).
	ReviewWithin time.Duration `json:"review_within"`
	// ValidationWithin is how long (wall clock) an emergency deployment has
	// to report its post-deployment validation (default 4h).
	ValidationWithin time.Duration `json:"validation_within"`
	// LinksChangeGrace is how long after a deployment finished (or
	// started, while it has not) a report may still change its links
	// unremarked (default DefaultLinksChangeGrace).
	LinksChangeGrace time.Duration `json:"links_change_grace"`
}

// reconcileOptionsJSON is ReconcileOptions on the wire: durations as Go
// duration strings ("24h0m0s").
type reconcileOptionsJSON struct {
	ReviewWithin     string `json:"review_within"`
	ValidationWithin string `json:"validation_within"`
	LinksChangeGrace string `json:"links_change_grace,omitempty"`
}

// MarshalJSON writes the durations as strings.
func (o ReconcileOptions) MarshalJSON() ([]byte, error) {
	w := reconcileOptionsJSON{ReviewWithin: o.ReviewWithin.String(), ValidationWithin: o.ValidationWithin.String()}
	if o.LinksChangeGrace > 0 {
		w.LinksChangeGrace = o.LinksChangeGrace.String()
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (o *ReconcileOptions) UnmarshalJSON(b []byte) error {
	var w reconcileOptionsJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	for _, f := range []struct {
		s string
		d *time.Duration
	}{{w.ReviewWithin, &o.ReviewWithin}, {w.ValidationWithin, &o.ValidationWithin}, {w.LinksChangeGrace, &o.LinksChangeGrace}} {
		if f.s == "" {
			*f.d = 0
			continue
		}
		d, err := time.ParseDuration(f.s)
		if err != nil {
			return fmt.Errorf("reconcile options: %w", err)
		}
		*f.d = d
	}
	return nil
}

// WithDefaults fills zero thresholds with their defaults.
func (o ReconcileOptions) WithDefaults() ReconcileOptions {
	if o.ReviewWithin <= 0 {
		o.ReviewWithin = 24 * time.Hour
	}
	if o.ValidationWithin <= 0 {
		o.ValidationWithin = 4 * time.Hour
	}
	if o.LinksChangeGrace <= 0 {
		o.LinksChangeGrace = DefaultLinksChangeGrace
	}
	return o
}

// ReconcileOptions returns the policy's emergency timers (policy field
// emergency) and thresholds (reconcile), defaults filled.
func (cp *CompiledPolicy) ReconcileOptions() ReconcileOptions {
	var o ReconcileOptions
	if cp != nil {
		o.ReviewWithin = time.Duration(cp.src.Emergency.ReviewBusinessHours * float64(time.Hour))
		o.ValidationWithin = time.Duration(cp.src.Emergency.ValidationHours * float64(time.Hour))
		o.LinksChangeGrace = time.Duration(cp.src.Reconcile.LinksChangeGraceHours * float64(time.Hour))
	}
	return o.WithDefaults()
}

// Over returns o with its zero thresholds taken from base.
func (o ReconcileOptions) Over(base ReconcileOptions) ReconcileOptions {
	if o.ReviewWithin <= 0 {
		o.ReviewWithin = base.ReviewWithin
	}
	if o.ValidationWithin <= 0 {
		o.ValidationWithin = base.ValidationWithin
	}
	if o.LinksChangeGrace <= 0 {
		o.LinksChangeGrace = base.LinksChangeGrace
	}
	return o
}

// DecisionRef is the gate decision a deployment relied on, as much of it as
// a report shows.
type DecisionRef struct {
	ID            string    `json:"id"`
	ReleaseID     string    `json:"release_id"`
	Decision      Decision  `json:"decision"`
	EvaluatedAt   time.Time `json:"evaluated_at"`
	PolicyVersion int       `json:"policy_version"`
	Commit        string    `json:"commit,omitempty"`
	Actor         string    `json:"actor,omitempty"`
	// Digest is the artifact digest the gate check named (evidence
	// requirements with digest_matches_deployment compare with it).
	Digest  string   `json:"digest,omitempty"`
	Reasons []Reason `json:"reasons"`
}

// DeploymentFacts is one deployment with what the reconciler needs, as the
// store read it for a report with a given cut-off.
type DeploymentFacts struct {
	Deployment Deployment
	// Changes are the linked changes that existed at the deployment's start,
	// each the version in force then (the newest with ValidFrom <= start).
	Changes []ChangeVersion
	// ChangesAtCutoff are the same changes' newest versions as of the
	// report's cut-off (their retrospective review may come later), by
	// key.
	ChangesAtCutoff map[string]ChangeVersion
	// Incidents are the incidents active at the start that the policy counts
	// as major (Evaluate decides which of them affect the service).
	Incidents []Incident
	// PendingPIRs are the team's reviews required by the start and not
	// signed off then.
	PendingPIRs []PIR
	// Holds are the holds that may be in force at the start (the HOLD rule
	// keeps those active then that name the release's service, team or
	// environment), as recorded by the cut-off.
	Holds []Hold
	// Evidence is the release's evidence recorded by the start (and the
	// cut-off), oldest first.
	Evidence []Evidence
	// Decision is the gate decision the deployment names (DecisionID), or
	// else its release's newest decision at or before its start; nil when
	// there is none.
	Decision *DecisionRef
}

// Verdict is one deployment's outcome as a report judged it, kept so that
// later reports over the same deployment need not judge it again while
// nothing it was judged by changes (store.SaveVerdicts).
type Verdict struct {
	DeploymentID string
	StartedAt    time.Time
	Environment  string
	Service      string
	Team         string
	// Findings are the deployment's findings in evaluation order (none:
	// compliant).
	Findings []ReconcileFinding
	// Volatile verdicts hold only for the report that judged them: the
	// emergency timers ran against its cut-off, or the deployment was too
	// recent for every record of its start to have arrived.
	Volatile bool
}

// VerdictSettle is how long after its start a deployment's verdict stays
// volatile (records of its start may still be arriving), and how far
// before the last check of the stored verdicts the next one reads the
// records stored since: a record is stamped before its transaction
// commits, and replicas' clocks differ, by less than this.
const VerdictSettle = 5 * time.Minute

// VerdictPlan is what a report that reuses stored verdicts must judge.
type VerdictPlan struct {
	// ByID: only the Deployments listed (in start order); otherwise every
	// deployment of the period.
	ByID        bool
	Deployments []string
	// Reused counts the settled verdicts the report reuses, ReusedCompliant
	// those without findings.
	Reused, ReusedCompliant int
}

// RevisionQuery asks which deployments a schedule's earlier reports judged
// that something since may have given new findings (its revised
// findings): those of Environment (every one when "") started before
// Before and recorded by Since, the previous run's cut-off.
type RevisionQuery struct {
	Environment string
	Before      time.Time
	Since       time.Time
	// Cutoff is this run's: the records stored in (Since, Cutoff] are
	// those that may have changed a verdict.
	Cutoff time.Time
	// Limit bounds the deployments returned (the latest started first).
	Limit int
}

// DeploymentStart names a deployment and its start.
type DeploymentStart struct {
	ID        string
	StartedAt time.Time
}

// DeploymentRef identifies a deployment in a finding.
type DeploymentRef struct {
	ID          string     `json:"id"`
	ReleaseID   string     `json:"release_id,omitempty"`
	Service     string     `json:"service"`
	Environment string     `json:"environment"`
	Version     string     `json:"version"`
	Team        string     `json:"team,omitempty"`
	Commit      string     `json:"commit,omitempty"`
	Status      string     `json:"status"`
	StartedAt   time.Time  `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	Actor       string     `json:"actor,omitempty"`
	Provider    string     `json:"provider"`
	RunID       string     `json:"run_id"`
	URL         string     `json:"url,omitempty"`
}

// ChangeLineage is one linked change as the reconciler judged it: the
// version in force at the deployment's start and who asked and approved.
type ChangeLineage struct {
	Key         string        `json:"key"`
	Version     int           `json:"version"`
	ValidFrom   time.Time     `json:"valid_from"`
	Type        ChangeType    `json:"type"`
	State       string        `json:"state"`
	Approval    ApprovalState `json:"approval"`
	RequestedBy string        `json:"requested_by,omitempty"`
	Approvals   []Approval    `json:"approvals,omitempty"`
	ReviewedAt  *time.Time    `json:"reviewed_at,omitempty"`
}

// Lineage is how a deployment came to be authorized (or not): its changes
// as they stood and the gate decision that let it through.
type Lineage struct {
	Changes  []ChangeLineage `json:"changes"`
	Decision *DecisionRef    `json:"decision,omitempty"`
}

// Acknowledgement is a change manager's acceptance of a finding. An
// acknowledged finding stays in the report, shown as accepted.
type Acknowledgement struct {
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Comment string    `json:"comment"`
}

// ReconcileFinding is one violation found on one deployment.
type ReconcileFinding struct {
	// ID numbers the findings of a report from 1, in deployment order.
	ID       int    `json:"id"`
	Code     string `json:"code"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
	Ref      string `json:"ref,omitempty"`
	// ChangeKey and ChangeVersion name the change version the finding was
	// judged against, when it concerns one change.
	ChangeKey     string `json:"change_key,omitempty"`
	ChangeVersion int    `json:"change_version,omitempty"`
	// Controls are the compliance control ids of the evidence requirement
	// a finding concerns (EVIDENCE_MISSING, EVIDENCE_FAILED).
	Controls    []string         `json:"controls,omitempty"`
	Remediation string           `json:"remediation"`
	Deployment  DeploymentRef    `json:"deployment"`
	Lineage     Lineage          `json:"lineage"`
	Ack         *Acknowledgement `json:"ack,omitempty"`
}

// ReconcileDeployment returns the findings on one deployment (none: it was
// compliant). The gate rules are Evaluate at the deployment's start with
// df's as-of facts; every wait or deny reason is a finding. Then the
// reconcile-only rules: gateBypassed, linksChangedAfterDeploy,
// emergencyReviewOverdue and emergencyValidationOverdue, whose timers run
// until cutoff (a deadline not yet reached by the cut-off is no finding).
// An environment where the policy enables no gate rule (open) has no
// findings at all.
func ReconcileDeployment(cp *CompiledPolicy, df DeploymentFacts, cutoff time.Time, opts ReconcileOptions) []ReconcileFinding {
	fs, _ := ReconcileEvaluate(cp, df, cutoff, opts)
	return fs
}

// ReconcileEvaluate is ReconcileDeployment that also returns the gate's
// decision at the deployment's start (its reasons and how each evidence
// requirement was judged, for a report's proof and for simulation).
//
// Holds (HOLD) and evidence requirements (EVIDENCE_MISSING,
// EVIDENCE_FAILED) are judged as the gate judges them, with df's holds and
// the release's evidence recorded by the start; they apply even in an
// open environment, as at the gate, where the other rules do not.
func ReconcileEvaluate(cp *CompiledPolicy, df DeploymentFacts, cutoff time.Time, opts ReconcileOptions) ([]ReconcileFinding, GateDecision) {
	if cp == nil {
		cp = &CompiledPolicy{}
	}
	opts = opts.WithDefaults()
	d := &df.Deployment
	env, known := cp.ResolveEnvironment(d.Environment)
	if !known {
		env = strings.TrimSpace(d.Environment)
	}
	open := known && cp.rulesFor(cp.envPolicy(env), d.Service)&allRules == 0
	facts := asOfFacts(df)
	dec := Evaluate(cp, facts, d.StartedAt)
	if open && len(dec.Reasons) == 0 {
		return nil, dec
	}
	ref := deploymentRef(d, facts.ReleaseID)
	var out []ReconcileFinding
	// Most deployments have no finding: the lineage is built for the first.
	var (
		lineage  Lineage
		versions map[string]int
	)
	add := func(code, severity, ref0, msg string) *ReconcileFinding {
		if versions == nil {
			lineage, versions = changeLineage(df)
		}
		f := ReconcileFinding{
			Code: code, Severity: severity, Message: msg, Ref: ref0,
			Remediation: Remediation(code), Deployment: ref, Lineage: lineage,
		}
		if code == CodeEvidenceMissing || code == CodeEvidenceFailed {
			for _, m := range dec.Evidence {
				if m.Rule == ref0 {
					f.Controls = m.Controls
				}
			}
		}
		if v, ok := versions[strings.ToLower(ref0)]; ok && ref0 != "" {
			f.ChangeKey, f.ChangeVersion = ref0, v
		}
		out = append(out, f)
		return &out[len(out)-1]
	}
	for _, r := range dec.Reasons {
		sev := SeverityMedium
		if r.Result == Deny {
			sev = SeverityHigh
		}
		add(r.Code, sev, r.Ref, r.Message)
	}
	if open {
		return out, dec
	}
	if msg, ok := gateBypassed(df); ok {
		ref0 := ""
		if df.Decision != nil {
			ref0 = df.Decision.ID
		}
		add(CodeGateBypassed, SeverityHigh, ref0, msg)
	}
	if msg, ok := linksChangedAfterDeploy(d, opts.LinksChangeGrace); ok {
		add(CodeLinksChangedAfterDeploy, SeverityMedium, "", msg)
	}
	if dec.Emergency {
		emergencyFindings(cp, df, cutoff, opts, add)
	}
	return out, dec
}

// DefaultLinksChangeGrace is how long after a deployment finished (or
// started, while it has not) a report may still change its links
// unremarked, unless the policy says otherwise
// (reconcile.links_change_grace_hours): a CI system's webhook and the
// pipeline's own report of one run arrive seconds to minutes apart, in
// either order, and the one that comes second may fill in what the first
// did not know.
const DefaultLinksChangeGrace = time.Hour

// linksChangedAfterDeploy fires when a report changed the deployment's
// links (the change it implements, the incidents it fixes, the gate
// decision it names) more than grace after it ran: the
// deployment is judged by links it did not have when it ran, and the
// audit trail's deployment.links entries say what they were before.
func linksChangedAfterDeploy(d *Deployment, grace time.Duration) (string, bool) {
	if d.LinksChangedAt == nil {
		return "", false
	}
	ran, what := d.StartedAt, "started"
	if d.FinishedAt != nil {
		ran, what = *d.FinishedAt, "finished"
	}
	late := d.LinksChangedAt.Sub(ran)
	if late <= grace {
		return "", false
	}
	return fmt.Sprintf("a report changed the deployment's links (changes, incidents or gate decision) at %s, %s after it %s at %s: it is judged by links it did not have when it ran; the audit trail's deployment.links entries hold what they were",
		d.LinksChangedAt.UTC().Format(time.RFC3339), roughly(late), what, ran.UTC().Format(time.RFC3339)), true
}

// roughly writes a duration of an hour or more for a reader: whole days
// from two days on, else hours and minutes.
func roughly(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

func deploymentRef(d *Deployment, releaseID string) DeploymentRef {
	return DeploymentRef{
		ID: d.ID, ReleaseID: releaseID, Service: d.Service, Environment: d.Environment, Version: d.Version,
		Team: d.Team, Commit: d.Commit, Status: d.Status, StartedAt: d.StartedAt, FinishedAt: d.FinishedAt,
		Actor: d.Actor, Provider: d.Provider, RunID: d.RunID, URL: d.URL,
	}
}

// RequiresAnyEvidence reports whether some environment of the policy
// (the catch-all included) requires evidence.
func (cp *CompiledPolicy) RequiresAnyEvidence() bool {
	if cp == nil {
		return false
	}
	for _, e := range cp.src.Environments {
		if len(e.Evidence) > 0 {
			return true
		}
	}
	return false
}

// ControlProof is, in a report filtered by a control id, one deployment
// whose evidence requirements carrying the control all passed: the
// requirements as judged at its start and the evidence records they
// matched.
type ControlProof struct {
	// ID numbers the proofs of a report from 1, in deployment order.
	ID         int             `json:"id"`
	Control    string          `json:"control"`
	Deployment DeploymentRef   `json:"deployment"`
	Matches    []EvidenceMatch `json:"matches"`
	Evidence   []Evidence      `json:"evidence"`
}

// ForControl narrows one deployment's reconciliation to the evidence
// requirements carrying control (case-insensitively): inScope is false
// when its environment has none (the deployment is not relevant to the
// control); kept are the findings on those requirements; proof is set when
// there are none (every such requirement passed), with the evidence each
// matched.
func ForControl(df DeploymentFacts, fs []ReconcileFinding, dec GateDecision, control string) (kept []ReconcileFinding, proof *ControlProof, inScope bool) {
	var matches []EvidenceMatch
	for _, m := range dec.Evidence {
		if slices.ContainsFunc(m.Controls, func(c string) bool { return strings.EqualFold(c, control) }) {
			matches = append(matches, m)
		}
	}
	if len(matches) == 0 {
		return nil, nil, false
	}
	for _, f := range fs {
		if slices.ContainsFunc(matches, func(m EvidenceMatch) bool { return m.Rule == f.Ref }) &&
			(f.Code == CodeEvidenceMissing || f.Code == CodeEvidenceFailed) {
			kept = append(kept, f)
		}
	}
	if len(kept) > 0 {
		return kept, nil, true
	}
	d := &df.Deployment
	p := &ControlProof{Control: control, Deployment: deploymentRef(d, dec.ReleaseID), Matches: matches, Evidence: []Evidence{}}
	for _, e := range df.Evidence {
		if slices.ContainsFunc(matches, func(m EvidenceMatch) bool { return slices.Contains(m.Evidence, e.ID) }) {
			p.Evidence = append(p.Evidence, e)
		}
	}
	return nil, p, true
}

// asOfFacts turns a deployment's as-of records into the gate's Facts (its
// request rebuilt from the deployment).
func asOfFacts(df DeploymentFacts) Facts {
	d := &df.Deployment
	releaseID := d.ReleaseID
	if releaseID == "" {
		releaseID = ReleaseID(d.Service, d.Version, d.Environment)
	}
	facts := Facts{
		Request: GateRequest{
			Service: d.Service, Environment: d.Environment, Version: d.Version, Commit: d.Commit,
			Team: d.Team, Changes: d.Changes, Incidents: d.Incidents, Actor: d.Actor,
		},
		Changes:     make(map[string]Change, len(df.Changes)),
		Incidents:   df.Incidents,
		PendingPIRs: df.PendingPIRs,
		ReleaseID:   releaseID,
		Holds:       df.Holds,
		Evidence:    df.Evidence,
	}
	// The artifact digest is the one the gate check named for this release.
	if g := df.Decision; g != nil && g.ReleaseID == releaseID {
		facts.Request.Digest = g.Digest
	}
	for _, v := range df.Changes {
		c := v.Change
		c.Approvals = approvalsBy(c.Approvals, d.StartedAt)
		facts.Changes[v.Change.Key] = c
	}
	return facts
}

// approvalsBy returns the approvals given by at (those without a time
// count): a change version's approvals are read from the ITSM when the
// version is processed, which may be after a later approval was given,
// and an approval given after a deployment started did not authorize it
// (APPROVER_MISSING, SELF_APPROVAL). The slice is shared unless one is
// dropped.
func approvalsBy(as []Approval, at time.Time) []Approval {
	i := slices.IndexFunc(as, func(a Approval) bool { return a.At != nil && a.At.After(at) })
	if i < 0 {
		return as
	}
	out := slices.Clone(as[:i])
	for _, a := range as[i+1:] {
		if a.At == nil || !a.At.After(at) {
			out = append(out, a)
		}
	}
	return out
}

// changeLineage is what a deployment's findings carry of its changes and
// gate decision, and each linked change's version by lower-cased key.
func changeLineage(df DeploymentFacts) (Lineage, map[string]int) {
	versions := make(map[string]int, len(df.Changes))
	lineage := Lineage{Changes: make([]ChangeLineage, 0, len(df.Changes)), Decision: df.Decision}
	for _, v := range df.Changes {
		c := v.Change
		versions[strings.ToLower(c.Key)] = v.Version
		lineage.Changes = append(lineage.Changes, ChangeLineage{
			Key: c.Key, Version: v.Version, ValidFrom: v.ValidFrom, Type: c.Type, State: c.State, Approval: c.Approval,
			// The approvals as the rules saw them: given by the start.
			RequestedBy: c.RequestedBy, Approvals: approvalsBy(c.Approvals, df.Deployment.StartedAt), ReviewedAt: c.ReviewedAt,
		})
	}
	return lineage, versions
}

// emergencyFindings applies the emergency timers to a deployment that
// linked an emergency change: the review of each emergency change (as of
// the cut-off), and the deployment's validation. add returns the finding
// it added, valid until the next call.
//
// A review finding is judged on the change's version as of the cut-off,
// so it names that version (change_version) and carries the review time
// it judged in its lineage: the version in force at the start (what the
// other findings name) has no review yet.
func emergencyFindings(cp *CompiledPolicy, df DeploymentFacts, cutoff time.Time, opts ReconcileOptions, add func(code, severity, ref, msg string) *ReconcileFinding) {
	d := &df.Deployment
	for _, v := range df.Changes {
		if v.Change.Type != ChangeEmergency {
			continue
		}
		later, ok := df.ChangesAtCutoff[v.Change.Key]
		if !ok {
			later = v
		}
		if msg, ok := emergencyReviewOverdue(cp, d.StartedAt, later.Change, cutoff, opts.ReviewWithin); ok {
			f := add(CodeEmergencyReviewOverdue, SeverityMedium, v.Change.Key, msg)
			f.ChangeVersion = later.Version
			f.Lineage = withReview(f.Lineage, v.Change.Key, retrospectiveReview(later.Change, d.StartedAt))
		}
	}
	if msg, ok := emergencyValidationOverdue(*d, cutoff, opts.ValidationWithin); ok {
		add(CodeEmergencyValidationOverdue, SeverityMedium, "", msg)
	}
}

// withReview returns lineage with the review time of change key set to
// at, its changes copied (a deployment's findings share one lineage).
func withReview(lineage Lineage, key string, at *time.Time) Lineage {
	lineage.Changes = slices.Clone(lineage.Changes)
	for i := range lineage.Changes {
		if strings.EqualFold(lineage.Changes[i].Key, key) {
			lineage.Changes[i].ReviewedAt = at
		}
	}
	return lineage
}

// retrospectiveReview is c's review of a deployment started at start: a
// review before the deployment reviewed an earlier one, so it has none
// yet.
func retrospectiveReview(c Change, start time.Time) *time.Time {
	if c.ReviewedAt != nil && c.ReviewedAt.Before(start) {
		return nil
	}
	return c.ReviewedAt
}

// DecisionClockSkew is how much later than a deployment's reported start
// its gate decision may be stamped and still count as made before it: the
// start comes from the CI system's clock (often to the second), the
// decision from tollgate's.
const DecisionClockSkew = time.Minute

// gateBypassed fires when a deployment ran without the gate's allow for
// exactly its release and commit: when it names a gate decision that does
// not exist, belongs to another release, or was made after it started
// (by more than DecisionClockSkew);
// when there is no gate decision for its release at or before its start;
// when the decision in force at its start (the one it names, else the
// release's newest; the store gives a named allow's place to a later wait
// or deny of the release for the same code made by the start) was deny
// ("deployed after a deny") or wait ("deployed while waiting"); or when
// that allow was for another commit. A decision or deployment without a
// commit matches any commit, and an abbreviated commit the full one it
// begins (SameCommit, as the gate and the reviews compare them).
func gateBypassed(df DeploymentFacts) (string, bool) {
	d := &df.Deployment
	g := df.Decision
	start := d.StartedAt.UTC().Format(time.RFC3339)
	switch {
	case g == nil && d.DecisionID != "":
		return fmt.Sprintf("the deployment names gate decision %s, which does not exist", d.DecisionID), true
	case g == nil:
		return fmt.Sprintf("no gate decision was made for %s %s to %s before it was deployed at %s", orUnnamed(d.Service), orUnnamed(d.Version), orUnnamed(d.Environment), start), true
	case d.ReleaseID != "" && g.ReleaseID != d.ReleaseID:
		return fmt.Sprintf("the deployment names gate decision %s, which was about another release (%s)", g.ID, g.ReleaseID), true
	case g.EvaluatedAt.After(d.StartedAt.Add(DecisionClockSkew)):
		return fmt.Sprintf("gate decision %s was made at %s, after the deployment started at %s", g.ID, g.EvaluatedAt.UTC().Format(time.RFC3339), start), true
	case g.Decision == Deny:
		return fmt.Sprintf("deployed after a deny: gate decision %s at %s denied the release (%s)", g.ID, g.EvaluatedAt.UTC().Format(time.RFC3339), reasonCodes(g.Reasons)), true
	case g.Decision == Wait:
		return fmt.Sprintf("deployed while waiting: gate decision %s at %s said wait (%s)", g.ID, g.EvaluatedAt.UTC().Format(time.RFC3339), reasonCodes(g.Reasons)), true
	case g.Decision != Allow:
		return fmt.Sprintf("gate decision %s has no allow (%q)", g.ID, g.Decision), true
	case !SameCommit(d.Commit, g.Commit):
		return fmt.Sprintf("gate decision %s allowed commit %s, but commit %s was deployed", g.ID, g.Commit, d.Commit), true
	}
	return "", false
}

func reasonCodes(rs []Reason) string {
	if len(rs) == 0 {
		return "no reasons recorded"
	}
	codes := make([]string, 0, len(rs))
	for _, r := range rs {
		codes = append(codes, r.Code)
	}
	return strings.Join(codes, ", ")
}

// emergencyReviewOverdue fires for an emergency change deployed at start
// when its retrospective review (ReviewedAt in the change as of the
// cut-off) did not happen within `within` business hours of the start, in
// the policy's calendar (work days, hours, holidays), once that deadline
// has passed by the cut-off. A review still possible before the deadline
// is no finding yet.
func emergencyReviewOverdue(cp *CompiledPolicy, start time.Time, c Change, cutoff time.Time, within time.Duration) (string, bool) {
	deadline := cp.AddBusinessHours(start, within)
	c.ReviewedAt = retrospectiveReview(c, start)
	if c.ReviewedAt != nil && !c.ReviewedAt.After(deadline) {
		return "", false
	}
	if c.ReviewedAt == nil && !cutoff.After(deadline) {
		return "", false
	}
	hours := within.Hours()
	if c.ReviewedAt != nil {
		return fmt.Sprintf("emergency change %s was reviewed at %s, after its deadline %s (%g business hours after the deployment)",
			c.Key, c.ReviewedAt.UTC().Format(time.RFC3339), deadline.UTC().Format(time.RFC3339), hours), true
	}
	return fmt.Sprintf("emergency change %s has no retrospective review; it was due by %s (%g business hours after the deployment)",
		c.Key, deadline.UTC().Format(time.RFC3339), hours), true
}

// emergencyValidationOverdue fires for an emergency deployment that did not
// report its post-deployment validation — the pipeline reporting the run
// succeeded, with its finish time — within `within` of its start, once that
// time has passed by the cut-off. A run that failed or was rolled back was
// not validated.
func emergencyValidationOverdue(d Deployment, cutoff time.Time, within time.Duration) (string, bool) {
	deadline := d.StartedAt.Add(within)
	if d.Status == DeploySucceeded && d.FinishedAt != nil && !d.FinishedAt.After(deadline) {
		return "", false
	}
	if d.Status == DeployStarted && !cutoff.After(deadline) {
		return "", false
	}
	if d.Status == DeploySucceeded && d.FinishedAt == nil && !cutoff.After(deadline) {
		return "", false
	}
	switch d.Status {
	case DeployFailed, DeployRolledBack:
		return fmt.Sprintf("emergency deployment ended %s, not validated", d.Status), true
	case DeploySucceeded:
		if d.FinishedAt != nil {
			return fmt.Sprintf("emergency deployment was validated at %s, after its deadline %s (%s after the start)",
				d.FinishedAt.UTC().Format(time.RFC3339), deadline.UTC().Format(time.RFC3339), within), true
		}
	}
	return fmt.Sprintf("emergency deployment has no post-deployment validation; it was due by %s (%s after the start)",
		deadline.UTC().Format(time.RFC3339), within), true
}

// Remediation is the hint a report gives for a finding code.
func Remediation(code string) string {
	switch code {
	case CodeNoChange:
		return "Raise a retrospective change for the deployment, and make the pipeline link a change (or cover the service with a standard template)."
	case CodeChangeNotFound:
		return "Correct the change key in the pipeline, or synchronize the change from its ITSM."
	case CodeChangeNotApproved:
		return "Have the change approved (or a retrospective approval recorded) and make the pipeline wait for the gate."
	case CodeChangeIncomplete:
		return "Complete the change's risk assessment and backout plan."
	case CodeOutsideWindow:
		return "Deploy within the change's planned window, or have the window amended before deploying."
	case CodeScopeMismatch:
		return "Link a change that covers the service, or add the service to the change's scope."
	case CodeIncidentBlock:
		return "Review the deployment against the incident; link releases that fix an incident as its fix."
	case CodePIRPending:
		return "Sign off the team's pending post-implementation reviews before releasing again."
	case CodeFreeze:
		return "Deploy outside freeze windows, or use an emergency change when it cannot wait."
	case CodeSelfApproval:
		return "Have a second person approve changes: the deployer or requester may not be the only approver."
	case CodeGateBypassed:
		return "Make the pipeline call the gate and deploy only on allow, for the same release and commit."
	case CodeHold:
		return "Deployments must wait while a hold is in force: review the deployment with the change manager who placed the hold."
	case CodeEvidenceMissing:
		return "Attach the required evidence to the release (tollgate attest) before deploying, and make the pipeline wait for the gate."
	case CodeEvidenceFailed:
		return "Fix what the evidence reports (failed tests, findings above the threshold, a digest mismatch) and deploy a release whose evidence passes."
	case CodeApproverMissing:
		return "Have the required approver group approve the change before deploying."
	case CodeEmergencyReviewOverdue:
		return "Hold the emergency change's retrospective review and record it on the change."
	case CodeEmergencyValidationOverdue:
		return "Run and report the post-deployment validation of emergency deployments promptly."
	case CodeLinksChangedAfterDeploy:
		return "Check the audit trail's deployment.links entries for who changed the links and why; pipelines should name the change and gate decision when they report the deployment."
	}
	return "Review the deployment with its change owner."
}

// ReconcileSummary counts a report's outcome.
type ReconcileSummary struct {
	DeploymentsChecked int            `json:"deployments_checked"`
	Compliant          int            `json:"compliant"`
	Findings           int            `json:"findings"`
	ByCode             map[string]int `json:"by_code"`
	BySeverity         map[string]int `json:"by_severity"`
	// Acknowledged is how many findings a change manager has accepted so far
	// (filled when the report is read).
	Acknowledged int `json:"acknowledged"`
	// QuarantinedEvents counts the deliveries of the connectors that report
	// deployments, received in the period, that the inbox quarantined (an
	// unknown environment, a body no profile maps): deployments no report
	// can judge until an admin mends and replays them. Every environment's:
	// a quarantined delivery names none tollgate knows.
	QuarantinedEvents int `json:"quarantined_events"`
	// QueuedDeployments counts the deployments of the period and scope
	// still queued (DeployQueued): their CI held them and no report said
	// they ran, so none is judged. One that stays queued long after its
	// period may be a run whose later deliveries were lost.
	QueuedDeployments int `json:"queued_deployments"`
}

// NewReconcileSummary returns an empty summary.
func NewReconcileSummary() ReconcileSummary {
	return ReconcileSummary{ByCode: map[string]int{}, BySeverity: map[string]int{}}
}

// Add counts one deployment and its findings.
func (s *ReconcileSummary) Add(findings []ReconcileFinding) {
	s.DeploymentsChecked++
	if len(findings) == 0 {
		s.Compliant++
	}
	for _, f := range findings {
		s.Findings++
		s.ByCode[f.Code]++
		s.BySeverity[f.Severity]++
	}
}

// ReconcileQuery is the scope of a reconciliation report: deployments that
// started in [From, To), optionally of one environment, service or team.
type ReconcileQuery struct {
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	Environment string    `json:"environment,omitempty"`
	Service     string    `json:"service,omitempty"`
	Team        string    `json:"team,omitempty"`
	// Control, when set, narrows the report to the deployments whose
	// environment requires evidence carrying this compliance control id:
	// the findings on those requirements, and the proof (ControlProof) of
	// the deployments where they all passed.
	Control string `json:"control,omitempty"`
	// SkipEvidence lets the scan skip reading evidence: the caller's
	// policies require none (RequiresAnyEvidence). Not stored with a report.
	SkipEvidence bool `json:"-"`
	// ByID narrows the scan to the Deployments listed, in start order (the
	// ones without a stored verdict). Not stored with a report.
	ByID        bool     `json:"-"`
	Deployments []string `json:"-"`
	// RecordedAfter, when set, narrows the report to the deployments
	// recorded after it (and by the cut-off): a schedule's late arrivals,
	// recorded after its last report although they started before the
	// period it covers.
	RecordedAfter time.Time `json:"recorded_after,omitzero"`
	// UncoveredFrom, with RecordedAfter, adds the deployments started at
	// or after it, whenever recorded: a span between the schedule's
	// previous period (which ended here) and this one that no report of
	// the schedule covered (a period shorter than the interval between
	// fire times, fire times skipped).
	UncoveredFrom time.Time `json:"uncovered_from,omitzero"`
	// RevisedAfter, when set, makes the report a schedule's revised
	// findings: deployments its earlier reports judged (recorded by this
	// moment, their cut-off) judged again as of this report's cut-off,
	// because something since may have given them a finding (an
	// emergency timer run out, a record with an earlier validity); the
	// report holds only the findings no report of the schedule showed.
	// The deployments are listed (ByID).
	RevisedAfter time.Time `json:"revised_after,omitzero"`
	// Cutoff is the data cut-off: records stored after it are not read,
	// and the reconcile-only timers run until it.
	Cutoff time.Time `json:"cutoff"`
}

// Validate checks the period and names.
func (q ReconcileQuery) Validate() error {
	switch {
	case q.From.IsZero():
		return Invalid("from", "is required (RFC 3339)")
	case q.To.IsZero():
		return Invalid("to", "is required (RFC 3339)")
	case !q.To.After(q.From):
		return Invalid("to", "must be after from")
	}
	return nil
}

// Report is a stored reconciliation report (without its findings).
type Report struct {
	ID    string         `json:"id"`
	Kind  string         `json:"kind"`
	Name  string         `json:"name,omitempty"` // the schedule that made it, if any
	Query ReconcileQuery `json:"query"`
	// PolicyVersion is the policy the report judged by.
	PolicyVersion int              `json:"policy_version"`
	Options       ReconcileOptions `json:"options"`
	Summary       ReconcileSummary `json:"summary"`
	CreatedAt     time.Time        `json:"created_at"`
	CreatedBy     string           `json:"created_by,omitempty"`
}

// ReportKindReconciliation is the kind of reconciliation reports.
const ReportKindReconciliation = "reconciliation"
