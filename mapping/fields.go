package mapping

import (
	"sort"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// Canonical kinds.
const (
	KindChange     = "change"
	KindIncident   = "incident"
	KindDeployment = "deployment"
	KindPIR        = "pir"
)

// ftype is the Go type of a canonical field.
type ftype uint8

const (
	tString ftype = iota + 1
	tInt
	tBool
	tTime
	tList
	tApprovals
)

func (t ftype) String() string {
	switch t {
	case tString:
		return "string"
	case tInt:
		return "integer"
	case tBool:
		return "boolean"
	case tTime:
		return "time"
	case tList:
		return "list"
	case tApprovals:
		return "list of approvals"
	}
	return "?"
}

// fieldDef describes one canonical field: its type, the allowed values of an
// enumeration, and how to store a converted value into the record.
type fieldDef struct {
	typ  ftype
	enum []string
	set  func(rec any, v any)
	// setStr and setTime, when not nil, store a string or time field's
	// value without boxing it in an interface (ApplyFast).
	setStr  func(rec any, s string)
	setTime func(rec any, t time.Time)
}

type kindDef struct {
	fields map[string]fieldDef
	new    func() any
}

func strField(set func(rec any, s string)) fieldDef {
	return fieldDef{typ: tString, set: func(r any, v any) { set(r, v.(string)) }, setStr: set}
}

func enumField(enum []string, set func(rec any, s string)) fieldDef {
	return fieldDef{typ: tString, enum: enum, set: func(r any, v any) { set(r, v.(string)) }, setStr: set}
}

func intField(set func(rec any, i int)) fieldDef {
	return fieldDef{typ: tInt, set: func(r any, v any) { set(r, v.(int)) }}
}

func boolField(set func(rec any, b bool)) fieldDef {
	return fieldDef{typ: tBool, set: func(r any, v any) { set(r, v.(bool)) }}
}

func timeField(set func(rec any, t time.Time)) fieldDef {
	return fieldDef{typ: tTime, set: func(r any, v any) { set(r, v.(time.Time)) }, setTime: set}
}

func listField(set func(rec any, l []string)) fieldDef {
	return fieldDef{typ: tList, set: func(r any, v any) { set(r, v.([]string)) }}
}

func tp(t time.Time) *time.Time { return &t }

var (
	changeTypes     = []string{string(core.ChangeStandard), string(core.ChangeNormal), string(core.ChangeEmergency)}
	approvalStates  = []string{string(core.ApprovalNotRequested), string(core.ApprovalRequested), string(core.ApprovalApproved), string(core.ApprovalRejected), string(core.ApprovalCanceled)}
	changeStates    = []string{core.ChangeStateNew, core.ChangeStateAssess, core.ChangeStateAuthorize, core.ChangeStateScheduled, core.ChangeStateImplement, core.ChangeStateReview, core.ChangeStateClosed, core.ChangeStateCanceled}
	incidentStates  = []string{core.IncidentOpen, core.IncidentResolved, core.IncidentClosed, core.IncidentCanceled}
	deployStatuses  = core.DeployStatuses()
	pirStatuses     = []string{core.PIRPending, core.PIRSignedOff}
	approvalDecides = []string{string(core.ApprovalRequested), string(core.ApprovalApproved), string(core.ApprovalRejected)}
)

// approvalFields are the sub-fields of one element of change.approvals.
var approvalFields = map[string]fieldDef{
	"approver": strField(func(r any, s string) { r.(*core.Approval).Approver = s }),
	"decision": enumField(approvalDecides, func(r any, s string) { r.(*core.Approval).Decision = core.ApprovalState(s) }),
	"at":       timeField(func(r any, t time.Time) { r.(*core.Approval).At = tp(t) }),
	"comment":  strField(func(r any, s string) { r.(*core.Approval).Comment = s }),
	"name":     strField(func(r any, s string) { r.(*core.Approval).Name = s }),
}

func ch(r any) *core.Change      { return r.(*core.Change) }
func inc(r any) *core.Incident   { return r.(*core.Incident) }
func dep(r any) *core.Deployment { return r.(*core.Deployment) }
func pir(r any) *core.PIR        { return r.(*core.PIR) }

// kinds is the registry of canonical kinds and their mappable fields. The
// names are the json tags of the core types. Fields the connector or the
// store set (source, id, release_id of a deployment, created_at …) are not
// mappable.
var kinds = map[string]kindDef{
	KindChange: {
		new: func() any { return &core.Change{} },
		fields: map[string]fieldDef{
			"key":      strField(func(r any, s string) { ch(r).Key = s }),
			"title":    strField(func(r any, s string) { ch(r).Title = s }),
			"type":     enumField(changeTypes, func(r any, s string) { ch(r).Type = core.ChangeType(s) }),
			"state":    enumField(changeStates, func(r any, s string) { ch(r).State = s }),
			"approval": enumField(approvalStates, func(r any, s string) { ch(r).Approval = core.ApprovalState(s) }),
			"approvals": {typ: tApprovals, set: func(r any, v any) {
				ch(r).Approvals = v.([]core.Approval)
			}},
			"risk":                strField(func(r any, s string) { ch(r).Risk = s }),
			"planned_start":       timeField(func(r any, t time.Time) { ch(r).PlannedStart = tp(t) }),
			"planned_end":         timeField(func(r any, t time.Time) { ch(r).PlannedEnd = tp(t) }),
			"services":            listField(func(r any, l []string) { ch(r).Services = l }),
			"requested_by":        strField(func(r any, s string) { ch(r).RequestedBy = s }),
			"has_risk_assessment": boolField(func(r any, b bool) { ch(r).HasRiskAssessment = b }),
			"has_backout_plan":    boolField(func(r any, b bool) { ch(r).HasBackoutPlan = b }),
			"template":            strField(func(r any, s string) { ch(r).Template = s }),
			"reviewed_at":         timeField(func(r any, t time.Time) { ch(r).ReviewedAt = tp(t) }),
			"pir_required":        boolField(func(r any, b bool) { ch(r).PIRRequired = b }),
			"pir_signed_off":      boolField(func(r any, b bool) { ch(r).PIRSignedOff = b }),
			"source_updated_at":   timeField(func(r any, t time.Time) { ch(r).SourceUpdatedAt = t }),
		},
	},
	KindIncident: {
		new: func() any { return &core.Incident{} },
		fields: map[string]fieldDef{
			"key":               strField(func(r any, s string) { inc(r).Key = s }),
			"title":             strField(func(r any, s string) { inc(r).Title = s }),
			"priority":          intField(func(r any, i int) { inc(r).Priority = i }),
			"major":             boolField(func(r any, b bool) { inc(r).Major = b }),
			"state":             enumField(incidentStates, func(r any, s string) { inc(r).State = s }),
			"services":          listField(func(r any, l []string) { inc(r).Services = l }),
			"opened_at":         timeField(func(r any, t time.Time) { inc(r).OpenedAt = tp(t) }),
			"resolved_at":       timeField(func(r any, t time.Time) { inc(r).ResolvedAt = tp(t) }),
			"fix_changes":       listField(func(r any, l []string) { inc(r).FixChanges = l }),
			"source_updated_at": timeField(func(r any, t time.Time) { inc(r).SourceUpdatedAt = t }),
		},
	},
	KindDeployment: {
		new: func() any { return &core.Deployment{} },
		fields: map[string]fieldDef{
			"service":          strField(func(r any, s string) { dep(r).Service = s }),
			"environment":      strField(func(r any, s string) { dep(r).Environment = s }),
			"version":          strField(func(r any, s string) { dep(r).Version = s }),
			"commit":           strField(func(r any, s string) { dep(r).Commit = s }),
			"team":             strField(func(r any, s string) { dep(r).Team = s }),
			"status":           enumField(deployStatuses, func(r any, s string) { dep(r).Status = s }),
			"started_at":       timeField(func(r any, t time.Time) { dep(r).StartedAt = t }),
			"finished_at":      timeField(func(r any, t time.Time) { dep(r).FinishedAt = tp(t) }),
			"actor":            strField(func(r any, s string) { dep(r).Actor = s }),
			"changes":          listField(func(r any, l []string) { dep(r).Changes = l }),
			"incidents":        listField(func(r any, l []string) { dep(r).Incidents = l }),
			"decision_id":      strField(func(r any, s string) { dep(r).DecisionID = s }),
			"provider":         strField(func(r any, s string) { dep(r).Provider = s }),
			"run_id":           strField(func(r any, s string) { dep(r).RunID = s }),
			"ci_deployment_id": strField(func(r any, s string) { dep(r).CIDeploymentID = s }),
			"url":              strField(func(r any, s string) { dep(r).URL = s }),
		},
	},
	KindPIR: {
		new: func() any { return &core.PIR{} },
		fields: map[string]fieldDef{
			"release_id":    strField(func(r any, s string) { pir(r).ReleaseID = s }),
			"service":       strField(func(r any, s string) { pir(r).Service = s }),
			"version":       strField(func(r any, s string) { pir(r).Version = s }),
			"environment":   strField(func(r any, s string) { pir(r).Environment = s }),
			"team":          strField(func(r any, s string) { pir(r).Team = s }),
			"status":        enumField(pirStatuses, func(r any, s string) { pir(r).Status = s }),
			"required_at":   timeField(func(r any, t time.Time) { pir(r).RequiredAt = t }),
			"signed_off_by": strField(func(r any, s string) { pir(r).SignedOffBy = s }),
			"signed_off_at": timeField(func(r any, t time.Time) { pir(r).SignedOffAt = tp(t) }),
			"summary":       strField(func(r any, s string) { pir(r).Summary = s }),
		},
	},
}

// Kinds returns the canonical kinds a profile may produce.
func Kinds() []string { return sortedKeys(kinds) }

// FieldNames returns the mappable canonical field names of kind, sorted; nil
// for an unknown kind.
func FieldNames(kind string) []string {
	k, ok := kinds[kind]
	if !ok {
		return nil
	}
	return sortedKeys(k.fields)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
