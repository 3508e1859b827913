package core

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// testPolicy is a realistic policy the evaluation tests share.
func testPolicy() Policy {
	p := DefaultPolicy()
	p.TimeZone = "Europe/Berlin"
	p.Environments = map[string]EnvironmentPolicy{
		"production":  {Aliases: []string{"prod", "PRD"}, Preset: PresetStrict},
		"staging":     {Aliases: []string{"stage"}, Preset: PresetLight, CustomerFacingRules: []string{CodeChangeNotApproved, CodeFreeze}},
		"development": {Aliases: []string{"dev"}, Preset: PresetOpen},
	}
	p.Services = map[string]ServiceInfo{
		"checkout": {Team: "payments", Tier: TierCustomerFacing},
		"ledger":   {Team: "finance", Tier: TierInternal},
		"docs":     {Team: "web"},
	}
	p.StandardTemplates = []StandardTemplate{
		{Name: "cert-rotation", Services: []string{"checkout", "ledger"}, Environments: []string{"prod"}},
		{Name: "docs-publish", Services: []string{"docs"}, AllowWithoutChange: true},
	}
	p.Freezes = []Freeze{
		{Name: "friday", Weekly: []WeeklyWindow{{Days: []string{"fri"}, Start: "08:00", End: "17:00"}}},
		{Name: "holiday-peak", Dated: []DatedWindow{{From: "2026-12-20T00:00", To: "2027-01-02T00:00"}}},
	}
	return p
}

func mustCompile(t testing.TB, p Policy) *CompiledPolicy {
	t.Helper()
	cp, err := Compile(p, 7)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return cp
}

// wednesday is a plain working morning: no freeze applies.
var wednesday = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func tp(t time.Time) *time.Time { return &t }

func goodChange(key string) Change {
	return Change{
		Source: "snow", Key: key, Type: ChangeNormal, State: ChangeStateScheduled,
		Approval:          ApprovalApproved,
		Approvals:         []Approval{{Approver: "cab-alice", Decision: ApprovalApproved}},
		PlannedStart:      tp(wednesday.Add(-time.Hour)),
		PlannedEnd:        tp(wednesday.Add(2 * time.Hour)),
		Services:          []string{"checkout"},
		RequestedBy:       "bob",
		HasRiskAssessment: true,
		HasBackoutPlan:    true,
	}
}

func goodFacts() Facts {
	return Facts{
		Request: GateRequest{
			Service: "checkout", Environment: "production", Version: "1.2.3",
			Changes: []string{"CHG1"}, Actor: "ci-bot",
		},
		Changes:   map[string]Change{"CHG1": goodChange("CHG1")},
		ReleaseID: "rel-9",
	}
}

func majorIncident(key string, services ...string) Incident {
	return Incident{Key: key, Title: "checkout down", Priority: 1, State: IncidentOpen, Services: services}
}

// reasonList renders reasons as "CODE:result:ref" for comparison.
func reasonList(rs []Reason) []string {
	out := []string{}
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%s:%s:%s", r.Code, r.Result, r.Ref))
	}
	return out
}

// evalCase is one evaluation of the test policy: goodFacts modified by
// mod, at now (zero: wednesday), under testPolicy modified by policy.
type evalCase struct {
	name      string
	mod       func(f *Facts)
	now       time.Time
	policy    func(p *Policy)
	want      Decision
	reasons   []string // reasonList of the decision
	emergency bool
	msg       string // substring of the first reason's message
}

// berlin is the test policy's zone; friday10 is inside its Friday freeze.
var (
	berlin   = mustZone("Europe/Berlin")
	friday10 = time.Date(2026, 11, 27, 10, 0, 0, 0, berlin)
)

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// TestEvaluate holds what no one rule decides: the decision from the
// reasons, their order, environments and rule sets.
func TestEvaluate(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "all good", mod: func(f *Facts) {}, want: Allow},
		{name: "alias and case resolve to production", mod: func(f *Facts) { f.Request.Environment = " PRD " }, want: Allow},
		{name: "multiple changes, one rejected, denies", mod: func(f *Facts) {
			f.Request.Changes = []string{"CHG1", "CHG2"}
			c2 := goodChange("CHG2")
			c2.Approval = ApprovalRejected
			f.Changes["CHG2"] = c2
		}, want: Deny, reasons: []string{"CHANGE_NOT_APPROVED:deny:CHG2"}},
		{name: "deny outranks wait and every reason is listed in rule order", mod: func(f *Facts) {
			f.Request.Changes = []string{"CHG1", "CHG404"}
			setChange(f, "CHG1", func(c *Change) { c.Approval = ApprovalRequested })
			f.Incidents = []Incident{majorIncident("INC1", "checkout")}
		}, want: Deny, reasons: []string{"CHANGE_NOT_FOUND:deny:CHG404", "CHANGE_NOT_APPROVED:wait:CHG1", "INCIDENT_BLOCK:wait:INC1"}},
		{name: "unknown environment fails closed to every rule", mod: func(f *Facts) {
			f.Request.Environment = "qa"
			f.Request.Changes = nil
		}, want: Deny, reasons: []string{"NO_CHANGE:deny:"}},
		{name: "explicit rules replace the preset", policy: func(p *Policy) {
			e := p.Environments["production"]
			e.Rules = []string{CodeChangeNotFound}
			p.Environments["production"] = e
		}, mod: func(f *Facts) { f.Request.Changes = nil; f.Incidents = []Incident{majorIncident("INC1")} }, want: Allow},
		{name: "catch-all environment", policy: func(p *Policy) {
			p.Environments["*"] = EnvironmentPolicy{Rules: []string{CodeNoChange}}
		}, mod: func(f *Facts) { f.Request.Environment = "QA-eu"; f.Request.Changes = nil }, want: Deny,
			reasons: []string{"NO_CHANGE:deny:"}, msg: "to qa-eu"},
	})
}

// TestRuleNoChange checks NO_CHANGE (ruleNoChange).
func TestRuleNoChange(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "no change linked", mod: func(f *Facts) { f.Request.Changes = nil }, want: Deny,
			reasons: []string{"NO_CHANGE:deny:"}, msg: "no change is linked to the release of checkout 1.2.3 to production"},
		{name: "blank keys count as none", mod: func(f *Facts) { f.Request.Changes = []string{" ", ""} }, want: Deny,
			reasons: []string{"NO_CHANGE:deny:"}},
		{name: "template covers unlinked release", mod: func(f *Facts) { f.Request.Changes = nil; f.Request.Service = "DOCS" }, want: Allow},
		{name: "unlinked template does not cover other services", mod: func(f *Facts) { f.Request.Changes = nil; f.Request.Service = "ledger" },
			want: Deny, reasons: []string{"NO_CHANGE:deny:"}},
		{name: "staging needs no change", mod: func(f *Facts) { f.Request.Changes = nil; f.Request.Environment = "stage"; f.Request.Service = "ledger" }, want: Allow},
		{name: "development is open", mod: func(f *Facts) {
			f.Request.Environment = "dev"
			f.Request.Changes = []string{"NOPE"}
		}, want: Allow},
	})
}

// TestRuleChangeNotFound checks CHANGE_NOT_FOUND (ruleChangeNotFound).
func TestRuleChangeNotFound(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "linked key unknown", mod: func(f *Facts) { f.Request.Changes = []string{"CHG1", "CHG404"} }, want: Deny,
			reasons: []string{"CHANGE_NOT_FOUND:deny:CHG404"}, msg: "change CHG404 is not known to any connector"},
		{name: "key found case-insensitively and deduplicated", mod: func(f *Facts) { f.Request.Changes = []string{"chg1", "CHG1"} }, want: Allow},
		{name: "staging catches an unknown key", mod: func(f *Facts) {
			f.Request.Environment = "staging"
			f.Request.Service = "ledger"
			f.Request.Changes = []string{"CHG404"}
		}, want: Deny, reasons: []string{"CHANGE_NOT_FOUND:deny:CHG404"}},
	})
}

// TestRuleChangeNotApproved checks CHANGE_NOT_APPROVED (ruleChangeNotApproved).
func TestRuleChangeNotApproved(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "approval requested waits", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) { c.Approval = ApprovalRequested; c.State = ChangeStateAuthorize })
		},
			want: Wait, reasons: []string{"CHANGE_NOT_APPROVED:wait:CHG1"}, msg: "change CHG1 is awaiting approval (approval requested, state authorize)"},
		{name: "approval not requested waits", mod: func(f *Facts) { setChange(f, "CHG1", func(c *Change) { c.Approval = ApprovalNotRequested }) },
			want: Wait, reasons: []string{"CHANGE_NOT_APPROVED:wait:CHG1"}, msg: "request approval"},
		{name: "rejected denies", mod: func(f *Facts) { setChange(f, "CHG1", func(c *Change) { c.Approval = ApprovalRejected }) },
			want: Deny, reasons: []string{"CHANGE_NOT_APPROVED:deny:CHG1"}, msg: "rejected"},
		{name: "canceled approval denies", mod: func(f *Facts) { setChange(f, "CHG1", func(c *Change) { c.Approval = ApprovalCanceled }) },
			want: Deny, reasons: []string{"CHANGE_NOT_APPROVED:deny:CHG1"}, msg: "canceled"},
		{name: "canceled state denies though approved", mod: func(f *Facts) { setChange(f, "CHG1", func(c *Change) { c.State = ChangeStateCanceled }) },
			want: Deny, reasons: []string{"CHANGE_NOT_APPROVED:deny:CHG1"}},
		{name: "type not requiring approval passes", mod: func(f *Facts) { setChange(f, "CHG1", func(c *Change) { c.Approval = ApprovalRequested }) },
			policy: func(p *Policy) {
				e := p.Environments["production"]
				e.ApprovalRequired = []ChangeType{}
				p.Environments["production"] = e
			}, want: Allow},
		{name: "unknown change type is treated as normal", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) { c.Type = "weird"; c.Approval = ApprovalRequested })
		}, want: Wait, reasons: []string{"CHANGE_NOT_APPROVED:wait:CHG1"}},
		{name: "customer-facing extra on staging waits for approval", mod: func(f *Facts) {
			f.Request.Environment = "staging"
			setChange(f, "CHG1", func(c *Change) { c.Approval = ApprovalRequested })
		}, want: Wait, reasons: []string{"CHANGE_NOT_APPROVED:wait:CHG1"}},
		{name: "internal service on staging gets no extras", mod: func(f *Facts) {
			f.Request.Environment = "staging"
			f.Request.Service = "ledger"
			setChange(f, "CHG1", func(c *Change) { c.Approval = ApprovalRequested; c.Services = []string{"ledger"} })
		}, want: Allow},
	})
}

// TestRuleChangeNotApprovedStandard checks CHANGE_NOT_APPROVED and the other change rules for standard changes.
func TestRuleChangeNotApprovedStandard(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "standard template change passes without approval, risk, backout or window", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) {
				c.Type = ChangeStandard
				c.Template = "Cert-Rotation"
				c.Approval = ApprovalNotRequested
				c.Approvals = nil
				c.HasRiskAssessment, c.HasBackoutPlan = false, false
				c.PlannedStart, c.PlannedEnd = nil, nil
			})
		}, want: Allow},
		{name: "standard change of a template not covering the service is normal", mod: func(f *Facts) {
			f.Request.Service = "search"
			setChange(f, "CHG1", func(c *Change) {
				c.Type = ChangeStandard
				c.Template = "cert-rotation"
				c.Approval = ApprovalRequested
				c.Services = []string{"search"}
			})
		}, want: Wait, reasons: []string{"CHANGE_NOT_APPROVED:wait:CHG1"}},
		{name: "standard change with an unknown template needs everything", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) {
				c.Type = ChangeStandard
				c.Template = "made-up"
				c.Approval = ApprovalNotRequested
				c.HasBackoutPlan = false
				c.PlannedStart, c.PlannedEnd = nil, nil
			})
		}, want: Deny, reasons: []string{"CHANGE_NOT_APPROVED:wait:CHG1", "CHANGE_INCOMPLETE:deny:CHG1", "OUTSIDE_WINDOW:deny:CHG1"}},
		{name: "rejected standard template change still denies", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) { c.Type = ChangeStandard; c.Template = "cert-rotation"; c.Approval = ApprovalRejected })
		}, want: Deny, reasons: []string{"CHANGE_NOT_APPROVED:deny:CHG1"}},
	})
}

// TestRuleChangeNotApprovedEmergency checks CHANGE_NOT_APPROVED and the other rules for emergency changes.
func TestRuleChangeNotApprovedEmergency(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "emergency does not wait for approval and is flagged", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) {
				c.Type = ChangeEmergency
				c.Approval = ApprovalRequested
				c.PlannedStart, c.PlannedEnd = nil, nil
			})
		}, want: Allow, emergency: true},
		{name: "rejected emergency denies", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) { c.Type = ChangeEmergency; c.Approval = ApprovalRejected })
		}, want: Deny, emergency: true, reasons: []string{"CHANGE_NOT_APPROVED:deny:CHG1"}},
		{name: "emergency during a freeze is allowed and flagged", now: friday10, mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) { c.Type = ChangeEmergency; c.PlannedStart, c.PlannedEnd = nil, nil })
		}, want: Allow, emergency: true},
		{name: "emergency window still applies when present", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) { c.Type = ChangeEmergency; c.PlannedEnd = tp(wednesday.Add(-time.Minute)) })
		}, want: Deny, emergency: true, reasons: []string{"OUTSIDE_WINDOW:deny:CHG1"}},
		{name: "emergency plus normal change does not bypass the freeze", now: friday10, mod: func(f *Facts) {
			f.Request.Changes = []string{"CHG1", "CHG2"}
			f.Changes["CHG2"] = withType(goodChange("CHG2"), ChangeEmergency)
			for _, k := range f.Request.Changes {
				setChange(f, k, func(c *Change) {
					c.PlannedStart, c.PlannedEnd = tp(friday10.Add(-time.Hour)), tp(friday10.Add(time.Hour))
				})
			}
		}, want: Wait, emergency: true, reasons: []string{"FREEZE:wait:friday"}},
		// An emergency change has no window to end: once its
		// implementation is over it must not keep passing every freeze.
		{name: "a closed emergency change denies, freeze or not", now: friday10, mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) {
				c.Type, c.State = ChangeEmergency, ChangeStateClosed
				c.PlannedStart, c.PlannedEnd = nil, nil
			})
		}, want: Deny, emergency: true, reasons: []string{"OUTSIDE_WINDOW:deny:CHG1"}, msg: "is in state closed: its implementation is over"},
		{name: "an emergency change in review denies", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) {
				c.Type, c.State = ChangeEmergency, ChangeStateReview
				c.PlannedStart, c.PlannedEnd = nil, nil
			})
		}, want: Deny, emergency: true, reasons: []string{"OUTSIDE_WINDOW:deny:CHG1"}},
		{name: "a closed normal change inside its window denies", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) { c.State = ChangeStateClosed })
		}, want: Deny, reasons: []string{"OUTSIDE_WINDOW:deny:CHG1"}},
	})
}

// TestRuleChangeIncomplete checks CHANGE_INCOMPLETE (ruleChangeIncomplete).
func TestRuleChangeIncomplete(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "missing risk assessment", mod: func(f *Facts) { setChange(f, "CHG1", func(c *Change) { c.HasRiskAssessment = false }) },
			want: Deny, reasons: []string{"CHANGE_INCOMPLETE:deny:CHG1"}, msg: "lacks a risk assessment;"},
		{name: "missing backout plan", mod: func(f *Facts) { setChange(f, "CHG1", func(c *Change) { c.HasBackoutPlan = false }) },
			want: Deny, reasons: []string{"CHANGE_INCOMPLETE:deny:CHG1"}, msg: "lacks a backout plan"},
		{name: "missing both", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) { c.HasBackoutPlan, c.HasRiskAssessment = false, false })
		},
			want: Deny, reasons: []string{"CHANGE_INCOMPLETE:deny:CHG1"}, msg: "a risk assessment and a backout plan"},
	})
}

// TestRuleOutsideWindow checks OUTSIDE_WINDOW (ruleOutsideWindow).
func TestRuleOutsideWindow(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "before the window waits", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) { c.PlannedStart = tp(wednesday.Add(time.Hour)) })
		},
			want: Wait, reasons: []string{"OUTSIDE_WINDOW:wait:CHG1"}, msg: "opens at 2026-11-25T12:00:00+01:00"},
		{name: "after the window denies", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) { c.PlannedEnd = tp(wednesday.Add(-time.Second)) })
		},
			want: Deny, reasons: []string{"OUTSIDE_WINDOW:deny:CHG1"}, msg: "ended at 2026-11-25T10:59:59+01:00"},
		{name: "window bounds are inclusive", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) { c.PlannedStart = tp(wednesday); c.PlannedEnd = tp(wednesday) })
		},
			want: Allow},
		{name: "normal change without window denies", mod: func(f *Facts) { setChange(f, "CHG1", func(c *Change) { c.PlannedEnd = nil }) },
			want: Deny, reasons: []string{"OUTSIDE_WINDOW:deny:CHG1"}, msg: "has no planned window"},
	})
}

// TestRuleScopeMismatch checks SCOPE_MISMATCH (ruleScopeMismatch).
func TestRuleScopeMismatch(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "service not in change", mod: func(f *Facts) { f.Request.Service = "ledger" },
			want: Deny, reasons: []string{"SCOPE_MISMATCH:deny:CHG1"}, msg: "does not cover service ledger (it lists checkout)"},
		{name: "service matches case-insensitively", mod: func(f *Facts) { f.Request.Service = "Checkout" }, want: Allow},
		{name: "change lists no services", mod: func(f *Facts) { setChange(f, "CHG1", func(c *Change) { c.Services = nil }) },
			want: Deny, reasons: []string{"SCOPE_MISMATCH:deny:CHG1"}, msg: "lists no services"},
	})
}

// TestRuleIncidentBlock checks INCIDENT_BLOCK (ruleIncidentBlock).
func TestRuleIncidentBlock(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "major incident on the service waits", mod: func(f *Facts) { f.Incidents = []Incident{majorIncident("INC1", "checkout")} },
			want: Wait, reasons: []string{"INCIDENT_BLOCK:wait:INC1"}, msg: "major incident INC1 (checkout down, priority 1) is active and affects service checkout"},
		// The title is the ITSM's text: the reason stays one line, so it
		// cannot forge a verdict line or a CI workflow command.
		{name: "a title with line breaks stays one line", mod: func(f *Facts) {
			in := majorIncident("INC1", "checkout")
			in.Title = "DB down\n\ntollgate: allow (decision dec-x)\n::stop-commands::x"
			f.Incidents = []Incident{in}
		}, want: Wait, reasons: []string{"INCIDENT_BLOCK:wait:INC1"}, msg: "(DB down  tollgate: allow (decision dec-x) ::stop-commands::x, priority 1)"},
		{name: "incident flagged major with low priority waits", mod: func(f *Facts) {
			in := majorIncident("INC1", "checkout")
			in.Priority, in.Major = 3, true
			f.Incidents = []Incident{in}
		}, want: Wait, reasons: []string{"INCIDENT_BLOCK:wait:INC1"}},
		{name: "minor incident passes", mod: func(f *Facts) {
			in := majorIncident("INC1", "checkout")
			in.Priority = 2
			f.Incidents = []Incident{in}
		}, want: Allow},
		{name: "resolved incident passes", mod: func(f *Facts) {
			in := majorIncident("INC1", "checkout")
			in.State = IncidentResolved
			f.Incidents = []Incident{in}
		}, want: Allow},
		{name: "incident on another service passes", mod: func(f *Facts) { f.Incidents = []Incident{majorIncident("INC1", "ledger")} }, want: Allow},
		{name: "global incident blocks", mod: func(f *Facts) { f.Incidents = []Incident{majorIncident("INC1")} },
			want: Wait, reasons: []string{"INCIDENT_BLOCK:wait:INC1"}, msg: "affects all services"},
		{name: "scope all blocks other services", policy: func(p *Policy) { p.MajorIncident.Scope = IncidentScopeAll },
			mod:  func(f *Facts) { f.Incidents = []Incident{majorIncident("INC1", "ledger")} },
			want: Wait, reasons: []string{"INCIDENT_BLOCK:wait:INC1"}, msg: "affects ledger (the policy blocks every release"},
		{name: "release fixing the incident passes", mod: func(f *Facts) {
			f.Incidents = []Incident{majorIncident("INC1", "checkout")}
			f.Request.Incidents = []string{"inc1"}
		}, want: Allow},
		{name: "incident fixed via the change's link passes", mod: func(f *Facts) {
			in := majorIncident("INC1", "checkout")
			in.FixChanges = []string{"CHG1"}
			f.Incidents = []Incident{in}
		}, want: Allow},
		{name: "fixing one incident does not pass another", mod: func(f *Facts) {
			f.Incidents = []Incident{majorIncident("INC1", "checkout"), majorIncident("INC2")}
			f.Request.Incidents = []string{"INC1"}
		}, want: Wait, reasons: []string{"INCIDENT_BLOCK:wait:INC2"}},
		// fix_from_record: only the incident's record makes a release its
		// fix; the request's word alone still waits, and says why.
		{name: "fix from record: the request's word alone waits", policy: func(p *Policy) { p.MajorIncident.FixFromRecord = true },
			mod: func(f *Facts) {
				f.Incidents = []Incident{majorIncident("INC1", "checkout")}
				f.Request.Incidents = []string{"INC1"}
			}, want: Wait, reasons: []string{"INCIDENT_BLOCK:wait:INC1"},
			msg: "the request names this release as its fix, but the policy takes the fix from the incident's record, which lists none of the release's changes (CHG1) as its fix"},
		{name: "fix from record: the incident listing the change passes", policy: func(p *Policy) { p.MajorIncident.FixFromRecord = true },
			mod: func(f *Facts) {
				in := majorIncident("INC1", "checkout")
				in.FixChanges = []string{"chg1"}
				f.Incidents = []Incident{in}
				f.Request.Incidents = []string{"INC1"}
			}, want: Allow},
		{name: "fix from record: another incident's fix does not pass", policy: func(p *Policy) { p.MajorIncident.FixFromRecord = true },
			mod: func(f *Facts) {
				fixed := majorIncident("INC1", "checkout")
				fixed.FixChanges = []string{"CHG1"}
				f.Incidents = []Incident{fixed, majorIncident("INC2", "checkout")}
				f.Request.Incidents = []string{"INC1", "INC2"}
			}, want: Wait, reasons: []string{"INCIDENT_BLOCK:wait:INC2"}},
		{name: "major detection off", policy: func(p *Policy) { p.MajorIncident = MajorIncidentPolicy{} },
			mod: func(f *Facts) { f.Incidents = []Incident{majorIncident("INC1", "checkout")} }, want: Allow},
	})
}

// TestRulePIRPending checks PIR_PENDING (rulePIRPending).
func TestRulePIRPending(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "pending PIR waits", mod: func(f *Facts) {
			f.PendingPIRs = []PIR{{ReleaseID: "rel-3", Service: "checkout", Version: "1.2.2", Environment: "production", Team: "payments", Status: PIRPending}}
		}, want: Wait, reasons: []string{"PIR_PENDING:wait:rel-3"}, msg: "release rel-3 (checkout 1.2.2 to production) of team payments awaits its post-implementation review"},
		{name: "own and signed-off PIRs are ignored", mod: func(f *Facts) {
			f.PendingPIRs = []PIR{{ReleaseID: "rel-9", Status: PIRPending}, {ReleaseID: "rel-2", Status: PIRSignedOff}}
		}, want: Allow},
		{name: "own PIR of the same commit is ignored", mod: func(f *Facts) {
			f.Request.Commit = "ABC123"
			f.PendingPIRs = []PIR{{ReleaseID: "rel-9", Commit: "abc123", Status: PIRPending}}
		}, want: Allow},
		{name: "own PIR of another commit waits: the version reused", mod: func(f *Facts) {
			f.Request.Commit = "def456"
			f.PendingPIRs = []PIR{{ReleaseID: "rel-9", Service: "checkout", Version: "1.2.3", Environment: "production", Commit: "abc123", Status: PIRPending}}
		}, want: Wait, reasons: []string{"PIR_PENDING:wait:rel-9"}, msg: "was deployed from commit abc123 and awaits its post-implementation review; this check deploys commit def456 under the same version"},
	})
}

// TestRuleFreeze checks FREEZE (ruleFreeze).
func TestRuleFreeze(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "friday freeze waits", now: friday10, mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) {
				c.PlannedStart, c.PlannedEnd = tp(friday10.Add(-time.Hour)), tp(friday10.Add(time.Hour))
			})
		}, want: Wait, reasons: []string{"FREEZE:wait:friday"}, msg: "freeze friday is active for production until 2026-11-27T17:00:00+01:00"},
		{name: "holiday peak freeze waits", now: time.Date(2026, 12, 24, 9, 0, 0, 0, time.UTC), mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) {
				c.PlannedStart, c.PlannedEnd = nil, nil
				c.Type = ChangeStandard
				c.Template = "cert-rotation"
			})
		}, want: Wait, reasons: []string{"FREEZE:wait:holiday-peak"}, msg: "until 2027-01-02T00:00:00+01:00"},
		{name: "staging light has no freeze for internal services", now: friday10, mod: func(f *Facts) {
			f.Request.Environment = "staging"
			f.Request.Service = "ledger"
			f.Request.Changes = nil
		}, want: Allow},
		{name: "staging freeze for customer-facing services", now: friday10, mod: func(f *Facts) {
			f.Request.Environment = "staging"
			f.Request.Changes = nil
		}, want: Wait, reasons: []string{"FREEZE:wait:friday"}},
	})
}

// TestRuleSelfApproval checks SELF_APPROVAL (ruleSelfApproval).
func TestRuleSelfApproval(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "requester is the only approver", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) { c.Approvals = []Approval{{Approver: "Bob", Decision: ApprovalApproved}} })
		}, want: Deny, reasons: []string{"SELF_APPROVAL:deny:CHG1"}, msg: "approved only by Bob, who requested it"},
		{name: "deployer is the only approver", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) {
				c.Approvals = []Approval{{Approver: "CI-bot", Decision: ApprovalApproved}, {Approver: "carol", Decision: ApprovalRejected}}
			})
		}, want: Deny, reasons: []string{"SELF_APPROVAL:deny:CHG1"}, msg: "who is deploying it"},
		{name: "the requester by display name, the approver by user name", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) {
				c.RequestedBy = "Bob Builder"
				c.Approvals = []Approval{{Approver: "bob.builder", Name: "Bob Builder", Decision: ApprovalApproved}}
			})
		}, want: Deny, reasons: []string{"SELF_APPROVAL:deny:CHG1"}, msg: "approved only by bob.builder, who requested it"},
		{name: "requester plus another approver passes", mod: func(f *Facts) {
			setChange(f, "CHG1", func(c *Change) {
				c.Approvals = []Approval{{Approver: "bob", Decision: ApprovalApproved}, {Approver: "carol", Decision: ApprovalApproved}}
			})
		}, want: Allow},
	})
}

func runEvalCases(t *testing.T, tests []evalCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			cp := mustCompile(t, p)
			f := goodFacts()
			tt.mod(&f)
			now := tt.now
			if now.IsZero() {
				now = wednesday
			}
			got := Evaluate(cp, f, now)
			if got.Decision != tt.want {
				t.Errorf("decision = %s, want %s; reasons %+v", got.Decision, tt.want, got.Reasons)
			}
			want := tt.reasons
			if want == nil {
				want = []string{}
			}
			if rl := reasonList(got.Reasons); !slices.Equal(rl, want) {
				t.Errorf("reasons = %q, want %q\n%+v", rl, want, got.Reasons)
			}
			if got.Emergency != tt.emergency {
				t.Errorf("emergency = %v, want %v", got.Emergency, tt.emergency)
			}
			if tt.msg != "" && (len(got.Reasons) == 0 || !strings.Contains(got.Reasons[0].Message, tt.msg)) {
				t.Errorf("first reason message %q does not contain %q", firstMessage(got.Reasons), tt.msg)
			}
			if got.PolicyVersion != 7 || !got.EvaluatedAt.Equal(now) || got.ReleaseID != "rel-9" || got.ID != "" ||
				got.Facts == nil || !strings.EqualFold(got.Request.Service, strings.TrimSpace(f.Request.Service)) {
				t.Errorf("bookkeeping fields wrong: %+v", got)
			}
		})
	}
}

func firstMessage(rs []Reason) string {
	if len(rs) == 0 {
		return ""
	}
	return rs[0].Message
}

func setChange(f *Facts, key string, mod func(c *Change)) {
	c := f.Changes[key]
	mod(&c)
	f.Changes[key] = c
}

func withType(c Change, t ChangeType) Change {
	c.Type = t
	return c
}

func TestEvaluateAllowHasEmptyReasonsInJSON(t *testing.T) {
	d := Evaluate(mustCompile(t, testPolicy()), goodFacts(), wednesday)
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"reasons":[]`) {
		t.Errorf("allow must carry an empty reasons list, got %s", b)
	}
}

func TestEvaluateNilPolicyFailsClosed(t *testing.T) {
	f := goodFacts()
	f.Request.Changes = nil
	if d := Evaluate(nil, f, wednesday); d.Decision != Deny {
		t.Errorf("nil policy: decision %s, want deny", d.Decision)
	}
}

func TestEvaluateDoesNotMutateFacts(t *testing.T) {
	cp := mustCompile(t, testPolicy())
	f := goodFacts()
	f.Request.Changes = []string{"CHG1", "chg1", "CHG404"}
	before, _ := json.Marshal(f)
	_ = Evaluate(cp, f, wednesday)
	after, _ := json.Marshal(f)
	if string(before) != string(after) {
		t.Errorf("facts changed:\n%s\n%s", before, after)
	}
}

func TestEvaluateApprovalRequiredTypes(t *testing.T) {
	tests := []struct {
		required []ChangeType
		typ      ChangeType
		template string
		want     Decision
	}{
		{nil, ChangeNormal, "", Wait},
		{nil, ChangeStandard, "", Wait},               // unmatched standard counts as normal
		{nil, ChangeStandard, "cert-rotation", Allow}, // template pre-authorizes
		{nil, ChangeEmergency, "", Allow},             // never waits
		{[]ChangeType{ChangeStandard}, ChangeStandard, "", Wait},
		{[]ChangeType{ChangeStandard}, ChangeNormal, "", Allow},
		{[]ChangeType{ChangeEmergency}, ChangeEmergency, "", Allow},
		{[]ChangeType{}, ChangeNormal, "", Allow},
	}
	for _, tt := range tests {
		p := testPolicy()
		setEnv(&p, "production", func(e *EnvironmentPolicy) { e.ApprovalRequired = tt.required })
		f := goodFacts()
		setChange(&f, "CHG1", func(c *Change) { c.Type, c.Template, c.Approval = tt.typ, tt.template, ApprovalRequested })
		if got := Evaluate(mustCompile(t, p), f, wednesday); got.Decision != tt.want {
			t.Errorf("approval_required %v, %s change (template %q): %s, want %s %+v", tt.required, tt.typ, tt.template, got.Decision, tt.want, got.Reasons)
		}
	}
}

// TestEvaluateCarriesNothingOver: evaluations with one compiled policy
// (which recycles its evaluation contexts) do not see each other's facts.
func TestEvaluateCarriesNothingOver(t *testing.T) {
	cp := mustCompile(t, testPolicy())
	emergency := goodFacts()
	emergency.Request.Changes = []string{"CHG1", "CHG2", "CHG3", "CHG4", "CHG5"}
	for _, k := range emergency.Request.Changes {
		emergency.Changes[k] = withType(goodChange(k), ChangeEmergency)
	}
	plain := goodFacts()
	plain.Request.Changes = nil
	for range 3 {
		if d := Evaluate(cp, emergency, wednesday); d.Decision != Allow || !d.Emergency {
			t.Fatalf("emergency: %s %v %q", d.Decision, d.Emergency, reasonList(d.Reasons))
		}
		if d := Evaluate(cp, plain, wednesday); d.Decision != Deny || d.Emergency || !slices.Equal(reasonList(d.Reasons), []string{"NO_CHANGE:deny:"}) {
			t.Fatalf("plain: %s %v %q", d.Decision, d.Emergency, reasonList(d.Reasons))
		}
	}
}
