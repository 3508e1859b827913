package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
)

// PendingStore is what the CI gates need from storage.
type PendingStore interface {
	InsertPendingGate(ctx context.Context, p core.PendingGate) (core.PendingGate, bool, error)
	ClaimPendingGates(ctx context.Context, all bool, limit int, lease time.Duration) ([]core.PendingGate, error)
	SavePendingGate(ctx context.Context, p core.PendingGate) error
	RenewPendingClaim(ctx context.Context, p *core.PendingGate, lease time.Duration) error
	GateRequestFor(ctx context.Context, connector, externalID string) (core.PendingGate, error)
	MarkPendingDue(ctx context.Context, ids []string) error
	MarkAllPendingDue(ctx context.Context) error
	WaitingGatesAfter(ctx context.Context, after string, limit int) ([]core.PendingGate, error)
	CountWaitingGates(ctx context.Context, connector, repository string) (int, error)
	CountOpenGates(ctx context.Context) (map[string]int, error)
}

// GateRequester is a connector whose events include a CI waiting at its
// own gate (a GitHub deployment protection rule, a GitLab deployment held
// for approval). GateRequest reports whether the event is one (ok) and
// the request it makes: provider, external id, request, answer target and
// run URL (the caller sets the rest). A KindInvalid error quarantines the
// event; KindUnavailable retries it.
type GateRequester interface {
	GateRequest(ctx context.Context, eventType string, body []byte) (p core.PendingGate, ok bool, err error)
}

// NotYetStarted is a GateRequester whose CI announces a deployment before
// its gate may hold it (GitHub's "deployment" event, sent when the job is
// queued, before the protection rule's request): with the gate on, such
// an event is no start — recorded, it would be a deployment begun before
// the gate's answer, and (named by the repository, not the connector's
// services) another deployment than the one the answer released. The
// deployment's statuses, sent once it runs, record it.
type NotYetStarted interface {
	NotYetStarted(eventType string) bool
}

// Answerer answers a CI's gate through the CI's API. An error of
// KindUnavailable is transient (retried with backoff); any other is final
// (the CI refused the answer) and the request is shown as failed, unless
// an earlier attempt may have been taken (AnswerChecker).
type Answerer interface {
	Answer(ctx context.Context, p core.PendingGate, approved bool, comment string) error
}

// AnswerPreparer is an Answerer with slow work to do before an answer
// can be sent (GitHub: the installation token, fetched with retries).
// The worker prepares before it checks the decision is still fresh, so an
// answer is sent moments after its decision, not after a slow token
// fetch. An error is only logged: Answer meets it again and reports it.
type AnswerPreparer interface {
	PrepareAnswer(ctx context.Context, p core.PendingGate) error
}

// AnswerChecker is an Answerer that can read back from the CI whether an
// answer was taken. The worker asks it when the CI refuses a delivery
// after an earlier attempt failed without a refusal (no reply, a 5xx):
// that attempt may have been taken with its reply lost, and the refusal
// may only mean the CI no longer waits because it took it.
type AnswerChecker interface {
	// AnswerTaken reports whether the CI's state shows p answered as
	// approved says; why says what it shows (the reason recorded when it
	// cannot tell). An error is a failed read: KindUnavailable is
	// transient.
	AnswerTaken(ctx context.Context, p core.PendingGate, approved bool) (taken bool, why string, err error)
}

// Decider evaluates a CI gate's request now (Gate.Decide): a final answer
// is recorded; one that still waits says when to look again.
type Decider interface {
	Decide(ctx context.Context, req core.GateRequest, actor string, deadline time.Time) (d core.GateDecision, next time.Time, final bool, err error)
}

// CIGatesConfig tunes the pending-gate worker.
type CIGatesConfig struct {
	// PollInterval is how often the worker looks for requests whose next
	// check or delivery attempt has come (default 1s); fact changes wake
	// it at once.
	PollInterval time.Duration
	// Lease is how long one replica holds a claimed request (default 2m).
	Lease time.Duration
	// GiveUpAfter is how long after the request a failing answer is still
	// retried (default 720h: GitHub fails a run whose protection rule is
	// unanswered for 30 days, so trying longer is pointless); then it is
	// shown as failed.
	GiveUpAfter time.Duration
	// MaxAttempts, when positive, also bounds the deliveries tried.
	MaxAttempts int
	// RetryMin and RetryMax bound the delivery backoff (1s, 5m).
	RetryMin, RetryMax time.Duration
	// AnswerTimeout bounds one delivery (default 30s), and so how old an
	// approval may be when it reaches the CI: a delivery that outruns it
	// is cancelled and retried, its approval evaluated again first. A
	// delivery also ends claimMargin before the claim does, so no other
	// replica works the request while an answer of this one is in flight.
	AnswerTimeout time.Duration
	// MaxDecisionAge: an approval older than this when it is about to be
	// sent (a slow evaluation, a slow token fetch) is evaluated again
	// first (default 5s).
	MaxDecisionAge time.Duration
}

// CIGates keeps the gate requests CIs wait on (core.PendingGate) and
// answers them: as soon as a fact change (change, incident, PIR, policy)
// flips the decision, at the next moment it can change by time alone, and
// at the deadline (DEADLINE, fail closed). Requests are stored, and
// claimed by one replica at a time, so a restart or another replica
// answers them too.
type CIGates struct {
	store     PendingStore
	gate      Decider
	subs      Subscriber
	answerers map[string]Answerer // by connector name
	deadlines map[string]time.Duration
	maxOpen   map[string]int // waiting requests per repository, by connector
	clock     core.Clock
	log       *slog.Logger
	cfg       CIGatesConfig
	wake      chan struct{}
	// OnAnswer, when set, observes each delivery outcome (approved,
	// rejected, retried, failed) by provider.
	OnAnswer func(provider, outcome string)
	// OnPending, when set, is told the open requests by provider after
	// each pass.
	OnPending func(byProvider map[string]int)
	// OnOverLimit, when set, is told each request rejected on arrival
	// because its repository had MaxOpen waiting, by connector.
	OnOverLimit func(connector string)

	// stranded holds the outcomes this process could not save because the
	// database was unavailable — requests its claims would hold unanswered
	// in the store (though perhaps answered to the CI) until their lease
	// ends; the next pass saves them (saveStranded).
	stranded stranded[core.PendingGate]
}

// NewCIGates wires the CI gates for the connectors that answer one.
func NewCIGates(store PendingStore, gate Decider, subs Subscriber, conns []Connector, clock core.Clock, log *slog.Logger, cfg CIGatesConfig) *CIGates {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Minute
	}
	if cfg.GiveUpAfter <= 0 {
		cfg.GiveUpAfter = 30 * 24 * time.Hour
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Minute
	}
	if cfg.AnswerTimeout <= 0 {
		cfg.AnswerTimeout = 30 * time.Second
	}
	if cfg.MaxDecisionAge <= 0 {
		cfg.MaxDecisionAge = 5 * time.Second
	}
	s := &CIGates{store: store, gate: gate, subs: subs, answerers: map[string]Answerer{}, deadlines: map[string]time.Duration{},
		maxOpen: map[string]int{}, clock: clock, log: log, cfg: cfg, wake: make(chan struct{}, 1)}
	for _, c := range conns {
		a, ok := c.Webhook.(Answerer)
		if c.Config.CIGate != nil && ok {
			s.answerers[c.Config.Name] = a
			s.deadlines[c.Config.Name] = c.Config.CIGate.Deadline
			s.maxOpen[c.Config.Name] = cmp.Or(c.Config.CIGate.MaxOpen, connectors.DefaultMaxOpen)
		}
	}
	return s
}

// Enabled reports whether any connector answers a CI gate.
func (s *CIGates) Enabled() bool { return s != nil && len(s.answerers) > 0 }

// Submit stores a new gate request from connector c (a redelivery returns
// the stored one) and wakes the worker to evaluate it. One whose
// repository already has the connector's MaxOpen requests waiting is
// stored rejected (TOO_MANY_WAITING), and the worker sends the rejection:
// fail closed, the pipeline told why, the other repositories' requests
// not crowded out. Requests submitted at the same moment (one per inbox
// worker and replica) may each see the count below the cap.
func (s *CIGates) Submit(ctx context.Context, c connectors.Config, p core.PendingGate) (core.PendingGate, bool, error) {
	if _, ok := s.answerers[c.Name]; !ok {
		return p, false, core.Errorf(core.KindInvalid, "connector %q answers no CI gate (its api and gate blocks are not configured)", c.Name)
	}
	now := s.clock.Now()
	p.Connector, p.State, p.CreatedAt, p.NextCheckAt = c.Name, core.PendingWaiting, now, now
	p.Deadline = now.Add(s.deadlines[c.Name])
	waiting, err := s.store.CountWaitingGates(ctx, c.Name, p.Repository)
	if err != nil {
		return p, false, err
	}
	over := waiting >= s.maxOpen[c.Name]
	if over {
		p.State, p.Decision = core.PendingAnswering, core.Deny
		p.Reasons = []core.Reason{{Code: core.CodeTooManyWaiting, Result: core.Deny, Ref: p.Repository,
			Message: fmt.Sprintf("%d requests of %s already wait at tollgate's gate (the limit of connector %s): rejected, fail closed; run the deployment again once fewer wait",
				waiting, p.Repository, c.Name)}}
		p.Comment = connectors.Comment(comment(p))
	}
	stored, created, err := s.store.InsertPendingGate(ctx, p)
	if err != nil {
		return stored, false, err
	}
	if created && over {
		s.log.WarnContext(ctx, "CI gate request rejected on arrival: too many of its repository wait", "id", stored.ID, "connector", c.Name,
			"repository", p.Repository, "waiting", waiting, "run", p.RunURL)
		if s.OnOverLimit != nil {
			s.OnOverLimit(c.Name)
		}
	}
	if created {
		s.Wake()
	}
	return stored, created, nil
}

// Known returns connector's gate request externalID, held in any state;
// KindNotFound when there is none.
func (s *CIGates) Known(ctx context.Context, connector, externalID string) (core.PendingGate, error) {
	if externalID == "" {
		return core.PendingGate{}, core.NotFound("gate request", externalID)
	}
	return s.store.GateRequestFor(ctx, connector, externalID)
}

// Released returns the gate request that held the CI deployment
// deploymentID of connector at its gate, when it was decided: a deployment
// the CI reports afterwards is linked to it (DESIGN: data flow 5).
func (s *CIGates) Released(ctx context.Context, connector, deploymentID string) (core.PendingGate, bool) {
	if !s.Enabled() || deploymentID == "" {
		return core.PendingGate{}, false
	}
	p, err := s.store.GateRequestFor(ctx, connector, "deployment:"+deploymentID)
	if err != nil || p.DecisionID == "" {
		return core.PendingGate{}, false
	}
	return p, true
}

// Wake makes the worker look for due requests now.
func (s *CIGates) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run works the requests until ctx ends: every waiting one after start
// (notifications may have been missed while no process ran), those a fact
// change may flip as soon as it lands, and the due ones (next check,
// deadline, delivery retry) every PollInterval.
func (s *CIGates) Run(ctx context.Context) {
	var topics <-chan string
	if s.subs != nil {
		sub, cancel := s.subs.Subscribe()
		defer cancel()
		topics = sub
	}
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	s.pass(ctx, true)
	for {
		select {
		case <-ctx.Done():
			return
		case topic := <-topics:
			changed := []string{topic}
		drain:
			for {
				select {
				case topic := <-topics:
					changed = append(changed, topic)
				default:
					break drain
				}
			}
			s.markDue(ctx, changed)
		case <-s.wake:
		case <-t.C:
		}
		s.pass(ctx, false)
	}
}

// markDue makes the waiting requests a fact change may flip due now: those
// linking a changed change, and every one for an incident, PIR or policy
// update (their services and teams are in the record, not the topic).
func (s *CIGates) markDue(ctx context.Context, topics []string) {
	if slices.ContainsFunc(topics, forEveryRequest) {
		// A topic every request may depend on: all are due, in one update.
		if err := s.store.MarkAllPendingDue(ctx); err != nil {
			s.log.WarnContext(ctx, "mark pending gates due failed", "error", err.Error())
		}
		return
	}
	// The others, a page at a time: however many wait, each is looked at.
	const pageSize = 500
	for after := ""; ; {
		page, err := s.store.WaitingGatesAfter(ctx, after, pageSize)
		if err != nil {
			s.log.WarnContext(ctx, "list pending gates failed", "error", err.Error())
			return
		}
		var ids []string
		for _, p := range page {
			if slices.ContainsFunc(topics, func(t string) bool { return relevant(t, p.Request) }) {
				ids = append(ids, p.ID)
			}
		}
		if err := s.store.MarkPendingDue(ctx, ids); err != nil {
			s.log.WarnContext(ctx, "mark pending gates due failed", "error", err.Error())
			return
		}
		if len(page) < pageSize {
			return
		}
		after = page[len(page)-1].ID
	}
}

// forEveryRequest reports whether topic may flip any waiting request
// (relevant's default: an incident, PIR, hold or policy update, or a
// listener reconnected), not only those that name it (a change, a
// release's evidence).
func forEveryRequest(topic string) bool {
	kind, _, _ := strings.Cut(topic, ":")
	return kind != "change" && kind != "evidence"
}

// claimBatch bounds one claim.
const claimBatch = 100

// pass claims and works the due requests (all waiting ones with all).
func (s *CIGates) pass(ctx context.Context, all bool) {
	s.saveStranded(ctx)
	for ctx.Err() == nil {
		batch, err := s.store.ClaimPendingGates(ctx, all, claimBatch, s.cfg.Lease)
		if err != nil {
			s.log.WarnContext(ctx, "claim pending gates failed", "error", err.Error())
			return
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8) // answers go out in parallel: one slow CI does not hold the others
		for _, p := range batch {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				s.work(ctx, p)
			}()
		}
		wg.Wait()
		if len(batch) < claimBatch {
			break
		}
		all = false
	}
	s.count(ctx)
}

func (s *CIGates) count(ctx context.Context) {
	if s.OnPending == nil {
		return
	}
	open, err := s.store.CountOpenGates(ctx)
	if err != nil {
		return
	}
	by := map[string]int{"github": 0, "gitlab": 0}
	for p, n := range open {
		by[p] = n
	}
	s.OnPending(by)
}

// work evaluates one claimed request and, once decided, delivers the
// answer; the outcome is saved (which ends the claim). The claim is
// renewed before the evaluation and before the delivery, each of which
// may wait on an ITSM or the CI for a while: a batch's last requests are
// worked long after the claim was taken, and one whose claim ran out
// and was taken over by another replica is left to that one — never
// decided and answered twice. The delivery itself ends before the claim
// does (deliver); an approval grown older than MaxDecisionAge before it
// goes (a slow evaluation or token fetch) is evaluated again first.
func (s *CIGates) work(ctx context.Context, p core.PendingGate) {
	// The outcome is saved even when the process is stopping, so the
	// request is not left claimed (and unanswered) until its lease ends;
	// when the database is unavailable, the next pass saves it.
	save := func(p core.PendingGate) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err := s.store.SavePendingGate(sctx, p)
		switch {
		case err == nil:
		case core.IsKind(err, core.KindConflict):
			s.log.WarnContext(ctx, "a pending gate was taken over by another replica while this one worked it: its outcome here is dropped",
				"id", p.ID, "state", p.State, "decision_id", p.DecisionID)
		default:
			s.log.WarnContext(ctx, "cannot save a pending gate", "id", p.ID, "error", err.Error())
			if core.IsStoreDown(err) {
				s.stranded.add(p.ID, p, p.Claim)
			}
		}
	}
	if !s.renew(ctx, &p) {
		return
	}
	evaluated := s.clock.Now() // the facts are read after this
	// The state as claimed: a request decided now is delivered at once; an
	// approval decided in an earlier pass is confirmed first.
	switch p.State {
	case core.PendingWaiting:
		if !s.decide(ctx, &p) {
			save(p)
			return
		}
	case core.PendingAnswering:
		if p.Decision == core.Allow && !s.reconfirm(ctx, &p) {
			save(p)
			return
		}
	}
	if a, ok := s.answerers[p.Connector].(AnswerPreparer); ok {
		if !s.renew(ctx, &p) {
			return
		}
		pctx, cancel := s.answerContext(ctx, p)
		if err := a.PrepareAnswer(pctx, p); err != nil {
			s.log.DebugContext(ctx, "preparing a CI gate answer failed", "id", p.ID, "error", err.Error())
		}
		cancel()
	}
	if p.Decision == core.Allow && s.clock.Now().Sub(evaluated) > s.cfg.MaxDecisionAge {
		// The facts it was decided on are no longer fresh: the CI deploys
		// when the approval arrives, so it must hold now.
		if !s.renew(ctx, &p) {
			return
		}
		if !s.reconfirm(ctx, &p) {
			save(p)
			return
		}
	}
	if !s.renew(ctx, &p) {
		// Decided but not sent: the decision is recorded; the replica
		// that holds the request now decides and answers it.
		return
	}
	s.deliver(ctx, &p)
	save(p)
}

// claimMargin is how long before p's claim ends a delivery under it is
// cancelled: the time for its outcome to be saved, and for a request
// that was in flight to reach the CI, before another replica may claim
// the request and answer it otherwise.
func claimMargin(lease time.Duration) time.Duration { return min(lease/4, 15*time.Second) }

// answerContext bounds a delivery to p's CI (and the work before it): at
// most AnswerTimeout, and ending claimMargin before p's claim does.
func (s *CIGates) answerContext(ctx context.Context, p core.PendingGate) (context.Context, context.CancelFunc) {
	end := s.clock.Now().Add(s.cfg.AnswerTimeout)
	if c := p.Claim.Add(-claimMargin(s.cfg.Lease)); !p.Claim.IsZero() && c.Before(end) {
		end = c
	}
	// The clock may be a test's: the deadline is set as a duration from
	// the real clock.
	return context.WithTimeout(ctx, end.Sub(s.clock.Now()))
}

// renew extends p's claim, reporting whether this replica still holds
// it. One whose claim was taken over, or that cannot be renewed (the
// database away), is left alone: the holder, or the next pass once the
// claim ends, works it.
func (s *CIGates) renew(ctx context.Context, p *core.PendingGate) bool {
	if p.Claim.IsZero() {
		return true // worked unclaimed (a test's hand-made request)
	}
	err := s.store.RenewPendingClaim(ctx, p, s.cfg.Lease)
	switch {
	case err == nil:
		return true
	case core.IsKind(err, core.KindConflict):
		s.log.InfoContext(ctx, "a pending gate's claim ran out and another replica took it over; left to it", "id", p.ID)
	default:
		s.log.WarnContext(ctx, "cannot renew a pending gate's claim; it is worked again once the claim ends", "id", p.ID, "error", err.Error())
	}
	return false
}

// saveStranded saves the outcomes an outage kept from the database, as
// soon as it answers again: a request answered to its CI just before the
// outage is recorded answered (not worked again a lease later), and one
// that still waits is released to the next pass. An outcome whose claim
// has ended (or nearly) is dropped: the request is worked again, as after
// a crash. Those the database still refuses are kept for the next pass.
func (s *CIGates) saveStranded(ctx context.Context) {
	s.stranded.flush(s.clock.Now(), func(id string, p core.PendingGate) error {
		err := s.store.SavePendingGate(ctx, p)
		switch {
		case err == nil:
			s.log.InfoContext(ctx, "the database answers again: a pending gate's outcome saved", "id", id, "state", p.State)
		case !core.IsStoreDown(err):
			s.log.WarnContext(ctx, "cannot save a pending gate's outcome the outage kept", "id", id, "error", err.Error())
		}
		return err
	})
}

// decide evaluates p now: a decided request (recorded) becomes answering
// and decide returns true; one that still waits gets its reasons and next
// check, and decide returns false.
func (s *CIGates) decide(ctx context.Context, p *core.PendingGate) bool {
	d, next, final, err := s.gate.Decide(ctx, p.Request, "connector:"+p.Connector, p.Deadline)
	return s.settle(ctx, p, d, next, final, err)
}

// reconfirm evaluates again an approval decided in an earlier pass, before
// it is sent again (a retry after a failed delivery, or the pass after a
// crash), or one grown older than MaxDecisionAge before it goes: the CI
// deploys when the approval arrives, so it must hold then
// — a window may have closed, a change been canceled or an incident opened
// since. Still an allow: the approval goes as decided (its comment names
// the first decision, which a read-back looks for; the confirmation is
// recorded as its own decision). Otherwise the new answer replaces it: a
// wait puts the request back to waiting, a deny is sent instead (with the
// attempts so far, so a refusal is read back: an earlier attempt may have
// delivered the approval with its reply lost). It returns whether to
// deliver now; an evaluation that fails keeps the approval unsent until
// the next try.
func (s *CIGates) reconfirm(ctx context.Context, p *core.PendingGate) bool {
	now := s.clock.Now()
	d, next, final, err := s.gate.Decide(ctx, p.Request, "connector:"+p.Connector, p.Deadline)
	switch {
	case err != nil && !core.IsKind(err, core.KindInvalid) && now.Before(p.Deadline):
		s.log.WarnContext(ctx, "an approval to send again could not be confirmed; will retry", "id", p.ID, "error", err.Error())
		p.NextCheckAt = now.Add(s.cfg.RetryMin)
		if p.NextCheckAt.After(p.Deadline) {
			p.NextCheckAt = p.Deadline
		}
		return false
	case err == nil && final && d.Decision == core.Allow:
		s.log.InfoContext(ctx, "approval confirmed before it is sent", "id", p.ID, "decision_id", p.DecisionID, "confirmed_by", d.ID)
		return true
	}
	prev, attempts := p.DecisionID, p.Attempts
	p.State, p.Decision, p.DecisionID = core.PendingWaiting, "", ""
	deliver := s.settle(ctx, p, d, next, final, err)
	s.log.WarnContext(ctx, "an approval not yet delivered no longer holds", "id", p.ID, "provider", p.Provider, "run", p.RunURL,
		"decision_id", prev, "now", string(d.Decision), "new_decision_id", d.ID, "attempts", attempts)
	if !deliver {
		p.LastError = fmt.Sprintf("the approval of decision %s was not delivered and no longer holds: waiting again", prev)
	}
	return deliver
}

// settle applies an evaluation of p (see decide).
func (s *CIGates) settle(ctx context.Context, p *core.PendingGate, d core.GateDecision, next time.Time, final bool, err error) bool {
	now := s.clock.Now()
	switch {
	case err != nil && core.IsKind(err, core.KindInvalid):
		// The request cannot be evaluated (an environment the policy does
		// not know, a malformed service): it is refused, fail closed.
		p.Decision, p.Reasons = core.Deny, []core.Reason{{Code: "INVALID_REQUEST", Message: invalidMessage(err), Result: core.Deny}}
	case err != nil && !now.Before(p.Deadline):
		// Still unevaluated at the deadline (an ITSM or the database away
		// all along): rejected, fail closed, as a wait would be — never
		// retried for good with the CI's run held open.
		s.log.WarnContext(ctx, "pending gate could not be evaluated by its deadline: rejected", "id", p.ID, "error", err.Error())
		p.Decision, p.Reasons = core.Deny, []core.Reason{{Code: core.CodeDeadline, Result: core.Deny,
			Message: fmt.Sprintf("could not be evaluated by the deadline (%s): %s; rejected, fail closed", p.Deadline.UTC().Format(time.RFC3339), err)}}
	case err != nil:
		s.log.WarnContext(ctx, "pending gate evaluation failed; will retry", "id", p.ID, "error", err.Error())
		p.NextCheckAt = now.Add(s.cfg.RetryMin)
		if p.NextCheckAt.After(p.Deadline) {
			p.NextCheckAt = p.Deadline
		}
		return false
	case !final:
		p.Reasons, p.NextCheckAt = d.Reasons, next
		return false
	default:
		p.Decision, p.DecisionID, p.Reasons = d.Decision, d.ID, d.Reasons
	}
	// Attempts stay: a request decided for the first time has made none,
	// and one an earlier approval was sent for (reconfirm put it back to
	// waiting) keeps them, so a refusal of the new answer is read back.
	p.State, p.Comment = core.PendingAnswering, connectors.Comment(comment(*p))
	return true
}

// deliver sends p's answer, settling p's state: answered, failed, or
// answering again after a backoff.
func (s *CIGates) deliver(ctx context.Context, p *core.PendingGate) {
	a, ok := s.answerers[p.Connector]
	if !ok {
		p.State, p.LastError = core.PendingFailed, fmt.Sprintf("connector %q no longer answers CI gates", p.Connector)
		s.observe(p.Provider, "failed")
		return
	}
	approved := p.Decision == core.Allow
	p.Attempts++
	// Bounded by the claim: an answer still in flight when another
	// replica may claim the request could contradict the one that
	// replica sends (a stale approval after its rejection).
	actx, cancel := s.answerContext(ctx, *p)
	defer cancel()
	err := a.Answer(actx, *p, approved, p.Comment)
	if err != nil && actx.Err() != nil && !core.IsKind(err, core.KindUnavailable) {
		// Cut off (its time or claim ran out, the process stops): it may
		// have reached the CI or not, as with a reset.
		err = core.Wrap(core.KindUnavailable, err, "the answer was cut off before its claim ran out")
	}
	ctx = actx // a read-back after a refusal goes under the same bound
	now := s.clock.Now()
	// Attempts > 1: an earlier attempt failed transiently (a refusal or a
	// success settles p), so it may have been taken with its reply lost (a
	// reset, a timeout). A refusal now is then no proof the answer was
	// not delivered: ask the CI.
	if c, ok := a.(AnswerChecker); ok && err != nil && !core.IsKind(err, core.KindUnavailable) && p.Attempts > 1 {
		s.readBack(ctx, c, p, approved, err)
		return
	}
	switch {
	case err == nil:
		s.answered(ctx, p, approved, now)
	case core.IsKind(err, core.KindUnavailable) && s.mayRetry(p, now):
		p.LastError, p.NextCheckAt = err.Error(), now.Add(s.backoff(p.Attempts))
		s.observe(p.Provider, "retried")
		s.log.WarnContext(ctx, "CI gate answer failed; will retry", "id", p.ID, "attempt", p.Attempts, "retry_at", p.NextCheckAt.Format(time.RFC3339), "error", err.Error())
	default:
		p.State, p.LastError = core.PendingFailed, err.Error()
		s.observe(p.Provider, "failed")
		s.log.ErrorContext(ctx, "CI gate answer failed for good", "id", p.ID, "provider", p.Provider, "run", p.RunURL, "attempts", p.Attempts, "error", err.Error())
	}
}

// answered settles p as delivered.
func (s *CIGates) answered(ctx context.Context, p *core.PendingGate, approved bool, now time.Time) {
	p.State, p.AnsweredAt, p.LastError = core.PendingAnswered, &now, ""
	outcome := "rejected"
	if approved {
		outcome = "approved"
	}
	s.observe(p.Provider, outcome)
	s.log.InfoContext(ctx, "CI gate answered", "id", p.ID, "provider", p.Provider, "run", p.RunURL, "decision", string(p.Decision), "decision_id", p.DecisionID)
}

// mayRetry reports whether a delivery that failed at now may be tried
// again: within MaxAttempts and before GiveUpAfter.
func (s *CIGates) mayRetry(p *core.PendingGate, now time.Time) bool {
	return (s.cfg.MaxAttempts <= 0 || p.Attempts < s.cfg.MaxAttempts) &&
		now.Add(s.backoff(p.Attempts)).Before(p.CreatedAt.Add(s.cfg.GiveUpAfter))
}

// readBack settles p after the CI refused its answer (refused) following
// attempts that may have been taken: answered when the CI's state shows
// the answer taken; unknown, with what the CI shows, when it cannot tell
// or cannot be read (a transient read failure is retried first). An
// approval is never recorded by guess.
func (s *CIGates) readBack(ctx context.Context, c AnswerChecker, p *core.PendingGate, approved bool, refused error) {
	taken, why, err := c.AnswerTaken(ctx, *p, approved)
	now := s.clock.Now()
	switch {
	case err == nil && taken:
		s.log.InfoContext(ctx, "CI gate answer taken by an earlier attempt whose reply was lost", "id", p.ID, "provider", p.Provider,
			"run", p.RunURL, "attempts", p.Attempts, "refused", refused.Error(), "read_back", why)
		s.answered(ctx, p, approved, now)
	case err != nil && core.IsKind(err, core.KindUnavailable) && s.mayRetry(p, now):
		p.LastError = fmt.Sprintf("%v; reading back whether an earlier attempt was taken failed: %v", refused, err)
		p.NextCheckAt = now.Add(s.backoff(p.Attempts))
		s.observe(p.Provider, "retried")
		s.log.WarnContext(ctx, "CI gate read-back failed; will retry", "id", p.ID, "attempt", p.Attempts, "retry_at", p.NextCheckAt.Format(time.RFC3339), "error", p.LastError)
	default:
		if err != nil {
			why = "the CI's state could not be read: " + err.Error()
		}
		p.State = core.PendingUnknown
		p.LastError = fmt.Sprintf("outcome unknown: an earlier attempt may have been taken with its reply lost, the CI refused attempt %d (%v), and %s",
			p.Attempts, refused, why)
		s.observe(p.Provider, "unknown")
		s.log.ErrorContext(ctx, "CI gate answer outcome unknown", "id", p.ID, "provider", p.Provider, "run", p.RunURL, "attempts", p.Attempts, "error", p.LastError)
	}
}

func (s *CIGates) observe(provider, outcome string) {
	if s.OnAnswer != nil {
		s.OnAnswer(provider, outcome)
	}
}

// backoff is the wait before delivery attempt n+1: doubling from RetryMin,
// capped at RetryMax.
func (s *CIGates) backoff(n int) time.Duration {
	d := s.cfg.RetryMin << min(max(n-1, 0), 20)
	return min(d, s.cfg.RetryMax)
}

// comment is the answer's text: the decision, its id and its reasons.
func comment(p core.PendingGate) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tollgate: %s", p.Decision)
	if p.DecisionID != "" {
		fmt.Fprintf(&b, " (decision %s)", p.DecisionID)
	}
	for _, r := range p.Reasons {
		if r.Result == "" && p.Decision != core.Allow {
			continue // notes
		}
		b.WriteString("\n- " + r.Code)
		if r.Ref != "" {
			b.WriteString(" " + r.Ref)
		}
		if r.Message != "" {
			b.WriteString(": " + r.Message)
		}
	}
	return b.String()
}

// invalidMessage is a KindInvalid error's client-safe text.
func invalidMessage(err error) string {
	var ce *core.Error
	if errors.As(err, &ce) {
		if ce.Field != "" {
			return ce.Field + ": " + ce.Message
		}
		return ce.Message
	}
	return "the request is not valid"
}
