package core

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// rule is one policy rule, found from its reason code: check reads the
// evaluation context and appends the rule's reasons (with ec.add); next,
// when set, reports the moments after ec.now at which the rule's verdict
// can change by time alone (NextChange).
//
// One implementation serves both moments: the gate evaluates the table at
// now, the reconciler at a deployment's start (Evaluate with the facts as
// of then). A rule needing more facts (the deployment and the decision it
// relied on for GATE_BYPASSED, evidence for EVIDENCE_*, holds for HOLD)
// reads them from the context, and a table of reconcile-only rules has the
// same type and is run over the same context.
type rule struct {
	code  string
	check func(ec *evalContext)
	next  func(ec *evalContext, consider func(time.Time))
}

// gateRules is the policy: one rule per gate reason code, in GateRules
// order (the order of a decision's reasons). A rule runs only when the
// release's environment enables it (CompiledPolicy.Rules).
var gateRules = [...]rule{
	{code: CodeNoChange, check: ruleNoChange},
	{code: CodeChangeNotFound, check: ruleChangeNotFound},
	{code: CodeChangeNotApproved, check: ruleChangeNotApproved},
	{code: CodeChangeIncomplete, check: ruleChangeIncomplete},
	{code: CodeOutsideWindow, check: ruleOutsideWindow, next: nextOutsideWindow},
	{code: CodeScopeMismatch, check: ruleScopeMismatch},
	{code: CodeIncidentBlock, check: ruleIncidentBlock},
	{code: CodePIRPending, check: rulePIRPending},
	{code: CodeFreeze, check: ruleFreeze, next: nextFreeze},
	{code: CodeSelfApproval, check: ruleSelfApproval},
	{code: CodeHold, check: ruleHold, next: nextHold},
	{code: CodeEvidenceMissing, check: ruleEvidenceMissing},
	{code: CodeEvidenceFailed, check: ruleEvidenceFailed},
	{code: CodeApproverMissing, check: ruleApproverMissing},
}

// ruleNoChange is NO_CHANGE: denies a release that links no change (blank
// keys count as none), unless a standard template with
// allow_without_change covers its service and environment.
func ruleNoChange(ec *evalContext) {
	if len(ec.links) > 0 || ec.cp.unlinkedTemplate(ec.req.Service, ec.env) != nil {
		return
	}
	ec.add(CodeNoChange, Deny, "", "no change is linked to the release of %s %s to %s; link an approved change or cover the service with a standard template",
		orUnnamed(ec.req.Service), orUnnamed(ec.req.Version), orUnnamed(ec.env))
}

// ruleChangeNotFound is CHANGE_NOT_FOUND: denies each linked key the facts
// do not hold (no connector has delivered it). Keys match exactly, else
// case-insensitively.
func ruleChangeNotFound(ec *evalContext) {
	links := ec.links
	for i := range links {
		l := &links[i]
		if !l.found {
			ec.add(CodeChangeNotFound, Deny, l.key, "change %s is not known to any connector; check the key, or wait until the change is synchronized", l.key)
		}
	}
}

// ruleChangeNotApproved is CHANGE_NOT_APPROVED, per linked change:
//   - a rejected or canceled approval, or a change in state canceled,
//     denies whatever the change type;
//   - otherwise an approved change passes, a standard change matching a
//     template passes, and an emergency change passes without waiting (the
//     decision is flagged Emergency instead);
//   - a change whose type is in the environment's approval_required waits,
//     whether approval was requested or not yet (a standard change matching
//     no template and a change of unknown type count as normal);
//   - other types pass.
func ruleChangeNotApproved(ec *evalContext) {
	links := ec.links
	for i := range links {
		l := &links[i]
		if !l.found {
			continue
		}
		c := &l.c
		switch {
		case c.Approval == ApprovalRejected:
			ec.add(CodeChangeNotApproved, Deny, l.key, "change %s was rejected (approval rejected); raise a new change", l.key)
		case c.Approval == ApprovalCanceled || c.State == ChangeStateCanceled:
			ec.add(CodeChangeNotApproved, Deny, l.key, "change %s is canceled (state %s, approval %s); link an active change", l.key, orUnnamed(c.State), orUnnamed(string(c.Approval)))
		case c.Approval == ApprovalApproved, l.template != nil, c.Type == ChangeEmergency:
		// Left here: normal, unmatched standard and unknown types, all of
		// which count as normal too.
		case ec.approval.has(c.Type) || ec.approval.has(ChangeNormal):
			if c.Approval == ApprovalRequested {
				ec.add(CodeChangeNotApproved, Wait, l.key, "change %s is awaiting approval (approval requested, state %s)", l.key, orUnnamed(c.State))
			} else {
				ec.add(CodeChangeNotApproved, Wait, l.key, "change %s has not been approved (approval %s, state %s); request approval", l.key, orUnnamed(string(c.Approval)), orUnnamed(c.State))
			}
		}
	}
}

// ruleChangeIncomplete is CHANGE_INCOMPLETE: denies each linked change
// without a risk assessment or a backout plan, except standard changes
// matching a template (pre-authorized).
func ruleChangeIncomplete(ec *evalContext) {
	links := ec.links
	for i := range links {
		l := &links[i]
		if !l.found || l.template != nil {
			continue
		}
		var missing string
		switch {
		case !l.c.HasRiskAssessment && !l.c.HasBackoutPlan:
			missing = "a risk assessment and a backout plan"
		case !l.c.HasRiskAssessment:
			missing = "a risk assessment"
		case !l.c.HasBackoutPlan:
			missing = "a backout plan"
		default:
			continue
		}
		ec.add(CodeChangeIncomplete, Deny, l.key, "change %s lacks %s; add it to the change", l.key, missing)
	}
}

// ruleOutsideWindow is OUTSIDE_WINDOW, per linked change: a change whose
// implementation is over (state review or closed) denies, whatever its
// type — an emergency change has no window to end, so a closed one would
// otherwise pass every freeze for good; before the planned start waits,
// after the planned end denies (both bounds are inside). A normal change
// (and an unmatched standard one) without a full planned window is
// denied; emergency and template-matched changes are checked against
// whatever bounds they have.
func ruleOutsideWindow(ec *evalContext) {
	links := ec.links
	for i := range links {
		l := &links[i]
		if !l.found {
			continue
		}
		c := &l.c
		start, end := c.PlannedStart, c.PlannedEnd
		needsWindow := l.template == nil && c.Type != ChangeEmergency
		switch {
		case c.State == ChangeStateReview || c.State == ChangeStateClosed:
			ec.add(CodeOutsideWindow, Deny, l.key, "change %s is in state %s: its implementation is over; link an open change", l.key, c.State)
		case needsWindow && (start == nil || end == nil):
			ec.add(CodeOutsideWindow, Deny, l.key, "change %s has no planned window (planned start and end); schedule the change", l.key)
		case start != nil && ec.now.Before(*start) && end != nil:
			ec.add(CodeOutsideWindow, Wait, l.key, "change %s's planned window opens at %s (until %s)", l.key, ec.ts(*start), ec.ts(*end))
		case start != nil && ec.now.Before(*start):
			ec.add(CodeOutsideWindow, Wait, l.key, "change %s's planned window opens at %s", l.key, ec.ts(*start))
		case end != nil && ec.now.After(*end):
			ec.add(CodeOutsideWindow, Deny, l.key, "change %s's planned window ended at %s; reschedule the change", l.key, ec.ts(*end))
		}
	}
}

// nextOutsideWindow: OUTSIDE_WINDOW changes when a linked change's window
// opens (inside from its start on) and just after it closes.
func nextOutsideWindow(ec *evalContext, consider func(time.Time)) {
	links := ec.links
	for i := range links {
		l := &links[i]
		if !l.found {
			continue
		}
		if s := l.c.PlannedStart; s != nil {
			consider(*s)
		}
		if e := l.c.PlannedEnd; e != nil {
			consider(e.Add(time.Nanosecond))
		}
	}
}

// ruleScopeMismatch is SCOPE_MISMATCH: denies each linked change whose
// services / CIs do not include the release's service (case-insensitively),
// and each that lists none.
func ruleScopeMismatch(ec *evalContext) {
	links := ec.links
	for i := range links {
		l := &links[i]
		if !l.found {
			continue
		}
		switch {
		case len(l.c.Services) == 0:
			ec.add(CodeScopeMismatch, Deny, l.key, "change %s lists no services; add %s to its services / CIs", l.key, orUnnamed(ec.req.Service))
		case !containsFold(l.c.Services, ec.req.Service):
			ec.add(CodeScopeMismatch, Deny, l.key, "change %s does not cover service %s (it lists %s); link the change for this service or add it to the change",
				l.key, orUnnamed(ec.req.Service), strings.Join(l.c.Services, ", "))
		}
	}
}

// ruleIncidentBlock is INCIDENT_BLOCK: waits for each active incident the
// policy counts as major (IsMajor) that lists the service, or lists none
// (global), or any service under major_incident.scope "all" — unless the
// request links a change the incident lists in FixChanges, or names it
// among the incidents it fixes (not with major_incident.fix_from_record).
func ruleIncidentBlock(ec *evalContext) {
	svc := ec.req.Service
	for i := range ec.f.Incidents {
		in := &ec.f.Incidents[i]
		if !in.Active() || !ec.cp.IsMajor(*in) {
			continue
		}
		global, onService := len(in.Services) == 0, containsFold(in.Services, svc)
		if !global && !onService && !ec.cp.scopeAll || ec.fixes(in) {
			continue
		}
		affects := "service " + orUnnamed(svc)
		switch {
		case global:
			affects = "all services"
		case !onService:
			affects = strings.Join(in.Services, ", ") + " (the policy blocks every release during a major incident)"
		}
		if ec.cp.major.FixFromRecord && containsFold(ec.req.Incidents, in.Key) {
			ec.add(CodeIncidentBlock, Wait, in.Key, "major incident %s%s is active and affects %s; the request names this release as its fix, but the policy takes the fix from the incident's record, which lists none of the release's changes (%s) as its fix; wait until it is resolved, or link the change the incident lists",
				in.Key, incidentDetail(in), affects, orUnnamed(strings.Join(ec.req.Changes, ", ")))
			continue
		}
		ec.add(CodeIncidentBlock, Wait, in.Key, "major incident %s%s is active and affects %s; wait until it is resolved, or link this release as its fix",
			in.Key, incidentDetail(in), affects)
	}
}

// rulePIRPending is PIR_PENDING: waits for each pending post-implementation
// review in the facts (the team's earlier releases; the team is the
// catalog's, see CompiledPolicy.Subject), except the release's own for its
// own code (PIR.HoldsBack: a review naming another commit holds it).
func rulePIRPending(ec *evalContext) {
	// One reason per pending review: a team can have dozens, so the room
	// is made once rather than by doubling.
	ec.reasons = slices.Grow(ec.reasons, len(ec.f.PendingPIRs))
	for i := range ec.f.PendingPIRs {
		p := &ec.f.PendingPIRs[i]
		if p.Status == PIRSignedOff || (ec.f.ReleaseID != "" && p.ReleaseID == ec.f.ReleaseID && SameCommit(p.Commit, ec.req.Commit)) {
			continue
		}
		if ec.f.ReleaseID != "" && p.ReleaseID == ec.f.ReleaseID {
			ec.add(CodePIRPending, Wait, p.ReleaseID, "release %s (%s %s to %s) was deployed from commit %s and awaits its post-implementation review; this check deploys commit %s under the same version: sign the review off first, or give the new code its own version",
				p.ReleaseID, orUnnamed(p.Service), orUnnamed(p.Version), orUnnamed(p.Environment), p.Commit, ec.req.Commit)
			continue
		}
		ec.add(CodePIRPending, Wait, p.ReleaseID, "release %s (%s %s to %s) of team %s awaits its post-implementation review; sign it off before the next release",
			p.ReleaseID, orUnnamed(p.Service), orUnnamed(p.Version), orUnnamed(p.Environment), orUnnamed(p.Team))
	}
}

// ruleFreeze is FREEZE: waits while a freeze covering the environment is
// active (CompiledPolicy.ActiveFreeze), unless the request links changes
// and every one of them is a known emergency change.
func ruleFreeze(ec *evalContext) {
	if ec.allEmergency {
		return
	}
	if name, until, ok := ec.cp.ActiveFreeze(ec.env, ec.now); ok {
		ec.add(CodeFreeze, Wait, name, "freeze %s is active for %s until %s; deploy after it ends, or link an emergency change", name, orUnnamed(ec.env), ec.ts(until))
	}
}

// nextFreeze: FREEZE changes when the freeze in force ends, or the next
// freeze covering the environment starts.
func nextFreeze(ec *evalContext, consider func(time.Time)) {
	if ec.allEmergency {
		return
	}
	if t, ok := ec.cp.nextFreezeChange(ec.env, ec.now); ok {
		consider(t)
	}
}

// ruleSelfApproval is SELF_APPROVAL: denies each linked change with exactly
// one distinct approver who approved when that person is the deployer (the
// request's actor) or the change's requester, case-insensitively
// (separation of duties).
func ruleSelfApproval(ec *evalContext) {
	actor := strings.TrimSpace(ec.req.Actor)
	links := ec.links
	for i := range links {
		l := &links[i]
		if !l.found {
			continue
		}
		approver, only := soleApprover(l.c.Approvals)
		if !only {
			continue
		}
		switch {
		case approver.Is(actor):
			ec.add(CodeSelfApproval, Deny, l.key, "change %s was approved only by %s, who is deploying it; separation of duties needs another approver", l.key, approver.Approver)
		case approver.Is(l.c.RequestedBy):
			ec.add(CodeSelfApproval, Deny, l.key, "change %s was approved only by %s, who requested it; separation of duties needs another approver", l.key, approver.Approver)
		}
	}
}

// noteTeamIgnored is the TEAM_IGNORED note (no rule: it changes no
// decision): the request named a team the service catalog contradicts.
func noteTeamIgnored(ec *evalContext) {
	if ec.req.IgnoredTeam != "" {
		ec.add(CodeTeamIgnored, "", ec.req.IgnoredTeam, "the request names team %s, but the service catalog says %s belongs to team %s; the catalog's team was used",
			ec.req.IgnoredTeam, ec.req.Service, ec.req.Team)
	}
}

// ruleHold is HOLD: waits for each hold in force that names the release's
// service, team or environment (case-insensitively), whatever else allows.
// It runs in every environment, whatever its preset or rules: a hold is a
// change manager's explicit stop.
func ruleHold(ec *evalContext) {
	for i := range ec.f.Holds {
		h := &ec.f.Holds[i]
		if !h.ActiveAt(ec.now) || !ec.holdApplies(h) {
			continue
		}
		until := "until it is lifted"
		if h.Until != nil {
			until = "until " + ec.ts(*h.Until) + " unless lifted earlier"
		}
		ec.add(CodeHold, Wait, h.ID, "%s %s is on hold by %s (%s) since %s, %s", h.Scope, h.Name, orUnnamed(h.CreatedBy), h.Reason, ec.ts(h.CreatedAt), until)
	}
}

// nextHold: HOLD changes when a hold in the facts that applies starts or
// expires (lifting one is a fact change, notified).
func nextHold(ec *evalContext, consider func(time.Time)) {
	for i := range ec.f.Holds {
		h := &ec.f.Holds[i]
		if !ec.holdApplies(h) || (h.LiftedAt != nil && !h.LiftedAt.After(ec.now)) {
			continue
		}
		consider(h.CreatedAt)
		if h.Until != nil {
			consider(*h.Until)
		}
	}
}

// holdApplies reports whether h names the release's service, team or
// environment; a team hold also holds the services it lists (Hold.Services).
func (ec *evalContext) holdApplies(h *Hold) bool {
	var target string
	switch h.Scope {
	case HoldScopeService:
		target = ec.req.Service
	case HoldScopeTeam:
		target = ec.req.Team
		if svc := strings.TrimSpace(ec.req.Service); svc != "" && slices.ContainsFunc(h.Services, func(s string) bool { return strings.EqualFold(s, svc) }) {
			return true
		}
	case HoldScopeEnvironment:
		target = ec.env
	}
	return target != "" && strings.EqualFold(strings.TrimSpace(h.Name), target)
}

// ruleEvidenceMissing is EVIDENCE_MISSING: waits for each requirement of
// the environment (environments.<env>.evidence) with no evidence of its
// kind attached to the release by now, or, with
// digest_matches_deployment, none naming the digest the check names (or
// the check names none), or, with a metric, none reporting it.
func ruleEvidenceMissing(ec *evalContext) {
	for i := range ec.judged() {
		m := &ec.matches[i]
		if m.Result != MatchMissing {
			continue
		}
		r := &ec.ce.evidence.reqs[i]
		ec.addEvidence(CodeEvidenceMissing, Wait, r, m, "required evidence %s (%s) is missing for %s %s to %s: %s%s",
			r.ID, r.Kind, orUnnamed(ec.req.Service), orUnnamed(ec.req.Version), orUnnamed(ec.env), ec.why[i], controlsNote(r.Controls))
	}
}

// ruleEvidenceFailed is EVIDENCE_FAILED: denies each requirement whose
// newest evidence of each name (of its kind) fails it: a status other than
// the required one (a failed test run, a signature that did not verify),
// findings above max_severity, a metric above max, or a digest other than
// the one deployed.
func ruleEvidenceFailed(ec *evalContext) {
	for i := range ec.judged() {
		m := &ec.matches[i]
		if m.Result != MatchFailed {
			continue
		}
		r := &ec.ce.evidence.reqs[i]
		ec.addEvidence(CodeEvidenceFailed, Deny, r, m, "required evidence %s (%s) fails for %s %s to %s: %s%s",
			r.ID, r.Kind, orUnnamed(ec.req.Service), orUnnamed(ec.req.Version), orUnnamed(ec.env), ec.why[i], controlsNote(r.Controls))
	}
}

func (ec *evalContext) addEvidence(code string, result Decision, r *EvidenceRequirement, m *EvidenceMatch, format string, args ...any) {
	ec.add(code, result, r.ID, format, args...)
	last := &ec.reasons[len(ec.reasons)-1]
	last.Controls, last.Evidence = r.Controls, m.Evidence
}

func controlsNote(controls []string) string {
	if len(controls) == 0 {
		return ""
	}
	return " (controls " + strings.Join(controls, ", ") + ")"
}

// judged judges every evidence requirement of the environment once per
// evaluation (both evidence rules read it) and returns the matches.
func (ec *evalContext) judged() []EvidenceMatch {
	if ec.matchesDone || ec.ce == nil {
		return ec.matches
	}
	ec.matchesDone = true
	reqs := ec.ce.evidence.reqs
	ec.matches, ec.why = make([]EvidenceMatch, len(reqs)), make([]string, len(reqs))
	for i := range reqs {
		ec.matches[i], ec.why[i] = judgeEvidence(&reqs[i], ec.f.Evidence, ec.req.Digest, ec.req.Commit, ec.now, ec.trusts)
	}
	return ec.matches
}

// trusts says why the environment checked no longer trusts the key that
// verified e's envelope, "" when it still does: a signed envelope vouches
// only while its key — the same public key, under the same id — is in the
// environment's signing_keys. A key taken out, or its id given a new key
// (rotated after a leak), stops vouching for what it signed before.
func (ec *evalContext) trusts(e *Evidence) string {
	if ec.ce == nil {
		return "no environment policy trusts it"
	}
	print, ok := ec.ce.prints[e.Signer]
	switch {
	case !ok:
		return fmt.Sprintf("key %s, which the environment no longer trusts", e.Signer)
	case e.SignerKey == "":
		// Recorded by a build that kept no fingerprint: judged as it
		// then was, by the id alone, so deployments it let through are
		// not all findings after an upgrade.
		return ""
	case print != e.SignerKey:
		return fmt.Sprintf("key %s as it was (%s); the id now names another key (%s)", e.Signer, e.SignerKey, print)
	}
	return ""
}

// newestEvidence is the newest record per name of kind recorded by now
// for commit (names in the order first seen), and the other commits
// evidence of the kind was attached for.
func newestEvidence(kind string, all []Evidence, commit string, now time.Time) (latest map[string]*Evidence, order, otherCommits []string) {
	latest = map[string]*Evidence{}
	for i := range all {
		e := &all[i]
		if e.Kind != kind || e.RecordedAt.After(now) {
			continue
		}
		if !SameCommit(e.Commit, commit) {
			if !slices.Contains(otherCommits, e.Commit) {
				otherCommits = append(otherCommits, e.Commit)
			}
			continue
		}
		if prev, ok := latest[e.Name]; !ok || !e.RecordedAt.Before(prev.RecordedAt) {
			if !ok {
				order = append(order, e.Name)
			}
			latest[e.Name] = e
		}
	}
	return latest, order, otherCommits
}

// judgeEvidence judges one requirement against the release's evidence as
// of now: the newest record per name of the requirement's kind counts,
// among those for the commit checked (SameCommit: evidence attached for
// another commit under the same version proves nothing about this one),
// and a signed envelope only while distrust finds nothing against its key.
func judgeEvidence(r *EvidenceRequirement, all []Evidence, digest, commit string, now time.Time, distrust func(*Evidence) string) (EvidenceMatch, string) {
	m := EvidenceMatch{Rule: r.ID, Kind: r.Kind, Controls: r.Controls, Result: MatchMissing}
	latest, order, otherCommits := newestEvidence(r.Kind, all, commit, now)
	if len(order) == 0 && len(otherCommits) > 0 {
		return m, fmt.Sprintf("the %s evidence attached is for commit %s, not %s; attach it for this commit with tollgate attest --commit",
			r.Kind, strings.Join(otherCommits, ", "), commit)
	}
	if len(order) == 0 {
		return m, "no " + r.Kind + " evidence is attached; attach it with tollgate attest"
	}
	var failed, missing []string
	for _, name := range order {
		e := latest[name]
		if e.Format == EvidenceFormatDSSE {
			if why := distrust(e); why != "" {
				missing = append(missing, fmt.Sprintf("%s was signed with %s; attest it again with a trusted key", e.Name, why))
				continue
			}
		}
		if r.DigestMatchesDeployment && digest == "" {
			missing = append(missing, "the gate check names no artifact digest to compare with")
			continue
		}
		if r.DigestMatchesDeployment && !strings.EqualFold(e.Digest, digest) {
			if e.Digest == "" {
				missing = append(missing, fmt.Sprintf("%s names no digest", e.Name))
			} else {
				failed = append(failed, fmt.Sprintf("%s is for digest %s, the deployment is %s", e.Name, e.Digest, digest))
			}
			m.Evidence = append(m.Evidence, e.ID)
			continue
		}
		m.Evidence = append(m.Evidence, e.ID)
		if e.Status != r.Require && !(r.Require == "" && e.Status == EvidencePassed) {
			failed = append(failed, fmt.Sprintf("%s is %s%s", e.Name, e.Status, evidenceDetail(e)))
			continue
		}
		if r.MaxSeverity != "" {
			got := "none"
			if e.Findings != nil {
				got = e.Findings.MaxSeverity
			}
			if SeverityRank(got) > SeverityRank(r.MaxSeverity) {
				failed = append(failed, fmt.Sprintf("%s found %s severity findings (at most %s allowed)%s", e.Name, got, r.MaxSeverity, evidenceDetail(e)))
				continue
			}
		}
		if r.Metric != "" && r.Max != nil {
			v, ok := e.Metrics[r.Metric]
			switch {
			case !ok:
				missing = append(missing, fmt.Sprintf("%s reports no %s", e.Name, r.Metric))
			case v > *r.Max:
				failed = append(failed, fmt.Sprintf("%s reports %s %g (at most %g)", e.Name, r.Metric, v, *r.Max))
			}
		}
	}
	switch {
	case len(failed) > 0:
		m.Result = MatchFailed
		return m, strings.Join(failed, "; ")
	case len(missing) > 0:
		return m, strings.Join(missing, "; ")
	}
	m.Result = MatchPassed
	return m, ""
}

func evidenceDetail(e *Evidence) string {
	switch {
	case e.Tests != nil:
		return fmt.Sprintf(" (%d tests: %d failures, %d errors, %d skipped)", e.Tests.Tests, e.Tests.Failures, e.Tests.Errors, e.Tests.Skipped)
	case e.Findings != nil:
		return fmt.Sprintf(" (%d findings, highest %s)", e.Findings.Findings, e.Findings.MaxSeverity)
	}
	return ""
}

// ruleApproverMissing is APPROVER_MISSING, per linked change: waits until
// the change carries an approval from each group the policy's approvals
// require for the change's risk or the service's tier (a member of the
// group in approver_groups, the group itself, or a fallback approver), and,
// for an emergency change when emergency_approvers is set, one from an
// emergency approver. Approvals are as the ITSM recorded them.
func ruleApproverMissing(ec *evalContext) {
	p := &ec.cp.src
	tier := ec.cp.Subject(ec.req.Service, ec.env, ec.req.Team).Tier
	links := ec.links
	for i := range links {
		l := &links[i]
		if !l.found {
			continue
		}
		c := &l.c
		if c.Type == ChangeEmergency && len(p.EmergencyApprovers) > 0 && !ec.emergencyApproved(c) {
			ec.add(CodeApproverMissing, Wait, l.key, "emergency change %s has no approval from an emergency approver (%s)", l.key, strings.Join(p.EmergencyApprovers, ", "))
		}
		for _, r := range p.Approvals {
			if (r.When.Risk != "" && !strings.EqualFold(r.When.Risk, c.Risk)) || (r.When.Tier != "" && !strings.EqualFold(r.When.Tier, tier)) {
				continue
			}
			for _, g := range r.Groups {
				if _, ok := ec.cp.approvedBy(c, g, p.ApproverGroups[g]); !ok {
					ec.add(CodeApproverMissing, Wait, l.key, "change %s needs an approval from group %s (risk %s, tier %s)", l.key, g, orUnnamed(c.Risk), orUnnamed(tier))
				}
			}
		}
	}
}

// emergencyApproved: an approver of c is an emergency approver, by name or
// as a member of a group named there.
func (ec *evalContext) emergencyApproved(c *Change) bool {
	p := &ec.cp.src
	for _, who := range p.EmergencyApprovers {
		if _, ok := ec.cp.approvedBy(c, who, p.ApproverGroups[who]); ok {
			return true
		}
	}
	return false
}
