package app_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// metricsSize fetches /metrics and returns its size and text.
func (s *server) metricsText() string {
	s.t.Helper()
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return string(raw)
}

// TestMetricsLabelsAreBounded: invented method names and paths no route
// knows add no series: 200 requests with random methods on known and
// unknown paths grow /metrics by far less than 20 KB (each used to add a
// counter and a histogram series, ~2 KB apiece).
func TestMetricsLabelsAreBounded(t *testing.T) {
	s := boot(t, "sqlite", "")
	before := s.metricsText()
	paths := []string{"/healthz", "/readyz", "/api/v1/changes/CHG1", "/no/such/path", "/api/v1/nothing"}
	for i := 0; i < 200; i++ {
		m := fmt.Sprintf("M%d%d", rand.IntN(1<<20), i)
		p := paths[i%len(paths)]
		if i%7 == 0 {
			p = fmt.Sprintf("/random/%d", rand.Int())
		}
		req, _ := http.NewRequest(m, s.url+p, nil)
		resp, err := s.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s: %d", m, p, resp.StatusCode)
		}
	}
	after := s.metricsText()
	if grew := len(after) - len(before); grew >= 20000 {
		t.Errorf("/metrics grew by %d bytes", grew)
	}
	if strings.Contains(after, `method="M`) || strings.Contains(after, "/random/") || strings.Contains(after, "/no/such") {
		t.Error("request-chosen method or path exported as a label")
	}
	for _, want := range []string{`method="other",route="/healthz"`, `route="unmatched"`} {
		if !strings.Contains(after, want) {
			t.Errorf("missing %s", want)
		}
	}
}

// TestHealthAnswersHEAD: load balancers probe with HEAD; both health
// endpoints answer it like GET, without a body.
func TestHealthAnswersHEAD(t *testing.T) {
	s := boot(t, "sqlite", "")
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := s.http.Head(s.url + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("HEAD %s: %d", p, resp.StatusCode)
		}
	}
}

// TestBuiltinMappingVersions: a built-in profile's versions list its
// shipped source as version 0; a stored override follows it as version 1.
func TestBuiltinMappingVersions(t *testing.T) {
	s := boot(t, "sqlite", "")
	type versions struct {
		Profile  struct{ Name string }
		Versions []struct {
			Version   int    `json:"version"`
			UpdatedBy string `json:"updated_by"`
			Source    string `json:"source"`
		}
	}
	var v versions
	if st := s.do("GET", "/api/v1/mappings/servicenow-change?versions=true", adminSecret, nil, &v); st != http.StatusOK {
		t.Fatalf("built-in versions: %d", st)
	}
	if len(v.Versions) != 1 || v.Versions[0].Version != 0 || v.Versions[0].Source == "" {
		t.Fatalf("built-in versions: %+v", v)
	}
	src := strings.Replace(v.Versions[0].Source, "name: servicenow-change", "name: servicenow-change\n# tuned", 1)
	if st := s.do("PUT", "/api/v1/mappings/servicenow-change", adminSecret, src, nil); st != http.StatusOK {
		t.Fatalf("put: %d", st)
	}
	v = versions{}
	if st := s.do("GET", "/api/v1/mappings/servicenow-change?versions=true", adminSecret, nil, &v); st != http.StatusOK || len(v.Versions) != 2 || v.Versions[1].Version != 1 {
		t.Fatalf("after put: %d %+v", st, v)
	}
	if st := s.do("GET", "/api/v1/mappings/no-such-profile?versions=true", adminSecret, nil, nil); st != http.StatusNotFound {
		t.Errorf("unknown profile: %d", st)
	}
}
