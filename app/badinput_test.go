package app_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// TestFindingNumbers: a finding number in a path is a positive number of
// at most 32 bits (the findings table's); past that it names no finding
// (404), in the API and the UI alike, never a 500 from the database.
func TestFindingNumbers(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, e2eConfig)
			cm, _ := s.token(core.RoleChangeManager)
			now := time.Now().UTC()
			var rep struct{ ID string }
			if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": now.Add(-time.Hour), "to": now}, &rep); st != http.StatusCreated {
				t.Fatalf("run report: %d", st)
			}
			ui := s.uiClient()
			ui.signIn(cm)
			tests := []struct {
				fid  string
				want int
			}{
				{"1", http.StatusNotFound}, // the report has no findings
				{"2147483647", http.StatusNotFound},
				{"2147483648", http.StatusNotFound},
				{"3000000000", http.StatusNotFound},
				{"99999999999999999999999", http.StatusNotFound},
				{"0", http.StatusBadRequest},
				{"-3000000000", http.StatusBadRequest},
				{"x", http.StatusBadRequest},
			}
			for _, tt := range tests {
				path := "/reconciliation/" + rep.ID + "/findings/" + tt.fid + "/ack"
				if st := s.do("POST", "/api/v1/reports"+path, cm, map[string]any{"comment": "accepted"}, nil); st != tt.want {
					t.Errorf("API finding %s: %d, want %d", tt.fid, st, tt.want)
				}
				if st, _, _ := ui.post("/ui"+path, url.Values{"comment": {"accepted"}}); st != tt.want {
					t.Errorf("UI finding %s: %d, want %d", tt.fid, st, tt.want)
				}
			}
		})
	}
}

// TestUnknownEnvironmentFilters: the observe report and the what-if
// simulation refuse an environment the policies do not know (400 naming
// the field), as the reconciliation report does, instead of answering an
// empty result; a known name or alias filters in the database.
func TestUnknownEnvironmentFilters(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, e2eConfig)
			ci, _ := s.token(core.RoleCI)
			cm, _ := s.token(core.RoleChangeManager)
			start := time.Now().UTC().Add(-time.Second)
			p := core.DefaultPolicy()
			p.Environments["shadow"] = core.EnvironmentPolicy{Aliases: []string{"shade"}, Preset: core.PresetStrict, Mode: core.ModeObserve}
			p.Environments["mirror"] = core.EnvironmentPolicy{Preset: core.PresetStrict, Mode: core.ModeObserve}
			s.putPolicy(adminSecret, p, http.StatusOK)
			for _, env := range []string{"shadow", "mirror"} {
				if a := s.check(ci, "", map[string]any{"service": "payments-api", "environment": env, "version": "1.0.0"}); a.Decision != "allow" {
					t.Fatalf("%s: %s", env, a.Decision)
				}
			}
			period := "&from=" + start.Format(time.RFC3339) + "&to=" + time.Now().UTC().Add(time.Minute).Format(time.RFC3339)
			tests := []struct {
				env   string
				items int // -1: refused
			}{
				{"", 2}, {"shadow", 1}, {"Shade", 1}, {"mirror", 1}, {"production", 0}, {"shadw", -1}, {"*", -1},
			}
			for _, tt := range tests {
				var out struct {
					Items     []map[string]any
					Truncated bool
					Error     struct{ Field string }
				}
				st := s.do("GET", "/api/v1/reports/observe?environment="+url.QueryEscape(tt.env)+period, cm, nil, &out)
				switch {
				case tt.items < 0 && (st != http.StatusBadRequest || out.Error.Field != "environment"):
					t.Errorf("observe %q: %d field %q, want 400 environment", tt.env, st, out.Error.Field)
				case tt.items >= 0 && (st != http.StatusOK || len(out.Items) != tt.items || out.Truncated):
					t.Errorf("observe %q: %d, %d items (truncated %v), want %d", tt.env, st, len(out.Items), out.Truncated, tt.items)
				}
			}
			var out struct{ Error struct{ Field string } }
			body := map[string]any{"policy": p, "from": start, "to": time.Now().UTC().Add(time.Minute), "environment": "shadw"}
			if st := s.do("POST", "/api/v1/policy/simulate", cm, body, &out); st != http.StatusBadRequest || out.Error.Field != "environment" {
				t.Errorf("simulate an unknown environment: %d field %q, want 400 environment", st, out.Error.Field)
			}
		})
	}
}

// TestNULInRESTBodies: a JSON string holding U+0000 in a REST write is
// refused with 400 naming the field, on both databases (PostgreSQL
// refused it without a field, and a gate check's rolled back the group
// commit it shared; SQLite stored it, and a token named with one broke
// that token's every audited write). Nothing is stored.
func TestNULInRESTBodies(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, e2eConfig)
			ci, _ := s.token(core.RoleCI)
			cm, _ := s.token(core.RoleChangeManager)
			now := time.Now().UTC().Format(time.RFC3339)
			deploy := func(field, value string) string {
				return `{"service":"payments-api","environment":"staging","version":"1.0.0","status":"succeeded","started_at":"` + now +
					`","provider":"github","run_id":"1","` + field + `":"` + value + `"}`
			}
			tests := []struct {
				name, path, token, body, field string
			}{
				{"token name", "/api/v1/tokens", adminSecret, `{"name":"ci\u0000bot","role":"ci"}`, "name"},
				{"gate commit", "/api/v1/gate/check", ci, `{"service":"payments-api","environment":"staging","version":"1.0.0","commit":"abc\u0000"}`, "commit"},
				{"gate change key", "/api/v1/gate/check", ci, `{"service":"payments-api","environment":"staging","version":"1.0.0","changes":["CHG1","\u0000"]}`, "changes[1]"},
				{"gate pipeline", "/api/v1/gate/check", ci, `{"service":"payments-api","environment":"staging","version":"1.0.0","pipeline":{"provider":"github","run_id":"\u00007"}}`, "pipeline.run_id"},
				{"deployment commit", "/api/v1/deployments", ci, deploy("commit", `abc\u0000`), "commit"},
				{"deployment actor", "/api/v1/deployments", ci, deploy("actor", `eve\u0000`), "actor"},
				{"deployment url", "/api/v1/deployments", ci, deploy("url", `https://ci.example/\u0000`), "url"},
				{"deployment run_id", "/api/v1/deployments", ci, strings.Replace(deploy("actor", "eve"), `"run_id":"1"`, `"run_id":"1\u0000"`, 1), "run_id"},
				{"hold reason", "/api/v1/holds", cm, `{"scope":"service","name":"payments-api","reason":"migration\u0000"}`, "reason"},
				{"ack comment", "/api/v1/reports/reconciliation/r1/findings/1/ack", cm, `{"comment":"ok\u0000"}`, "comment"},
			}
			for _, tt := range tests {
				var out struct{ Error struct{ Field string } }
				if st := s.do("POST", tt.path, tt.token, tt.body, &out); st != http.StatusBadRequest || out.Error.Field != tt.field {
					t.Errorf("%s: %d field %q, want 400 naming %q", tt.name, st, out.Error.Field, tt.field)
				}
			}
			var tokens struct{ Items []core.Token }
			if st := s.do("GET", "/api/v1/tokens", adminSecret, nil, &tokens); st != http.StatusOK || len(tokens.Items) != 3 {
				t.Errorf("tokens after the refusals: %d, %d tokens, want the 3 made", st, len(tokens.Items))
			}
			var deps struct{ Items []core.Deployment }
			if st := s.do("GET", "/api/v1/deployments", cm, nil, &deps); st != http.StatusOK || len(deps.Items) != 0 {
				t.Errorf("deployments after the refusals: %d, %d stored", st, len(deps.Items))
			}
			// The same writes without the NUL go through (the bodies were
			// refused for it, not for something else).
			if a := s.check(ci, "", map[string]any{"service": "payments-api", "environment": "staging", "version": "1.0.0", "commit": "abc"}); a.Decision == "" {
				t.Error("a clean gate check failed")
			}
		})
	}
}

// TestNULInUIForms: the UI's forms refuse U+0000 as the API's bodies do
// (a token named "ci\x00bot" was stored on SQLite), naming the field.
func TestNULInUIForms(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, e2eConfig)
			admin := s.uiClient()
			admin.signIn(adminSecret)
			for _, tt := range []struct {
				path string
				form url.Values
			}{
				{"/ui/tokens", url.Values{"name": {"ci\x00bot"}, "role": {"ci"}}},
				{"/ui/reconciliation/r1/findings/1/ack", url.Values{"comment": {"accepted\x00"}}},
			} {
				if st, _, body := admin.post(tt.path, tt.form); st != http.StatusBadRequest || !strings.Contains(body, "NUL") {
					t.Errorf("%s: %d, want 400 naming the NUL", tt.path, st)
				}
			}
			var tokens struct{ Items []core.Token }
			if st := s.do("GET", "/api/v1/tokens", adminSecret, nil, &tokens); st != http.StatusOK || len(tokens.Items) != 1 {
				t.Errorf("tokens: %d, %d, want the bootstrap admin's alone", st, len(tokens.Items))
			}
		})
	}
}

// TestListQueryParameters: listing filters mean what they say or are
// refused. An environment alias or another case finds the records (they
// carry the canonical name; it found none), an unknown one is 400, as are
// an unknown release cursor (an empty page), a boolean that is not true or
// false (read as false) and a proposal status outside its enum (an empty
// list).
func TestListQueryParameters(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, e2eConfig)
			ci, _ := s.token(core.RoleCI)
			aud, _ := s.token(core.RoleAuditor)
			p := core.DefaultPolicy()
			p.Services = map[string]core.ServiceInfo{"payments-api": {Team: "payments"}}
			s.putPolicy(adminSecret, p, http.StatusOK)
			if st := s.do("POST", "/api/v1/deployments", ci, map[string]any{"service": "payments-api", "environment": "prod", "version": "1.0.0",
				"status": "succeeded", "provider": "github", "run_id": "1", "started_at": time.Now().UTC()}, nil); st != http.StatusCreated {
				t.Fatalf("deployment: %d", st)
			}
			var mappings struct{ Items []core.MappingProfile }
			if st := s.do("GET", "/api/v1/mappings", aud, nil, &mappings); st != http.StatusOK || len(mappings.Items) == 0 {
				t.Fatalf("mappings: %d", st)
			}
			mapping := "/api/v1/mappings/" + url.PathEscape(mappings.Items[0].Name)
			tests := []struct {
				path  string
				items int    // with 200: the listing's length (-1: not counted)
				field string // "": 200; else 400 naming it
			}{
				{"/api/v1/deployments?environment=prod", 1, ""},
				{"/api/v1/deployments?environment=Production", 1, ""},
				{"/api/v1/deployments?environment=production&service=PAYMENTS-API", 1, ""}, // the catalog's service
				{"/api/v1/deployments?environment=staging", 0, ""},
				{"/api/v1/deployments?environment=prodution", 0, "environment"},
				{"/api/v1/releases?environment=PROD", 1, ""},
				{"/api/v1/releases?environment=prodution", 0, "environment"},
				{"/api/v1/releases?after=" + core.ReleaseID("payments-api", "1.0.0", "production"), 0, ""},
				{"/api/v1/releases?after=no-such-release", 0, "after"},
				{"/api/v1/deployments?after=zzzz-no-such-deployment", 0, "after"},
				{"/api/v1/holds?all=true", -1, ""},
				{"/api/v1/holds?all=false", -1, ""},
				{"/api/v1/holds?all=1", 0, "all"},
				{"/api/v1/holds?all=yes", 0, "all"},
				{mapping + "?versions=true", -1, ""},
				{mapping + "?versions=1", 0, "versions"},
				{"/api/v1/proposals?status=pending", -1, ""},
				{"/api/v1/proposals?status=Pending", 0, "status"},
			}
			for _, tt := range tests {
				var out struct {
					Items []json.RawMessage
					Error struct{ Field string }
				}
				token := aud
				if strings.Contains(tt.path, "proposals") {
					token = adminSecret
				}
				st := s.do("GET", tt.path, token, nil, &out)
				switch {
				case tt.field != "" && (st != http.StatusBadRequest || out.Error.Field != tt.field):
					t.Errorf("%s: %d field %q, want 400 naming %q", tt.path, st, out.Error.Field, tt.field)
				case tt.field == "" && (st != http.StatusOK || tt.items >= 0 && len(out.Items) != tt.items):
					t.Errorf("%s: %d with %d items, want 200 with %d", tt.path, st, len(out.Items), tt.items)
				}
			}
			ui := s.uiClient()
			ui.signIn(aud)
			if st, _, body := ui.get("/ui/deployments?environment=prod"); st != http.StatusOK || !strings.Contains(body, "1.0.0") {
				t.Errorf("UI deployments of an alias: %d, want the deployment", st)
			}
			if st, _, _ := ui.get("/ui/deployments?environment=prodution"); st != http.StatusBadRequest {
				t.Errorf("UI deployments of an unknown environment: %d, want 400", st)
			}
		})
	}
}

// TestUIDownloadOfUnknownReport: the UI's download of a report that does
// not exist is the 404 page, not a file: Content-Disposition is set only
// once the report is found (it was set first, so the browser saved the
// error page as reconciliation-….csv).
func TestUIDownloadOfUnknownReport(t *testing.T) {
	for _, dialect := range dialects {
		t.Run(dialect, func(t *testing.T) {
			s := boot(t, dialect, e2eConfig)
			aud, _ := s.token(core.RoleAuditor)
			ui := s.uiClient()
			ui.signIn(aud)
			for _, format := range []string{"csv", "html", "json"} {
				st, h, body := ui.get("/ui/reconciliation/no-such-report/download?format=" + format)
				if st != http.StatusNotFound || h.Get("Content-Disposition") != "" || !strings.Contains(body, "not found") {
					t.Errorf("%s: %d, Content-Disposition %q, want the 404 page", format, st, h.Get("Content-Disposition"))
				}
			}
			cm, _ := s.token(core.RoleChangeManager)
			now := time.Now().UTC()
			var rep struct{ ID string }
			if st := s.do("POST", "/api/v1/reports/reconciliation", cm, map[string]any{"from": now.Add(-time.Hour), "to": now}, &rep); st != http.StatusCreated {
				t.Fatalf("run report: %d", st)
			}
			for _, format := range []string{"csv", "html", "json"} {
				st, h, _ := ui.get("/ui/reconciliation/" + rep.ID + "/download?format=" + format)
				if want := `attachment; filename="reconciliation-` + rep.ID + "." + format + `"`; st != http.StatusOK || h.Get("Content-Disposition") != want {
					t.Errorf("%s: %d, Content-Disposition %q, want %q", format, st, h.Get("Content-Disposition"), want)
				}
			}
		})
	}
}
