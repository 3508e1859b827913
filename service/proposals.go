package service

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/mapping"
)

// ProposalStore is what Proposals needs from storage.
type ProposalStore interface {
	CreateProposal(ctx context.Context, p core.Proposal) (core.Proposal, error)
	GetProposal(ctx context.Context, id string) (core.Proposal, error)
	ListProposals(ctx context.Context, status string) ([]core.Proposal, error)
	// ConfirmProposal puts the proposal in force and records its
	// confirmation in one transaction, refusing one made against an older
	// version of what it changes.
	ConfirmProposal(ctx context.Context, id, actor string, at time.Time) (core.Proposal, int, error)
	DecideProposal(ctx context.Context, id, status, actor string, at time.Time) (core.Proposal, error)
	TokenByID(ctx context.Context, id string) (core.Token, error)
}

// Reloader installs what the store holds now (Policies, Mappings).
type Reloader interface {
	Reload(ctx context.Context) error
}

// MappingReloader is the mapping profiles' Reloader, which also
// validates a profile as a save of it would.
type MappingReloader interface {
	Reloader
	Check(p *mapping.Profile) error
}

// Proposals is four-eyes governance: with governance.four_eyes, a policy
// or mapping change is stored as a proposal (validated as the change
// itself would be) and takes effect only when a second admin confirms it.
// The proposer cannot confirm their own, nor can a token in one line of
// creation with the proposer's (secondHolder); both names are in the audit
// trail (proposal.create, proposal.confirmed, and the change's own entry
// by the confirming admin).
type Proposals struct {
	store    ProposalStore
	policies *Policies
	mappings MappingReloader
	clock    core.Clock
	log      *slog.Logger
	fourEyes bool
}

// NewProposals wires the proposal service; fourEyes is the server
// configuration's governance.four_eyes.
func NewProposals(store ProposalStore, policies *Policies, mappings MappingReloader, clock core.Clock, log *slog.Logger, fourEyes bool) *Proposals {
	return &Proposals{store: store, policies: policies, mappings: mappings, clock: clock, log: log, fourEyes: fourEyes}
}

// FourEyes reports whether changes need a second admin.
func (p *Proposals) FourEyes() bool { return p != nil && p.fourEyes }

// Propose validates a policy (kind policy), a mapping profile (kind
// mapping, target its name) or names the profile to delete (kind
// mapping_delete), and stores it as a pending proposal.
func (p *Proposals) Propose(ctx context.Context, kind, target string, src []byte, actor string) (core.Proposal, error) {
	if err := p.validate(kind, target, src); err != nil {
		return core.Proposal{}, err
	}
	// The store reads the base version in the proposal's own transaction.
	return p.store.CreateProposal(ctx, core.Proposal{ID: newID(), Kind: kind, Target: target, Source: string(src),
		ProposedBy: actor, ProposedAt: p.clock.Now()})
}

// Confirm puts a pending proposal in force as actor. Its proposer cannot
// confirm it, nor can a token in one line of creation with the proposer's
// (KindForbidden, secondHolder); an unknown one is KindNotFound, a decided
// one, or one made against a policy or profile version that has changed
// since, KindConflict. The change and the confirmation are one write.
func (p *Proposals) Confirm(ctx context.Context, id, actor string) (core.Proposal, error) {
	pr, err := p.pending(ctx, id)
	if err != nil {
		return core.Proposal{}, err
	}
	if err := p.secondHolder(ctx, pr, actor); err != nil {
		return core.Proposal{}, err
	}
	// Validated again: a newer tollgate may read the text otherwise.
	if err := p.validate(pr.Kind, pr.Target, []byte(pr.Source)); err != nil {
		return core.Proposal{}, err
	}
	out, version, err := p.store.ConfirmProposal(ctx, pr.ID, actor, p.clock.Now())
	if err != nil {
		return core.Proposal{}, err
	}
	// In force here at once; other replicas follow their notification or
	// their periodic reread.
	var reload Reloader = p.mappings
	if pr.Kind == core.ProposalPolicy {
		reload = p.policies
	}
	if err := reload.Reload(ctx); err != nil {
		p.log.WarnContext(ctx, "a confirmed proposal is stored but not yet in force on this replica; it will be at the next reread",
			"proposal", pr.ID, "kind", pr.Kind, "version", version, "error", err.Error())
	}
	return out, nil
}

// secondHolder refuses (KindForbidden) a confirmation by the proposal's
// own holder: the token that proposed it, or a token in one line of
// creation with it — one made by the other, directly or through tokens it
// made. Whoever creates a token is shown its secret, so tollgate cannot
// tell a token's holder from its creator's; tokens made by one admin for
// two people are told apart (that admin is trusted to have handed the
// secrets over).
func (p *Proposals) secondHolder(ctx context.Context, pr core.Proposal, actor string) error {
	by, conf := core.ActorTokenID(pr.ProposedBy), core.ActorTokenID(actor)
	if strings.EqualFold(pr.ProposedBy, actor) || (by != "" && by == conf) {
		return core.Errorf(core.KindForbidden, "proposal %s was proposed by %s, who cannot confirm it; a second admin must", pr.ID, pr.ProposedBy)
	}
	if by == "" || conf == "" {
		return nil
	}
	for _, line := range [][2]string{{conf, by}, {by, conf}} {
		made, err := p.madeBy(ctx, line[0], line[1])
		if err != nil {
			return fmt.Errorf("confirm proposal %s: %w", pr.ID, err)
		}
		if made {
			return core.Errorf(core.KindForbidden, "proposal %s was proposed by %s; the confirming token and the proposer's were made one by the other, so tollgate cannot tell their holders apart: a token of another admin must confirm",
				pr.ID, pr.ProposedBy)
		}
	}
	return nil
}

// maxTokenLine bounds the walk up a line of token creation. Past it the
// tokens count as one holder's (fail closed): a line of tokens each made
// by the one before is what one admin builds to pass for a second.
const maxTokenLine = 10_000

// madeBy reports whether token id was made by token ancestor, directly or
// through tokens it made (following CreatedBy to the line's root: a token
// made by the bootstrap admin, the command line or the system). A line
// longer than maxTokenLine counts as made by ancestor.
func (p *Proposals) madeBy(ctx context.Context, id, ancestor string) (bool, error) {
	seen := map[string]bool{}
	for id != "" && !seen[id] {
		if len(seen) >= maxTokenLine {
			return true, nil
		}
		seen[id] = true
		t, err := p.store.TokenByID(ctx, id)
		if core.IsKind(err, core.KindNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if id = core.ActorTokenID(t.CreatedBy); id == ancestor {
			return true, nil
		}
	}
	return false, nil
}

// validateProposal checks a proposal's document as the change itself
// would be checked.
func (p *Proposals) validate(kind, target string, src []byte) error {
	switch kind {
	case core.ProposalPolicy:
		pol, err := config.ParsePolicy(src)
		if err != nil {
			return err
		}
		if err := pol.CheckZones(); err != nil {
			return err
		}
		_, err = core.Compile(pol, 0)
		return err
	case core.ProposalMapping:
		prof, err := mapping.Parse(src)
		if err != nil {
			return err
		}
		if prof.Name != target {
			return core.Invalid("name", "the profile is named %q but was sent to %q", prof.Name, target)
		}
		return p.mappings.Check(prof)
	case core.ProposalMappingDelete:
		return validateName("name", target, true)
	}
	return core.Invalid("kind", "unknown proposal kind %q", kind)
}

// Withdraw drops a pending proposal (any admin, its proposer included).
func (p *Proposals) Withdraw(ctx context.Context, id, actor string) (core.Proposal, error) {
	if _, err := p.pending(ctx, id); err != nil {
		return core.Proposal{}, err
	}
	return p.store.DecideProposal(ctx, id, core.ProposalWithdrawn, actor, p.clock.Now())
}

func (p *Proposals) pending(ctx context.Context, id string) (core.Proposal, error) {
	pr, err := p.store.GetProposal(ctx, strings.TrimSpace(id))
	if err != nil {
		return core.Proposal{}, err
	}
	if pr.Status != core.ProposalPending {
		return core.Proposal{}, core.Errorf(core.KindConflict, "proposal %s is already %s", id, pr.Status)
	}
	return pr, nil
}

// List returns proposals with status (all when empty); a status that is
// not pending, confirmed or withdrawn is KindInvalid, not an empty list.
func (p *Proposals) List(ctx context.Context, status string) ([]core.Proposal, error) {
	switch status {
	case "", core.ProposalPending, core.ProposalConfirmed, core.ProposalWithdrawn:
	default:
		return nil, core.Invalid("status", "%q is not one of %s, %s, %s", status, core.ProposalPending, core.ProposalConfirmed, core.ProposalWithdrawn)
	}
	return p.store.ListProposals(ctx, status)
}

// Get returns one proposal.
func (p *Proposals) Get(ctx context.Context, id string) (core.Proposal, error) {
	return p.store.GetProposal(ctx, id)
}
