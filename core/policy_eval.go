package core

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Evaluate applies the policy to the facts of one release at the moment
// now: the gate's now, or the start of a deployment the reconciler judges
// with the facts as of then. It is pure: the same inputs always give the
// same decision.
//
// The request is first canonicalized (CompiledPolicy.CanonicalRequest): the
// policy, not the caller's spelling, names the service, environment and
// team. Then each rule of the table (gateRules, one per reason code, each
// documented with when it fires) that the environment enables — plus the
// customer-facing extras for a customer-facing service — adds its Reasons
// with Result wait or deny; an environment the policy does not know gets
// every rule (fail closed — the API rejects unknown environments before
// asking). The decision is deny if any reason denies, else wait if any
// waits, else allow. Reasons come in GateRules order, within a rule in the
// order of the request's change keys, and notes (TEAM_IGNORED, no Result)
// last.
//
// Emergency is set when any linked change is an emergency change. ID is
// left empty for the recorder.
func Evaluate(cp *CompiledPolicy, f Facts, now time.Time) GateDecision {
	if cp == nil {
		cp = &CompiledPolicy{}
	}
	ec := cp.evalContext(&f, now)
	defer cp.release(ec)
	ec.reasons = []Reason{}
	for i := range gateRules {
		if ec.rules&(1<<i) != 0 {
			gateRules[i].check(ec)
		}
	}
	noteTeamIgnored(ec)
	decision, wouldBe := decide(ec.reasons), Decision("")
	if ec.ce != nil && ec.ce.observe && decision != Allow {
		decision, wouldBe = Allow, decision
	}
	return GateDecision{
		ReleaseID:     f.ReleaseID,
		Decision:      decision,
		WouldBe:       wouldBe,
		Evidence:      slices.Clone(ec.judged()),
		Reasons:       ec.reasons,
		Emergency:     ec.emergency,
		PolicyVersion: cp.version,
		EvaluatedAt:   now,
		Request:       f.Request,
		Facts:         &f,
	}
}

// decide is deny if any reason denies, else wait if any waits, else allow.
func decide(reasons []Reason) Decision {
	d := Allow
	for i := range reasons {
		switch reasons[i].Result {
		case Deny:
			return Deny
		case Wait:
			d = Wait
		}
	}
	return d
}

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
	// links are the request's change keys, deduplicated case-insensitively,
	// in request order, with what the facts know of each; linkBuf is their
	// storage for the usual few.
	links   []linked
	linkBuf [4]linked
	// allEmergency: the request links changes and every one is a known
	// emergency change; emergency: any linked change is one.
	allEmergency, emergency bool
	// reasons are what the rules found, in table order.
	reasons []Reason
	// matches (and why, their explanations) judge the environment's
	// evidence requirements, once per evaluation (judged).
	matches     []EvidenceMatch
	why         []string
	matchesDone bool
}

// evalContext returns a context for evaluating f at now (see init); give
// it back with release.
func (cp *CompiledPolicy) evalContext(f *Facts, now time.Time) *evalContext {
	ec, _ := cp.contexts.Get().(*evalContext)
	if ec == nil {
		ec = new(evalContext)
	}
	ec.init(cp, f, now)
	return ec
}

// release keeps ec for reuse, dropping its references to the facts and
// the answer. The link slots keep their last changes until overwritten
// (clearing them costs every evaluation write barriers; a pooled context
// lives at most two garbage collections).
func (cp *CompiledPolicy) release(ec *evalContext) {
	ec.cp, ec.f, ec.req, ec.ce, ec.links, ec.reasons = nil, nil, nil, nil, nil, nil
	ec.matches, ec.why, ec.matchesDone = nil, nil, false
	cp.contexts.Put(ec)
}

// init canonicalizes f.Request (CompiledPolicy.CanonicalRequest: the policy,
// not the caller's spelling, names the service, environment and team, and
// so the rules) and gathers what the rules read.
func (ec *evalContext) init(cp *CompiledPolicy, f *Facts, now time.Time) {
	ec.ce, ec.rules, _ = cp.canonicalize(&f.Request)
	// Holds apply everywhere; configured evidence and approver groups
	// enable their rules whatever the preset.
	ec.rules |= ruleBit(CodeHold)
	if ec.ce != nil && len(ec.ce.evidence.reqs) > 0 {
		ec.rules |= ruleBit(CodeEvidenceMissing) | ruleBit(CodeEvidenceFailed)
	}
	if len(cp.src.Approvals) > 0 || len(cp.src.EmergencyApprovers) > 0 {
		ec.rules |= ruleBit(CodeApproverMissing)
	}
	ec.cp, ec.f, ec.req, ec.now = cp, f, &f.Request, now
	ec.env = f.Request.Environment
	ec.approval = typeBit(ChangeNormal)
	if ec.ce != nil {
		ec.approval = ec.ce.approval
	}
	ec.allEmergency, ec.emergency = true, false
	ec.links = ec.linkBuf[:0]
	for _, k := range f.Request.Changes {
		k = strings.TrimSpace(k)
		if k == "" || hasKey(ec.links, k) {
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
		ec.links = append(ec.links, l)
	}
	if len(ec.links) == 0 {
		ec.allEmergency = false
	}
}

// add appends a reason.
// add records a reason; its message is one line (OneLine says why).
func (ec *evalContext) add(code string, result Decision, ref, format string, args ...any) {
	ec.reasons = append(ec.reasons, Reason{Code: code, Message: OneLine(fmt.Sprintf(format, args...)), Ref: ref, Result: result})
}

// ts renders an instant for a message, in the policy's zone.
func (ec *evalContext) ts(t time.Time) string { return t.In(ec.cp.Location()).Format(time.RFC3339) }

// fixes reports whether the request is linked as the incident's fix: it
// links a change the incident lists as its fix, or names the incident
// (unless the policy takes the fix from the incident's record only).
func (ec *evalContext) fixes(in *Incident) bool {
	if !ec.cp.major.FixFromRecord && containsFold(ec.req.Incidents, in.Key) {
		return true
	}
	links := ec.links
	for i := range links {
		l := &links[i]
		if containsFold(in.FixChanges, l.key) {
			return true
		}
	}
	return false
}

// linked is one change key of a request with what the facts know about it.
type linked struct {
	key      string
	found    bool
	c        Change
	template *compiledTemplate // the standard template pre-authorizing it
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

// soleApprover returns the approval of the one distinct person who
// approved, when exactly one did.
func soleApprover(approvals []Approval) (Approval, bool) {
	var who Approval
	for i := range approvals {
		a := &approvals[i]
		if a.Decision != ApprovalApproved {
			continue
		}
		name := strings.TrimSpace(a.Approver)
		if name == "" {
			continue
		}
		if who.Approver != "" && !strings.EqualFold(strings.TrimSpace(who.Approver), name) {
			return Approval{}, false
		}
		who = *a
	}
	return who, who.Approver != ""
}

func orUnnamed(s string) string {
	if s = strings.TrimSpace(s); s == "" {
		return "(none)"
	}
	return s
}
