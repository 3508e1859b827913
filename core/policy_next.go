package core

import "time"

// NextChange reports the first moment after now at which Evaluate's answer
// for f can differ by time alone, the facts staying as they are: a linked
// change's planned window opening or closing (OUTSIDE_WINDOW), a freeze
// covering the environment starting or ending (FREEZE). Only the rules
// enabled for the release count. ok is false when no enabled rule's answer
// depends on the time. It is pure, like Evaluate: a waiting gate check
// re-evaluates at this moment instead of answering a stale decision.
//
// The moment is when the answer may change, not that it will: another
// rule may still hold the release then. Each rule whose verdict depends on
// the time reports its own moments (its next function in gateRules); no
// gate rule reads business hours today.
func NextChange(cp *CompiledPolicy, f Facts, now time.Time) (next time.Time, ok bool) {
	if cp == nil {
		cp = &CompiledPolicy{}
	}
	ec := cp.evalContext(&f, now)
	defer cp.release(ec)
	consider := func(t time.Time) {
		if t.After(now) && (!ok || t.Before(next)) {
			next, ok = t, true
		}
	}
	for i := range gateRules {
		if r := &gateRules[i]; r.next != nil && ec.rules&(1<<i) != 0 {
			r.next(ec, consider)
		}
	}
	return next, ok
}

// nextFreezeChange is when env's freeze state next changes after now: the
// end of the freeze in force (as ActiveFreeze extends it), or else the
// earliest start of a window of a freeze covering env.
func (cp *CompiledPolicy) nextFreezeChange(env string, now time.Time) (time.Time, bool) {
	if _, until, active := cp.ActiveFreeze(env, now); active {
		return until, true
	}
	canonical, known := cp.ResolveEnvironment(env)
	if !known {
		return time.Time{}, false
	}
	ce := cp.envPolicy(canonical)
	var next time.Time
	ok := false
	for i := range cp.freezes {
		f := &cp.freezes[i]
		if !f.appliesTo(canonical, ce) {
			continue
		}
		if s, found := f.nextStart(now); found && (!ok || s.Before(next)) {
			next, ok = s, true
		}
	}
	return next, ok
}

// nextStart is the earliest start of one of the freeze's windows after t.
func (f *compiledFreeze) nextStart(t time.Time) (next time.Time, ok bool) {
	consider := func(s time.Time) {
		if s.After(t) && (!ok || s.Before(next)) {
			next, ok = s, true
		}
	}
	for _, w := range f.dated {
		consider(w.from)
	}
	if len(f.weekly) == 0 {
		return next, ok
	}
	y, m, d := t.In(f.loc).Date()
	// Every weekly window starts within the coming week (today included).
	for ahead := 0; ahead <= 7; ahead++ {
		day := time.Date(y, m, d+ahead, 12, 0, 0, 0, f.loc)
		wd := day.Weekday()
		dy, dm, dd := day.Date()
		for _, w := range f.weekly {
			if w.days&(1<<wd) != 0 {
				consider(time.Date(dy, dm, dd, 0, w.start, 0, 0, f.loc))
			}
		}
	}
	return next, ok
}
