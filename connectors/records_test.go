package connectors_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/all"
	"github.com/tollgate-dev/tollgate/core"
)

// Source authority's defaults: the ITSM types write changes, incidents and
// reviews; the CI types and generic deployments only; a grant adds kinds.
func TestWrites(t *testing.T) {
	tests := []struct {
		typ     string
		records []string
		want    []string
	}{
		{"servicenow", nil, []string{"changes", "incidents", "reviews"}},
		{"jira", nil, []string{"changes", "incidents", "reviews"}},
		{"github", nil, []string{"deployments"}},
		{"gitlab", nil, []string{"deployments"}},
		{"jenkins", nil, []string{"deployments"}},
		{"generic", nil, []string{"deployments"}},
		{"generic", []string{"changes"}, []string{"changes", "deployments"}},
		{"servicenow", []string{"deployments"}, []string{"changes", "incidents", "deployments", "reviews"}},
	}
	for _, tt := range tests {
		c := connectors.Config{Name: "x", Type: tt.typ, Records: tt.records}
		if got := c.WritableRecords(); !slices.Equal(got, tt.want) {
			t.Errorf("%s %v: %v, want %v", tt.typ, tt.records, got, tt.want)
		}
		for _, k := range connectors.RecordKinds {
			if c.Writes(k) != slices.Contains(tt.want, k) {
				t.Errorf("%s %v: Writes(%s) = %v", tt.typ, tt.records, k, c.Writes(k))
			}
		}
	}
}

func TestRegistryValidatesRecords(t *testing.T) {
	base := connectors.Config{Name: "ci", Type: "generic", WebhookSecret: "0123456789abcdef0123"}
	for _, bad := range [][]string{{"change"}, {"changes", "changes"}, {""}} {
		c := base
		c.Records = bad
		_, err := all.Registry().New(c)
		var ce *core.Error
		if !core.IsKind(err, core.KindInvalid) || !errors.As(err, &ce) || ce.Field == "" {
			t.Errorf("records %q: %v, want invalid naming the entry", bad, err)
		}
	}
	c := base
	c.Records = []string{"changes", "incidents", "deployments", "reviews"}
	if _, err := all.Registry().New(c); err != nil {
		t.Errorf("every kind: %v", err)
	}
}
