package service

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/evidence"
)

// newID returns a time-ordered identifier (UUIDv7).
func newID() string { return uuid.Must(uuid.NewV7()).String() }

// GateStore is what the gate needs from storage: the facts in one round
// trip and durable decisions (which create the release when it is new).
type GateStore interface {
	GateFacts(ctx context.Context, q core.FactsQuery) (core.Facts, error)
	SaveDecision(ctx context.Context, d core.GateDecision, actor string) error
}

// Subscriber delivers fact-change notifications (topics like
// "change:CHG0000024", "incident:INC1", "pir:<release>", "policy", "*").
type Subscriber interface {
	Subscribe() (<-chan string, func())
}

// ITSMGate is what the gate asks of the ITSMs.
type ITSMGate interface {
	// ReadBack fetches and stores the changes of keys the owning ITSM has;
	// stored says whether any was, notes why each other key asked about
	// is not there ("not in ServiceNow acme", "ServiceNow acme
	// unreachable: …"). Keys no ITSM owns are left out.
	ReadBack(ctx context.Context, keys []string) (stored bool, notes map[string]string)
	// OpenChange returns the change opened for the release, opening it if
	// none is; handled is false when no connector opens changes for the
	// environment. An ITSM's refusal is a *CreationFailed.
	OpenChange(ctx context.Context, req core.GateRequest, releaseID string) (key, system string, handled bool, err error)
}

// GateConfig tunes the gate.
type GateConfig struct {
	MaxWait      time.Duration // cap on ?wait=
	MaxListItems int           // cap on changes/incidents per request
	// MaxWaiting caps the checks waiting at once in this process, and
	// MaxWaitingPerActor those of one actor (a token): each holds a
	// connection, a goroutine and a subscription for up to MaxWait, so a
	// client opening waits without end — a leaked CI token, a loop gone
	// wrong — would otherwise grow memory without bound. 0: no cap.
	MaxWaiting, MaxWaitingPerActor int
}

// Gate answers "may this release go to this environment now?".
type Gate struct {
	store    GateStore
	policies *Policies
	subs     Subscriber
	clock    core.Clock
	log      *slog.Logger
	cfg      GateConfig
	// OnDecision, when set, observes every recorded decision (metrics).
	OnDecision func(d core.GateDecision)
	stopOnce   sync.Once
	stopping   chan struct{}
	waiting    sync.Map // *WaitingCheck: the long-polled checks now waiting
	waitSeq    atomic.Uint64
	// OnWaitRefused, when set, observes a wait refused by a cap
	// ("replica" or "token"; metrics).
	OnWaitRefused func(limit string)
	waitMu        sync.Mutex
	waitTotal     int            // checks waiting now (admitWait)
	waitBy        map[string]int // … by actor

	// ITSM, when set, reads back linked changes the store does not know
	// and opens a change for a release that links none (itsm.go).
	ITSM ITSMGate
	// Unfit, when set, says why this process may not judge now (its
	// clock too far from the database's): Check and Decide then refuse
	// with that error, recording nothing.
	Unfit func() error
}

// WaitingCheck is a long-polled check that is waiting, as GET
// /api/v1/gate/pending shows it.
type WaitingCheck struct {
	Request  core.GateRequest
	Since    time.Time
	Deadline time.Time
	// Seq orders the checks of this process that began waiting at the
	// same instant (the listing's cursor names a check by it).
	Seq     uint64
	mu      sync.Mutex
	reasons []core.Reason
}

// Reasons are the reasons of the check's latest evaluation.
func (w *WaitingCheck) Reasons() []core.Reason {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reasons
}

// Waiting lists the long-polled checks waiting in this process.
func (g *Gate) Waiting() []*WaitingCheck {
	var out []*WaitingCheck
	g.waiting.Range(func(k, _ any) bool {
		out = append(out, k.(*WaitingCheck))
		return true
	})
	return out
}

// Shutdown makes every waiting check answer now with its current decision,
// so a graceful shutdown does not hang on long-polls (the client asks
// again, on another replica).
func (g *Gate) Shutdown() { g.stopOnce.Do(func() { close(g.stopping) }) }

// NewGate wires a gate.
func NewGate(store GateStore, policies *Policies, subs Subscriber, clock core.Clock, log *slog.Logger, cfg GateConfig) *Gate {
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 15 * time.Minute
	}
	if cfg.MaxListItems <= 0 {
		cfg.MaxListItems = 50
	}
	return &Gate{store: store, policies: policies, subs: subs, clock: clock, log: log, cfg: cfg, stopping: make(chan struct{})}
}

// The shapes of names and record keys: an ASCII letter or digit, then up
// to 127 of these ASCII characters. They are checked byte by byte on the
// gate's path; gate_internal_test.go holds them to the patterns
//
//	^[A-Za-z0-9][A-Za-z0-9._/@:+-]{0,127}$   (names)
//	^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,127}$    (record keys)
const (
	nameChars = "._/@:+-"
	keyChars  = "._:/#-"
)

// shapeOK reports whether s is a letter or digit followed by at most 127
// letters, digits and bytes of extra (any byte outside ASCII refuses).
func shapeOK(s, extra string) bool {
	if len(s) == 0 || len(s) > 128 || !alnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !alnum(c) && strings.IndexByte(extra, c) < 0 {
			return false
		}
	}
	return true
}

func alnum(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' }

// validateName checks a required (or optional) identifier-like field.
func validateName(field, v string, required bool) error {
	if v == "" {
		if required {
			return core.Invalid(field, "is required")
		}
		return nil
	}
	if !shapeOK(v, nameChars) {
		return core.Invalid(field, "%q is not a valid name (letters, digits and . _ / @ : + -, at most 128)", v)
	}
	return nil
}

// normalizeKeys validates a list of record keys, trims and dedupes them.
func normalizeKeys(field string, keys []string, max int) ([]string, error) {
	if len(keys) > max {
		return nil, core.Invalid(field, "has %d items; at most %d are allowed", len(keys), max)
	}
	seen := make(map[string]bool, len(keys))
	out := make([]string, 0, len(keys))
	for i, k := range keys {
		k = strings.TrimSpace(k)
		if !shapeOK(k, keyChars) {
			return nil, core.Invalid(fmt.Sprintf("%s[%d]", field, i), "%q is not a valid record key", k)
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out, nil
}

// normalize validates a gate request against the policy in force and
// canonicalizes what selects its rules (core.CompiledPolicy.Subject): the
// environment's canonical name, the service's catalog spelling, the
// catalog's team (a team the caller names that the catalog contradicts is
// ignored, and the decision says so).
func (g *Gate) normalize(cp *core.CompiledPolicy, req core.GateRequest) (core.GateRequest, error) {
	req.Service = strings.TrimSpace(req.Service)
	req.Environment = strings.TrimSpace(req.Environment)
	req.Version = strings.TrimSpace(req.Version)
	req.Team = strings.TrimSpace(req.Team)
	for _, f := range []struct {
		name, v  string
		required bool
	}{{"service", req.Service, true}, {"environment", req.Environment, true}, {"version", req.Version, true}, {"team", req.Team, false}} {
		if err := validateName(f.name, f.v, f.required); err != nil {
			return req, err
		}
	}
	req, known := cp.CanonicalRequest(req)
	if !known {
		return req, core.Invalid("environment", "unknown environment %q; the policy knows %s", req.Environment, strings.Join(cp.Environments(), ", "))
	}
	if len(req.Commit) > 128 {
		return req, core.Invalid("commit", "is longer than 128 characters")
	}
	if len(req.Actor) > 256 {
		return req, core.Invalid("actor", "is longer than 256 characters")
	}
	var err error
	if req.Changes, err = normalizeKeys("changes", req.Changes, g.cfg.MaxListItems); err != nil {
		return req, err
	}
	if req.Incidents, err = normalizeKeys("incidents", req.Incidents, g.cfg.MaxListItems); err != nil {
		return req, err
	}
	if req.Digest = strings.TrimSpace(req.Digest); req.Digest != "" && !evidence.ValidDigest(req.Digest) {
		return req, core.Invalid("digest", "%q is not an artifact digest sha256:<64 hex digits>", req.Digest)
	}
	if p := req.Pipeline; p != nil && (len(p.Provider) > 64 || len(p.RunID) > 256 || len(p.URL) > 2048) {
		return req, core.Invalid("pipeline", "provider, run_id or url is too long")
	}
	return req, nil
}

// Check evaluates a release and records the answer. With wait > 0 (capped
// at MaxWait) it holds while the answer is "wait" and re-evaluates as soon
// as a relevant change, incident, PIR or policy update lands, at the next
// moment the answer can change by time alone (core.NextChange: a window
// opening, a freeze ending), and at the deadline. The answer is always
// evaluated at the moment it is given: the first non-wait decision, or the
// wait evaluated at the deadline (or at shutdown). Only the answered
// decision is recorded (durably, in the audit chain).
func (g *Gate) Check(ctx context.Context, req core.GateRequest, actor string, wait time.Duration) (core.GateDecision, error) {
	cp := g.policies.Current()
	req, err := g.normalize(cp, req)
	if err != nil {
		return core.GateDecision{}, err
	}
	if wait > g.cfg.MaxWait {
		wait = g.cfg.MaxWait
	}
	var (
		wake   <-chan string
		cancel = func() {}
	)
	if wait > 0 && g.subs != nil {
		// Subscribe before the first evaluation so no update can slip
		// between evaluating and starting to wait.
		wake, cancel = g.subs.Subscribe()
	}
	defer cancel()
	deadline := g.clock.Now().Add(wait)
	var shown *WaitingCheck
	defer func() {
		if shown != nil {
			g.waiting.Delete(shown)
		}
	}()

	for final := wait <= 0; ; {
		if err := g.fit(); err != nil { // before every evaluation: the clock may drift while a check waits
			return core.GateDecision{}, err
		}
		cp = g.policies.Current()
		d, err := g.evaluate(ctx, cp, req)
		if err != nil {
			return core.GateDecision{}, err
		}
		if final || d.Decision != core.Wait || !d.EvaluatedAt.Before(deadline) {
			return g.record(ctx, d, actor)
		}
		until := deadline
		if next, ok := core.NextChange(cp, *d.Facts, d.EvaluatedAt); ok && next.Before(until) {
			until = next
		}
		if shown == nil {
			release, err := g.admitWait(actor)
			if err != nil {
				return core.GateDecision{}, err
			}
			defer release()
			shown = &WaitingCheck{Request: req, Since: d.EvaluatedAt, Deadline: deadline, Seq: g.waitSeq.Add(1)}
			g.waiting.Store(shown, struct{}{})
		}
		shown.mu.Lock()
		shown.reasons = d.Reasons
		shown.mu.Unlock()
		switch g.await(ctx, wake, until.Sub(d.EvaluatedAt), req) {
		case awaitDone:
			return core.GateDecision{}, core.Wrap(core.KindUnavailable, ctx.Err(), "the request ended while waiting")
		case awaitStopped:
			final = true
		}
	}
}

// fit is Unfit's verdict, nil when none is set.
func (g *Gate) fit() error {
	if g.Unfit == nil {
		return nil
	}
	return g.Unfit()
}

// admitWait counts a check that starts waiting against the caps, or
// refuses it (KindRateLimited: the API answers 429 with Retry-After) —
// before anything is recorded, so a refused check leaves no decision.
func (g *Gate) admitWait(actor string) (release func(), err error) {
	g.waitMu.Lock()
	defer g.waitMu.Unlock()
	limit := ""
	switch {
	case g.cfg.MaxWaiting > 0 && g.waitTotal >= g.cfg.MaxWaiting:
		limit, err = "replica", core.Errorf(core.KindRateLimited,
			"%d checks are waiting on this replica, its limit (gate.max_waiting): ask again after Retry-After, or without ?wait=", g.waitTotal)
	case g.cfg.MaxWaitingPerActor > 0 && g.waitBy[actor] >= g.cfg.MaxWaitingPerActor:
		limit, err = "token", core.Errorf(core.KindRateLimited,
			"%d checks of this token are waiting on this replica, its limit (gate.max_waiting_per_token): ask again after Retry-After, or without ?wait=", g.waitBy[actor])
	}
	if err != nil {
		if g.OnWaitRefused != nil {
			g.OnWaitRefused(limit)
		}
		return nil, err
	}
	if g.waitBy == nil {
		g.waitBy = map[string]int{}
	}
	g.waitTotal++
	g.waitBy[actor]++
	return func() {
		g.waitMu.Lock()
		defer g.waitMu.Unlock()
		g.waitTotal--
		if g.waitBy[actor]--; g.waitBy[actor] <= 0 {
			delete(g.waitBy, actor)
		}
	}, nil
}

// WaitingCount is how many checks are waiting in this process (metrics).
func (g *Gate) WaitingCount() int {
	g.waitMu.Lock()
	defer g.waitMu.Unlock()
	return g.waitTotal
}

// Decide evaluates a gate request for a CI that waits at its own gate
// (core.PendingGate) at this moment. While the answer is wait and the
// deadline has not come, nothing is recorded: it returns the decision and
// the next moment to evaluate again (the next time its answer can change
// by time alone, core.NextChange, or the deadline). Otherwise the answer
// is final and recorded like a check's: allow, deny, or a wait still
// standing at the deadline turned into a deny with DEADLINE (fail closed).
func (g *Gate) Decide(ctx context.Context, req core.GateRequest, actor string, deadline time.Time) (d core.GateDecision, next time.Time, final bool, err error) {
	if err := g.fit(); err != nil {
		return d, next, false, err
	}
	cp := g.policies.Current()
	if req, err = g.normalize(cp, req); err != nil {
		return d, next, false, err
	}
	if d, err = g.evaluate(ctx, cp, req); err != nil {
		return d, next, false, err
	}
	if d.Decision == core.Wait {
		if d.EvaluatedAt.Before(deadline) {
			next = deadline
			if n, ok := core.NextChange(cp, *d.Facts, d.EvaluatedAt); ok && n.Before(next) {
				next = n
			}
			return d, next, false, nil
		}
		d.Decision = core.Deny
		d.Reasons = append(d.Reasons, core.Reason{Code: core.CodeDeadline, Result: core.Deny,
			Message: fmt.Sprintf("still waiting at the deadline (%s): rejected, fail closed", deadline.UTC().Format(time.RFC3339))})
	}
	d, err = g.record(ctx, d, actor)
	return d, time.Time{}, err == nil, err
}

// evaluate gathers the facts (from the store's fact cache, or one round
// trip) and applies the policy. The release is named by core.ReleaseID
// and created with the decision when it is new, in the same group commit:
// a check writes once.
func (g *Gate) evaluate(ctx context.Context, cp *core.CompiledPolicy, req core.GateRequest) (core.GateDecision, error) {
	newID := core.ReleaseID(req.Service, req.Version, req.Environment)
	var opened openedChange
	if g.ITSM != nil {
		var err error
		if req, opened, err = g.openChange(ctx, req, newID); err != nil {
			return core.GateDecision{}, err
		}
	}
	q := core.FactsQuery{
		Service: req.Service, Team: req.Team, Environment: req.Environment, Version: req.Version,
		ChangeKeys: req.Changes, AllIncidents: cp.IncidentScopeAll(), ExcludeReleaseID: newID, Commit: req.Commit,
		Evidence: cp.RequiresEvidence(req.Environment),
	}
	facts, err := g.store.GateFacts(ctx, q)
	if err != nil {
		return core.GateDecision{}, fmt.Errorf("gather facts for %s %s: %w", req.Service, req.Version, err)
	}
	var notes map[string]string
	if g.ITSM != nil {
		if facts, notes, err = g.readBack(ctx, q, facts); err != nil {
			return core.GateDecision{}, fmt.Errorf("gather facts for %s %s: %w", req.Service, req.Version, err)
		}
	}
	facts.Request, facts.ReleaseID = req, newID
	d := core.Evaluate(cp, facts, g.clock.Now())
	if g.ITSM != nil {
		annotateITSM(&d, notes, opened)
	}
	return d, nil
}

func (g *Gate) record(ctx context.Context, d core.GateDecision, actor string) (core.GateDecision, error) {
	d.ID = newID()
	if err := g.store.SaveDecision(ctx, d, actor); err != nil {
		return core.GateDecision{}, fmt.Errorf("record decision: %w", err)
	}
	if g.OnDecision != nil {
		g.OnDecision(d)
	}
	return d, nil
}

// Outcomes of await.
const (
	awaitWoken   = iota // a relevant notification, or the time to re-evaluate
	awaitStopped        // the gate is shutting down: answer now
	awaitDone           // the request's context ended
)

// TimerClock is a clock that also makes timers. The gate waits on the
// clock's timers when its clock is one (tests drive time with a fake), on
// the runtime's otherwise.
type TimerClock interface {
	core.Clock
	// NewTimer returns a channel that receives once d has passed, and a
	// function that stops the timer.
	NewTimer(d time.Duration) (c <-chan time.Time, stop func() bool)
}

func (g *Gate) newTimer(d time.Duration) (<-chan time.Time, func() bool) {
	if tc, ok := g.clock.(TimerClock); ok {
		return tc.NewTimer(d)
	}
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// await blocks until a notification that may concern req arrives or d has
// passed (awaitWoken: evaluate again), the gate stops or ctx ends.
func (g *Gate) await(ctx context.Context, wake <-chan string, d time.Duration, req core.GateRequest) int {
	timer, stop := g.newTimer(d)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return awaitDone
		case <-g.stopping:
			return awaitStopped
		case <-timer:
			return awaitWoken
		case topic := <-wake:
			if relevant(topic, req) {
				return awaitWoken
			}
		}
	}
}

// relevant reports whether a notification may change req's answer.
// Incidents, PIRs and holds are matched broadly (their services and teams
// are in the record, not the topic); changes by key, evidence by release.
func relevant(topic string, req core.GateRequest) bool {
	kind, key, _ := strings.Cut(topic, ":")
	switch kind {
	case "change":
		if len(req.Changes) == 0 {
			return true // the change tollgate opened for the release (itsm.go)
		}
		for _, k := range req.Changes {
			if strings.EqualFold(k, key) {
				return true
			}
		}
		return false
	case "evidence":
		return key == core.ReleaseID(req.Service, req.Version, req.Environment)
	default: // incident, pir, hold, policy, "*" (listener reconnected)
		return true
	}
}
