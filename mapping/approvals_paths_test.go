package mapping_test

import (
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

// TestApprovalsFirstPresentPath: with several paths, approvals are read
// from the first one present (an API-enriched member before a custom
// field), each element mapped the same way.
func TestApprovalsFirstPresentPath(t *testing.T) {
	spec := `{paths: [api, field], each: {approver: {path: who}, decision: {path: d}}}`
	tests := []struct {
		payload string
		want    string // approver of the single approval, "" for none
	}{
		{`{"key":"C1","state":"new","api":[{"who":"from-api","d":"approved"}],"field":[{"who":"from-field","d":"approved"}]}`, "from-api"},
		{`{"key":"C1","state":"new","field":[{"who":"from-field","d":"rejected"}]}`, "from-field"},
		{`{"key":"C1","state":"new"}`, ""},
	}
	for _, tc := range tests {
		res := oneField(t, "change", "approvals", spec, tc.payload)
		if err := res.Err(); err != nil {
			t.Fatalf("%s: %v", tc.payload, err)
		}
		c := res.Record.(*core.Change)
		switch {
		case tc.want == "" && len(c.Approvals) != 0:
			t.Errorf("%s: approvals %+v", tc.payload, c.Approvals)
		case tc.want != "" && (len(c.Approvals) != 1 || c.Approvals[0].Approver != tc.want):
			t.Errorf("%s: approvals %+v, want %s", tc.payload, c.Approvals, tc.want)
		}
	}
}
