// Package mapping is tollgate's field-mapping engine: mapping profiles
// (YAML) say, for one canonical kind (change, incident, deployment, pir),
// where each canonical field comes from in a vendor's raw JSON payload.
// Parse reads a profile, Compile validates it (every problem at once, each
// naming its field), Apply turns a payload into a canonical core record
// with a per-field trace (ApplyFast: the same record without traces), and a
// Set selects the profile for an event.
//
// # Profile schema
//
//	name: servicenow-change       # unique; letters, digits, - _ .
//	kind: change                  # change | incident | deployment | pir
//	description: …
//	match:                        # all given conditions must hold
//	  connector_type: servicenow  # optional
//	  event_types: [change_request]  # optional, case-insensitive
//	  when:                       # optional, on the unwrapped record
//	    - {path: action, equals: created}
//	    - {path: state, in: [success, failure]}
//	    - {path: fields.issuetype.name, not_in: [Change]}  # also holds when absent
//	    - {path: deployment, exists: true}
//	    - {path: ref, matches: "^refs/tags/"}
//	unwrap: result                # optional envelope path, used when present
//	then_next: true               # optional: the next matching profile applies too
//	whole_run: true               # optional (deployment): a whole run, recorded only with an environment
//	fields:
//	  key:   {path: number, required: true}
//	  state: {paths: [state], transform: [lower], map: {"-5": new, "3": closed}, unmapped: error}
//	  type:  {path: type, map: {…}, map_default: normal}
//	  provider: {const: github}
//	  planned_start: {path: start_date, transform: [{time: {layout: datetime, zone: UTC}}]}
//	  services: {paths: [cmdb_ci.display_value, cmdb_ci], transform: [{split: ","}, trim, lower]}
//	  finished_at: {path: updated_at, when: [{path: status, equals: completed}]}
//	  approvals: {path: approvers, each: {approver: {path: name}, decision: {path: state, map: {…}}}}
//
// Paths are gjson paths (github.com/tidwall/gjson), so a.b, a.#.b,
// a.#(k=="v").b and modifiers such as @flatten work. Field evaluation:
// when → const, or the first path giving a non-empty value → transforms in
// order → map (exact match; an unmapped value is an error unless
// map_default or unmapped: keep) → default when still empty → required →
// conversion to the field's type (enumerations such as change state or
// deployment status are checked). A list of approvals is read from the
// first of its paths holding an array; each element is mapped by each.
//
// # Reading values
//
// Empty means absent, null, "" or an empty list. Numbers are normalized
// (3.0 → "3"). An object is unwrapped automatically: its "value" key if it
// has one (ServiceNow {link,value} references, {display_value,value} pairs,
// Jira option objects {"value": …}), else its "name" key (Jira status,
// priority, components); use an explicit sub-path such as
// cmdb_ci.display_value to read another key. So one ServiceNow profile
// reads plain Table API values, references and display pairs alike:
// paths: [cmdb_ci.display_value, cmdb_ci]. An array becomes a list of its
// elements, each read by the same rules.
//
// A list field may join several sources with union, a list of path groups:
// each group is read as paths is (its first path with a value) and the
// values of every group are joined in order before the transforms, each
// value kept once (also after them: "PAY" and "pay" lowered are one); a
// group whose path cannot be read is an error only when no other gives a
// value:
//
//	services: {union: [[cmdb_ci.display_value, cmdb_ci], [business_service.display_value, business_service]]}
//
// # Transforms
//
// trim, lower, upper (per element on lists); {split: SEP} (text → list,
// empty parts dropped); {join: SEP} (list → text); first (list → first
// element); {regex: PATTERN} or {regex: {pattern: P, group: N}} (capture
// group, default 1 when the pattern has one; no match → empty);
// {time: LAYOUT} or {time: {layout|layouts: …, zone: IANA}} (Go reference
// layouts or rfc3339, rfc3339nano, rfc1123, rfc1123z, datetime, dateonly;
// zone applies to layouts without an offset, default UTC); unix_seconds,
// unix_ms; {minus_ms: PATH} or {minus_seconds: PATH} (after a time step:
// the time less the duration read at PATH, in the same record or approval
// element; nothing taken off when PATH holds nothing, so a start can be
// told from a finish and a duration); bool (true/false, yes/no, 1/0,
// on/off); int ("3", "3.0"); present (non-empty → true). Compile checks
// that each step gets the kind of value it needs and that the chain ends
// in the field's type. A time field without a time transform accepts
// RFC 3339 text.
//
// # Selection
//
// A Set orders profiles most specific first (connector type, then event
// types, then the number of match.when conditions), ties in the order
// given; Select returns the first that matches. No match means the event is
// ignored.
package mapping
