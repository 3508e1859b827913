package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tollgate-dev/tollgate/api"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
)

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := api.LoadOpenAPI(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// noReports stands in for the reconciler: the report routes are
// registered only with one, and these tests never call it.
type noReports struct{ api.Reports }

func newServer() *api.Server {
	return api.New(api.Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "1.2.3-test", Reports: noReports{}, Doctor: noDoctor{}, Replicas: noReplicas{}})
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// servedOperations lists "METHOD /path/{param}" for every route the
// router serves.
func servedOperations(s *api.Server) map[string]bool {
	out := map[string]bool{}
	for _, rt := range s.Echo().Router().Routes() {
		out[rt.Method+" "+echoParam.ReplaceAllString(rt.Path, "{$1}")] = true
	}
	return out
}

func documentedOperations(doc *openapi3.T) map[string]*openapi3.Operation {
	out := map[string]*openapi3.Operation{}
	for path, item := range doc.Paths.Map() {
		for m, op := range item.Operations() {
			out[m+" "+path] = op
		}
	}
	return out
}

// TestEveryRouteIsDocumented diffs the router against the document: a
// route served but not documented, or documented but not served, fails.
func TestEveryRouteIsDocumented(t *testing.T) {
	served := servedOperations(newServer())
	documented := documentedOperations(loadDoc(t))
	if len(served) < 25 {
		t.Fatalf("only %d routes found on the router", len(served))
	}
	var missing, extra []string
	for k := range served {
		if documented[k] == nil {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	for _, k := range missing {
		t.Errorf("served but not in api/openapi.yaml: %s", k)
	}
	for _, k := range extra {
		t.Errorf("in api/openapi.yaml but not served: %s", k)
	}
}

// TestDocumentedRolesMatchAccessRules: each operation's security
// requirement names exactly the roles the router admits; public routes
// are documented without a bearer token.
func TestDocumentedRolesMatchAccessRules(t *testing.T) {
	s := newServer()
	documented := documentedOperations(loadDoc(t))
	for key, roles := range s.Rules() {
		method, path, _ := strings.Cut(key, " ")
		op := documented[method+" "+echoParam.ReplaceAllString(path, "{$1}")]
		if op == nil {
			continue // TestEveryRouteIsDocumented reports it
		}
		if op.Security == nil {
			t.Errorf("%s: no security requirement (write `security: []` for a public route)", key)
			continue
		}
		var bearer []string
		hasBearer := false
		for _, req := range *op.Security {
			if scopes, ok := req["bearerAuth"]; ok {
				hasBearer = true
				bearer = append(bearer, scopes...)
			}
		}
		if roles == nil {
			if hasBearer {
				t.Errorf("%s: public route documented with a bearer token", key)
			}
			continue
		}
		want := []string{string(core.RoleAdmin)}
		for _, r := range roles {
			if !slices.Contains(want, string(r)) {
				want = append(want, string(r))
			}
		}
		sort.Strings(want)
		sort.Strings(bearer)
		if !slices.Equal(want, bearer) {
			t.Errorf("%s: document names roles %v, the router admits %v", key, bearer, want)
		}
	}
}

// TestOpenAPIDocumentLints: the document passes kin-openapi's validation
// of OpenAPI 3.1 (examples validated against their schemas) and the
// project's own rules: every operation has an id, a summary, a tag, a
// security requirement, a success response with a schema, and an error
// response; every response object closed against unknown fields is so
// declared explicitly; every enum with meanings has one for each value.
func TestOpenAPIDocumentLints(t *testing.T) {
	doc := loadDoc(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background(), openapi3.IsOpenAPI31OrLater(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("document invalid: %v", err)
	}
	tags := map[string]bool{}
	for _, tg := range doc.Tags {
		tags[tg.Name] = true
	}
	ids := map[string]string{}
	for key, op := range documentedOperations(doc) {
		switch {
		case op.OperationID == "":
			t.Errorf("%s: no operationId", key)
		case ids[op.OperationID] != "":
			t.Errorf("%s: operationId %s also used by %s", key, op.OperationID, ids[op.OperationID])
		}
		ids[op.OperationID] = key
		if op.Summary == "" {
			t.Errorf("%s: no summary", key)
		}
		if len(op.Tags) != 1 || !tags[op.Tags[0]] {
			t.Errorf("%s: tags %v, want one declared tag", key, op.Tags)
		}
		if op.Security == nil {
			t.Errorf("%s: no security requirement", key)
		}
		ok, withSchema, errs := false, false, false
		for code, r := range op.Responses.Map() {
			if strings.HasPrefix(code, "2") {
				ok = true
				if len(r.Value.Content) == 0 || code == "204" {
					withSchema = withSchema || code == "204"
				}
				for _, mt := range r.Value.Content {
					withSchema = withSchema || mt.Schema != nil
				}
			}
			if code == "default" || strings.HasPrefix(code, "4") {
				errs = true
			}
		}
		if !ok || (!withSchema && !strings.HasPrefix(key, "HEAD ")) {
			t.Errorf("%s: no success response with a schema", key)
		}
		if !errs && op.Security != nil && len(*op.Security) > 0 {
			t.Errorf("%s: an authenticated operation without error responses", key)
		}
	}
	for name, sr := range doc.Components.Schemas {
		s := sr.Value
		if meanings, ok := s.Extensions["x-enum-descriptions"].(map[string]any); ok {
			for _, v := range s.Enum {
				if m, _ := meanings[v.(string)].(string); m == "" {
					t.Errorf("schema %s: enum value %v has no meaning in x-enum-descriptions", name, v)
				}
			}
			if len(meanings) != len(s.Enum) {
				t.Errorf("schema %s: %d meanings for %d enum values", name, len(meanings), len(s.Enum))
			}
		}
	}
}

func enumOf(t *testing.T, doc *openapi3.T, schema string) []string {
	t.Helper()
	sr := doc.Components.Schemas[schema]
	if sr == nil {
		t.Fatalf("no schema %s", schema)
	}
	var out []string
	for _, v := range sr.Value.Enum {
		out = append(out, v.(string))
	}
	return out
}

// TestReasonCodesAreDocumented: every rule the policy engine knows is a
// GateRule value, and every reason code it or the reconciler can give is a
// ReasonCode value with its meaning; error kinds and roles likewise.
func TestReasonCodesAreDocumented(t *testing.T) {
	doc := loadDoc(t)
	rules := enumOf(t, doc, "GateRule")
	if !slices.Equal(rules, core.GateRules) {
		t.Errorf("GateRule enum %v, core.GateRules %v", rules, core.GateRules)
	}
	codes := enumOf(t, doc, "ReasonCode")
	for _, c := range append(slices.Clone(core.GateRules), core.CodeGateBypassed, core.CodeEmergencyReviewOverdue, core.CodeEmergencyValidationOverdue, core.CodeTeamIgnored) {
		if !slices.Contains(codes, c) {
			t.Errorf("reason code %s is not in the ReasonCode enum", c)
		}
	}
	errCodes := enumOf(t, doc, "ErrorCode")
	for _, k := range []core.ErrorKind{core.KindInvalid, core.KindNotFound, core.KindConflict, core.KindUnauthorized,
		core.KindForbidden, core.KindTooLarge, core.KindRateLimited, core.KindUnavailable, core.KindInternal} {
		if !slices.Contains(errCodes, string(k)) {
			t.Errorf("error kind %s is not in the ErrorCode enum", k)
		}
	}
	roles := enumOf(t, doc, "Role")
	for _, r := range []core.Role{core.RoleAdmin, core.RoleChangeManager, core.RoleAuditor, core.RoleCI} {
		if !slices.Contains(roles, string(r)) {
			t.Errorf("role %s is not in the Role enum", r)
		}
	}
}

// TestOpenAPIServed: the document is served without a token as JSON with
// the server's version, and the reference page names every path.
func TestOpenAPIServed(t *testing.T) {
	s := newServer()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/openapi.json", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("openapi.json: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Info    struct {
			Version string `json:"version"`
		} `json:"info"`
		Paths map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" || doc.Info.Version != "1.2.3-test" {
		t.Errorf("openapi %q version %q, want 3.1.0 and the server's 1.2.3-test", doc.OpenAPI, doc.Info.Version)
	}

	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/docs", nil))
	page := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("/api/docs: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	for p := range doc.Paths {
		if !strings.Contains(page, "<code>"+p+"</code>") {
			t.Errorf("/api/docs does not show %s", p)
		}
	}
	for _, want := range []string{"PIR_PENDING", "X-Hub-Signature-256", "X-Gitlab-Token", "roles: <b>ci, admin</b>", "?wait=", "1.2.3-test"} {
		if !strings.Contains(page, want) {
			t.Errorf("/api/docs does not mention %q", want)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "https://cdn") {
		t.Error("/api/docs loads scripts or a CDN")
	}
}

// noDoctor stands for the app's checks: the route exists, nothing is run.
type noDoctor struct{}

func (noDoctor) CheckConnectors(context.Context) []connectors.Section { return nil }

type noReplicas struct{}

func (noReplicas) Replicas(context.Context) ([]core.Replica, error) { return nil, nil }
