package service

import (
	"context"
	"slices"
	"strings"

	"github.com/tollgate-dev/tollgate/core"
)

// EnvironmentHistory lists the environments stored records name.
type EnvironmentHistory interface {
	// HistoryEnvironments returns the distinct environment names of the
	// stored releases and deployments, as stored, sorted.
	HistoryEnvironments(ctx context.Context) ([]string, error)
}

// HistoryEnvironment resolves the environment filter of a read of history
// (a reconciliation report, the observe report, a simulation over
// recorded releases) under cp: a name or alias cp knows, in any case, is
// its canonical name; else a name stored records carry, in any case, is
// that name as stored; "" stays "". Records keep the name they were
// recorded with, so an environment the policy has since dropped or
// renamed stays reachable, while a name neither knows is KindInvalid
// listing both, never a filter that matches nothing: a typo would read as
// "nothing happened there". Writes and gate checks take only cp's
// environments: there an unknown name is a typo that must fail closed.
func (p *Policies) HistoryEnvironment(ctx context.Context, cp *core.CompiledPolicy, field, name string) (string, error) {
	if strings.TrimSpace(name) == "" {
		return "", nil
	}
	if env, ok := cp.ResolveEnvironment(name); ok {
		return env, nil
	}
	history, err := p.historyEnvironments(ctx)
	if err != nil {
		return "", err
	}
	if stored, ok := storedName(history, strings.TrimSpace(name)); ok {
		return stored, nil
	}
	return "", unknownEnvironment(cp, field, name, history)
}

// HistoryEnvironments is HistoryEnvironment for the listings of releases
// and deployments, which match several names: also are, for a name cp
// knows, the other names stored records carry that cp counts as the same
// environment (an environment renamed with its old name kept as an alias
// lists the records of both names).
func (p *Policies) HistoryEnvironments(ctx context.Context, cp *core.CompiledPolicy, field, name string) (env string, also []string, err error) {
	if env, err = p.HistoryEnvironment(ctx, cp, field, name); err != nil || env == "" {
		return env, nil, err
	}
	names := cp.EnvironmentNames(env)
	if len(names) <= 1 { // no alias: no other name its records may carry
		return env, nil, nil
	}
	history, err := p.historyEnvironments(ctx)
	if err != nil {
		return "", nil, err
	}
	for _, h := range history {
		if h != env && slices.Contains(names, strings.ToLower(h)) {
			also = append(also, h)
		}
	}
	return env, also, nil
}

func (p *Policies) historyEnvironments(ctx context.Context) ([]string, error) {
	if p.history == nil {
		return nil, nil
	}
	return p.history.HistoryEnvironments(ctx)
}

// storedName finds name among the stored names: as spelled, else in
// another case.
func storedName(history []string, name string) (string, bool) {
	if slices.Contains(history, name) {
		return name, true
	}
	if i := slices.IndexFunc(history, func(h string) bool { return strings.EqualFold(h, name) }); i >= 0 {
		return history[i], true
	}
	return "", false
}

// maxNamedEnvironments bounds the names a refusal lists.
const maxNamedEnvironments = 50

func unknownEnvironment(cp *core.CompiledPolicy, field, name string, history []string) error {
	var past []string
	for _, h := range history {
		if _, ok := cp.ResolveEnvironment(h); !ok {
			past = append(past, h)
		}
	}
	also := ""
	if len(past) > 0 {
		if len(past) > maxNamedEnvironments {
			past = append(past[:maxNamedEnvironments], "…")
		}
		also = "; the history also holds " + strings.Join(past, ", ")
	}
	return core.Invalid(field, "unknown environment %q; the policy knows %s%s", name, strings.Join(cp.Environments(), ", "), also)
}
