package core

import (
	"fmt"
	"time"

	"github.com/rickar/cal/v2"
)

// businessCalendar answers business-hour arithmetic in the policy zone.
// Work days and holidays come from a rickar/cal BusinessCalendar; the hour
// arithmetic walks local calendar days itself, so it stays exact across DST
// changes (a working day is always its wall-clock hours, and no day is
// skipped or counted twice, which stepping by 24 elapsed hours would do).
type businessCalendar struct {
	cal        *cal.BusinessCalendar
	loc        *time.Location
	start, end int // minutes after midnight, start < end
}

func compileBusinessHours(ps *problems, bh BusinessHours, loc *time.Location) *businessCalendar {
	bc := &businessCalendar{cal: cal.NewBusinessCalendar(), loc: loc, start: 9 * 60, end: 17 * 60}
	days := uint8(1<<time.Monday | 1<<time.Tuesday | 1<<time.Wednesday | 1<<time.Thursday | 1<<time.Friday)
	if bh.Days != nil {
		days = parseDays(ps, "business_hours.days", bh.Days)
	}
	for wd := time.Sunday; wd <= time.Saturday; wd++ {
		bc.cal.SetWorkday(wd, days&(1<<wd) != 0)
	}
	okClock := true
	if bh.Start != "" {
		m, err := parseClock(bh.Start, false)
		if err != nil {
			ps.add("business_hours.start", "%v", err)
			okClock = false
		}
		bc.start = m
	}
	if bh.End != "" {
		m, err := parseClock(bh.End, true)
		if err != nil {
			ps.add("business_hours.end", "%v", err)
			okClock = false
		}
		bc.end = m
	}
	if okClock && bc.end <= bc.start {
		ps.add("business_hours.end", "business hours end %s must be after start %s (business hours cannot cross midnight)",
			clockString(bc.end), clockString(bc.start))
	}
	bc.cal.SetWorkHours(time.Duration(bc.start)*time.Minute, time.Duration(bc.end)*time.Minute)
	seen := map[string]int{}
	for i, h := range bh.Holidays {
		field := fmt.Sprintf("business_hours.holidays[%d]", i)
		d, err := time.Parse(time.DateOnly, h)
		if err != nil {
			ps.add(field, "%q is not a date YYYY-MM-DD", h)
			continue
		}
		if j, dup := seen[h]; dup {
			ps.add(field, "holiday %s is already listed at business_hours.holidays[%d]", h, j)
			continue
		}
		seen[h] = i
		bc.cal.AddHoliday(&cal.Holiday{
			Name:      h,
			Type:      cal.ObservanceOther,
			StartYear: d.Year(),
			EndYear:   d.Year(),
			Month:     d.Month(),
			Day:       d.Day(),
			Func:      cal.CalcDayOfMonth,
		})
	}
	// The calendar is shared by concurrent evaluations: rickar's holiday
	// cache writes a map, so it stays off (the default).
	bc.cal.Cacheable = false
	return bc
}

func clockString(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// maxCalendarDays bounds calendar walks (a century), so no input can loop.
const maxCalendarDays = 366 * 100

// day returns the working interval of the local day d (noon of that day),
// ok=false when it is not a work day.
func (bc *businessCalendar) day(d time.Time) (start, end time.Time, ok bool) {
	if !bc.cal.IsWorkday(d) {
		return time.Time{}, time.Time{}, false
	}
	y, m, dd := d.Date()
	return time.Date(y, m, dd, bc.start/60, bc.start%60, 0, 0, bc.loc),
		time.Date(y, m, dd, bc.end/60, bc.end%60, 0, 0, bc.loc), true
}

func (bc *businessCalendar) noon(t time.Time) time.Time {
	y, m, d := t.In(bc.loc).Date()
	return time.Date(y, m, d, 12, 0, 0, 0, bc.loc)
}

func nextDay(noon time.Time) time.Time {
	y, m, d := noon.Date()
	return time.Date(y, m, d+1, 12, 0, 0, 0, noon.Location())
}

// AddBusinessHours returns the instant d business hours after t: working
// time counts only on work days that are not holidays, between the business
// hours, in the policy zone. A deadline that falls exactly on a day's end is
// that end, not the next morning. d <= 0 returns t. The result is in t's
// location.
func (cp *CompiledPolicy) AddBusinessHours(t time.Time, d time.Duration) time.Time {
	bc := cp.calendar()
	if d <= 0 {
		return t
	}
	day := bc.noon(t)
	for range maxCalendarDays {
		if s, e, ok := bc.day(day); ok {
			from := s
			if t.After(from) {
				from = t
			}
			if from.Before(e) {
				avail := e.Sub(from)
				if d <= avail {
					return from.Add(d).In(t.Location())
				}
				d -= avail
			}
		}
		day = nextDay(day)
	}
	return t.Add(maxCalendarDays * 24 * time.Hour)
}

// BusinessHoursBetween is the business time between a and b (see
// AddBusinessHours); negative when b is before a.
func (cp *CompiledPolicy) BusinessHoursBetween(a, b time.Time) time.Duration {
	if b.Before(a) {
		return -cp.BusinessHoursBetween(b, a)
	}
	bc := cp.calendar()
	var total time.Duration
	last := bc.noon(b)
	day := bc.noon(a)
	for range maxCalendarDays {
		if day.After(last) {
			break
		}
		if s, e, ok := bc.day(day); ok {
			if a.After(s) {
				s = a
			}
			if b.Before(e) {
				e = b
			}
			if e.After(s) {
				total += e.Sub(s)
			}
		}
		day = nextDay(day)
	}
	return total
}

// IsBusinessTime reports whether t falls within business hours.
func (cp *CompiledPolicy) IsBusinessTime(t time.Time) bool {
	bc := cp.calendar()
	s, e, ok := bc.day(bc.noon(t))
	return ok && !t.Before(s) && t.Before(e)
}

func (cp *CompiledPolicy) calendar() *businessCalendar {
	if cp.cal == nil { // a zero CompiledPolicy: the default calendar
		return compileBusinessHours(new(problems), BusinessHours{}, time.UTC)
	}
	return cp.cal
}
