package api_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// The contract's baseline: what clients may rely on (operations, required
// fields, enum values), one item per line. A change to the document that
// removes an item must say so in CHANGELOG.md; `go test ./api -run
// TestContractBaseline -update` records the document as the new baseline
// (and refuses while a removal has no note).
var update = flag.Bool("update", false, "record api/openapi.yaml as the contract's baseline")

const (
	baselinePath  = "openapi.baseline.json"
	changelogPath = "../CHANGELOG.md"
)

// contractItems lists what clients may rely on:
//
//	op METHOD /path
//	required METHOD /path <where> <field path>
//	enum METHOD /path <where> <field path> <value>
//
// where <where> is "request", "param:<name>" or a success status; the
// error shape's items are listed once, under "error".
func contractItems(doc *openapi3.T) []string {
	set := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			key := method + " " + path
			set["op "+key] = true
			params := slices.Clone(item.Parameters)
			for _, p := range append(params, op.Parameters...) {
				walkSchema(set, key, "param:"+p.Value.Name, "", p.Value.Schema, 0)
			}
			if op.RequestBody != nil {
				for _, mt := range op.RequestBody.Value.Content {
					walkSchema(set, key, "request", "", mt.Schema, 0)
				}
			}
			for status, r := range op.Responses.Map() {
				if !strings.HasPrefix(status, "2") {
					continue
				}
				for _, mt := range r.Value.Content {
					walkSchema(set, key, status, "", mt.Schema, 0)
				}
			}
		}
	}
	walkSchema(set, "error", "", "", doc.Components.Schemas["Error"], 0)
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func walkSchema(set map[string]bool, op, where, field string, sr *openapi3.SchemaRef, depth int) {
	if sr == nil || sr.Value == nil || depth > 12 {
		return
	}
	s := sr.Value
	prefix := strings.TrimSpace(op + " " + where)
	name := field
	if name == "" {
		name = "."
	}
	for _, v := range s.Enum {
		set[fmt.Sprintf("enum %s %s %v", prefix, name, v)] = true
	}
	for _, r := range s.Required {
		set["required "+prefix+" "+dot(field, r)] = true
	}
	for p, ps := range s.Properties {
		walkSchema(set, op, where, dot(field, p), ps, depth+1)
	}
	walkSchema(set, op, where, field+"[]", s.Items, depth+1)
	walkSchema(set, op, where, field+"{}", s.AdditionalProperties.Schema, depth+1)
	for _, o := range s.OneOf {
		walkSchema(set, op, where, field, o, depth+1)
	}
	for _, o := range s.AllOf {
		walkSchema(set, op, where, field, o, depth+1)
	}
}

func dot(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// noted reports whether CHANGELOG.md mentions a removed item: an
// operation by "METHOD /path", a required field or an enum value by its
// name in backticks.
func noted(changelog, item string) bool {
	f := strings.Fields(item)
	switch f[0] {
	case "op":
		return strings.Contains(changelog, f[1]+" "+f[2])
	case "required":
		last := f[len(f)-1]
		last = last[strings.LastIndexAny(last, ".]}")+1:]
		return strings.Contains(changelog, "`"+last+"`")
	case "enum":
		return strings.Contains(changelog, "`"+f[len(f)-1]+"`")
	}
	return false
}

// TestContractBaseline fails when an operation, a required field or an
// enum value of the committed baseline is gone from the document without
// a note in CHANGELOG.md, and when the document has items the baseline
// has not recorded yet.
func TestContractBaseline(t *testing.T) {
	current := contractItems(loadDoc(t))
	raw, err := os.ReadFile(baselinePath)
	if err != nil && !*update {
		t.Fatalf("%v: run go test ./api -run TestContractBaseline -update", err)
	}
	var baseline []string
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &baseline); err != nil {
			t.Fatalf("%s: %v", baselinePath, err)
		}
	}
	changelog, err := os.ReadFile(changelogPath)
	if err != nil {
		t.Fatal(err)
	}
	var unnoted []string
	for _, item := range baseline {
		if !slices.Contains(current, item) && !noted(string(changelog), item) {
			unnoted = append(unnoted, item)
		}
	}
	for _, item := range unnoted {
		t.Errorf("gone from the contract without a note in CHANGELOG.md: %s", item)
	}
	if *update {
		if len(unnoted) > 0 {
			t.Fatal("not updating the baseline: note the removals in CHANGELOG.md first")
		}
		if err := os.WriteFile(baselinePath, encodeBaseline(current), 0o644); err != nil { //nolint:gosec // a source file
			t.Fatal(err)
		}
		return
	}
	var added, removed int
	for _, item := range current {
		if !slices.Contains(baseline, item) {
			added++
		}
	}
	for _, item := range baseline {
		if !slices.Contains(current, item) {
			removed++
		}
	}
	if len(unnoted) == 0 && (added > 0 || removed > 0) {
		t.Errorf("api/openapi.yaml changed (%d items new, %d removed with a note): record it with go test ./api -run TestContractBaseline -update", added, removed)
	}
}

// encodeBaseline writes one item per line, so merges of branches that add
// routes touch separate lines.
func encodeBaseline(items []string) []byte {
	var b bytes.Buffer
	b.WriteString("[\n")
	for i, it := range items {
		j, _ := json.Marshal(it)
		b.Write(j)
		if i < len(items)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("]\n")
	return b.Bytes()
}

// TestContractBaselineNotes: the note rules on made-up removals.
func TestContractBaselineNotes(t *testing.T) {
	const log = "- `GET /api/v1/things` is gone.\n- Responses no longer carry `emergency`.\n- Reason code `HOLD` removed.\n"
	tests := []struct {
		item string
		want bool
	}{
		{"op GET /api/v1/things", true},
		{"op POST /api/v1/things", false},
		{"required POST /api/v1/gate/check 200 emergency", true},
		{"required GET /api/v1/gate/decisions/{id} 200 facts.changes{}.emergency", true},
		{"required POST /api/v1/gate/check 200 decision", false},
		{"enum POST /api/v1/gate/check 200 reasons[].code HOLD", true},
		{"enum POST /api/v1/gate/check 200 reasons[].code FREEZE", false},
	}
	for _, tt := range tests {
		if got := noted(log, tt.item); got != tt.want {
			t.Errorf("noted(%q) = %v, want %v", tt.item, got, tt.want)
		}
	}
}
