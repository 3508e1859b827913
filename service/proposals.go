package service

import (
	"context"
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
	DecideProposal(ctx context.Context, id, status, actor string, at time.Time) (core.Proposal, error)
}

// MappingPutter stores and deletes mapping profiles (Mappings).
type MappingPutter interface {
	Put(ctx context.Context, name string, src []byte, actor string) (core.MappingProfile, error)
	Delete(ctx context.Context, name, actor string) error
}

// Proposals is four-eyes governance: with governance.four_eyes, a policy
// or mapping change is stored as a proposal (validated as the change
// itself would be) and takes effect only when a second admin confirms it.
// The proposer cannot confirm their own; both names are in the audit
// trail (proposal.create, proposal.confirmed, and the change's own entry
// by the confirming admin).
type Proposals struct {
	store    ProposalStore
	policies *Policies
	mappings MappingPutter
	clock    core.Clock
	fourEyes bool
}

// NewProposals wires the proposal service; fourEyes is the server
// configuration's governance.four_eyes.
func NewProposals(store ProposalStore, policies *Policies, mappings MappingPutter, clock core.Clock, fourEyes bool) *Proposals {
	return &Proposals{store: store, policies: policies, mappings: mappings, clock: clock, fourEyes: fourEyes}
}

// FourEyes reports whether changes need a second admin.
func (p *Proposals) FourEyes() bool { return p != nil && p.fourEyes }

// Propose validates a policy (kind policy), a mapping profile (kind
// mapping, target its name) or names the profile to delete (kind
// mapping_delete), and stores it as a pending proposal.
func (p *Proposals) Propose(ctx context.Context, kind, target string, src []byte, actor string) (core.Proposal, error) {
	switch kind {
	case core.ProposalPolicy:
		pol, err := config.ParsePolicy(src)
		if err != nil {
			return core.Proposal{}, err
		}
		if _, err := core.Compile(pol, 0); err != nil {
			return core.Proposal{}, err
		}
	case core.ProposalMapping:
		prof, err := mapping.Parse(src)
		if err != nil {
			return core.Proposal{}, err
		}
		if prof.Name != target {
			return core.Proposal{}, core.Invalid("name", "the profile is named %q but was sent to %q", prof.Name, target)
		}
		if _, err := mapping.Compile(prof); err != nil {
			return core.Proposal{}, err
		}
	case core.ProposalMappingDelete:
		if err := validateName("name", target, true); err != nil {
			return core.Proposal{}, err
		}
	default:
		return core.Proposal{}, core.Invalid("kind", "unknown proposal kind %q", kind)
	}
	return p.store.CreateProposal(ctx, core.Proposal{ID: newID(), Kind: kind, Target: target, Source: string(src),
		ProposedBy: actor, ProposedAt: p.clock.Now(), BaseVersion: p.policies.Current().Version()})
}

// Confirm puts a pending proposal in force as actor. Its proposer cannot
// confirm it (KindForbidden); an unknown one is KindNotFound, a decided
// one KindConflict.
func (p *Proposals) Confirm(ctx context.Context, id, actor string) (core.Proposal, error) {
	pr, err := p.pending(ctx, id)
	if err != nil {
		return core.Proposal{}, err
	}
	if strings.EqualFold(pr.ProposedBy, actor) {
		return core.Proposal{}, core.Errorf(core.KindForbidden, "proposal %s was proposed by %s, who cannot confirm it; a second admin must", id, actor)
	}
	switch pr.Kind {
	case core.ProposalPolicy:
		_, err = p.policies.Put(ctx, []byte(pr.Source), actor)
	case core.ProposalMapping:
		_, err = p.mappings.Put(ctx, pr.Target, []byte(pr.Source), actor)
	case core.ProposalMappingDelete:
		err = p.mappings.Delete(ctx, pr.Target, actor)
	}
	if err != nil {
		return core.Proposal{}, err
	}
	return p.store.DecideProposal(ctx, id, core.ProposalConfirmed, actor, p.clock.Now())
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

// List returns proposals with status (all when empty).
func (p *Proposals) List(ctx context.Context, status string) ([]core.Proposal, error) {
	return p.store.ListProposals(ctx, status)
}

// Get returns one proposal.
func (p *Proposals) Get(ctx context.Context, id string) (core.Proposal, error) {
	return p.store.GetProposal(ctx, id)
}
