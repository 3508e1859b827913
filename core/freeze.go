package core

import (
	"fmt"
	"strings"
	"time"
)

type compiledFreeze struct {
	name   string
	loc    *time.Location
	envs   []string // resolved names; empty: every environment enabling FREEZE
	weekly []weeklyWindow
	dated  []datedWindow
}

type weeklyWindow struct {
	days       uint8 // bit per time.Weekday: the days a window starts on
	start, end int   // minutes after midnight; end < start crosses midnight
}

type datedWindow struct{ from, to time.Time }

// datedLayouts are the accepted forms of a dated window bound.
var datedLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.DateOnly}

func compileFreeze(ps *problems, field string, f Freeze, policyLoc *time.Location) (compiledFreeze, bool) {
	n := len(*ps)
	cf := compiledFreeze{name: strings.TrimSpace(f.Name), loc: policyLoc}
	if f.TimeZone != "" {
		loc, err := loadZone(f.TimeZone)
		if err != nil {
			ps.add(field+".time_zone", "%v", err)
		} else {
			cf.loc = loc
		}
	}
	if len(f.Weekly) == 0 && len(f.Dated) == 0 {
		ps.add(field, "freeze %q has no windows; add weekly or dated windows", f.Name)
	}
	for i, w := range f.Weekly {
		wf := fmt.Sprintf("%s.weekly[%d]", field, i)
		ww := weeklyWindow{days: parseDays(ps, wf+".days", w.Days)}
		start, err1 := parseClock(w.Start, false)
		if err1 != nil {
			ps.add(wf+".start", "%v", err1)
		}
		end, err2 := parseClock(w.End, true)
		if err2 != nil {
			ps.add(wf+".end", "%v", err2)
		}
		if err1 == nil && err2 == nil && start == end {
			ps.add(wf+".end", "end %s equals start %s: the window would be empty; for a whole day use 00:00 to 24:00", w.End, w.Start)
		}
		ww.start, ww.end = start, end
		cf.weekly = append(cf.weekly, ww)
	}
	for i, d := range f.Dated {
		df := fmt.Sprintf("%s.dated[%d]", field, i)
		from, err1 := parseLocal(d.From, cf.loc)
		if err1 != nil {
			ps.add(df+".from", "%v", err1)
		}
		to, err2 := parseLocal(d.To, cf.loc)
		if err2 != nil {
			ps.add(df+".to", "%v", err2)
		}
		if err1 == nil && err2 == nil && !to.After(from) {
			ps.add(df+".to", "to %s must be after from %s", d.To, d.From)
		}
		cf.dated = append(cf.dated, datedWindow{from: from, to: to})
	}
	return cf, len(*ps) == n
}

func parseLocal(s string, loc *time.Location) (time.Time, error) {
	for _, layout := range datedLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a local date-time YYYY-MM-DDTHH:MM (or a date YYYY-MM-DD)", s)
}

// activeAt reports whether the freeze is active at t and, if so, the end of
// the latest of its windows containing t.
func (f *compiledFreeze) activeAt(t time.Time) (end time.Time, ok bool) {
	for _, w := range f.dated {
		if !t.Before(w.from) && t.Before(w.to) && w.to.After(end) {
			end, ok = w.to, true
		}
	}
	if len(f.weekly) == 0 {
		return end, ok
	}
	y, m, d := t.In(f.loc).Date()
	// A window containing t started today or, crossing midnight, yesterday.
	for back := 1; back >= 0; back-- {
		day := time.Date(y, m, d-back, 12, 0, 0, 0, f.loc)
		wd := day.Weekday()
		dy, dm, dd := day.Date()
		for _, w := range f.weekly {
			if w.days&(1<<wd) == 0 {
				continue
			}
			s := time.Date(dy, dm, dd, 0, w.start, 0, 0, f.loc)
			endDay := dd
			if w.end <= w.start {
				endDay++
			}
			e := time.Date(dy, dm, endDay, 0, w.end, 0, 0, f.loc)
			if !t.Before(s) && t.Before(e) && e.After(end) {
				end, ok = e, true
			}
		}
	}
	return end, ok
}

// freezeRule is the FREEZE rule's bit.
var freezeRule = ruleBit(CodeFreeze)

// appliesTo reports whether the freeze covers the resolved environment.
func (f *compiledFreeze) appliesTo(env string, ce *compiledEnv) bool {
	if len(f.envs) == 0 {
		return ce != nil && (ce.rules|ce.cfRules)&freezeRule != 0
	}
	for _, e := range f.envs {
		if e == env {
			return true
		}
	}
	return false
}

// maxFreezeChain bounds how far ActiveFreeze follows back-to-back windows.
const maxFreezeChain = 400

// ActiveFreeze reports the first freeze (in policy order) covering env
// that is active at t, and until when deploys to env stay frozen: the end of
// its window, extended through any window of any freeze covering env that
// starts before it ends (back-to-back or overlapping windows), so "until" is
// when deploying can resume. An environment is covered by a freeze that
// lists it, or, when the freeze lists none, when it enables the FREEZE rule
// (in its rules or customer-facing rules). Unknown environments have none.
func (cp *CompiledPolicy) ActiveFreeze(env string, t time.Time) (name string, until time.Time, ok bool) {
	canonical, known := cp.ResolveEnvironment(env)
	if !known || len(cp.freezes) == 0 {
		return "", time.Time{}, false
	}
	ce := cp.envPolicy(canonical)
	for i := range cp.freezes {
		f := &cp.freezes[i]
		if !f.appliesTo(canonical, ce) {
			continue
		}
		if end, active := f.activeAt(t); active {
			if !ok {
				name, ok = f.name, true
			}
			if end.After(until) {
				until = end
			}
		}
	}
	if !ok {
		return "", time.Time{}, false
	}
	for range maxFreezeChain {
		extended := false
		for i := range cp.freezes {
			f := &cp.freezes[i]
			if !f.appliesTo(canonical, ce) {
				continue
			}
			if end, active := f.activeAt(until); active && end.After(until) {
				until, extended = end, true
			}
		}
		if !extended {
			break
		}
	}
	return name, until, true
}
