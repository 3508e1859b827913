package core

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestDefaultPolicy(t *testing.T) {
	cp := mustCompile(t, DefaultPolicy())
	if got, want := cp.Environments(), []string{"development", "production", "staging", "test"}; !slices.Equal(got, want) {
		t.Errorf("Environments() = %v, want %v", got, want)
	}
	if got := cp.Rules("prod", "x"); !slices.Equal(got, GateRules) {
		t.Errorf("production rules = %v, want all", got)
	}
	if got, want := cp.Rules("staging", "x"), []string{CodeChangeNotFound, CodeScopeMismatch}; !slices.Equal(got, want) {
		t.Errorf("staging rules = %v, want %v", got, want)
	}
	if got := cp.Rules("dev", "x"); len(got) != 0 {
		t.Errorf("dev rules = %v, want none", got)
	}
	if !cp.IsMajor(Incident{Priority: 1}) || !cp.IsMajor(Incident{Priority: 4, Major: true}) || cp.IsMajor(Incident{Priority: 2}) || cp.IsMajor(Incident{}) {
		t.Error("default major incident detection wrong")
	}
	if cp.IncidentScopeAll() {
		t.Error("default scope must be service")
	}
	if cp.Location().String() != "UTC" {
		t.Errorf("zone = %s", cp.Location())
	}
}

func TestResolveEnvironment(t *testing.T) {
	p := testPolicy()
	cp := mustCompile(t, p)
	withCatchAll := testPolicy()
	withCatchAll.Environments["*"] = EnvironmentPolicy{Preset: PresetOpen}
	cpAll := mustCompile(t, withCatchAll)

	tests := []struct {
		cp     *CompiledPolicy
		in     string
		want   string
		wantOK bool
	}{
		{cp, "production", "production", true},
		{cp, "Production", "production", true},
		{cp, " prod ", "production", true},
		{cp, "prd", "production", true},
		{cp, "STAGE", "staging", true},
		{cp, "dev", "development", true},
		{cp, "qa", "", false},
		{cp, "", "", false},
		{cp, "*", "", false},
		{cpAll, "QA", "qa", true},
		{cpAll, "prod", "production", true},
		{cpAll, "*", "", false},
	}
	for _, tt := range tests {
		got, ok := tt.cp.ResolveEnvironment(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("ResolveEnvironment(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
	if got := cpAll.Environments(); slices.Contains(got, "*") {
		t.Errorf("Environments() lists the catch-all: %v", got)
	}
	if got := cpAll.Rules("qa", "checkout"); len(got) != 0 {
		t.Errorf("catch-all open env has rules %v", got)
	}
}

func TestAccessors(t *testing.T) {
	cp := mustCompile(t, testPolicy())
	if cp.Version() != 7 {
		t.Errorf("Version = %d", cp.Version())
	}
	if got := cp.TeamOf(" Checkout "); got != "payments" {
		t.Errorf("TeamOf = %q", got)
	}
	if got := cp.TeamOf("nope"); got != "" {
		t.Errorf("TeamOf unknown = %q", got)
	}
	if cp.Tier("checkout") != TierCustomerFacing || cp.Tier("docs") != TierInternal || cp.Tier("nope") != TierInternal {
		t.Error("Tier wrong")
	}
	// Customer-facing extras.
	if got, want := cp.Rules("staging", "checkout"), []string{CodeChangeNotFound, CodeChangeNotApproved, CodeScopeMismatch, CodeFreeze}; !slices.Equal(got, want) {
		t.Errorf("staging customer-facing rules = %v, want %v", got, want)
	}
	// Unknown environments fail closed.
	if got := cp.Rules("nowhere", "x"); !slices.Equal(got, GateRules) {
		t.Errorf("unknown env rules = %v", got)
	}

	pirTests := []struct {
		env   string
		types []ChangeType
		want  bool
	}{
		{"prod", []ChangeType{ChangeNormal}, true},
		{"prod", []ChangeType{ChangeStandard, ChangeEmergency}, true},
		{"prod", []ChangeType{ChangeStandard}, false},
		{"prod", nil, false},
		{"staging", []ChangeType{ChangeNormal}, false},
		{"nowhere", []ChangeType{ChangeNormal}, false},
	}
	for _, tt := range pirTests {
		if got := cp.PIRRequired(tt.env, tt.types); got != tt.want {
			t.Errorf("PIRRequired(%s, %v) = %v, want %v", tt.env, tt.types, got, tt.want)
		}
	}
	p := testPolicy()
	e := p.Environments["staging"]
	e.PIRRequired = []ChangeType{ChangeEmergency}
	p.Environments["staging"] = e
	if cp2 := mustCompile(t, p); !cp2.PIRRequired("stage", []ChangeType{ChangeEmergency}) || cp2.PIRRequired("stage", []ChangeType{ChangeNormal}) {
		t.Error("explicit pir_required not honoured")
	}

	// Policy() is a deep copy.
	got := cp.Policy()
	got.Environments["production"].Aliases[0] = "mutated"
	got.Freezes[0].Weekly[0].Days[0] = "sun"
	if again := cp.Policy(); again.Environments["production"].Aliases[0] != "prod" || again.Freezes[0].Weekly[0].Days[0] != "fri" {
		t.Error("Policy() shares memory with the compiled policy")
	}
	if _, ok := cp.ResolveEnvironment("mutated"); ok {
		t.Error("mutating the copy changed resolution")
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(p *Policy)
		field string
		msg   string
	}{
		{"bad zone", func(p *Policy) { p.TimeZone = "Mars/Olympus" }, "time_zone", `unknown time zone "Mars/Olympus"`},
		{"local zone", func(p *Policy) { p.TimeZone = "Local" }, "time_zone", "depends on the server's zone"},
		{"no environments", func(p *Policy) { p.Environments = nil }, "environments", "at least one environment"},
		{"unknown rule", func(p *Policy) {
			setEnv(p, "production", func(e *EnvironmentPolicy) { e.Rules = []string{CodeNoChange, CodeFreeze, "NO_CHANGES"} })
		}, "environments.production.rules[2]", `unknown rule code "NO_CHANGES"`},
		{"reconcile-only code", func(p *Policy) {
			setEnv(p, "production", func(e *EnvironmentPolicy) { e.Rules = []string{CodeGateBypassed} })
		}, "environments.production.rules[0]", "reconciliation finding, not a gate rule"},
		{"duplicate rule", func(p *Policy) {
			setEnv(p, "production", func(e *EnvironmentPolicy) { e.Rules = []string{CodeFreeze, CodeFreeze} })
		}, "environments.production.rules[1]", "listed twice"},
		{"unknown customer-facing rule", func(p *Policy) {
			setEnv(p, "staging", func(e *EnvironmentPolicy) { e.CustomerFacingRules = []string{"x"} })
		}, "environments.staging.customer_facing_rules[0]", `unknown rule code "x"`},
		{"unknown preset", func(p *Policy) { setEnv(p, "staging", func(e *EnvironmentPolicy) { e.Preset = "lenient" }) },
			"environments.staging.preset", `unknown preset "lenient"`},
		{"unknown change type", func(p *Policy) {
			setEnv(p, "production", func(e *EnvironmentPolicy) { e.ApprovalRequired = []ChangeType{ChangeNormal, "major"} })
		}, "environments.production.approval_required[1]", `unknown change type "major"`},
		{"unknown pir type", func(p *Policy) {
			setEnv(p, "production", func(e *EnvironmentPolicy) { e.PIRRequired = []ChangeType{"Normal"} })
		}, "environments.production.pir_required[0]", `unknown change type "Normal"`},
		{"alias clashes with a name", func(p *Policy) {
			setEnv(p, "staging", func(e *EnvironmentPolicy) { e.Aliases = []string{"Production"} })
		},
			"environments.staging.aliases[0]", `alias "Production" is already a name or alias of environment "production"`},
		{"alias clashes with an alias", func(p *Policy) {
			setEnv(p, "staging", func(e *EnvironmentPolicy) { e.Aliases = []string{"stage", "PROD"} })
		},
			"environments.staging.aliases[1]", `of environment "production"`},
		{"alias repeats own name", func(p *Policy) { setEnv(p, "staging", func(e *EnvironmentPolicy) { e.Aliases = []string{"staging"} }) },
			"environments.staging.aliases[0]", "repeats environment"},
		{"names clash by case", func(p *Policy) { p.Environments["Staging"] = EnvironmentPolicy{} },
			"environments.staging", `clashes with "Staging"`},
		{"empty alias", func(p *Policy) { setEnv(p, "staging", func(e *EnvironmentPolicy) { e.Aliases = []string{" "} }) },
			"environments.staging.aliases[0]", "alias is empty"},
		{"catch-all alias", func(p *Policy) { p.Environments["*"] = EnvironmentPolicy{Aliases: []string{"any"}} },
			"environments.*.aliases[0]", "cannot have aliases"},
		{"whitespace env name", func(p *Policy) { p.Environments["pre prod"] = EnvironmentPolicy{} },
			"environments.pre prod", "contains whitespace"},
		{"bad business start", func(p *Policy) { p.BusinessHours.Start = "9:00" }, "business_hours.start", `"9:00" is not a time of day HH:MM`},
		{"bad business end", func(p *Policy) { p.BusinessHours.End = "17:60" }, "business_hours.end", "not a valid time of day"},
		{"business hours reversed", func(p *Policy) { p.BusinessHours.Start, p.BusinessHours.End = "17:00", "09:00" },
			"business_hours.end", "cannot cross midnight"},
		{"bad business day", func(p *Policy) { p.BusinessHours.Days = []string{"mon", "funday"} }, "business_hours.days[1]", `unknown day "funday"`},
		{"no business days", func(p *Policy) { p.BusinessHours.Days = []string{} }, "business_hours.days", "at least one day"},
		{"duplicate business day", func(p *Policy) { p.BusinessHours.Days = []string{"mon", "Monday"} }, "business_hours.days[1]", "listed twice"},
		{"bad holiday", func(p *Policy) { p.BusinessHours.Holidays = []string{"2026-12-25", "25.12.2026"} },
			"business_hours.holidays[1]", "not a date YYYY-MM-DD"},
		{"bad tier", func(p *Policy) { p.Services["checkout"] = ServiceInfo{Tier: "external"} }, "services.checkout.tier", `unknown tier "external"`},
		{"template without name", func(p *Policy) { p.StandardTemplates[0].Name = "" }, "standard_templates[0].name", "name is required"},
		{"duplicate template", func(p *Policy) { p.StandardTemplates[1].Name = "CERT-rotation" }, "standard_templates[1].name", "already defined at standard_templates[0]"},
		{"template unknown env", func(p *Policy) { p.StandardTemplates[0].Environments = []string{"prod", "qa"} },
			"standard_templates[0].environments[1]", `unknown environment "qa"; known environments are development, production, staging`},
		{"unlinked template without services", func(p *Policy) { p.StandardTemplates[1].Services = nil },
			"standard_templates[1].services", "allow_without_change needs the services"},
		{"negative priority", func(p *Policy) { p.MajorIncident.MaxPriority = -1 }, "major_incident.max_priority", "must be 0"},
		{"bad scope", func(p *Policy) { p.MajorIncident.Scope = "global" }, "major_incident.scope", `unknown scope "global"`},
		{"freeze without name", func(p *Policy) { p.Freezes[0].Name = " " }, "freezes[0].name", "name is required"},
		{"duplicate freeze", func(p *Policy) { p.Freezes[1].Name = "Friday" }, "freezes[1].name", "already defined at freezes[0]"},
		{"freeze bad zone", func(p *Policy) { p.Freezes[0].TimeZone = "Europe/Berlim" }, "freezes[0].time_zone", "unknown time zone"},
		{"freeze no windows", func(p *Policy) { p.Freezes[0].Weekly = nil }, "freezes[0]", "has no windows"},
		{"freeze bad day", func(p *Policy) { p.Freezes[0].Weekly[0].Days = []string{"fr"} }, "freezes[0].weekly[0].days[0]", `unknown day "fr"`},
		{"freeze no days", func(p *Policy) { p.Freezes[0].Weekly[0].Days = nil }, "freezes[0].weekly[0].days", "at least one day"},
		{"freeze bad start", func(p *Policy) {
			p.Freezes[0].Weekly = append(p.Freezes[0].Weekly, WeeklyWindow{Days: []string{"sat"}, Start: "25:00", End: "26:00"})
		}, "freezes[0].weekly[1].start", `"25:00" is not a valid time of day`},
		{"freeze 24:00 start", func(p *Policy) { p.Freezes[0].Weekly[0].Start = "24:00" }, "freezes[0].weekly[0].start", "00:00 to 23:59)"},
		{"freeze empty window", func(p *Policy) { p.Freezes[0].Weekly[0].End = "08:00" }, "freezes[0].weekly[0].end", "the window would be empty"},
		{"dated bad from", func(p *Policy) { p.Freezes[1].Dated[0].From = "2026-12-20 00:00" }, "freezes[1].dated[0].from", "not a local date-time"},
		{"dated reversed", func(p *Policy) { p.Freezes[1].Dated[0].To = "2026-12-19" }, "freezes[1].dated[0].to", "must be after from"},
		{"freeze unknown env", func(p *Policy) { p.Freezes[0].Environments = []string{"prod", "preprod"} },
			"freezes[0].environments[1]", `unknown environment "preprod"`},
		{"freeze env without FREEZE rule", func(p *Policy) { p.Freezes[0].Environments = []string{"dev"} },
			"freezes[0].environments[0]", `environment "development" does not enable the FREEZE rule`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			tt.mod(&p)
			err := p.Validate()
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			if !IsKind(err, KindInvalid) {
				t.Errorf("kind = %s, want invalid", KindOf(err))
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("no *Error in %v", err)
			}
			if e.Field != tt.field {
				t.Errorf("field = %q, want %q (error: %v)", e.Field, tt.field, err)
			}
			if !strings.Contains(e.Message, tt.msg) {
				t.Errorf("message = %q, want it to contain %q", e.Message, tt.msg)
			}
			if _, cerr := Compile(p, 1); cerr == nil {
				t.Error("Compile accepted an invalid policy")
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	p := testPolicy()
	p.TimeZone = "Nowhere/Town"
	p.Freezes[0].Weekly[0].Start = "8am"
	setEnv(&p, "production", func(e *EnvironmentPolicy) { e.Rules = []string{"BOGUS"} })
	err := p.Validate()
	var pe PolicyErrors
	if !errors.As(err, &pe) {
		t.Fatalf("want PolicyErrors, got %T %v", err, err)
	}
	var fields []string
	for _, e := range pe {
		fields = append(fields, e.Field)
	}
	want := []string{"time_zone", "environments.production.rules[0]", "freezes[0].weekly[0].start"}
	if !slices.Equal(fields, want) {
		t.Errorf("fields = %v, want %v", fields, want)
	}
	var e *Error
	if !errors.As(err, &e) || e.Field != "time_zone" || !strings.Contains(e.Message, "(and 2 more: environments.production.rules[0]: ") {
		t.Errorf("summary *Error = %+v", e)
	}
	if len(pe.Unwrap()) != 3 {
		t.Errorf("Unwrap gives %d errors", len(pe.Unwrap()))
	}
	if !strings.Contains(err.Error(), "freezes[0].weekly[0].start: ") {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestValidateAcceptsEdgeForms(t *testing.T) {
	p := testPolicy()
	p.Freezes = append(p.Freezes,
		Freeze{Name: "night", TimeZone: "America/New_York", Environments: []string{"PROD"},
			Weekly: []WeeklyWindow{{Days: []string{"Monday", "TUE"}, Start: "22:00", End: "02:00"}, {Days: []string{"sun"}, Start: "00:00", End: "24:00"}}},
		Freeze{Name: "launch", Dated: []DatedWindow{{From: "2027-03-01", To: "2027-03-02T06:30"}}},
	)
	p.BusinessHours = BusinessHours{Days: []string{"mon", "sat"}, Start: "07:30", End: "24:00", Holidays: []string{"2026-12-25"}}
	p.Environments["*"] = EnvironmentPolicy{Preset: PresetLight}
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	// An environment with rules: [] enables nothing; with no preset, strict.
	p.Environments["sandbox"] = EnvironmentPolicy{Rules: []string{}}
	p.Environments["audit"] = EnvironmentPolicy{}
	cp := mustCompile(t, p)
	if got := cp.Rules("sandbox", "checkout"); len(got) != 0 {
		t.Errorf("sandbox rules = %v", got)
	}
	if got := cp.Rules("audit", "checkout"); !slices.Equal(got, GateRules) {
		t.Errorf("audit rules = %v", got)
	}
}

// TestPolicyJSON checks the documented snake_case names against an
// example document.
func TestPolicyJSON(t *testing.T) {
	b, err := os.ReadFile("testdata/policy_example.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var p Policy
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode: %v", err)
	}
	cp := mustCompile(t, p)
	if env, _ := cp.ResolveEnvironment("prod"); env != "production" {
		t.Errorf("prod resolves to %q", env)
	}
	if cp.TeamOf("checkout") != "payments" || !cp.IncidentScopeAll() || len(cp.Policy().Freezes) != 2 ||
		len(cp.Policy().StandardTemplates) != 1 || cp.Policy().BusinessHours.Holidays[0] != "2026-12-25" {
		t.Errorf("decoded policy wrong: %+v", cp.Policy())
	}
	if !cp.PIRRequired("production", []ChangeType{ChangeEmergency}) || cp.PIRRequired("production", []ChangeType{ChangeNormal}) {
		t.Error("pir_required not decoded")
	}
}

func setEnv(p *Policy, name string, mod func(e *EnvironmentPolicy)) {
	e := p.Environments[name]
	mod(&e)
	p.Environments[name] = e
}

func TestRuleBitsCoverGateRules(t *testing.T) {
	var seen ruleSet
	for _, code := range GateRules {
		bit := ruleBit(code)
		if bit == 0 || seen&bit != 0 {
			t.Errorf("rule %s has bit %b (seen %b)", code, bit, seen)
		}
		seen |= bit
	}
	if got := allRules.codes(); !slices.Equal(got, GateRules) {
		t.Errorf("allRules = %v", got)
	}
}

// TestRuleTableFollowsGateRules: the rule table has one rule per gate code,
// in GateRules order (bit i of a rule set is gateRules[i]).
func TestRuleTableFollowsGateRules(t *testing.T) {
	if len(gateRules) != len(GateRules) {
		t.Fatalf("%d rules in the table, %d gate codes", len(gateRules), len(GateRules))
	}
	for i, r := range gateRules {
		if r.code != GateRules[i] || r.check == nil || ruleBit(r.code) != 1<<i {
			t.Errorf("gateRules[%d] is %s (check set: %v), GateRules[%d] is %s", i, r.code, r.check != nil, i, GateRules[i])
		}
	}
}

// TestCheckZones: a policy being saved may not name a fixed offset that
// reads like a place's time; one stored still compiles (a replica must not
// fail to start on what an older build accepted).
func TestCheckZones(t *testing.T) {
	for _, tc := range []struct {
		name, zone, field, msg string
		freeze                 bool
	}{
		{"a place", "America/New_York", "", "", false},
		{"a fixed offset named like a place", "EST", "time_zone", `"EST" is a fixed UTC offset that never observes daylight saving time`, false},
		{"an inverted Etc offset in a freeze", "Etc/GMT+1", "freezes[0].time_zone", "the sign is inverted", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy()
			if tc.freeze {
				p.Freezes = []Freeze{{Name: "f", TimeZone: tc.zone, Weekly: []WeeklyWindow{{Days: []string{"fri"}, Start: "08:00", End: "17:00"}}}}
			} else {
				p.TimeZone = tc.zone
			}
			err := p.CheckZones()
			var ce *Error
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.field != "" && (!errors.As(err, &ce) || ce.Field != tc.field || !strings.Contains(ce.Message, tc.msg)):
				t.Fatalf("CheckZones = %v, want %s refused with %q", err, tc.field, tc.msg)
			}
			if _, err := Compile(p, 1); err != nil {
				t.Fatalf("a stored policy with it no longer compiles: %v", err)
			}
		})
	}
}
