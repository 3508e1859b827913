package core

import (
	"cmp"
	"fmt"
	"slices"
)

// AuditAnchors holds a chain walk to every head of an anchors file (heads
// written outside the database on a schedule): each must be in the chain,
// its row with its hash. Checking them all, not only the newest, finds a
// chain rewritten between two anchors and anchored again since, which the
// newest alone would take for whole. Feed it every intact row in order
// (Check), then End.
type AuditAnchors struct {
	heads []AuditHead // by Seq, one per row
	next  int
}

// NewAuditAnchors orders heads by row and drops repeats (an idle chain is
// anchored at the same row many times) and anchors of the empty chain
// (seq 0, which every chain reaches). Two anchors of one row with other
// hashes are a break by themselves: the chain was rewritten between them.
func NewAuditAnchors(heads []AuditHead) (*AuditAnchors, *AuditBreak) {
	sorted := slices.Clone(heads)
	slices.SortStableFunc(sorted, func(a, b AuditHead) int { return cmp.Compare(a.Seq, b.Seq) })
	a := &AuditAnchors{}
	for _, h := range sorted {
		if h.Seq <= 0 {
			continue
		}
		if n := len(a.heads); n > 0 && a.heads[n-1].Seq == h.Seq {
			if prev := a.heads[n-1]; prev.Hash != h.Hash {
				return nil, &AuditBreak{Seq: h.Seq, Reason: fmt.Sprintf("two anchors of row %d disagree (%s, then %s): the chain was rewritten between them", h.Seq, prev.Hash, h.Hash)}
			}
			continue
		}
		a.heads = append(a.heads, h)
	}
	return a, nil
}

// Len is how many rows are anchored.
func (a *AuditAnchors) Len() int { return len(a.heads) }

// Newest is the anchor of the highest row (ok false when there is none).
func (a *AuditAnchors) Newest() (AuditHead, bool) {
	if len(a.heads) == 0 {
		return AuditHead{}, false
	}
	return a.heads[len(a.heads)-1], true
}

// Check checks row e against the anchor of its row, if any.
func (a *AuditAnchors) Check(e AuditEntry) *AuditBreak {
	for a.next < len(a.heads) && a.heads[a.next].Seq <= e.Seq {
		h := a.heads[a.next]
		a.next++
		if h.Seq == e.Seq && h.Hash != e.Hash {
			return anchorRewritten(h, e.Hash)
		}
	}
	return nil
}

// End fails a walk whose last row was last while anchored rows remain.
func (a *AuditAnchors) End(last int64) *AuditBreak {
	if newest, ok := a.Newest(); ok && newest.Seq > last {
		return anchorBehind(newest, last)
	}
	return nil
}

// CheckAnchor compares the chain with one anchor without walking it: head
// is the chain's newest row, row the chain's row at anchor.Seq (nil when
// there is none). It finds a chain that ends before the anchor (rows
// deleted from its end, a restore from an older backup) and one whose row
// there has another hash (recomputed from an edited row onwards); an edit
// that left the row's hash as it was is what a walk (VerifyAuditChain)
// finds.
func CheckAnchor(anchor, head AuditHead, row *AuditEntry) *AuditBreak {
	switch {
	case anchor.Seq <= 0:
		return nil
	case head.Seq < anchor.Seq:
		return anchorBehind(anchor, head.Seq)
	case row == nil || row.Seq != anchor.Seq:
		return &AuditBreak{Seq: anchor.Seq, Reason: fmt.Sprintf("the chain has no row %d, the anchored one, though it goes on to row %d (rows were deleted)", anchor.Seq, head.Seq)}
	case row.Hash != anchor.Hash:
		return anchorRewritten(anchor, row.Hash)
	}
	return nil
}

func anchorBehind(anchor AuditHead, last int64) *AuditBreak {
	return &AuditBreak{Seq: last + 1, Reason: fmt.Sprintf("the chain ends at row %d, before the anchored row %d: %d rows were deleted from its end, or the store was restored from an older backup",
		last, anchor.Seq, anchor.Seq-last)}
}

func anchorRewritten(anchor AuditHead, hash string) *AuditBreak {
	return &AuditBreak{Seq: anchor.Seq, Reason: fmt.Sprintf("row %d has hash %s, not %s as anchored: the chain was rewritten from this row or before", anchor.Seq, hash, anchor.Hash)}
}
