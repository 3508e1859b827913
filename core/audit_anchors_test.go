package core

import (
	"strings"
	"testing"
)

// TestAuditAnchors: a walk must reach every anchor of a file with the
// hash anchored; repeats are one anchor, two hashes for one row a break
// of their own, and the chain may grow past the newest.
func TestAuditAnchors(t *testing.T) {
	rows := []AuditEntry{{Seq: 1, Hash: "h1"}, {Seq: 2, Hash: "h2"}, {Seq: 3, Hash: "h3"}, {Seq: 4, Hash: "h4"}}
	h := func(seq int64, hash string) AuditHead { return AuditHead{Seq: seq, Hash: hash} }
	for _, tc := range []struct {
		name   string
		heads  []AuditHead
		rows   []AuditEntry
		reason string
	}{
		{"none", nil, rows, ""},
		{"every one reached, out of order and repeated", []AuditHead{h(3, "h3"), h(1, "h1"), h(3, "h3"), h(0, GenesisHash)}, rows, ""},
		{"the chain grew past them", []AuditHead{h(2, "h2")}, rows, ""},
		{"cut short", []AuditHead{h(2, "h2"), h(4, "h4")}, rows[:2], "ends at row 2, before the anchored row 4: 2 rows were deleted"},
		{"an older anchor rewritten", []AuditHead{h(2, "other"), h(4, "h4")}, rows, "row 2 has hash h2, not other as anchored"},
		{"the newest rewritten", []AuditHead{h(1, "h1"), h(4, "x")}, rows, "row 4 has hash h4, not x"},
		{"anchors disagree", []AuditHead{h(3, "h3"), h(3, "y")}, rows, "two anchors of row 3 disagree"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, brk := NewAuditAnchors(tc.heads)
			for _, r := range tc.rows {
				if brk != nil {
					break
				}
				brk = a.Check(r)
			}
			if brk == nil {
				brk = a.End(int64(len(tc.rows)))
			}
			if (tc.reason == "") != (brk == nil) || (brk != nil && !strings.Contains(brk.Reason, tc.reason)) {
				t.Fatalf("break %+v, want %q", brk, tc.reason)
			}
		})
	}
}

// TestCheckAnchor: the quick comparison with the newest anchor, from the
// chain's head and its row at the anchor's seq.
func TestCheckAnchor(t *testing.T) {
	anchor := AuditHead{Seq: 5, Hash: "h5"}
	row := func(seq int64, hash string) *AuditEntry { return &AuditEntry{Seq: seq, Hash: hash} }
	for _, tc := range []struct {
		name   string
		anchor AuditHead
		head   AuditHead
		row    *AuditEntry
		reason string
	}{
		{"at the anchor", anchor, AuditHead{Seq: 5, Hash: "h5"}, row(5, "h5"), ""},
		{"grown past it", anchor, AuditHead{Seq: 9, Hash: "h9"}, row(5, "h5"), ""},
		{"no anchor yet", AuditHead{}, AuditHead{Seq: 0, Hash: GenesisHash}, nil, ""},
		{"anchor of the empty chain", AuditHead{Hash: GenesisHash}, AuditHead{Seq: 3}, nil, ""},
		{"behind: rows deleted, or a restore", anchor, AuditHead{Seq: 2, Hash: "h2"}, nil, "the chain ends at row 2, before the anchored row 5: 3 rows were deleted"},
		{"emptied", anchor, AuditHead{Hash: GenesisHash}, nil, "ends at row 0"},
		{"rewritten", anchor, AuditHead{Seq: 7, Hash: "x7"}, row(5, "x5"), "row 5 has hash x5, not h5 as anchored"},
		{"restored, then grown past it", anchor, AuditHead{Seq: 6, Hash: "y6"}, row(5, "y5"), "row 5 has hash y5"},
		{"the anchored row deleted", anchor, AuditHead{Seq: 7, Hash: "h7"}, row(6, "h6"), "no row 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brk := CheckAnchor(tc.anchor, tc.head, tc.row)
			if (tc.reason == "") != (brk == nil) || (brk != nil && !strings.Contains(brk.Reason, tc.reason)) {
				t.Fatalf("break %+v, want %q", brk, tc.reason)
			}
		})
	}
}
