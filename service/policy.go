package service

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/core"
)

// PolicyStore is what Policies needs from storage.
type PolicyStore interface {
	PutPolicy(ctx context.Context, source, actor string) (int, error)
	CurrentPolicy(ctx context.Context) (core.PolicyVersion, error)
}

// Policies keeps the policy in force, compiled, and swaps it atomically
// when an admin stores a new version (here or on another replica).
type Policies struct {
	store PolicyStore
	log   *slog.Logger
	cur   atomic.Pointer[core.CompiledPolicy]
	// unreadable is set while the newest stored version cannot be put in
	// force here (a newer build's field; Unfit), nil otherwise.
	unreadable atomic.Pointer[error]
	// history, when the store has it, names the environments of stored
	// records (HistoryEnvironment); nil: only the policy's are known.
	history EnvironmentHistory
}

// Unfit refuses judging while the newest stored policy is one this
// replica cannot read (a newer tollgate saved a field this build does not
// know): judging by the older version in force would answer what the
// admins replaced — an allow a freeze added since would refuse. nil when
// the policy in force is the newest.
func (p *Policies) Unfit() error {
	if e := p.unreadable.Load(); e != nil {
		return core.Wrap(core.KindUnavailable, *e, "this replica cannot read the newest policy, so it does not judge; upgrade it to the build that saved the policy")
	}
	return nil
}

// NewPolicies returns a Policies; call Load before use. A store that is
// also an EnvironmentHistory lets reads of history filter on environments
// the policy no longer lists.
func NewPolicies(store PolicyStore, log *slog.Logger) *Policies {
	p := &Policies{store: store, log: log}
	p.history, _ = store.(EnvironmentHistory)
	return p
}

// Load compiles the stored policy. When the store has none, it stores seed
// (or core.DefaultPolicy()) as version 1 first.
func (p *Policies) Load(ctx context.Context, seed *core.Policy) error {
	v, err := p.store.CurrentPolicy(ctx)
	if core.IsKind(err, core.KindNotFound) {
		pol := core.DefaultPolicy()
		if seed != nil {
			pol = *seed
		}
		src, err := config.MarshalPolicy(pol)
		if err != nil {
			return err
		}
		if _, err := p.store.PutPolicy(ctx, string(src), "system"); err != nil {
			return fmt.Errorf("seed policy: %w", err)
		}
		p.log.InfoContext(ctx, "policy seeded", "from_config", seed != nil)
		v, err = p.store.CurrentPolicy(ctx)
		if err != nil {
			return fmt.Errorf("load seeded policy: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("load policy: %w", err)
	} else if seed != nil {
		if src, err := config.MarshalPolicy(*seed); err == nil && string(src) != v.Source {
			p.log.WarnContext(ctx, "the config file's policy differs from the stored policy in force; the stored one applies (it seeds only an empty store): change it with PUT /api/v1/policy",
				"stored_version", v.Version)
		}
	}
	return p.install(v)
}

func (p *Policies) install(v core.PolicyVersion) error {
	if c := p.cur.Load(); c != nil && c.Version() >= v.Version {
		p.unreadable.Store(nil) // the newest stored version is in force
		return nil
	}
	cp, more, err := compileStored(v)
	if err != nil {
		p.unreadable.Store(&err)
		return err
	}
	if more {
		p.log.Warn("the policy in force was stored with more than one YAML document; only the first is enforced: save it again as one document", "version", v.Version)
	}
	if err := cp.Policy().CheckZones(); err != nil {
		p.log.Warn("the policy in force names a time zone that is a fixed offset; save it with the zone of the place", "version", v.Version, "problem", err.Error())
	}
	p.swap(cp)
	p.unreadable.Store(nil)
	return nil
}

// compileStored parses and compiles a stored policy version; more reports
// documents after the first (config.ParseStoredPolicy).
func compileStored(v core.PolicyVersion) (*core.CompiledPolicy, bool, error) {
	pol, more, err := config.ParseStoredPolicy([]byte(v.Source))
	if err != nil {
		return nil, more, fmt.Errorf("stored policy version %d: %w", v.Version, err)
	}
	cp, err := core.Compile(pol, v.Version)
	if err != nil {
		return nil, more, fmt.Errorf("compile policy version %d: %w", v.Version, err)
	}
	return cp, more, nil
}

// swap puts cp in force unless a newer version already is.
func (p *Policies) swap(cp *core.CompiledPolicy) {
	for {
		old := p.cur.Load()
		if old != nil && old.Version() >= cp.Version() {
			return
		}
		if p.cur.CompareAndSwap(old, cp) {
			return
		}
	}
}

// Reload installs the newest stored version (after a "policy" notification).
func (p *Policies) Reload(ctx context.Context) error {
	v, err := p.store.CurrentPolicy(ctx)
	if err != nil {
		return fmt.Errorf("reload policy: %w", err)
	}
	return p.install(v)
}

// Current returns the compiled policy in force.
func (p *Policies) Current() *core.CompiledPolicy { return p.cur.Load() }

// Source returns the stored document in force.
func (p *Policies) Source(ctx context.Context) (core.PolicyVersion, error) {
	return p.store.CurrentPolicy(ctx)
}

// Put validates src, stores it as a new version (audited) and puts it in
// force. An invalid policy is never stored.
func (p *Policies) Put(ctx context.Context, src []byte, actor string) (*core.CompiledPolicy, error) {
	pol, err := config.ParsePolicy(src)
	if err != nil {
		return nil, err
	}
	if err := pol.CheckZones(); err != nil {
		return nil, err
	}
	if _, err := core.Compile(pol, 0); err != nil {
		return nil, err
	}
	v, err := p.store.PutPolicy(ctx, string(src), actor)
	if err != nil {
		return nil, fmt.Errorf("store policy: %w", err)
	}
	cp, err := core.Compile(pol, v)
	if err != nil {
		return nil, err
	}
	p.swap(cp)
	p.unreadable.Store(nil) // what this replica stored, it can read
	p.log.InfoContext(ctx, "policy updated", "version", v, "actor", actor)
	return cp, nil
}
