package core

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Policy is the gate policy document admins edit (YAML or JSON, parsed
// outside core with the snake_case names of the tags below). Compile turns it
// into a CompiledPolicy; Validate reports every problem with a field path.
//
// Zero values mean defaults, as documented per field; DefaultPolicy is the
// policy of a fresh install.
type Policy struct {
	// TimeZone is the IANA zone business hours, planned windows in messages,
	// and freezes without their own zone use. Empty means "UTC". "Local" is
	// rejected: the machine's zone must never change a decision.
	TimeZone string `json:"time_zone,omitempty" yaml:"time_zone,omitempty"`
	// BusinessHours is the business calendar (the reconciler's "within 24
	// business hours").
	BusinessHours BusinessHours `json:"business_hours" yaml:"business_hours"`
	// Environments maps a canonical environment name to its policy. The key
	// "*" is an optional catch-all for environments not listed; without it an
	// unlisted environment is unknown (the API answers 400). Names and
	// aliases match case-insensitively and must be unique that way.
	Environments map[string]EnvironmentPolicy `json:"environments" yaml:"environments"`
	// Services is the service catalog: owning team and tier per service name
	// (matched case-insensitively).
	Services map[string]ServiceInfo `json:"services,omitempty" yaml:"services,omitempty"`
	// StandardTemplates are the pre-authorized standard-change templates.
	StandardTemplates []StandardTemplate `json:"standard_templates,omitempty" yaml:"standard_templates,omitempty"`
	// MajorIncident says which incidents block releases (INCIDENT_BLOCK).
	// Its zero value blocks on nothing.
	MajorIncident MajorIncidentPolicy `json:"major_incident" yaml:"major_incident"`
	// Freezes are the change freeze windows (FREEZE).
	Freezes []Freeze `json:"freezes,omitempty" yaml:"freezes,omitempty"`
	// EvidenceKinds declares evidence kinds beyond the built-in ones
	// (BuiltinEvidenceKinds); evidence of any other kind is refused.
	EvidenceKinds []string `json:"evidence_kinds,omitempty" yaml:"evidence_kinds,omitempty"`
	// Approvals require approver groups by the change's risk or the
	// service's tier (APPROVER_MISSING).
	Approvals []ApproverRule `json:"approvals,omitempty" yaml:"approvals,omitempty"`
	// ApproverGroups names each group's members, as the ITSM records
	// approvers. An approval whose approver is the group's own name (an
	// ITSM group approval) also counts for the group.
	ApproverGroups map[string][]string `json:"approver_groups,omitempty" yaml:"approver_groups,omitempty"`
	// FallbackApprovers satisfy any required group.
	FallbackApprovers []string `json:"fallback_approvers,omitempty" yaml:"fallback_approvers,omitempty"`
	// EmergencyApprovers, when set, are who may approve an emergency change
	// (names, or group names as the approvals record them): an emergency
	// change without one of their approvals is APPROVER_MISSING.
	EmergencyApprovers []string `json:"emergency_approvers,omitempty" yaml:"emergency_approvers,omitempty"`
	// Emergency sets the reconciler's emergency timers
	// (EMERGENCY_REVIEW_OVERDUE, EMERGENCY_VALIDATION_OVERDUE).
	Emergency EmergencyTimers `json:"emergency,omitempty" yaml:"emergency,omitempty"`
	// Reconcile sets the reconciler's other thresholds.
	Reconcile ReconcileThresholds `json:"reconcile,omitempty" yaml:"reconcile,omitempty"`
}

// ReconcileThresholds are the reconciler's thresholds besides the
// emergency timers.
type ReconcileThresholds struct {
	// LinksChangeGraceHours is how long (wall clock) after a deployment
	// finished a report may still change its links before the reconciler
	// reports LINKS_CHANGED_AFTER_DEPLOY (default 1).
	LinksChangeGraceHours float64 `json:"links_change_grace_hours,omitempty" yaml:"links_change_grace_hours,omitempty"`
}

// EmergencyTimers are how long an emergency deployment has for its
// follow-ups. Zero means the default.
type EmergencyTimers struct {
	// ReviewBusinessHours is how many business hours (the policy's
	// calendar) an emergency change has for its retrospective review
	// (default 24).
	ReviewBusinessHours float64 `json:"review_business_hours,omitempty" yaml:"review_business_hours,omitempty"`
	// ValidationHours is how many hours (wall clock) an emergency
	// deployment has to report its post-deployment validation (default 4).
	ValidationHours float64 `json:"validation_hours,omitempty" yaml:"validation_hours,omitempty"`
}

// BusinessHours is the working calendar, in Policy.TimeZone.
type BusinessHours struct {
	// Days are the working weekdays ("mon" … "sun", or full names, any
	// case). Nil means Monday to Friday; an explicit empty list is an error.
	Days []string `json:"days,omitempty" yaml:"days,omitempty"`
	// Start and End are the working hours "HH:MM" (default 09:00–17:00).
	// End must be after Start: business hours cannot cross midnight.
	Start string `json:"start,omitempty" yaml:"start,omitempty"`
	End   string `json:"end,omitempty" yaml:"end,omitempty"`
	// Holidays are non-working dates "YYYY-MM-DD" in the policy zone.
	Holidays []string `json:"holidays,omitempty" yaml:"holidays,omitempty"`
}

// Environment presets: the rule set an environment gets when it lists no
// explicit rules.
const (
	// PresetStrict enables every gate rule (GateRules).
	PresetStrict = "strict"
	// PresetLight enables CHANGE_NOT_FOUND and SCOPE_MISMATCH: a change is
	// optional, but a linked key must exist and cover the service, so a typo
	// or a wrong key is caught before production. Approval is not awaited:
	// pre-production testing normally happens before the CAB approves.
	PresetLight = "light"
	// PresetOpen enables no rule: every release is allowed.
	PresetOpen = "open"
)

// Service tiers.
const (
	TierCustomerFacing = "customer-facing"
	TierInternal       = "internal"
)

// Major incident scopes.
const (
	// IncidentScopeService blocks only releases of the affected services
	// (and every release for an incident that names no service).
	IncidentScopeService = "service"
	// IncidentScopeAll blocks every release while a major incident is active.
	IncidentScopeAll = "all"
)

// CatchAllEnvironment is the Environments key that applies to every
// environment not listed.
const CatchAllEnvironment = "*"

// EnvironmentPolicy is the policy of one environment.
type EnvironmentPolicy struct {
	// Aliases are other names of the environment ("prod" for "production").
	Aliases []string `json:"aliases,omitempty" yaml:"aliases,omitempty"`
	// Preset is "strict", "light" or "open"; empty means "strict" (a listed
	// environment fails closed). Ignored when Rules is set.
	Preset string `json:"preset,omitempty" yaml:"preset,omitempty"`
	// Rules, when not nil, is the exact set of gate rule codes evaluated and
	// replaces the preset's set. An explicit empty list enables nothing.
	Rules []string `json:"rules,omitempty" yaml:"rules,omitempty"`
	// CustomerFacingRules are extra rule codes evaluated when the service's
	// catalog tier is "customer-facing".
	CustomerFacingRules []string `json:"customer_facing_rules,omitempty" yaml:"customer_facing_rules,omitempty"`
	// ApprovalRequired are the change types whose approval the gate awaits.
	// Nil means [normal]. A standard change that matches no configured
	// template counts as normal. Emergency changes never wait for approval
	// (the decision is flagged Emergency instead); a rejected or canceled
	// change of any type is denied whatever this list says.
	ApprovalRequired []ChangeType `json:"approval_required,omitempty" yaml:"approval_required,omitempty"`
	// PIRRequired are the change types whose releases need a
	// post-implementation review. Nil means [normal, emergency] for a strict
	// environment and none otherwise; an explicit empty list means none.
	PIRRequired []ChangeType `json:"pir_required,omitempty" yaml:"pir_required,omitempty"`
	// Mode is "enforce" (default) or "observe": in observe mode the gate
	// answers allow and reports what enforcing would have answered
	// (would_be) with its reasons, so tollgate can be switched on without
	// blocking anyone.
	Mode string `json:"mode,omitempty" yaml:"mode,omitempty"`
	// Evidence is the proof a release needs before it goes to this
	// environment (EVIDENCE_MISSING, EVIDENCE_FAILED). Configuring it
	// enables both rules, whatever the preset.
	Evidence []EvidenceRequirement `json:"evidence,omitempty" yaml:"evidence,omitempty"`
	// SigningKeys are the public keys (PEM, Ed25519 or ECDSA) that
	// artifact signatures (DSSE envelopes) for this environment must
	// verify against.
	SigningKeys []SigningKey `json:"signing_keys,omitempty" yaml:"signing_keys,omitempty"`
}

// SigningKey is a trusted public key.
type SigningKey struct {
	ID        string `json:"id" yaml:"id"`
	PublicKey string `json:"public_key" yaml:"public_key"`
}

// ServiceInfo is one entry of the service catalog.
type ServiceInfo struct {
	Team string `json:"team,omitempty" yaml:"team,omitempty"`
	// Tier is "customer-facing" or "internal" (empty: internal).
	Tier string `json:"tier,omitempty" yaml:"tier,omitempty"`
}

// StandardTemplate is a pre-authorized standard-change template. A change of
// type standard whose Template equals Name (case-insensitively) is approved
// without the CAB and needs no risk assessment, backout plan or planned
// window, when the release's service is in Services and its environment in
// Environments (an empty list matches all).
type StandardTemplate struct {
	Name         string   `json:"name" yaml:"name"`
	Services     []string `json:"services,omitempty" yaml:"services,omitempty"`
	Environments []string `json:"environments,omitempty" yaml:"environments,omitempty"`
	// AllowWithoutChange makes the template cover releases that link no
	// change at all (no NO_CHANGE reason) for the listed Services (required)
	// and Environments: routine, fully automated releases such as a
	// documentation site. Every other rule still applies.
	AllowWithoutChange bool `json:"allow_without_change,omitempty" yaml:"allow_without_change,omitempty"`
}

// MajorIncidentPolicy says which incidents are major. An incident is major
// when MaxPriority > 0 and 1 <= priority <= MaxPriority, or when MajorFlag is
// set and the incident carries the major flag.
type MajorIncidentPolicy struct {
	MaxPriority int  `json:"max_priority,omitempty" yaml:"max_priority,omitempty"`
	MajorFlag   bool `json:"major_flag,omitempty" yaml:"major_flag,omitempty"`
	// Scope is "service" (default) or "all".
	Scope string `json:"scope,omitempty" yaml:"scope,omitempty"`
	// FixFromRecord counts a release as an incident's fix only when the
	// incident's record lists one of the release's linked changes as its
	// fix (fix_changes, from the ITSM): a request naming the incident
	// among those it fixes (incidents) is then not enough. Off, the
	// request's word suffices (it is recorded with the decision).
	FixFromRecord bool `json:"fix_from_record,omitempty" yaml:"fix_from_record,omitempty"`
}

// Freeze is a named change freeze. It is active at an instant when any of
// its windows contains it.
type Freeze struct {
	Name string `json:"name" yaml:"name"`
	// TimeZone is the IANA zone of the windows; empty means Policy.TimeZone.
	TimeZone string `json:"time_zone,omitempty" yaml:"time_zone,omitempty"`
	// Environments the freeze applies to; empty means every environment
	// that enables the FREEZE rule. A listed environment must enable it
	// (in rules or customer_facing_rules).
	Environments []string       `json:"environments,omitempty" yaml:"environments,omitempty"`
	Weekly       []WeeklyWindow `json:"weekly,omitempty" yaml:"weekly,omitempty"`
	Dated        []DatedWindow  `json:"dated,omitempty" yaml:"dated,omitempty"`
}

// WeeklyWindow recurs every week on Days from Start to End, local wall-clock
// time "HH:MM" in the freeze's zone (End may be "24:00"). When End is before
// Start the window crosses midnight: it starts on a listed day and ends at
// End on the following day. End equal to Start is an error. Each day's
// window is computed from its local date, so it follows the zone's DST
// changes (Friday 08:00 is 08:00 in summer and in winter; a window spanning
// the change is an hour shorter or longer). A local time the change skips
// (02:30 when clocks jump from 02:00 to 03:00) moves forward by the jump
// (03:30); a repeated one is resolved as Go's time.Date does.
type WeeklyWindow struct {
	Days  []string `json:"days" yaml:"days"`
	Start string   `json:"start" yaml:"start"`
	End   string   `json:"end" yaml:"end"`
}

// DatedWindow is a one-off window from From to To (exclusive), local times
// "YYYY-MM-DDTHH:MM" (or a date "YYYY-MM-DD", meaning 00:00) in the
// freeze's zone.
type DatedWindow struct {
	From string `json:"from" yaml:"from"`
	To   string `json:"to" yaml:"to"`
}

// DefaultPolicy is the policy of a fresh install:
//   - production (alias "prod"): strict, every gate rule;
//   - staging (alias "stage"): light (CHANGE_NOT_FOUND, SCOPE_MISMATCH);
//   - development (alias "dev") and test: open;
//   - time zone UTC, business hours Monday–Friday 09:00–17:00;
//   - a major incident is priority 1 or flagged major, blocking its services;
//   - no freezes, no standard templates, an empty service catalog.
//
// It has no "*" catch-all: an unlisted environment is unknown, so a typo in a
// pipeline is an error rather than an open gate.
func DefaultPolicy() Policy {
	return Policy{
		TimeZone: "UTC",
		BusinessHours: BusinessHours{
			Days:  []string{"mon", "tue", "wed", "thu", "fri"},
			Start: "09:00",
			End:   "17:00",
		},
		Environments: map[string]EnvironmentPolicy{
			"production":  {Aliases: []string{"prod"}, Preset: PresetStrict},
			"staging":     {Aliases: []string{"stage"}, Preset: PresetLight},
			"development": {Aliases: []string{"dev"}, Preset: PresetOpen},
			"test":        {Preset: PresetOpen},
		},
		MajorIncident: MajorIncidentPolicy{MaxPriority: 1, MajorFlag: true, Scope: IncidentScopeService},
	}
}

// PolicyErrors is every problem Validate found, in document order. It
// unwraps to its *Error values, and errors.As(err, &coreErr) yields one
// KindInvalid *Error naming the first field whose message also lists the
// others, so a handler that renders one *Error shows them all.
type PolicyErrors []*Error

func (pe PolicyErrors) Error() string {
	parts := make([]string, len(pe))
	for i, e := range pe {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the individual problems.
func (pe PolicyErrors) Unwrap() []error {
	errs := make([]error, len(pe))
	for i, e := range pe {
		errs[i] = e
	}
	return errs
}

// As sets a **Error target to one summary error (see PolicyErrors).
func (pe PolicyErrors) As(target any) bool {
	t, ok := target.(**Error)
	if !ok || len(pe) == 0 {
		return false
	}
	first := pe[0]
	msg := first.Message
	if len(pe) > 1 {
		msg = fmt.Sprintf("%s (and %d more: %s)", msg, len(pe)-1, pe[1:].Error())
	}
	*t = &Error{Kind: KindInvalid, Field: first.Field, Message: msg}
	return true
}

// problems collects validation errors.
type problems []*Error

func (ps *problems) add(field, format string, args ...any) {
	*ps = append(*ps, Invalid(field, format, args...))
}

func (ps problems) err() error {
	switch len(ps) {
	case 0:
		return nil
	case 1:
		return ps[0]
	}
	return PolicyErrors(ps)
}

// Validate reports every problem in p: nil, one KindInvalid *Error, or
// PolicyErrors with several. Each names its field as a path, e.g.
// "environments.production.rules[2]" or "freezes[0].weekly[1].start".
func (p Policy) Validate() error {
	_, err := compile(p)
	return err
}

// ruleSet is a set of gate rules, one bit per rule.
type ruleSet uint32

// ruleBit is the bit of a gate rule code, 0 for any other string: bit i
// is GateRules[i] (and gateRules[i], the rule table in the same order).
func ruleBit(code string) ruleSet {
	for i, c := range GateRules {
		if c == code {
			return 1 << i
		}
	}
	return 0
}

func (s ruleSet) has(code string) bool { return s&ruleBit(code) != 0 }

// codes lists the set's codes in GateRules order.
func (s ruleSet) codes() []string {
	out := []string{}
	for _, code := range GateRules {
		if s.has(code) {
			out = append(out, code)
		}
	}
	return out
}

var allRules = func() ruleSet {
	var s ruleSet
	for _, code := range GateRules {
		s |= ruleBit(code)
	}
	return s
}()

func presetRules(preset string) (ruleSet, bool) {
	switch preset {
	case "", PresetStrict:
		return allRules, true
	case PresetLight:
		return ruleBit(CodeChangeNotFound) | ruleBit(CodeScopeMismatch), true
	case PresetOpen:
		return 0, true
	}
	return 0, false
}

// typeSet is a set of change types.
type typeSet uint8

func typeBit(t ChangeType) typeSet {
	switch t {
	case ChangeStandard:
		return 1
	case ChangeNormal:
		return 2
	case ChangeEmergency:
		return 4
	}
	return 0
}

func (s typeSet) has(t ChangeType) bool { return s&typeBit(t) != 0 }

// validateRules parses a list of rule codes.
func validateRules(ps *problems, field string, codes []string) ruleSet {
	var set ruleSet
	for i, code := range codes {
		f := fmt.Sprintf("%s[%d]", field, i)
		bit := ruleBit(strings.TrimSpace(code))
		switch {
		case bit == 0 && (code == CodeGateBypassed || code == CodeEmergencyReviewOverdue || code == CodeEmergencyValidationOverdue || code == CodeLinksChangedAfterDeploy):
			ps.add(f, "%s is a reconciliation finding, not a gate rule; gate rules are %s", code, strings.Join(GateRules, ", "))
		case bit == 0:
			ps.add(f, "unknown rule code %q; gate rules are %s", code, strings.Join(GateRules, ", "))
		case set&bit != 0:
			ps.add(f, "rule %s is listed twice", code)
		}
		set |= bit
	}
	return set
}

func validateTypes(ps *problems, field string, types []ChangeType) typeSet {
	var set typeSet
	for i, t := range types {
		if !t.Valid() {
			ps.add(fmt.Sprintf("%s[%d]", field, i), "unknown change type %q; use standard, normal or emergency", t)
			continue
		}
		set |= typeBit(t)
	}
	return set
}

var weekdayNames = map[string]time.Weekday{
	"sun": time.Sunday, "sunday": time.Sunday,
	"mon": time.Monday, "monday": time.Monday,
	"tue": time.Tuesday, "tues": time.Tuesday, "tuesday": time.Tuesday,
	"wed": time.Wednesday, "wednesday": time.Wednesday,
	"thu": time.Thursday, "thur": time.Thursday, "thurs": time.Thursday, "thursday": time.Thursday,
	"fri": time.Friday, "friday": time.Friday,
	"sat": time.Saturday, "saturday": time.Saturday,
}

// parseDays returns a set of weekdays, one bit per time.Weekday.
func parseDays(ps *problems, field string, days []string) uint8 {
	var set uint8
	if len(days) == 0 {
		ps.add(field, "at least one day is required (mon, tue, wed, thu, fri, sat, sun)")
		return 0
	}
	for i, d := range days {
		wd, ok := weekdayNames[strings.ToLower(strings.TrimSpace(d))]
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case !ok:
			ps.add(f, "unknown day %q; use mon, tue, wed, thu, fri, sat or sun", d)
		case set&(1<<wd) != 0:
			ps.add(f, "day %q is listed twice", d)
		default:
			set |= 1 << wd
		}
	}
	return set
}

// parseClock parses "HH:MM" into minutes after midnight. allow24 accepts
// "24:00" (the end of the day).
func parseClock(s string, allow24 bool) (int, error) {
	if len(s) != 5 || s[2] != ':' || !isDigits(s[:2]) || !isDigits(s[3:]) {
		return 0, fmt.Errorf("%q is not a time of day HH:MM (24-hour clock, e.g. 08:00)", s)
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if allow24 && h == 24 && m == 0 {
		return 24 * 60, nil
	}
	if h > 23 || m > 59 {
		if allow24 {
			return 0, fmt.Errorf("%q is not a valid time of day (00:00 to 23:59, or 24:00)", s)
		}
		return 0, fmt.Errorf("%q is not a valid time of day (00:00 to 23:59)", s)
	}
	return h*60 + m, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func loadZone(name string) (*time.Location, error) {
	if name == "Local" {
		return nil, fmt.Errorf("%q depends on the server's zone; name an IANA zone such as Europe/Berlin or UTC", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q; use an IANA name such as Europe/Berlin or America/New_York", name)
	}
	return loc, nil
}

// CheckZones refuses, in a policy being saved, a zone name that reads like
// a place's time but is a fixed offset that never keeps daylight saving
// time (EST, MST, HST, Etc/GMT±N): a freeze or window written in it
// drifts an hour for half the year (two for the inverted sign of
// Etc/GMT+1, which is UTC−1). Only new input is held to it: a stored
// policy that uses one still compiles (a replica must not fail to start
// on what an older build accepted), and is warned about.
func (p Policy) CheckZones() error {
	check := func(field, name string) error {
		meant, ok := fixedOffsetZones[name]
		if !ok && !strings.HasPrefix(name, "Etc/GMT+") && !strings.HasPrefix(name, "Etc/GMT-") {
			return nil
		}
		if !ok {
			meant = "the Area/Location zone of the place (Etc/GMT+1 is UTC−1: the sign is inverted)"
		}
		return Invalid(field, "%q is a fixed UTC offset that never observes daylight saving time, so a window or freeze in it drifts an hour for half the year; name %s", name, meant)
	}
	if err := check("time_zone", p.TimeZone); err != nil {
		return err
	}
	for i, f := range p.Freezes {
		if err := check(fmt.Sprintf("freezes[%d].time_zone", i), f.TimeZone); err != nil {
			return err
		}
	}
	return nil
}

// fixedOffsetZones are zone names that read like a place's time but are
// fixed offsets (tzdata keeps them for compatibility), with the zone
// they are usually meant for.
var fixedOffsetZones = map[string]string{
	"EST": "America/New_York (or America/Panama, which keeps no daylight saving time)",
	"MST": "America/Denver (or America/Phoenix, which keeps no daylight saving time)",
	"HST": "Pacific/Honolulu",
}

// containsFold reports whether list holds s, case-insensitively.
func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return x == s || strings.EqualFold(strings.TrimSpace(x), s) })
}
