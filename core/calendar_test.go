package core

import (
	"strings"
	"testing"
	"time"
)

func TestBusinessHours(t *testing.T) {
	p := DefaultPolicy()
	p.BusinessHours.Holidays = []string{"2026-12-25", "2027-01-01"}
	cp := mustCompile(t, p)

	addTests := []struct {
		name string
		from string
		d    time.Duration
		want string
	}{
		{"within the day", "2026-11-25T10:00:00Z", 2 * time.Hour, "2026-11-25T12:00:00Z"},
		{"ends exactly at close", "2026-11-23T09:00:00Z", 8 * time.Hour, "2026-11-23T17:00:00Z"},
		{"friday afternoon over the weekend", "2026-11-27T16:00:00Z", 2 * time.Hour, "2026-11-30T10:00:00Z"},
		{"from saturday", "2026-11-28T12:00:00Z", time.Hour, "2026-11-30T10:00:00Z"},
		{"after close", "2026-11-23T18:00:00Z", time.Hour, "2026-11-24T10:00:00Z"},
		{"before opening", "2026-11-23T06:00:00Z", 30 * time.Minute, "2026-11-23T09:30:00Z"},
		{"24 business hours over christmas", "2026-12-23T10:00:00Z", 24 * time.Hour, "2026-12-29T10:00:00Z"},
		{"over new year", "2026-12-31T16:00:00Z", 2 * time.Hour, "2027-01-04T10:00:00Z"},
		{"zero", "2026-11-28T12:00:00Z", 0, "2026-11-28T12:00:00Z"},
		{"negative", "2026-11-28T12:00:00Z", -time.Hour, "2026-11-28T12:00:00Z"},
	}
	for _, tt := range addTests {
		got := cp.AddBusinessHours(utc(tt.from), tt.d)
		if !got.Equal(utc(tt.want)) {
			t.Errorf("%s: AddBusinessHours(%s, %s) = %s, want %s", tt.name, tt.from, tt.d, got.Format(time.RFC3339), tt.want)
		}
		if got.Location() != time.UTC {
			t.Errorf("%s: result location %s, want the input's", tt.name, got.Location())
		}
	}

	betweenTests := []struct {
		name string
		a, b string
		want time.Duration
	}{
		{"same day", "2026-11-25T10:00:00Z", "2026-11-25T12:30:00Z", 150 * time.Minute},
		{"outside hours", "2026-11-25T18:00:00Z", "2026-11-25T23:00:00Z", 0},
		{"over the weekend", "2026-11-27T16:00:00Z", "2026-11-30T10:00:00Z", 2 * time.Hour},
		{"a full week", "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z", 40 * time.Hour},
		{"over christmas", "2026-12-23T10:00:00Z", "2026-12-29T10:00:00Z", 24 * time.Hour},
		{"reversed is negative", "2026-11-30T10:00:00Z", "2026-11-27T16:00:00Z", -2 * time.Hour},
		{"equal", "2026-11-25T10:00:00Z", "2026-11-25T10:00:00Z", 0},
	}
	for _, tt := range betweenTests {
		if got := cp.BusinessHoursBetween(utc(tt.a), utc(tt.b)); got != tt.want {
			t.Errorf("%s: BusinessHoursBetween = %s, want %s", tt.name, got, tt.want)
		}
	}

	if !cp.IsBusinessTime(utc("2026-11-25T16:59:59Z")) || cp.IsBusinessTime(utc("2026-11-25T17:00:00Z")) ||
		cp.IsBusinessTime(utc("2026-12-25T10:00:00Z")) || cp.IsBusinessTime(utc("2026-11-28T10:00:00Z")) {
		t.Error("IsBusinessTime wrong")
	}
}

func TestBusinessHoursAcrossDST(t *testing.T) {
	p := DefaultPolicy()
	p.TimeZone = "Europe/Berlin"
	cp := mustCompile(t, p)
	// Friday 16:00 CET + 2h → Monday 10:00 CEST (DST started on Sunday).
	if got := cp.AddBusinessHours(utc("2026-03-27T15:00:00Z"), 2*time.Hour); !got.Equal(utc("2026-03-30T08:00:00Z")) {
		t.Errorf("AddBusinessHours across DST = %s", got.UTC().Format(time.RFC3339))
	}
	if got := cp.BusinessHoursBetween(utc("2026-03-27T15:00:00Z"), utc("2026-03-30T08:00:00Z")); got != 2*time.Hour {
		t.Errorf("BusinessHoursBetween across DST = %s", got)
	}

	// Every day, late hours: walking by 24 elapsed hours would skip or
	// repeat a day on a DST night; walking local dates does not.
	p.BusinessHours = BusinessHours{Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, Start: "23:00", End: "24:00"}
	cp = mustCompile(t, p)
	berlin := cp.Location()
	a := time.Date(2026, 3, 28, 0, 0, 0, 0, berlin)
	b := time.Date(2026, 3, 31, 0, 0, 0, 0, berlin)
	if got := cp.BusinessHoursBetween(a, b); got != 3*time.Hour {
		t.Errorf("late hours across spring DST = %s, want 3h", got)
	}
	a = time.Date(2026, 10, 24, 0, 0, 0, 0, berlin)
	b = time.Date(2026, 10, 27, 0, 0, 0, 0, berlin)
	if got := cp.BusinessHoursBetween(a, b); got != 3*time.Hour {
		t.Errorf("late hours across autumn DST = %s, want 3h", got)
	}
	if got, want := cp.AddBusinessHours(a, 3*time.Hour), time.Date(2026, 10, 27, 0, 0, 0, 0, berlin); !got.Equal(want) {
		t.Errorf("AddBusinessHours late hours = %s, want %s", got, want)
	}

	// Business time is elapsed time: the whole spring DST Sunday is 23 hours.
	p.BusinessHours = BusinessHours{Days: []string{"sun"}, Start: "00:00", End: "24:00"}
	cp = mustCompile(t, p)
	day := time.Date(2026, 3, 29, 0, 0, 0, 0, berlin)
	if got := cp.BusinessHoursBetween(day, day.AddDate(0, 0, 1)); got != 23*time.Hour {
		t.Errorf("the spring DST Sunday has %s of business time, want 23h (elapsed)", got)
	}
}

func TestZeroCompiledPolicyIsUsable(t *testing.T) {
	var cp CompiledPolicy
	if got := cp.AddBusinessHours(utc("2026-11-27T16:00:00Z"), 2*time.Hour); !got.Equal(utc("2026-11-30T10:00:00Z")) {
		t.Errorf("zero policy AddBusinessHours = %s", got)
	}
	if _, _, ok := cp.ActiveFreeze("production", wednesday); ok {
		t.Error("zero policy has a freeze")
	}
	if _, ok := cp.ResolveEnvironment("production"); ok {
		t.Error("zero policy resolves environments")
	}
	f := goodFacts()
	setChange(&f, "CHG1", func(c *Change) { c.PlannedStart = tp(wednesday.Add(time.Hour)) })
	if d := Evaluate(&cp, f, wednesday); d.Decision != Wait || !strings.Contains(d.Reasons[0].Message, "opens at 2026-11-25T11:00:00Z") {
		t.Errorf("zero policy evaluation: %+v", d)
	}
}

// TestCompiledPolicyConcurrentUse runs evaluations and calendar arithmetic
// from many goroutines (meaningful under -race: the policy is shared).
func TestCompiledPolicyConcurrentUse(t *testing.T) {
	p := testPolicy()
	p.BusinessHours.Holidays = []string{"2026-12-25"}
	cp := mustCompile(t, p)
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 200; i++ {
				at := wednesday.Add(time.Duration(i) * 7 * time.Hour)
				_ = Evaluate(cp, goodFacts(), at)
				_ = cp.AddBusinessHours(at, 24*time.Hour)
				_ = cp.BusinessHoursBetween(at, at.AddDate(0, 0, 10))
			}
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
}
