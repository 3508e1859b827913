package servicenow

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/internal/itsmfake"
)

// FuzzEnrich: whatever a delivery holds, completing it never panics, and
// what it returns is the body unchanged or valid JSON.
func FuzzEnrich(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err == nil {
			f.Add(TableChange, b)
			f.Add(TableIncident, b)
		}
	}
	f.Add(TableChange, []byte(`{"result":{"cmdb_ci":"0123456789abcdef0123456789abcdef","sys_class_name":"change_request"}}`))
	f.Add(TableChange, []byte(`{"result":[1,2]}`))
	fake := itsmfake.New(testUser, testPW)
	defer fake.Close()
	api := connectors.API{URL: fake.URL, Username: testUser, Password: testPW}
	hc := apiclient.New(apiclient.Options{Instance: "acme", Timeout: time.Second, RetryMax: -1, FailuresToOpen: 1 << 30})
	c, err := NewClient(connectors.Config{Name: "acme", Type: Type, API: &api}, hc, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, typ string, body []byte) {
		out, err := c.Enrich(context.Background(), typ, body)
		if err != nil {
			return
		}
		if string(out) != string(body) && !json.Valid(out) {
			t.Fatalf("enriched body is not JSON: %q", out)
		}
	})
}
