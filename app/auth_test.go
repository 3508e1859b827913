package app_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

// TestEveryRouteHasAnAccessRule walks every route registered on the router
// with every role, no token and a revoked token, and checks the status
// against the route's rule. A route added without a rule fails here.
func TestEveryRouteHasAnAccessRule(t *testing.T) {
	s := boot(t, "sqlite", "")
	rules := s.app.Server.Rules()
	tokens := map[core.Role]string{}
	for _, r := range []core.Role{core.RoleAdmin, core.RoleChangeManager, core.RoleAuditor, core.RoleCI} {
		tokens[r], _ = s.token(r)
	}
	revoked, revokedID := s.token(core.RoleAdmin)
	if st := s.do("DELETE", "/api/v1/tokens/"+revokedID, adminSecret, nil, nil); st != http.StatusNoContent {
		t.Fatalf("revoke: %d", st)
	}

	routes := s.app.Server.Echo().Router().Routes()
	if len(routes) < 20 {
		t.Fatalf("only %d routes registered", len(routes))
	}
	for _, rt := range routes {
		key := rt.Method + " " + rt.Path
		allowed, ok := rules[key]
		if !ok {
			t.Errorf("route %s has no access rule", key)
			continue
		}
		path := fillParams(rt.Path)
		if allowed == nil { // public
			continue
		}
		t.Run(key, func(t *testing.T) {
			if st := s.do(rt.Method, path, "", nil, nil); st != http.StatusUnauthorized {
				t.Errorf("no token: status %d, want 401", st)
			}
			if st := s.do(rt.Method, path, "tg_not-a-real-token", nil, nil); st != http.StatusUnauthorized {
				t.Errorf("unknown token: status %d, want 401", st)
			}
			if st := s.do(rt.Method, path, revoked, nil, nil); st != http.StatusUnauthorized {
				t.Errorf("revoked token: status %d, want 401", st)
			}
			for role, tok := range tokens {
				st := s.do(rt.Method, path, tok, nil, nil)
				may := role == core.RoleAdmin || slices.Contains(allowed, role)
				switch {
				case may && (st == http.StatusUnauthorized || st == http.StatusForbidden):
					t.Errorf("role %s: status %d, want access", role, st)
				case !may && st != http.StatusForbidden:
					t.Errorf("role %s: status %d, want 403", role, st)
				case st >= 500:
					t.Errorf("role %s: status %d (server error on an empty request)", role, st)
				}
			}
		})
	}
}

func fillParams(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, ":") {
			parts[i] = "x-" + s[1:]
		}
	}
	return strings.Join(parts, "/")
}
