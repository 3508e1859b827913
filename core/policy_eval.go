package core

import (
	"fmt"
	"strings"
	"time"
)

// evalContext is what every rule reads: the request as the policy names it,
// the facts, the compiled environment policy and its enabled rules, the
// linked changes, and the moment of evaluation.
type evalContext struct {
	cp       *CompiledPolicy
	f        *Facts
	req      *GateRequest
	now      time.Time
	env      string       // canonical environment (trimmed input when unknown)
	ce       *compiledEnv // nil for an unknown environment
	rules    ruleSet
	approval typeSet // change types whose approval is awaited
	// linkBuf[:nlinks] (or more, past its size) are the request's change
	// keys, deduplicated case-insensitively, in request order: see links.
	// Kept inline, not as a slice of the context's own array, so the
	// context can live on its evaluator's stack.
	nlinks  int
	linkBuf [4]linked
	more    []linked
	// allEmergency: the request links changes and every one is a known
	// emergency change; emergency: any linked change is one.
	allEmergency, emergency bool
}

// init canonicalizes f.Request (CompiledPolicy.CanonicalRequest: the policy,
// not the caller's spelling, names the service, environment and team, and
// so the rules) and gathers what the rules read.
func (ec *evalContext) init(cp *CompiledPolicy, f *Facts, now time.Time) {
	f.Request, _ = cp.CanonicalRequest(f.Request)
	ec.cp, ec.f, ec.req, ec.now = cp, f, &f.Request, now
	ec.env = f.Request.Environment
	ec.ce = cp.envPolicy(ec.env)
	ec.rules = cp.rulesFor(ec.ce, f.Request.Service)
	ec.approval = typeBit(ChangeNormal)
	if ec.ce != nil {
		ec.approval = ec.ce.approval
	}
	ec.allEmergency = true
	for _, k := range f.Request.Changes {
		k = strings.TrimSpace(k)
		if k == "" || hasKey(ec.links(), k) {
			continue
		}
		l := linked{key: k}
		l.c, l.found = lookupChange(f.Changes, k)
		if l.found {
			l.template = cp.template(&l.c, f.Request.Service, ec.env)
			if l.c.Type == ChangeEmergency {
				ec.emergency = true
			}
		}
		if !l.found || l.c.Type != ChangeEmergency {
			ec.allEmergency = false
		}
		switch {
		case ec.more != nil:
			ec.more = append(ec.more, l)
		case ec.nlinks < len(ec.linkBuf):
			ec.linkBuf[ec.nlinks] = l
			ec.nlinks++
		default:
			ec.more = append(append(make([]linked, 0, 2*len(ec.linkBuf)), ec.linkBuf[:]...), l)
		}
	}
	if len(ec.links()) == 0 {
		ec.allEmergency = false
	}
}

// links returns the linked changes.
func (ec *evalContext) links() []linked {
	if ec.more != nil {
		return ec.more
	}
	return ec.linkBuf[:ec.nlinks]
}

// linked is one change key of a request with what the facts know about it.
type linked struct {
	key      string
	found    bool
	c        Change
	template *compiledTemplate // the standard template pre-authorizing it
}

// Evaluate applies the policy to the facts of one release at now. It is
// pure: the same inputs always give the same decision.
//
// Only the rules enabled for the request's environment (plus the
// customer-facing extras for a customer-facing service) are evaluated; an
// environment the policy does not know gets every rule (fail closed — the
// API rejects unknown environments before asking). Each rule adds Reasons
// with Result wait or deny; the decision is deny if any reason denies, else
// wait if any waits, else allow. Reasons come in GateRules order, and within
// a rule in the order of the request's change keys.
//
// Decisions on the rules' edge cases:
//   - NO_CHANGE: waived when a standard template with allow_without_change
//     covers the service and environment.
//   - CHANGE_NOT_APPROVED: a rejected or canceled approval, or a change in
//     state canceled, denies whatever the change type. Otherwise an approved
//     change passes; a standard change matching a template passes; an
//     emergency change passes without waiting (the decision is flagged
//     Emergency, with no reason); a change whose type is in the environment's
//     approval_required waits, whether approval was requested or not yet (a
//     standard change matching no template and a change of unknown type also
//     count as normal); other types pass.
//   - CHANGE_INCOMPLETE: every change except template-matched standard ones
//     needs a risk assessment and a backout plan.
//   - OUTSIDE_WINDOW: before the planned start waits, after the planned end
//     denies (both bounds inclusive). A normal change (and an unmatched
//     standard one) without a full planned window is denied; emergency and
//     template-matched changes are checked against whatever bounds they have.
//   - SCOPE_MISMATCH: the request's service must be among each change's
//     services, case-insensitively; a change listing none is denied.
//   - INCIDENT_BLOCK: an active incident IsMajor that lists the service, or
//     lists none (global), or any service under scope "all", waits — unless
//     the request names it among the incidents it fixes or links a change
//     the incident lists in FixChanges.
//   - PIR_PENDING: each pending PIR of another release waits.
//   - FREEZE: an active freeze covering the environment waits, unless the
//     request links changes and every one of them is a known emergency change.
//   - SELF_APPROVAL: denies when the change has exactly one distinct approver
//     who approved and that person is the deployer (request actor) or the
//     change's requester, case-insensitively.
//
// Emergency is set when any linked change is an emergency change. ID is
// left empty for the recorder.
func Evaluate(cp *CompiledPolicy, f Facts, now time.Time) GateDecision {
	if cp == nil {
		cp = &CompiledPolicy{}
	}
	loc := cp.Location()
	var ec evalContext
	ec.init(cp, &f, now)
	req, env, rules, approvalTypes, links, allEmergency := ec.req, ec.env, ec.rules, ec.approval, ec.links(), ec.allEmergency
	dec := GateDecision{
		ReleaseID:     f.ReleaseID,
		PolicyVersion: cp.version,
		EvaluatedAt:   now,
		Request:       f.Request,
		Reasons:       []Reason{},
		Emergency:     ec.emergency,
	}

	add := func(code string, result Decision, ref, format string, args ...any) {
		dec.Reasons = append(dec.Reasons, Reason{Code: code, Message: fmt.Sprintf(format, args...), Ref: ref, Result: result})
	}
	ts := func(t time.Time) string { return t.In(loc).Format(time.RFC3339) }

	if rules.has(CodeNoChange) && len(links) == 0 && cp.unlinkedTemplate(req.Service, env) == nil {
		add(CodeNoChange, Deny, "", "no change is linked to the release of %s %s to %s; link an approved change or cover the service with a standard template",
			orUnnamed(req.Service), orUnnamed(req.Version), orUnnamed(env))
	}
	if rules.has(CodeChangeNotFound) {
		for i := range links {
			if !links[i].found {
				add(CodeChangeNotFound, Deny, links[i].key, "change %s is not known to any connector; check the key, or wait until the change is synchronized", links[i].key)
			}
		}
	}
	if rules.has(CodeChangeNotApproved) {
		for i := range links {
			l := &links[i]
			if !l.found {
				continue
			}
			c := &l.c
			switch {
			case c.Approval == ApprovalRejected:
				add(CodeChangeNotApproved, Deny, l.key, "change %s was rejected (approval rejected); raise a new change", l.key)
			case c.Approval == ApprovalCanceled || c.State == ChangeStateCanceled:
				add(CodeChangeNotApproved, Deny, l.key, "change %s is canceled (state %s, approval %s); link an active change", l.key, orUnnamed(c.State), orUnnamed(string(c.Approval)))
			case c.Approval == ApprovalApproved, l.template != nil, c.Type == ChangeEmergency:
			// Left here: normal, unmatched standard and unknown types, all of
			// which count as normal too.
			case approvalTypes.has(c.Type) || approvalTypes.has(ChangeNormal):
				if c.Approval == ApprovalRequested {
					add(CodeChangeNotApproved, Wait, l.key, "change %s is awaiting approval (approval requested, state %s)", l.key, orUnnamed(c.State))
				} else {
					add(CodeChangeNotApproved, Wait, l.key, "change %s has not been approved (approval %s, state %s); request approval", l.key, orUnnamed(string(c.Approval)), orUnnamed(c.State))
				}
			}
		}
	}
	if rules.has(CodeChangeIncomplete) {
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
			add(CodeChangeIncomplete, Deny, l.key, "change %s lacks %s; add it to the change", l.key, missing)
		}
	}
	if rules.has(CodeOutsideWindow) {
		for i := range links {
			l := &links[i]
			if !l.found {
				continue
			}
			c := &l.c
			start, end := c.PlannedStart, c.PlannedEnd
			needsWindow := l.template == nil && c.Type != ChangeEmergency
			switch {
			case needsWindow && (start == nil || end == nil):
				add(CodeOutsideWindow, Deny, l.key, "change %s has no planned window (planned start and end); schedule the change", l.key)
			case start != nil && now.Before(*start):
				if end != nil {
					add(CodeOutsideWindow, Wait, l.key, "change %s's planned window opens at %s (until %s)", l.key, ts(*start), ts(*end))
				} else {
					add(CodeOutsideWindow, Wait, l.key, "change %s's planned window opens at %s", l.key, ts(*start))
				}
			case end != nil && now.After(*end):
				add(CodeOutsideWindow, Deny, l.key, "change %s's planned window ended at %s; reschedule the change", l.key, ts(*end))
			}
		}
	}
	if rules.has(CodeScopeMismatch) {
		for i := range links {
			l := &links[i]
			if !l.found {
				continue
			}
			switch {
			case len(l.c.Services) == 0:
				add(CodeScopeMismatch, Deny, l.key, "change %s lists no services; add %s to its services / CIs", l.key, orUnnamed(req.Service))
			case !containsFold(l.c.Services, strings.TrimSpace(req.Service)):
				add(CodeScopeMismatch, Deny, l.key, "change %s does not cover service %s (it lists %s); link the change for this service or add it to the change",
					l.key, orUnnamed(req.Service), strings.Join(l.c.Services, ", "))
			}
		}
	}
	if rules.has(CodeIncidentBlock) {
		for i := range f.Incidents {
			in := &f.Incidents[i]
			if !in.Active() || !cp.IsMajor(*in) {
				continue
			}
			global := len(in.Services) == 0
			if !global && !cp.scopeAll && !containsFold(in.Services, strings.TrimSpace(req.Service)) {
				continue
			}
			if fixes(req, in, links) {
				continue
			}
			affects := "service " + orUnnamed(req.Service)
			switch {
			case global:
				affects = "all services"
			case !containsFold(in.Services, strings.TrimSpace(req.Service)):
				affects = strings.Join(in.Services, ", ") + " (the policy blocks every release during a major incident)"
			}
			add(CodeIncidentBlock, Wait, in.Key, "major incident %s%s is active and affects %s; wait until it is resolved, or link this release as its fix",
				in.Key, incidentDetail(in), affects)
		}
	}
	if rules.has(CodePIRPending) {
		for i := range f.PendingPIRs {
			p := &f.PendingPIRs[i]
			if p.Status == PIRSignedOff || (f.ReleaseID != "" && p.ReleaseID == f.ReleaseID) {
				continue
			}
			add(CodePIRPending, Wait, p.ReleaseID, "release %s (%s %s to %s) of team %s awaits its post-implementation review; sign it off before the next release",
				p.ReleaseID, orUnnamed(p.Service), orUnnamed(p.Version), orUnnamed(p.Environment), orUnnamed(p.Team))
		}
	}
	if rules.has(CodeFreeze) && !allEmergency {
		if name, until, ok := cp.ActiveFreeze(env, now); ok {
			add(CodeFreeze, Wait, name, "freeze %s is active for %s until %s; deploy after it ends, or link an emergency change", name, orUnnamed(env), ts(until))
		}
	}
	if rules.has(CodeSelfApproval) {
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
			case req.Actor != "" && strings.EqualFold(approver, strings.TrimSpace(req.Actor)):
				add(CodeSelfApproval, Deny, l.key, "change %s was approved only by %s, who is deploying it; separation of duties needs another approver", l.key, approver)
			case l.c.RequestedBy != "" && strings.EqualFold(approver, strings.TrimSpace(l.c.RequestedBy)):
				add(CodeSelfApproval, Deny, l.key, "change %s was approved only by %s, who requested it; separation of duties needs another approver", l.key, approver)
			}
		}
	}

	if req.IgnoredTeam != "" {
		add(CodeTeamIgnored, "", req.IgnoredTeam, "the request names team %s, but the service catalog says %s belongs to team %s; the catalog's team was used",
			req.IgnoredTeam, req.Service, req.Team)
	}

	dec.Decision = Allow
	for i := range dec.Reasons {
		switch dec.Reasons[i].Result {
		case Deny:
			dec.Decision = Deny
		case Wait:
			if dec.Decision == Allow {
				dec.Decision = Wait
			}
		}
	}
	dec.Facts = &f
	return dec
}

func hasKey(links []linked, k string) bool {
	for i := range links {
		if strings.EqualFold(links[i].key, k) {
			return true
		}
	}
	return false
}

// lookupChange finds key in changes, exactly or else case-insensitively.
func lookupChange(changes map[string]Change, key string) (Change, bool) {
	if c, ok := changes[key]; ok {
		return c, true
	}
	for k, c := range changes {
		if strings.EqualFold(k, key) {
			return c, true
		}
	}
	return Change{}, false
}

// fixes reports whether the request is linked as the incident's fix.
func fixes(req *GateRequest, in *Incident, links []linked) bool {
	if containsFold(req.Incidents, in.Key) {
		return true
	}
	for i := range links {
		if containsFold(in.FixChanges, links[i].key) {
			return true
		}
	}
	return false
}

func incidentDetail(in *Incident) string {
	switch {
	case in.Title != "" && in.Priority > 0:
		return fmt.Sprintf(" (%s, priority %d)", in.Title, in.Priority)
	case in.Title != "":
		return " (" + in.Title + ")"
	case in.Priority > 0:
		return fmt.Sprintf(" (priority %d)", in.Priority)
	}
	return ""
}

// soleApprover returns the approver when exactly one distinct person
// approved.
func soleApprover(approvals []Approval) (string, bool) {
	var who string
	for i := range approvals {
		a := &approvals[i]
		if a.Decision != ApprovalApproved {
			continue
		}
		name := strings.TrimSpace(a.Approver)
		if name == "" {
			continue
		}
		if who != "" && !strings.EqualFold(who, name) {
			return "", false
		}
		who = name
	}
	return who, who != ""
}

func orUnnamed(s string) string {
	if s = strings.TrimSpace(s); s == "" {
		return "(none)"
	}
	return s
}
