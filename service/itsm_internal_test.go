package service

import (
	"errors"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

// TestAnnotateITSM: what the ITSMs said, added to a decision.
func TestAnnotateITSM(t *testing.T) {
	r := func(code string, res core.Decision, ref string) core.Reason {
		return core.Reason{Code: code, Result: res, Ref: ref, Message: code + " " + ref}
	}
	tests := []struct {
		name    string
		reasons []core.Reason
		notes   map[string]string
		opened  openedChange
		want    core.Decision
		codes   string // the reasons' codes, in order
		msg     string // in some reason's message
	}{
		{"not found says why", []core.Reason{r(core.CodeChangeNotFound, core.Deny, "CHG1")}, map[string]string{"CHG1": "not in ServiceNow acme"},
			openedChange{}, core.Deny, "CHANGE_NOT_FOUND", "CHANGE_NOT_FOUND CHG1: not in ServiceNow acme"},
		{"a new change's gaps become one wait", []core.Reason{r(core.CodeChangeNotApproved, core.Wait, "CHG9"), r(core.CodeChangeIncomplete, core.Deny, "CHG9"), r(core.CodeFreeze, core.Wait, "fri")},
			nil, openedChange{key: "CHG9", system: "ServiceNow acme"}, core.Wait, "CHANGE_CREATED,FREEZE", "waiting for it: CHANGE_NOT_APPROVED CHG9; CHANGE_INCOMPLETE CHG9"},
		{"other denials stay", []core.Reason{r(core.CodeChangeIncomplete, core.Deny, "CHG9"), r(core.CodeSelfApproval, core.Deny, "CHG1")},
			nil, openedChange{key: "CHG9", system: "ServiceNow acme"}, core.Deny, "CHANGE_CREATED,SELF_APPROVAL", ""},
		{"a rejected new change denies", []core.Reason{r(core.CodeChangeNotApproved, core.Deny, "CHG9")},
			nil, openedChange{key: "CHG9", system: "ServiceNow acme"}, core.Deny, "CHANGE_CREATED,CHANGE_NOT_APPROVED", ""},
		{"a ready new change allows, noted", nil, nil, openedChange{key: "CHG9", system: "ServiceNow acme"}, core.Allow, "CHANGE_CREATED",
			"tollgate opened change CHG9 in ServiceNow acme"},
		{"a refusal replaces NO_CHANGE", []core.Reason{r(core.CodeNoChange, core.Deny, "")}, nil,
			openedChange{system: "ServiceNow acme", failed: &CreationFailed{System: "ServiceNow acme", Err: errors.New("HTTP 403: Forbidden")}},
			core.Deny, "CHANGE_CREATION_FAILED", "ServiceNow acme did not open a change: HTTP 403: Forbidden"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := core.GateDecision{Reasons: append([]core.Reason(nil), tc.reasons...), Decision: core.Deny}
			annotateITSM(&d, tc.notes, tc.opened)
			var codes []string
			all := ""
			for _, x := range d.Reasons {
				codes = append(codes, x.Code)
				all += x.Message + "\n"
			}
			if d.Decision != tc.want || strings.Join(codes, ",") != tc.codes || !strings.Contains(all, tc.msg) {
				t.Errorf("got %s %v\n%s", d.Decision, codes, all)
			}
		})
	}
}
