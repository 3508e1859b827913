package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/app"
)

// TestContractServed: the running server serves its contract without a
// token, with its own version as info.version, and the reference page.
func TestContractServed(t *testing.T) {
	s := boot(t, "sqlite", "")
	var doc struct {
		OpenAPI string `json:"openapi"`
		Info    struct {
			Version string `json:"version"`
		} `json:"info"`
	}
	if st := s.do("GET", "/api/v1/openapi.json", "", nil, &doc); st != http.StatusOK {
		t.Fatalf("openapi.json: %d", st)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") || doc.Info.Version != app.Version {
		t.Errorf("openapi %q info.version %q, want 3.1 and %q", doc.OpenAPI, doc.Info.Version, app.Version)
	}
	resp, err := s.http.Get(s.url + "/api/docs")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "/api/v1/gate/check") {
		t.Errorf("/api/docs: %d (%d bytes)", resp.StatusCode, len(page))
	}
}
