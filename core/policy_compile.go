package core

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// CompiledPolicy is a validated Policy ready for evaluation: zones loaded,
// windows parsed, the alias map built. It is immutable and safe for
// concurrent use.
type CompiledPolicy struct {
	version  int
	src      Policy
	loc      *time.Location
	envs     map[string]*compiledEnv // canonical name → policy ("*" included)
	names    map[string]string       // lower-case name or alias → canonical name
	envNames []string                // sorted canonical names, without "*"
	services map[string]catalogEntry // lower-case service name → entry
	tmpls    []compiledTemplate
	major    MajorIncidentPolicy
	scopeAll bool
	freezes  []compiledFreeze
	cal      *businessCalendar
	kinds    []string // evidence kinds: built-in and declared
	// contexts recycles evaluation contexts: the rules are called through
	// their table, so a context escapes to the heap, and reusing them keeps
	// an evaluation to the allocations of its answer.
	contexts sync.Pool
}

// catalogEntry is one service of the catalog with its name as the policy
// spells it.
type catalogEntry struct {
	name string
	ServiceInfo
}

type compiledEnv struct {
	name     string
	rules    ruleSet
	cfRules  ruleSet
	approval typeSet
	pir      typeSet
	observe  bool
	evidence compiledEvidence
	keys     []SigningKey
	prints   map[string]string // key id → KeyFingerprint of its public key
}

type compiledTemplate struct {
	name               string
	services           []string
	envs               []string // resolved environment names
	allowWithoutChange bool
}

// Compile validates p and compiles it. version is the stored policy
// version, reported on every decision. The error is what Validate returns.
func Compile(p Policy, version int) (*CompiledPolicy, error) {
	cp, err := compile(p)
	if err != nil {
		return nil, err
	}
	cp.version = version
	return cp, nil
}

func compile(p Policy) (*CompiledPolicy, error) {
	var ps problems
	cp := &CompiledPolicy{
		src:      clonePolicy(p),
		loc:      time.UTC,
		envs:     make(map[string]*compiledEnv, len(p.Environments)),
		names:    make(map[string]string, 2*len(p.Environments)),
		services: make(map[string]catalogEntry, len(p.Services)),
		major:    p.MajorIncident,
	}

	if p.TimeZone != "" {
		loc, err := loadZone(p.TimeZone)
		if err != nil {
			ps.add("time_zone", "%v", err)
		} else {
			cp.loc = loc
		}
	}
	cp.cal = compileBusinessHours(&ps, p.BusinessHours, cp.loc)
	cp.kinds = evidenceKinds(&ps, p.EvidenceKinds)
	if t := p.Emergency.ReviewBusinessHours; t < 0 || t > 10000 {
		ps.add("emergency.review_business_hours", "must be between 0 (the default, 24) and 10000, not %g", t)
	}
	if t := p.Emergency.ValidationHours; t < 0 || t > 10000 {
		ps.add("emergency.validation_hours", "must be between 0 (the default, 4) and 10000, not %g", t)
	}
	if t := p.Reconcile.LinksChangeGraceHours; t < 0 || t > 10000 {
		ps.add("reconcile.links_change_grace_hours", "must be between 0 (the default, 1) and 10000, not %g", t)
	}
	compileEnvironments(&ps, cp, p.Environments)

	compileServices(&ps, cp, p.Services)

	compileTemplates(&ps, cp, p.StandardTemplates)
	cp.scopeAll = compileMajorIncident(&ps, p.MajorIncident)
	compileFreezes(&ps, cp, p.Freezes)
	compileApprovers(&ps, p)

	if err := ps.err(); err != nil {
		return nil, err
	}
	return cp, nil
}

// compileServices builds the service catalog.
func compileServices(ps *problems, cp *CompiledPolicy, services map[string]ServiceInfo) {
	for _, name := range slices.Sorted(maps.Keys(services)) {
		info := services[name]
		field := "services." + name
		key := strings.ToLower(strings.TrimSpace(name))
		if key == "" {
			ps.add("services", "a service name is empty")
			continue
		}
		if _, dup := cp.services[key]; dup {
			ps.add(field, "service %q is listed twice (names are case-insensitive)", name)
			continue
		}
		switch info.Tier {
		case "", TierCustomerFacing, TierInternal:
		default:
			ps.add(field+".tier", "unknown tier %q; use %q or %q", info.Tier, TierCustomerFacing, TierInternal)
		}
		info.Team = strings.TrimSpace(info.Team)
		cp.services[key] = catalogEntry{name: strings.TrimSpace(name), ServiceInfo: info}
	}
}

// compileTemplates builds the standard-change templates.
func compileTemplates(ps *problems, cp *CompiledPolicy, templates []StandardTemplate) {
	seenTmpl := map[string]int{}
	for i, t := range templates {
		field := fmt.Sprintf("standard_templates[%d]", i)
		name := strings.TrimSpace(t.Name)
		if name == "" {
			ps.add(field+".name", "a template name is required (the change's template / catalog item)")
		} else if j, dup := seenTmpl[strings.ToLower(name)]; dup {
			ps.add(field+".name", "template %q is already defined at standard_templates[%d]", name, j)
		} else {
			seenTmpl[strings.ToLower(name)] = i
		}
		ct := compiledTemplate{name: name, allowWithoutChange: t.AllowWithoutChange}
		for j, s := range t.Services {
			if strings.TrimSpace(s) == "" {
				ps.add(fmt.Sprintf("%s.services[%d]", field, j), "service name is empty")
				continue
			}
			ct.services = append(ct.services, strings.TrimSpace(s))
		}
		if t.AllowWithoutChange && len(ct.services) == 0 {
			ps.add(field+".services", "allow_without_change needs the services it covers; it cannot waive NO_CHANGE for every service")
		}
		for j, e := range t.Environments {
			if env, ok := cp.resolveEnvField(ps, fmt.Sprintf("%s.environments[%d]", field, j), e); ok {
				ct.envs = append(ct.envs, env)
			}
		}
		cp.tmpls = append(cp.tmpls, ct)
	}
}

// compileMajorIncident checks the major-incident policy and reports
// whether its scope is "all".
func compileMajorIncident(ps *problems, m MajorIncidentPolicy) (scopeAll bool) {
	if m.MaxPriority < 0 {
		ps.add("major_incident.max_priority", "must be 0 (off) or a priority such as 1 or 2, not %d", m.MaxPriority)
	}
	switch m.Scope {
	case "", IncidentScopeService:
	case IncidentScopeAll:
		scopeAll = true
	default:
		ps.add("major_incident.scope", "unknown scope %q; use %q or %q", m.Scope, IncidentScopeService, IncidentScopeAll)
	}
	return scopeAll
}

// compileFreezes builds the freezes, resolving their environments.
func compileFreezes(ps *problems, cp *CompiledPolicy, freezes []Freeze) {
	seenFreeze := map[string]int{}
	for i, f := range freezes {
		field := fmt.Sprintf("freezes[%d]", i)
		name := strings.TrimSpace(f.Name)
		if name == "" {
			ps.add(field+".name", "a freeze name is required")
		} else if j, dup := seenFreeze[strings.ToLower(name)]; dup {
			ps.add(field+".name", "freeze %q is already defined at freezes[%d]", name, j)
		} else {
			seenFreeze[strings.ToLower(name)] = i
		}
		cf, ok := compileFreeze(ps, field, f, cp.loc)
		for j, e := range f.Environments {
			ef := fmt.Sprintf("%s.environments[%d]", field, j)
			env, ok := cp.resolveEnvField(ps, ef, e)
			if !ok {
				continue
			}
			if ep := cp.envPolicy(env); ep != nil && !(ep.rules | ep.cfRules).has(CodeFreeze) {
				ps.add(ef, "environment %q does not enable the FREEZE rule, so this freeze would never apply there; add FREEZE to its rules", env)
				continue
			}
			cf.envs = append(cf.envs, env)
		}
		if ok {
			cp.freezes = append(cp.freezes, cf)
		}
	}
}

func compileEnvironments(ps *problems, cp *CompiledPolicy, envs map[string]EnvironmentPolicy) {
	if len(envs) == 0 {
		ps.add("environments", "at least one environment is required (e.g. production)")
		return
	}
	keys := slices.Sorted(maps.Keys(envs))
	// Names first, so an alias clashing with a name is reported on the alias.
	for _, name := range keys {
		field := "environments." + name
		trimmed := strings.TrimSpace(name)
		switch {
		case trimmed == "":
			ps.add("environments", "an environment name is empty")
			continue
		case trimmed != name || strings.ContainsAny(name, " \t\r\n"):
			ps.add(field, "environment name %q contains whitespace", name)
			continue
		case name == CatchAllEnvironment:
			continue
		}
		lower := strings.ToLower(name)
		if other, dup := cp.names[lower]; dup {
			ps.add(field, "environment %q clashes with %q (names are case-insensitive)", name, other)
			continue
		}
		cp.names[lower] = name
	}
	for _, name := range keys {
		ep := envs[name]
		field := "environments." + name
		if strings.TrimSpace(name) == "" {
			continue
		}
		compileAliases(ps, cp, field, name, ep.Aliases)
		cp.envs[name] = compileEnv(ps, field, name, ep)
		cp.envs[name].evidence = compileEvidence(ps, field, ep.Evidence, cp.kinds)
		cp.envs[name].keys = compileKeys(ps, field, ep.SigningKeys)
		cp.envs[name].prints = keyPrints(cp.envs[name].keys)
		if name != CatchAllEnvironment {
			cp.envNames = append(cp.envNames, name)
		}
	}
	sort.Strings(cp.envNames)
}

// compileAliases registers an environment's aliases in cp.names.
func compileAliases(ps *problems, cp *CompiledPolicy, field, name string, aliases []string) {
	for i, a := range aliases {
		af := fmt.Sprintf("%s.aliases[%d]", field, i)
		alias := strings.ToLower(strings.TrimSpace(a))
		switch {
		case name == CatchAllEnvironment:
			ps.add(af, "the catch-all environment %q cannot have aliases", CatchAllEnvironment)
			continue
		case alias == "":
			ps.add(af, "alias is empty")
			continue
		case alias == CatchAllEnvironment:
			ps.add(af, "%q is the catch-all key, not an alias", CatchAllEnvironment)
			continue
		}
		if other, dup := cp.names[alias]; dup {
			if other == name {
				ps.add(af, "alias %q repeats environment %q's own name or alias", a, name)
			} else {
				ps.add(af, "alias %q is already a name or alias of environment %q", a, other)
			}
			continue
		}
		cp.names[alias] = name
	}
}

// compileEnv compiles one environment's rules and change-type sets.
func compileEnv(ps *problems, field, name string, ep EnvironmentPolicy) *compiledEnv {
	ce := &compiledEnv{name: name}
	if ep.Rules != nil {
		ce.rules = validateRules(ps, field+".rules", ep.Rules)
	} else {
		set, ok := presetRules(ep.Preset)
		if !ok {
			ps.add(field+".preset", "unknown preset %q; use %q, %q or %q", ep.Preset, PresetStrict, PresetLight, PresetOpen)
		}
		ce.rules = set
	}
	ce.cfRules = validateRules(ps, field+".customer_facing_rules", ep.CustomerFacingRules)
	switch ep.Mode {
	case "", ModeEnforce:
	case ModeObserve:
		ce.observe = true
	default:
		ps.add(field+".mode", "unknown mode %q; use %q or %q", ep.Mode, ModeEnforce, ModeObserve)
	}
	if ep.ApprovalRequired != nil {
		ce.approval = validateTypes(ps, field+".approval_required", ep.ApprovalRequired)
	} else {
		ce.approval = typeBit(ChangeNormal)
	}
	switch {
	case ep.PIRRequired != nil:
		ce.pir = validateTypes(ps, field+".pir_required", ep.PIRRequired)
	case ep.Rules == nil && (ep.Preset == "" || ep.Preset == PresetStrict):
		ce.pir = typeBit(ChangeNormal) | typeBit(ChangeEmergency)
	}
	return ce
}

// resolveEnvField resolves an environment named in the policy itself.
func (cp *CompiledPolicy) resolveEnvField(ps *problems, field, name string) (string, bool) {
	env, ok := cp.ResolveEnvironment(name)
	if !ok {
		ps.add(field, "unknown environment %q; known environments are %s", name, strings.Join(cp.envNames, ", "))
	}
	return env, ok
}

// Version is the stored policy version the policy was compiled from.
func (cp *CompiledPolicy) Version() int { return cp.version }

// Policy returns a copy of the policy document as given to Compile.
func (cp *CompiledPolicy) Policy() Policy { return clonePolicy(cp.src) }

// Location is the policy's time zone.
func (cp *CompiledPolicy) Location() *time.Location {
	if cp.loc == nil {
		return time.UTC
	}
	return cp.loc
}

// ResolveEnvironment maps an environment name or alias, case-insensitively
// and ignoring surrounding space, to its canonical name. An unlisted name
// resolves to itself in lower case when the policy has a "*" catch-all;
// otherwise ok is false (the API answers 400 listing Environments()).
func (cp *CompiledPolicy) ResolveEnvironment(name string) (canonical string, ok bool) {
	name = strings.TrimSpace(name)
	if name == "" || name == CatchAllEnvironment {
		return "", false
	}
	if c, ok := cp.names[name]; ok { // the usual case: a name already in lower case
		return c, true
	}
	lower := strings.ToLower(name)
	if c, ok := cp.names[lower]; ok {
		return c, true
	}
	if _, ok := cp.envs[CatchAllEnvironment]; ok {
		return lower, true
	}
	return "", false
}

// Environments lists the canonical environment names, sorted, without the
// "*" catch-all.
func (cp *CompiledPolicy) Environments() []string { return slices.Clone(cp.envNames) }

// envPolicy returns the policy of a name or alias (the catch-all for
// unlisted ones), or nil when the environment is unknown.
func (cp *CompiledPolicy) envPolicy(name string) *compiledEnv {
	env, ok := cp.ResolveEnvironment(name)
	if !ok {
		return nil
	}
	if ce, ok := cp.envs[env]; ok {
		return ce
	}
	return cp.envs[CatchAllEnvironment]
}

// Rules lists the gate rule codes evaluated for a release of service to env
// (the environment's rules plus, for a customer-facing service, its
// customer-facing extras), in evaluation order. An unknown environment gets
// every rule: the engine fails closed.
func (cp *CompiledPolicy) Rules(env, service string) []string {
	return cp.rulesFor(cp.envPolicy(env), service).codes()
}

func (cp *CompiledPolicy) rulesFor(ce *compiledEnv, service string) ruleSet {
	if ce == nil {
		return allRules
	}
	rules := ce.rules
	if ce.cfRules != 0 && cp.Tier(service) == TierCustomerFacing {
		rules |= ce.cfRules
	}
	return rules
}

// IsMajor reports whether the incident counts as major under the policy
// (see MajorIncidentPolicy). It does not look at whether it is active.
func (cp *CompiledPolicy) IsMajor(i Incident) bool {
	if cp.major.MaxPriority > 0 && i.Priority >= 1 && i.Priority <= cp.major.MaxPriority {
		return true
	}
	return cp.major.MajorFlag && i.Major
}

// IncidentScopeAll reports whether a major incident blocks every service
// (the fact gatherer then asks for all active incidents).
func (cp *CompiledPolicy) IncidentScopeAll() bool { return cp.scopeAll }

// PIRRequired reports whether a release to env linking changes of the given
// types needs a post-implementation review. An unknown environment needs none.
func (cp *CompiledPolicy) PIRRequired(env string, types []ChangeType) bool {
	ce := cp.envPolicy(env)
	if ce == nil {
		return false
	}
	for _, t := range types {
		if ce.pir.has(t) {
			return true
		}
	}
	return false
}

// TeamOf is the owning team of service in the catalog, or "".
func (cp *CompiledPolicy) TeamOf(service string) string {
	return cp.services[strings.ToLower(strings.TrimSpace(service))].Team
}

// Tier is the catalog tier of service ("customer-facing" or "internal");
// a service not in the catalog is internal.
func (cp *CompiledPolicy) Tier(service string) string {
	if t := cp.services[strings.ToLower(strings.TrimSpace(service))].Tier; t != "" {
		return t
	}
	return TierInternal
}

// Subject is what selects the rules a release gets, as the policy names
// it: the caller's spelling of these never picks rules.
type Subject struct {
	// Service is trimmed, and spelled as the catalog spells it when the
	// catalog lists it (names match case-insensitively).
	Service string
	// Environment is the canonical name of an environment name or alias
	// (any case, surrounding space ignored); the trimmed input when the
	// policy does not know it (KnownEnvironment false).
	Environment      string
	KnownEnvironment bool
	// Team is the catalog's team of the service when it names one, else
	// the caller's (nothing else knows it).
	Team string
	// IgnoredTeam is the caller's team when the catalog names another: it
	// is ignored, and the gate says so in a TEAM_IGNORED note.
	IgnoredTeam string
	// Tier is the catalog tier ("customer-facing" or "internal").
	Tier string
}

// TeamServices lists the services the catalog gives to team (compared
// case-insensitively), sorted.
func (cp *CompiledPolicy) TeamServices(team string) []string {
	team = strings.TrimSpace(team)
	var out []string
	for _, e := range cp.services {
		if team != "" && strings.EqualFold(e.Team, team) {
			out = append(out, e.name)
		}
	}
	slices.Sort(out)
	return out
}

// Subject canonicalizes the fields of a request or deployment report that
// select rules: the environment (aliases, case, space), the service's
// spelling, its team and tier (from the catalog, never from the caller).
// Every path that selects rules or gathers facts by these fields goes
// through it: the gate, deployment reports, Evaluate.
func (cp *CompiledPolicy) Subject(service, environment, team string) Subject {
	s := Subject{Service: strings.TrimSpace(service), Team: strings.TrimSpace(team), Tier: TierInternal}
	s.Environment, s.KnownEnvironment = cp.ResolveEnvironment(environment)
	if !s.KnownEnvironment {
		s.Environment = strings.TrimSpace(environment)
	}
	e, listed := cp.services[s.Service]
	if !listed {
		e, listed = cp.services[strings.ToLower(s.Service)]
	}
	if !listed {
		return s
	}
	s.Service = e.name
	if e.Tier != "" {
		s.Tier = e.Tier
	}
	if e.Team != "" {
		if s.Team != "" && !strings.EqualFold(s.Team, e.Team) {
			s.IgnoredTeam = s.Team
		}
		s.Team = e.Team
	}
	return s
}

// CanonicalRequest returns req with its service, environment and team as
// Subject names them; ok is false when the environment is unknown. A team
// the catalog overrides is kept in IgnoredTeam (an earlier one is kept when
// req is already canonical, so calling it twice changes nothing).
func (cp *CompiledPolicy) CanonicalRequest(req GateRequest) (GateRequest, bool) {
	_, _, ok := cp.canonicalize(&req)
	return req, ok
}

// canonicalize is CanonicalRequest in place; it also returns what the
// canonical names select: the environment's policy (nil when unknown) and
// the rules the release gets (every rule for an unknown environment).
func (cp *CompiledPolicy) canonicalize(req *GateRequest) (ce *compiledEnv, rules ruleSet, known bool) {
	s := cp.Subject(req.Service, req.Environment, req.Team)
	req.Service, req.Environment, req.Team = s.Service, s.Environment, s.Team
	if s.IgnoredTeam != "" {
		req.IgnoredTeam = s.IgnoredTeam
	}
	if !s.KnownEnvironment {
		return nil, allRules, false
	}
	if ce = cp.envs[s.Environment]; ce == nil {
		ce = cp.envs[CatchAllEnvironment]
	}
	rules = allRules
	if ce != nil {
		rules = ce.rules
		if s.Tier == TierCustomerFacing {
			rules |= ce.cfRules
		}
	}
	return ce, rules, true
}

// template returns the standard template that pre-authorizes change c for
// a release of service to env, or nil.
func (cp *CompiledPolicy) template(c *Change, service, env string) *compiledTemplate {
	if c.Type != ChangeStandard || strings.TrimSpace(c.Template) == "" {
		return nil
	}
	for i := range cp.tmpls {
		t := &cp.tmpls[i]
		if strings.EqualFold(t.name, strings.TrimSpace(c.Template)) && t.covers(service, env) {
			return t
		}
	}
	return nil
}

func (t *compiledTemplate) covers(service, env string) bool {
	return (len(t.services) == 0 || containsFold(t.services, service)) &&
		(len(t.envs) == 0 || containsFold(t.envs, env))
}

// unlinkedTemplate returns a template that lets a release of service to env
// link no change, or nil.
func (cp *CompiledPolicy) unlinkedTemplate(service, env string) *compiledTemplate {
	for i := range cp.tmpls {
		t := &cp.tmpls[i]
		if t.allowWithoutChange && t.covers(service, env) {
			return t
		}
	}
	return nil
}

func clonePolicy(p Policy) Policy {
	q := p
	q.BusinessHours.Days = slices.Clone(p.BusinessHours.Days)
	q.BusinessHours.Holidays = slices.Clone(p.BusinessHours.Holidays)
	if p.Environments != nil {
		q.Environments = make(map[string]EnvironmentPolicy, len(p.Environments))
		for k, e := range p.Environments {
			e.Aliases = slices.Clone(e.Aliases)
			e.Rules = slices.Clone(e.Rules)
			e.CustomerFacingRules = slices.Clone(e.CustomerFacingRules)
			e.ApprovalRequired = slices.Clone(e.ApprovalRequired)
			e.PIRRequired = slices.Clone(e.PIRRequired)
			e.Evidence = slices.Clone(e.Evidence)
			e.SigningKeys = slices.Clone(e.SigningKeys)
			q.Environments[k] = e
		}
	}
	q.Services = maps.Clone(p.Services)
	q.EvidenceKinds = slices.Clone(p.EvidenceKinds)
	q.Approvals = slices.Clone(p.Approvals)
	q.ApproverGroups = maps.Clone(p.ApproverGroups)
	q.FallbackApprovers = slices.Clone(p.FallbackApprovers)
	q.EmergencyApprovers = slices.Clone(p.EmergencyApprovers)
	if p.StandardTemplates != nil {
		q.StandardTemplates = make([]StandardTemplate, len(p.StandardTemplates))
		for i, t := range p.StandardTemplates {
			t.Services = slices.Clone(t.Services)
			t.Environments = slices.Clone(t.Environments)
			q.StandardTemplates[i] = t
		}
	}
	if p.Freezes != nil {
		q.Freezes = make([]Freeze, len(p.Freezes))
		for i, f := range p.Freezes {
			f.Environments = slices.Clone(f.Environments)
			f.Dated = slices.Clone(f.Dated)
			f.Weekly = slices.Clone(f.Weekly)
			for j := range f.Weekly {
				f.Weekly[j].Days = slices.Clone(f.Weekly[j].Days)
			}
			q.Freezes[i] = f
		}
	}
	return q
}

// EnvironmentNames lists, in lower case, the names and aliases that
// resolve to the canonical environment name (none for a name the policy
// does not list), sorted.
func (cp *CompiledPolicy) EnvironmentNames(canonical string) []string {
	var out []string
	for n, c := range cp.names {
		if c == canonical {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
