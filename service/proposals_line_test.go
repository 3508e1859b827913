package service

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

// tokenLine is a ProposalStore holding only tokens, each made by the one
// before it.
type tokenLine struct {
	ProposalStore
	tokens map[string]core.Token
}

func (l tokenLine) TokenByID(_ context.Context, id string) (core.Token, error) {
	t, ok := l.tokens[id]
	if !ok {
		return core.Token{}, core.NotFound("token", id)
	}
	return t, nil
}

// TestMadeByFollowsTheWholeLine: a token made through a long line of
// tokens, each made by the one before (one admin minting its way past a
// depth limit), is still the proposer's; a line past maxTokenLine counts
// as the proposer's (fail closed); tokens of two lines are two holders.
func TestMadeByFollowsTheWholeLine(t *testing.T) {
	const depth = 200
	line := tokenLine{tokens: map[string]core.Token{"alice": {ID: "alice", CreatedBy: "admin"}, "bob": {ID: "bob", CreatedBy: "admin"}}}
	prev := "alice"
	for i := range depth {
		id := fmt.Sprintf("t%d", i)
		line.tokens[id] = core.Token{ID: id, CreatedBy: "token:admin-" + prev + "(" + prev + ")"}
		prev = id
	}
	p := NewProposals(line, nil, nil, core.SystemClock, slog.New(slog.DiscardHandler), true)
	ctx := context.Background()
	if made, err := p.madeBy(ctx, prev, "alice"); err != nil || !made {
		t.Fatalf("a token %d tokens down alice's line: made by her %v (%v), want true", depth, made, err)
	}
	if made, err := p.madeBy(ctx, prev, "bob"); err != nil || made {
		t.Fatalf("alice's line against bob: %v (%v), want false", made, err)
	}
	pr := core.Proposal{ID: "p1", ProposedBy: "token:alice(alice)"}
	if err := p.secondHolder(ctx, pr, "token:minted("+prev+")"); !core.IsKind(err, core.KindForbidden) {
		t.Fatalf("confirmation from the end of alice's line: %v, want forbidden", err)
	}
	if err := p.secondHolder(ctx, pr, "token:bob(bob)"); err != nil {
		t.Fatalf("confirmation by bob: %v", err)
	}
}
