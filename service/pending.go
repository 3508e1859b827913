package service

import (
	"cmp"
	"context"
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tollgate-dev/tollgate/core"
)

// PendingReader is the read side of the stored CI gate requests that the
// listing of waiting gates pages through.
type PendingReader interface {
	// PendingGatesPage returns the requests f selects after f.After, in
	// the listing's order, at most f.Limit.
	PendingGatesPage(ctx context.Context, f core.PendingFilter) ([]core.PendingGate, error)
	// CountPendingGates counts, by state, the requests f selects whatever
	// their state and page.
	CountPendingGates(ctx context.Context, f core.PendingFilter) (map[string]int, error)
}

// MaxPendingPage bounds one page of the waiting gates.
const MaxPendingPage = 1000

// WaitingGates lists the gates waiting now, as GET /api/v1/gate/pending and
// the web UI show them: the CI gate requests stored (so every replica
// lists them) and the long-polled checks this process holds, in one order
// (since, oldest first), a page at a time.
type WaitingGates struct {
	store    PendingReader // nil: no connector answers a CI gate
	checks   func() []*WaitingCheck
	policies *Policies
}

// NewWaitingGates lists store's requests (nil: none) and gate's checks;
// an environment filter resolves under policies' policy in force.
func NewWaitingGates(store PendingReader, gate *Gate, policies *Policies) *WaitingGates {
	return &WaitingGates{store: store, checks: gate.Waiting, policies: policies}
}

// PendingQuery is a listing's filters and page as a client names them
// (GET /api/v1/gate/pending's query parameters); List validates it.
type PendingQuery struct {
	// States are states or comma-separated lists of them: pending (also
	// called waiting), answering, failed, unknown. None is all four.
	States []string
	// Kind is protection_rule, approval or check.
	Kind string
	// Provider, Connector and Service match the items' in any case.
	Provider, Connector, Service string
	// Environment matches an item's in any case, and the policy's other
	// names for it (its canonical name and aliases).
	Environment string
	// Limit is the page size, 1 to MaxPendingPage.
	Limit int
	// After is the previous page's Next.
	After string
}

// PendingItem is one waiting gate: a CI's request at its own gate (Gate)
// or a long-polled check of this process (Check).
type PendingItem struct {
	Gate  *core.PendingGate
	Check *WaitingCheck
}

// PendingListing is one page of the waiting gates.
type PendingListing struct {
	Items []PendingItem
	// Next is the cursor of the page after this one; "" when this is the
	// last.
	Next string
	// Counts are the waiting gates of every page by state, under the
	// query's filters but its states: a page of waiting requests still
	// tells how many failed.
	Counts map[string]int
}

// pendingSelection is a validated PendingQuery.
type pendingSelection struct {
	f      core.PendingFilter // for the store; its Kind is never check
	checks bool               // long-polled checks may match
	stored bool               // stored requests may match
}

// List returns the page of waiting gates q asks for. A query it cannot
// read is KindInvalid naming the parameter.
func (w *WaitingGates) List(ctx context.Context, q PendingQuery) (PendingListing, error) {
	sel, err := w.selection(q)
	if err != nil {
		return PendingListing{}, err
	}
	out := PendingListing{Counts: map[string]int{}}
	for _, s := range core.ListedPendingStates() {
		out.Counts[s] = 0
	}
	var stored []core.PendingGate
	if sel.stored && w.store != nil {
		if out.Counts, err = w.store.CountPendingGates(ctx, sel.f); err != nil {
			return PendingListing{}, err
		}
		page := sel.f
		page.Limit++ // one more tells whether a next page exists
		if stored, err = w.store.PendingGatesPage(ctx, page); err != nil {
			return PendingListing{}, err
		}
	}
	checks := w.matchingChecks(sel)
	out.Counts[core.PendingWaiting] += len(checks)
	if !wantsState(sel.f.States, core.PendingWaiting) {
		checks = nil
	}
	checks = slices.DeleteFunc(checks, func(c *WaitingCheck) bool { return !checkAfter(c, sel.f.After) })
	out.Items, out.Next = mergePending(stored, checks, sel.f.Limit)
	return out, nil
}

// wantsState reports whether states (none: all) hold state.
func wantsState(states []string, state string) bool {
	return len(states) == 0 || slices.Contains(states, state)
}

// selection validates q.
func (w *WaitingGates) selection(q PendingQuery) (pendingSelection, error) {
	sel := pendingSelection{checks: true, stored: true}
	f := &sel.f
	var err error
	if f.States, err = pendingStates(q.States); err != nil {
		return sel, err
	}
	switch q.Kind {
	case "":
	case core.PendingKindCheck:
		sel.stored = false
	case core.PendingKindProtectionRule, core.PendingKindApproval:
		f.Kind, sel.checks = q.Kind, false
	default:
		return sel, core.Invalid("kind", "%q is not one of protection_rule, approval, check", q.Kind)
	}
	for _, t := range []struct {
		name string
		v    string
		to   *string
	}{{"provider", q.Provider, &f.Provider}, {"connector", q.Connector, &f.Connector}, {"service", q.Service, &f.Service}, {"environment", q.Environment, nil}} {
		v := strings.TrimSpace(t.v)
		if err := filterText(t.name, v); err != nil {
			return sel, err
		}
		if t.to != nil {
			*t.to = v
		} else if v != "" {
			f.Environments = environmentNames(w.policy(), v)
		}
	}
	if q.Limit < 1 || q.Limit > MaxPendingPage {
		return sel, core.Invalid("limit", "must be a number from 1 to %d", MaxPendingPage)
	}
	f.Limit = q.Limit
	if q.After != "" {
		if f.After, err = parsePendingCursor(q.After); err != nil {
			return sel, err
		}
	}
	return sel, nil
}

func (w *WaitingGates) policy() *core.CompiledPolicy {
	if w.policies == nil {
		return nil
	}
	return w.policies.Current()
}

// pendingStates reads the state filter: each value one state or a
// comma-separated list; waiting names the state items show as pending.
func pendingStates(values []string) ([]string, error) {
	var out []string
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			switch s = strings.TrimSpace(s); s {
			case "waiting", core.PendingWaiting:
				s = core.PendingWaiting
			case core.PendingAnswering, core.PendingFailed, core.PendingUnknown:
			default:
				return nil, core.Invalid("state", "%q is not one of waiting (shown as pending), answering, failed, unknown; answered requests are not listed", s)
			}
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// filterText refuses a text filter no item can carry: over 256 bytes,
// not UTF-8, or holding control characters. The names a CI sends (a
// GitHub environment may hold spaces) are not held to the gate's name
// shape.
func filterText(field, v string) error {
	if len(v) > 256 || !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return core.Invalid(field, "is not a name: at most 256 characters, no control characters")
	}
	return nil
}

// environmentNames are the lower-case names an environment filter
// matches: the name given and, when the policy knows it, its canonical
// name and aliases. The requests stored carry the environment as their CI
// named it, which the policy may not list (the gate then refused it): the
// name is matched as given, never refused.
func environmentNames(cp *core.CompiledPolicy, name string) []string {
	names := []string{strings.ToLower(name)}
	if cp != nil {
		if c, ok := cp.ResolveEnvironment(name); ok {
			names = append(append(names, strings.ToLower(c)), cp.EnvironmentNames(c)...)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// matchingChecks are this process's long-polled checks that sel's filters
// but states and position select, in the listing's order.
func (w *WaitingGates) matchingChecks(sel pendingSelection) []*WaitingCheck {
	f := sel.f
	if !sel.checks || f.Connector != "" { // checks come through no connector
		return nil
	}
	var out []*WaitingCheck
	for _, c := range w.checks() {
		r := c.Request
		switch {
		case f.Provider != "" && !strings.EqualFold(f.Provider, checkProvider(c)),
			f.Service != "" && !strings.EqualFold(f.Service, r.Service),
			len(f.Environments) > 0 && !slices.Contains(f.Environments, strings.ToLower(r.Environment)):
			continue
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *WaitingCheck) int {
		return cmp.Or(checkSince(a).Compare(checkSince(b)), cmp.Compare(a.Seq, b.Seq))
	})
	return out
}

// checkProvider is the provider a check is listed with: its pipeline's,
// else api.
func checkProvider(c *WaitingCheck) string {
	if p := c.Request.Pipeline; p != nil && p.Provider != "" {
		return p.Provider
	}
	return "api"
}

// checkSince is a check's place in the listing's order, to the
// microsecond as stored requests are.
func checkSince(c *WaitingCheck) time.Time { return c.Since.UTC().Truncate(time.Microsecond) }

// checkAfter reports whether c comes after the position p.
func checkAfter(c *WaitingCheck, p core.PendingPosition) bool {
	if p.IsZero() {
		return true
	}
	at := checkSince(c).Compare(p.Since)
	if !p.Check { // checks follow the stored requests of their instant
		return at >= 0
	}
	seq, _ := strconv.ParseUint(p.ID, 10, 64)
	return at > 0 || at == 0 && c.Seq > seq
}

// mergePending merges the stored requests and the checks (each in the
// listing's order) into a page of at most limit, and the cursor of the
// next page when anything is left.
func mergePending(stored []core.PendingGate, checks []*WaitingCheck, limit int) ([]PendingItem, string) {
	items := make([]PendingItem, 0, min(limit, len(stored)+len(checks)))
	i, j := 0, 0
	for len(items) < limit && (i < len(stored) || j < len(checks)) {
		// At the same instant a stored request comes first.
		if j == len(checks) || i < len(stored) && !stored[i].CreatedAt.After(checkSince(checks[j])) {
			items = append(items, PendingItem{Gate: &stored[i]})
			i++
		} else {
			items = append(items, PendingItem{Check: checks[j]})
			j++
		}
	}
	if i == len(stored) && j == len(checks) {
		return items, ""
	}
	return items, pendingCursor(items[len(items)-1].position())
}

// position is the item's place in the listing's order.
func (it PendingItem) position() core.PendingPosition {
	if it.Gate != nil {
		return core.PendingPosition{Since: it.Gate.CreatedAt, ID: it.Gate.ID}
	}
	return core.PendingPosition{Since: checkSince(it.Check), Check: true, ID: strconv.FormatUint(it.Check.Seq, 10)}
}

// pendingCursor encodes a position as the listing's opaque cursor:
// whether it is a check's, the instant (Unix nanoseconds) and the id.
func pendingCursor(p core.PendingPosition) string {
	kind := "s"
	if p.Check {
		kind = "c"
	}
	return base64.RawURLEncoding.EncodeToString([]byte(kind + "." + strconv.FormatInt(p.Since.UnixNano(), 10) + "." + p.ID))
}

// parsePendingCursor reads a cursor pendingCursor wrote.
func parsePendingCursor(s string) (core.PendingPosition, error) {
	bad := core.Invalid("after", "%q is not a cursor of this listing: pass the next of the previous page", s)
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(s) > 200 {
		return core.PendingPosition{}, bad
	}
	parts := strings.SplitN(string(raw), ".", 3)
	if len(parts) != 3 || parts[2] == "" || !utf8.ValidString(parts[2]) || strings.IndexFunc(parts[2], unicode.IsControl) >= 0 {
		return core.PendingPosition{}, bad
	}
	nanos, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || nanos <= 0 {
		return core.PendingPosition{}, bad
	}
	p := core.PendingPosition{Since: time.Unix(0, nanos).UTC(), ID: parts[2]}
	switch parts[0] {
	case "s":
	case "c":
		if _, err := strconv.ParseUint(p.ID, 10, 64); err != nil {
			return core.PendingPosition{}, bad
		}
		p.Check = true
	default:
		return core.PendingPosition{}, bad
	}
	return p, nil
}
