package mapping_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/mapping"
)

func compile(t testing.TB, src string) *mapping.Compiled {
	t.Helper()
	p, err := mapping.Parse([]byte(src))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	c, err := mapping.Compile(p)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return c
}

// oneField compiles a deployment-free profile of the given kind with one
// field spec (YAML flow mapping) and applies it to payload.
func oneField(t *testing.T, kind, field, spec, payload string) mapping.Result {
	t.Helper()
	c := compile(t, "name: t\nkind: "+kind+"\nfields:\n  "+field+": "+spec+"\n")
	return c.Apply([]byte(payload))
}

func TestTransforms(t *testing.T) {
	ts := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name, kind, field, spec, payload string
		want                             any
		wantErr                          string
	}{
		{"path", "change", "key", "{path: a.b}", `{"a":{"b":"X-1"}}`, "X-1", ""},
		{"fallback skips empty and null", "change", "key", "{paths: [a, b, c]}", `{"a":"","b":null,"c":"C"}`, "C", ""},
		{"sn display pair number", "change", "state", `{path: state, map: {"3": closed}}`, `{"state":{"display_value":"Closed","value":3.0}}`, "closed", ""},
		{"sn reference", "change", "requested_by", "{path: r}", `{"r":{"link":"https://x","value":"abc"}}`, "abc", ""},
		{"jira option", "change", "risk", "{path: f}", `{"f":{"self":"x","value":"High","id":"1"}}`, "High", ""},
		{"jira name object", "change", "title", "{path: f}", `{"f":{"name":"Done","id":"3"}}`, "Done", ""},
		{"object without value", "change", "title", "{path: f}", `{"f":{"a":1}}`, nil, "without a \"value\" or \"name\""},
		{"trim lower", "change", "title", "{path: a, transform: [trim, lower]}", `{"a":"  HeLLo "}`, "hello", ""},
		{"upper", "change", "title", "{path: a, transform: [upper]}", `{"a":"abc"}`, "ABC", ""},
		{"split trim lower", "change", "services", `{path: a, transform: [{split: ","}, trim, lower]}`, `{"a":"Web, API ,,db"}`, []string{"web", "api", "db"}, ""},
		{"array of options", "change", "services", "{path: a}", `{"a":[{"name":"C1"},{"value":"C2"},""]}`, []string{"C1", "C2"}, ""},
		{"join", "change", "title", `{path: a, transform: [{join: "+"}]}`, `{"a":["x","y"]}`, "x+y", ""},
		{"first", "change", "title", "{path: a, transform: [first]}", `{"a":["x","y"]}`, "x", ""},
		{"list where one expected", "change", "title", "{path: a}", `{"a":["x","y"]}`, nil, "list of 2 values"},
		{"regex group", "deployment", "commit", `{path: u, transform: [{regex: {pattern: "/commit/([0-9a-f]+)", group: 1}}]}`, `{"u":"http://h/p/-/commit/abc123"}`, "abc123", ""},
		{"regex whole match", "deployment", "version", `{path: u, transform: [{regex: "v[0-9.]+"}]}`, `{"u":"release v1.2.3 final"}`, "v1.2.3", ""},
		{"regex no match is empty", "deployment", "version", `{path: u, transform: [{regex: "v[0-9]+"}], default: none}`, `{"u":"x"}`, "none", ""},
		{"time layout zone", "change", "planned_start", `{path: a, transform: [{time: {layout: "2006-01-02 15:04:05", zone: Europe/Paris}}]}`, `{"a":"2026-07-01 10:00:00"}`, ts("2026-07-01T08:00:00Z"), ""},
		{"time named layout", "change", "planned_start", `{path: a, transform: [{time: datetime}]}`, `{"a":"2026-07-01 10:00:00"}`, ts("2026-07-01T10:00:00Z"), ""},
		{"time layouts fallback", "change", "planned_start", `{path: a, transform: [{time: {layouts: [datetime, "2006-01-02T15:04:05-0700"]}}]}`, `{"a":"2019-02-15T19:01:52.971-0800"}`, ts("2019-02-15T19:01:52.971-08:00"), ""},
		{"time bad value", "change", "planned_start", `{path: a, transform: [{time: datetime}]}`, `{"a":"tomorrow"}`, nil, "matches no layout"},
		{"rfc3339 without transform", "change", "planned_start", "{path: a}", `{"a":"2026-07-01T10:00:00+02:00"}`, ts("2026-07-01T08:00:00Z"), ""},
		{"unix seconds", "deployment", "started_at", "{path: a, transform: [unix_seconds]}", `{"a":1700000000}`, ts("2023-11-14T22:13:20Z"), ""},
		{"unix ms", "deployment", "started_at", "{path: a, transform: [unix_ms]}", `{"a":"1550286113023"}`, ts("2019-02-16T03:01:53.023Z"), ""},
		{"unix bad", "deployment", "started_at", "{path: a, transform: [unix_ms]}", `{"a":"soon"}`, nil, "not a number"},
		{"minus ms", "deployment", "started_at", "{path: a, transform: [unix_ms, {minus_ms: d}]}", `{"a":1767600093000,"d":93000}`, ts("2026-01-05T08:00:00Z"), ""},
		{"minus seconds, nested and as text", "deployment", "started_at", "{path: a, transform: [{time: rfc3339}, {minus_seconds: b.d}]}",
			`{"a":"2026-07-01T10:00:00Z","b":{"d":"90.5"}}`, ts("2026-07-01T09:58:29.5Z"), ""},
		{"minus nothing named", "deployment", "started_at", "{path: a, transform: [unix_ms, {minus_ms: d}]}", `{"a":1767600093000,"d":null}`, ts("2026-01-05T08:01:33Z"), ""},
		{"minus bad", "deployment", "started_at", "{path: a, transform: [unix_ms, {minus_ms: d}]}", `{"a":1767600093000,"d":"long"}`, nil, `d: "long" is not a number`},
		{"minus negative", "deployment", "started_at", "{path: a, transform: [unix_ms, {minus_ms: d}]}", `{"a":1767600093000,"d":-5}`, nil, "negative duration"},
		{"minus out of range", "deployment", "started_at", "{path: a, transform: [unix_ms, {minus_seconds: d}]}", `{"a":1767600093000,"d":1e12}`, nil, "out of range"},
		{"bool", "change", "pir_required", "{path: a, transform: [bool]}", `{"a":"Yes"}`, true, ""},
		{"bool auto", "change", "pir_required", "{path: a}", `{"a":"false"}`, false, ""},
		{"bool bad", "change", "pir_required", "{path: a, transform: [bool]}", `{"a":"maybe"}`, nil, "not a boolean"},
		{"int", "incident", "priority", "{path: a, transform: [int]}", `{"a":"2.0"}`, 2, ""},
		{"int bad", "incident", "priority", "{path: a, transform: [int]}", `{"a":"2.5"}`, nil, "not an integer"},
		{"present", "change", "has_backout_plan", "{path: a, transform: [present]}", `{"a":"revert"}`, true, ""},
		{"present empty", "change", "has_backout_plan", "{path: a, transform: [present]}", `{"a":""}`, nil, ""},
		{"map default", "change", "type", `{path: a, map: {std: standard}, map_default: normal}`, `{"a":"other"}`, "normal", ""},
		{"map unmapped error", "change", "type", `{path: a, map: {std: standard}}`, `{"a":"other"}`, nil, `value "other" is not in the map`},
		{"map unmapped keep", "change", "risk", `{path: a, map: {"1": high}, unmapped: keep}`, `{"a":"odd"}`, "odd", ""},
		{"enum checked", "change", "type", `{path: a}`, `{"a":"weird"}`, nil, "is not one of standard, normal, emergency"},
		{"default", "change", "type", "{path: a, default: normal}", `{}`, "normal", ""},
		{"const", "deployment", "provider", "{const: github}", `{}`, "github", ""},
		{"required", "change", "key", "{path: a, required: true}", `{"a":""}`, nil, "required"},
		{"when false", "deployment", "finished_at", `{path: t, when: [{path: s, in: [success]}]}`, `{"s":"running","t":"2026-01-01T00:00:00Z"}`, nil, ""},
		{"when true", "deployment", "finished_at", `{path: t, when: [{path: s, in: [success]}]}`, `{"s":"success","t":"2026-01-01T00:00:00Z"}`, ts("2026-01-01T00:00:00Z"), ""},
		{"not_in holds", "deployment", "finished_at", `{path: t, when: [{path: s, not_in: [running]}]}`, `{"s":"success","t":"2026-01-01T00:00:00Z"}`, ts("2026-01-01T00:00:00Z"), ""},
		{"not_in fails", "deployment", "finished_at", `{path: t, when: [{path: s, not_in: [running, queued]}]}`, `{"s":"queued","t":"2026-01-01T00:00:00Z"}`, nil, ""},
		{"not_in holds when absent", "deployment", "finished_at", `{path: t, when: [{path: s, not_in: [running]}]}`, `{"t":"2026-01-01T00:00:00Z"}`, ts("2026-01-01T00:00:00Z"), ""},
		{"not_in holds when empty", "deployment", "finished_at", `{path: t, when: [{path: s, not_in: [running]}]}`, `{"s":"","t":"2026-01-01T00:00:00Z"}`, ts("2026-01-01T00:00:00Z"), ""},
		{"not_in fails on any list element", "deployment", "finished_at", `{path: t, when: [{path: s, not_in: [b]}]}`, `{"s":["a","b"],"t":"2026-01-01T00:00:00Z"}`, nil, ""},
		{"not_in holds on a list", "deployment", "finished_at", `{path: t, when: [{path: s, not_in: [c]}]}`, `{"s":["a","b"],"t":"2026-01-01T00:00:00Z"}`, ts("2026-01-01T00:00:00Z"), ""},
		{"gjson query", "incident", "fix_changes", `{path: 'l.#(t=="fix")#.k'}`, `{"l":[{"t":"fix","k":"C1"},{"t":"rel","k":"C2"}]}`, []string{"C1"}, ""},
		{"big int id kept", "deployment", "run_id", "{path: id}", `{"id":12877621891123456}`, "12877621891123456", ""},
		{"union of two sources", "incident", "services", `{union: [[ci.display_value, ci], [bs.display_value, bs]], transform: [{split: ","}, trim, lower]}`,
			`{"ci":{"display_value":"pay-db-01","value":"a1b2"},"bs":{"display_value":"Payments-API","value":"c3d4"}}`, []string{"pay-db-01", "payments-api"}, ""},
		{"union: a group without a value", "incident", "services", `{union: [[ci.display_value, ci], [bs.display_value, bs]]}`, `{"ci":"","bs":"payments"}`, []string{"payments"}, ""},
		{"union: lists joined, each once", "change", "services", `{union: [[a], [b]]}`, `{"a":["x","y"],"b":["y","z"]}`, []string{"x", "y", "z"}, ""},
		{"union: none", "change", "services", `{union: [[a], [b]]}`, `{"c":"x"}`, nil, ""},
		{"union: each once after the transforms", "change", "services", `{union: [[a], [b]], transform: [trim, lower]}`, `{"a":"PAY","b":" pay "}`, []string{"pay"}, ""},
		{"union: an unreadable source beside a readable one", "incident", "services", `{union: [[ci], [bs]]}`, `{"ci":{"a":1},"bs":"payments"}`, []string{"payments"}, ""},
		{"union: only an unreadable source", "incident", "services", `{union: [[ci], [bs]]}`, `{"ci":{"a":1}}`, nil, "without a \"value\" or \"name\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := oneField(t, tc.kind, tc.field, tc.spec, tc.payload)
			if tc.wantErr != "" {
				if !strings.Contains(errString(res), tc.wantErr) {
					t.Fatalf("errors %q; want %q", errString(res), tc.wantErr)
				}
				if res.Errors[0].Field != tc.field {
					t.Fatalf("error field %q; want %q", res.Errors[0].Field, tc.field)
				}
				return
			}
			if len(res.Errors) > 0 {
				t.Fatalf("errors: %s", errString(res))
			}
			got := res.Fields[tc.field].Value
			if tm, ok := got.(time.Time); ok {
				if want, _ := tc.want.(time.Time); !tm.Equal(want) {
					t.Fatalf("got %v; want %v", tm, want)
				}
				return
			}
			if !equalAny(got, tc.want) {
				t.Fatalf("got %#v; want %#v (trace %+v)", got, tc.want, res.Fields[tc.field])
			}
		})
	}
}

func equalAny(a, b any) bool {
	la, oka := a.([]string)
	lb, okb := b.([]string)
	if oka || okb {
		return oka && okb && strings.Join(la, "\x00") == strings.Join(lb, "\x00")
	}
	return a == b
}

func TestTraceSources(t *testing.T) {
	c := compile(t, `
name: t
kind: deployment
fields:
  service: {paths: [a, b]}
  provider: {const: x}
  environment: {path: e, default: prod}
  version: {path: missing}
  commit: {path: c, transform: [{regex: {pattern: "^[0-9a-f]+$"}}]}
  team: {path: t, required: true, transform: [{regex: {pattern: "^team-(.+)$"}}]}
`)
	res := c.Apply([]byte(`{"a":"","b":{"value":"svc"},"c":"not-a-sha","t":"ops"}`))
	want := map[string]mapping.FieldTrace{
		"service":     {Source: "b", Raw: `{"value":"svc"}`, Value: "svc"},
		"provider":    {Source: "constant", Raw: "x", Value: "x"},
		"environment": {Source: "default", Raw: "prod", Value: "prod"},
		"version":     {},
		// A value read but transformed to nothing: an optional field
		// shows no source; a required one shows where the value it
		// rejects came from.
		"commit": {},
		"team":   {Source: "t", Raw: `"ops"`},
	}
	for f, w := range want {
		if got := res.Fields[f]; got != w {
			t.Errorf("%s: trace %+v; want %+v", f, got, w)
		}
	}
	d := res.Record.(*core.Deployment)
	if d.Service != "svc" || d.Provider != "x" || d.Environment != "prod" {
		t.Errorf("record %+v", d)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name, src string
		fields    []string // every field that must be named
	}{
		{"unknown kind", "name: t\nkind: ticket\nfields: {key: {path: a}}", []string{"kind"}},
		{"missing name", "kind: change\nfields: {key: {path: a}}", []string{"name"}},
		{"bad name", "name: 'a b'\nkind: change\nfields: {key: {path: a}}", []string{"name"}},
		{"unknown field", "name: t\nkind: change\nfields: {ticket: {path: a}}", []string{"fields.ticket"}},
		{"field of another kind", "name: t\nkind: incident\nfields: {planned_start: {path: a}}", []string{"fields.planned_start"}},
		{"no fields", "name: t\nkind: change\nfields: {}", []string{"fields"}},
		{"no source", "name: t\nkind: change\nfields: {key: {required: true}}", []string{"fields.key"}},
		{"empty spec", "name: t\nkind: change\nfields: {key: }", []string{"fields.key"}},
		{"path and paths", "name: t\nkind: change\nfields: {key: {path: a, paths: [b]}}", []string{"fields.key"}},
		{"empty path", "name: t\nkind: change\nfields: {key: {paths: [a, ' ']}}", []string{"fields.key.paths[1]"}},
		{"bad regex", "name: t\nkind: change\nfields: {key: {path: a, transform: [{regex: '('}]}}", []string{"fields.key.transform[0].regex.pattern"}},
		{"bad regex group", "name: t\nkind: change\nfields: {key: {path: a, transform: [{regex: {pattern: 'a(b)', group: 2}}]}}", []string{"fields.key.transform[0].regex.group"}},
		{"bad zone", "name: t\nkind: change\nfields: {planned_start: {path: a, transform: [{time: {layout: datetime, zone: Mars/Olympus}}]}}", []string{"fields.planned_start.transform[0].time.zone"}},
		{"bad layout", "name: t\nkind: change\nfields: {planned_start: {path: a, transform: [{time: 'yyyy-mm-dd'}]}}", []string{"fields.planned_start.transform[0].time.layout"}},
		{"time without layout", "name: t\nkind: change\nfields: {planned_start: {path: a, transform: [{time: {zone: UTC}}]}}", []string{"fields.planned_start.transform[0].time.layout"}},
		{"unknown transform", "name: t\nkind: change\nfields: {key: {path: a, transform: [trim, reverse]}}", []string{"fields.key.transform[1]"}},
		{"transform arg", "name: t\nkind: change\nfields: {key: {path: a, transform: [{trim: x}]}}", []string{"fields.key.transform[0]"}},
		{"empty split", "name: t\nkind: change\nfields: {services: {path: a, transform: [{split: ''}]}}", []string{"fields.services.transform[0].split"}},
		{"minus of text", "name: t\nkind: deployment\nfields: {started_at: {path: a, transform: [{minus_ms: d}]}}", []string{"fields.started_at.transform[0]"}},
		{"minus without path", "name: t\nkind: deployment\nfields: {started_at: {path: a, transform: [unix_ms, {minus_ms: ''}]}}", []string{"fields.started_at.transform[1].minus_ms"}},
		{"minus as a bare name", "name: t\nkind: deployment\nfields: {started_at: {path: a, transform: [unix_ms, minus_ms]}}", []string{"fields.started_at.transform[1].minus_ms"}},
		{"kind mismatch in chain", "name: t\nkind: change\nfields: {planned_start: {path: a, transform: [{time: datetime}, lower]}}", []string{"fields.planned_start.transform[1]"}},
		{"chain ends in wrong type", "name: t\nkind: change\nfields: {planned_start: {path: a, transform: [present]}}", []string{"fields.planned_start.transform"}},
		{"map on list field", "name: t\nkind: change\nfields: {services: {path: a, map: {x: y}}}", []string{"fields.services.map"}},
		{"map value not canonical", "name: t\nkind: change\nfields: {state: {path: a, map: {'1': opened}}}", []string{`fields.state.map["1"]`}},
		{"map_default not canonical", "name: t\nkind: deployment\nfields: {status: {path: a, map: {ok: succeeded}, map_default: meh}}", []string{"fields.status.map_default"}},
		{"unmapped bad", "name: t\nkind: change\nfields: {risk: {path: a, map: {x: y}, unmapped: drop}}", []string{"fields.risk.unmapped"}},
		{"required with default", "name: t\nkind: change\nfields: {key: {path: a, required: true, default: X}}", []string{"fields.key.required"}},
		{"default not canonical", "name: t\nkind: change\nfields: {type: {path: a, default: minor}}", []string{"fields.type.default"}},
		{"const with path", "name: t\nkind: deployment\nfields: {provider: {path: a, const: x}}", []string{"fields.provider.const"}},
		{"const bad type", "name: t\nkind: incident\nfields: {priority: {const: high}}", []string{"fields.priority.const"}},
		{"union and paths", "name: t\nkind: change\nfields: {key: {path: k}, services: {paths: [a], union: [[b]]}}", []string{"fields.services.union"}},
		{"union on a text field", "name: t\nkind: change\nfields: {key: {path: k}, title: {union: [[a], [b]]}}", []string{"fields.title.union"}},
		{"union empty group", "name: t\nkind: change\nfields: {key: {path: k}, services: {union: [[a], []]}}", []string{"fields.services.union[1]"}},
		{"condition two ops", "name: t\nkind: change\nmatch: {when: [{path: a, equals: x, exists: true}]}\nfields: {key: {path: a}}", []string{"match.when[0]"}},
		{"condition empty not_in", "name: t\nkind: change\nmatch: {when: [{path: a, not_in: []}]}\nfields: {key: {path: a}}", []string{"match.when[0].not_in"}},
		{"condition not_in and in", "name: t\nkind: change\nmatch: {when: [{path: a, in: [x], not_in: [y]}]}\nfields: {key: {path: a}}", []string{"match.when[0]"}},
		{"condition bad regex", "name: t\nkind: change\nmatch: {when: [{path: a, matches: '['}]}\nfields: {key: {path: a}}", []string{"match.when[0].matches"}},
		{"field when bad", "name: t\nkind: change\nfields: {key: {path: a, when: [{path: b}]}}", []string{"fields.key.when[0]"}},
		{"approvals without each", "name: t\nkind: change\nfields: {approvals: {path: a}}", []string{"fields.approvals.each"}},
		{"approvals unknown sub", "name: t\nkind: change\nfields: {approvals: {path: a, each: {who: {path: x}}}}", []string{"fields.approvals.each.who"}},
		{"each elsewhere", "name: t\nkind: change\nfields: {key: {path: a, each: {approver: {path: x}}}}", []string{"fields.key.each"}},
		{"whole_run of a change", "name: t\nkind: change\nwhole_run: true\nfields: {key: {path: a}}", []string{"whole_run"}},
		{"several at once", "name: t\nkind: change\nfields: {key: {path: a, required: true, default: x}, planned_start: {path: b, transform: [{time: {layout: datetime, zone: Nowhere}}]}, bogus: {path: c}}",
			[]string{"fields.key.required", "fields.planned_start.transform[0].time.zone", "fields.bogus"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := mapping.Parse([]byte(tc.src))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			_, err = mapping.Compile(p)
			if err == nil {
				t.Fatal("compiled; want an error")
			}
			if !core.IsKind(err, core.KindInvalid) {
				t.Errorf("kind %s; want invalid", core.KindOf(err))
			}
			named := invalidFields(err)
			for _, f := range tc.fields {
				if !named[f] {
					t.Errorf("error does not name %q: %v (named %v)", f, err, named)
				}
			}
		})
	}
}

// invalidFields collects the Field of every *core.Error in a joined tree.
func invalidFields(err error) map[string]bool {
	out := map[string]bool{}
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		var ce *core.Error
		if ce2, ok := e.(*core.Error); ok {
			ce = ce2
			out[ce.Field] = true
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"typo top", "name: t\nkind: change\nfeilds: {}", "line 3: field feilds not found"},
		{"typo field spec", "name: t\nkind: change\nfields:\n  key: {pth: a}", "line 4: field pth not found"},
		{"typo condition", "name: t\nkind: change\nmatch: {when: [{path: a, equal: x}]}\nfields: {}", "field equal not found"},
		{"transform shape", "name: t\nkind: change\nfields: {key: {path: a, transform: [[x]]}}", "a transform is a name or a one-key mapping"},
		{"transform two keys", "name: t\nkind: change\nfields: {key: {path: a, transform: [{split: ',', join: ','}]}}", "exactly one key"},
		{"time arg typo", "name: t\nkind: change\nfields: {key: {path: a, transform: [{time: {layuot: x}}]}}", `unknown key "layuot" in time`},
		{"two documents", "name: a\n---\nname: b\n", "more than one YAML document"},
		{"empty", "", "empty document"},
		{"not yaml", "name: [", "did not find"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mapping.Parse([]byte(tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want %q", err, tc.want)
			}
			if !core.IsKind(err, core.KindInvalid) {
				t.Errorf("kind %s; want invalid", core.KindOf(err))
			}
		})
	}
}

func TestApplyBadPayloads(t *testing.T) {
	c := compile(t, "name: t\nkind: change\nunwrap: result\nfields: {key: {path: number, required: true}}")
	tests := []struct{ name, payload, want string }{
		{"invalid json", `{"result": {`, "not valid JSON"},
		{"empty", ``, "not valid JSON"},
		{"not an object", `[1,2]`, "not a JSON object"},
		{"scalar", `"x"`, "not a JSON object"},
		{"empty list envelope", `{"result": []}`, "no records"},
		{"several records", `{"result": [{"number":"a"},{"number":"b"}]}`, "several records"},
		{"missing key", `{"result": {}}`, "required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := c.Apply([]byte(tc.payload))
			if !strings.Contains(errString(res), tc.want) {
				t.Fatalf("errors %q; want %q", errString(res), tc.want)
			}
			if res.Record == nil {
				t.Fatal("nil record")
			}
			if err := res.Err(); err == nil || !core.IsKind(err, core.KindInvalid) {
				t.Fatalf("Err() = %v; want an invalid error", err)
			}
		})
	}
	if res := c.Apply([]byte(`{"result": [{"number":"CHG1"}]}`)); len(res.Errors) > 0 || res.Record.(*core.Change).Key != "CHG1" {
		t.Fatalf("one-element list envelope: %+v", res)
	}
	if res := c.Apply([]byte(`{"number":"CHG2"}`)); len(res.Errors) > 0 || res.Err() != nil || res.Record.(*core.Change).Key != "CHG2" {
		t.Fatalf("no envelope: %+v", res)
	}
}

func TestApprovalsErrorsNameElement(t *testing.T) {
	c := compile(t, `
name: t
kind: change
fields:
  key: {path: k}
  approvals:
    path: a
    each:
      approver: {path: who, required: true}
      decision: {path: d, map: {ok: approved, no: rejected}}
      at: {path: at, transform: [unix_seconds]}
`)
	res := c.Apply([]byte(`{"k":"C","a":[{"who":"x","d":"ok","at":1700000000},{"d":"maybe"}]}`))
	got := errString(res)
	for _, want := range []string{"approvals[1].approver: required", `approvals[1].decision: value "maybe" is not in the map`} {
		if !strings.Contains(got, want) {
			t.Errorf("errors %q; want %q", got, want)
		}
	}
	ch := res.Record.(*core.Change)
	if len(ch.Approvals) != 2 || ch.Approvals[0].Approver != "x" || ch.Approvals[0].Decision != core.ApprovalApproved || ch.Approvals[0].At == nil {
		t.Fatalf("approvals %+v", ch.Approvals)
	}
	if res := c.Apply([]byte(`{"k":"C","a":"nope"}`)); !strings.Contains(errString(res), "approvals: not an array") {
		t.Fatalf("errors %q", errString(res))
	}
}

// TestMinusReadsTheElement: in an approval, a minus step reads its
// duration in the same element, as the element's other paths are read.
func TestMinusReadsTheElement(t *testing.T) {
	c := compile(t, `
name: t
kind: change
fields:
  key: {path: k}
  approvals:
    path: a
    each:
      approver: {path: who}
      at: {path: done, transform: [unix_seconds, {minus_seconds: took}]}
`)
	res := c.Apply([]byte(`{"k":"C","took":1000,"a":[{"who":"x","done":1700000000,"took":20},{"who":"y","done":1700000000}]}`))
	ch := res.Record.(*core.Change)
	if len(res.Errors) > 0 || len(ch.Approvals) != 2 || ch.Approvals[0].At == nil || ch.Approvals[1].At == nil ||
		!ch.Approvals[0].At.Equal(time.Unix(1699999980, 0)) || !ch.Approvals[1].At.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("approvals %+v, errors %s", ch.Approvals, errString(res))
	}
}

func TestPIRKind(t *testing.T) {
	c := compile(t, `
name: pir
kind: pir
fields:
  service: {path: svc, required: true}
  version: {path: v}
  environment: {path: env}
  status: {path: st, map: {done: signed_off, open: pending}}
  signed_off_by: {path: by}
  signed_off_at: {path: at}
  summary: {path: s}
`)
	res := c.Apply([]byte(`{"svc":"checkout","v":"1.2","env":"production","st":"done","by":"ana","at":"2026-01-02T03:04:05Z","s":"fine"}`))
	p := res.Record.(*core.PIR)
	if len(res.Errors) > 0 || p.Status != core.PIRSignedOff || p.SignedOffAt == nil || p.Service != "checkout" {
		t.Fatalf("%+v %v", p, res.Errors)
	}
}

func TestMatchesAndSetOrder(t *testing.T) {
	general := compile(t, "name: general\nkind: deployment\nfields: {service: {path: s}}")
	byType := compile(t, "name: by-type\nkind: deployment\nmatch: {connector_type: github}\nfields: {service: {path: s}}")
	byEvent := compile(t, "name: by-event\nkind: deployment\nmatch: {connector_type: github, event_types: [deployment]}\nfields: {service: {path: s}}")
	byWhen := compile(t, "name: by-when\nkind: deployment\nmatch: {connector_type: github, event_types: [deployment], when: [{path: action, equals: created}, {path: n, matches: '^[0-9]+$'}]}\nfields: {service: {path: s}}")
	set := mapping.NewSet(general, byType, byEvent, byWhen, nil)
	tests := []struct {
		connector, event, payload, want string
	}{
		{"github", "deployment", `{"action":"created","n":12}`, "by-when"},
		{"github", "Deployment", `{"action":"created","n":"x"}`, "by-event"},
		{"github", "deployment", `{"action":"deleted"}`, "by-event"},
		{"github", "push", `{}`, "by-type"},
		{"gitlab", "Job Hook", `{}`, "general"},
	}
	for _, tc := range tests {
		c, ok := set.Select(tc.connector, tc.event, []byte(tc.payload))
		if !ok || c.Name() != tc.want {
			t.Errorf("Select(%s, %s, %s) = %v; want %s", tc.connector, tc.event, tc.payload, c, tc.want)
		}
	}
	if _, ok := mapping.NewSet(byEvent).Select("github", "push", []byte(`{}`)); ok {
		t.Error("selected a profile for an unmatched event")
	}
	// Invalid JSON matches on connector/event alone so it is quarantined.
	if !byWhen.Matches("github", "deployment", []byte(`{"action":`)) {
		t.Error("invalid JSON did not match")
	}
	// Exists: null, "" and {} are absent; {value:""} is absent too.
	ex := compile(t, "name: ex\nkind: deployment\nmatch: {when: [{path: d, exists: true}]}\nfields: {service: {path: s}}")
	for payload, want := range map[string]bool{`{"d":null}`: false, `{"d":""}`: false, `{"d":{}}`: false, `{"d":{"value":""}}`: false, `{"d":{"id":1}}`: true, `{"d":0}`: true, `{}`: false} {
		if got := ex.Matches("", "", []byte(payload)); got != want {
			t.Errorf("exists on %s = %v; want %v", payload, got, want)
		}
	}
}

func TestLoadDir(t *testing.T) {
	good := "name: a\nkind: change\nfields: {key: {path: k}}\n"
	ps, err := mapping.LoadDir(fstest.MapFS{"a.yaml": {Data: []byte(good)}, "README.md": {Data: []byte("x")}})
	if err != nil || len(ps) != 1 || ps[0].Name() != "a" || ps[0].Kind() != "change" {
		t.Fatalf("LoadDir = %v, %v", ps, err)
	}
	_, err = mapping.LoadDir(fstest.MapFS{
		"a.yaml": {Data: []byte(good)},
		"b.yml":  {Data: []byte(good)},
		"c.yaml": {Data: []byte("name: c\nkind: nope\nfields: {key: {path: k}}\n")},
	})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"b.yml", `profile name "a" is already used by a.yaml`, "c.yaml", "unknown kind"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %v; want %q", err, want)
		}
	}
	if !errors.Is(err, err) || !core.IsKind(err, core.KindInvalid) {
		t.Errorf("kind %s", core.KindOf(err))
	}
}

func TestDefaultProfilesCoverEveryConnector(t *testing.T) {
	set := defaultSet(t)
	types := map[string]bool{}
	for _, c := range set.Profiles() {
		types[c.Profile().Match.ConnectorType] = true
	}
	for _, want := range []string{"servicenow", "jira", "github", "gitlab", "jenkins", "generic"} {
		if !types[want] {
			t.Errorf("no default profile for connector type %s", want)
		}
	}
	if _, err := os.Stat("testdata/golden"); err != nil {
		t.Fatal(err)
	}
}
