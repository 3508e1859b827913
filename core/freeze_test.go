package core

import (
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func freezePolicy(freezes ...Freeze) Policy {
	p := DefaultPolicy()
	p.Freezes = freezes
	return p
}

func TestActiveFreezeAcrossDST(t *testing.T) {
	berlinFriday := Freeze{Name: "friday", TimeZone: "Europe/Berlin",
		Weekly: []WeeklyWindow{{Days: []string{"fri"}, Start: "08:00", End: "17:00"}}}
	nyFriday := Freeze{Name: "ny-friday", TimeZone: "America/New_York",
		Weekly: []WeeklyWindow{{Days: []string{"friday"}, Start: "08:00", End: "17:00"}}}
	// Saturday 22:00 to Sunday 04:00, crossing midnight and, on the last
	// weekend of March, the DST change (a 5-hour window that night).
	berlinNight := Freeze{Name: "night", TimeZone: "Europe/Berlin",
		Weekly: []WeeklyWindow{{Days: []string{"sat"}, Start: "22:00", End: "04:00"}}}
	nyDated := Freeze{Name: "ny-dated", TimeZone: "America/New_York",
		Dated: []DatedWindow{{From: "2026-03-07T12:00", To: "2026-03-09T12:00"}}}

	tests := []struct {
		name   string
		freeze Freeze
		at     string
		active bool
		until  string
	}{
		// Europe/Berlin: DST starts Sunday 2026-03-29, ends Sunday 2026-10-25.
		{"berlin CET friday before start", berlinFriday, "2026-03-27T06:59:59Z", false, ""},
		{"berlin CET friday at start", berlinFriday, "2026-03-27T07:00:00Z", true, "2026-03-27T16:00:00Z"},
		{"berlin CET friday last second", berlinFriday, "2026-03-27T15:59:59Z", true, "2026-03-27T16:00:00Z"},
		{"berlin CET friday at end", berlinFriday, "2026-03-27T16:00:00Z", false, ""},
		{"berlin CEST friday after DST starts, start", berlinFriday, "2026-04-03T06:00:00Z", true, "2026-04-03T15:00:00Z"},
		{"berlin CEST friday before start", berlinFriday, "2026-04-03T05:59:00Z", false, ""},
		{"berlin CEST friday at end", berlinFriday, "2026-04-03T15:00:00Z", false, ""},
		{"berlin CEST friday before DST ends", berlinFriday, "2026-10-23T06:00:00Z", true, "2026-10-23T15:00:00Z"},
		{"berlin CET friday after DST ends", berlinFriday, "2026-10-30T06:30:00Z", false, ""},
		{"berlin CET friday after DST ends, in", berlinFriday, "2026-10-30T07:00:00Z", true, "2026-10-30T16:00:00Z"},
		{"berlin thursday", berlinFriday, "2026-10-29T10:00:00Z", false, ""},
		// New York: DST starts Sunday 2026-03-08, ends Sunday 2026-11-01.
		{"ny EST friday", nyFriday, "2026-03-06T13:00:00Z", true, "2026-03-06T22:00:00Z"},
		{"ny EST friday before start", nyFriday, "2026-03-06T12:59:00Z", false, ""},
		{"ny EDT friday", nyFriday, "2026-03-13T12:00:00Z", true, "2026-03-13T21:00:00Z"},
		{"ny EDT friday at end", nyFriday, "2026-03-13T21:00:00Z", false, ""},
		{"ny EDT friday before DST ends", nyFriday, "2026-10-30T12:00:00Z", true, "2026-10-30T21:00:00Z"},
		{"ny EST friday after DST ends", nyFriday, "2026-11-06T12:30:00Z", false, ""},
		{"ny EST friday after DST ends, in", nyFriday, "2026-11-06T13:00:00Z", true, "2026-11-06T22:00:00Z"},
		// Crossing midnight.
		{"night saturday evening CET", berlinNight, "2026-03-28T21:00:00Z", true, "2026-03-29T02:00:00Z"},
		{"night after midnight on the DST night", berlinNight, "2026-03-29T01:59:59Z", true, "2026-03-29T02:00:00Z"},
		{"night ends at 04:00 CEST", berlinNight, "2026-03-29T02:00:00Z", false, ""},
		{"night on a normal weekend", berlinNight, "2026-04-05T01:00:00Z", true, "2026-04-05T02:00:00Z"},
		{"night does not start on sunday", berlinNight, "2026-04-05T21:00:00Z", false, ""},
		{"night on the fall-back night lasts 7 hours", berlinNight, "2026-10-25T02:59:00Z", true, "2026-10-25T03:00:00Z"},
		// Dated windows are local times in the zone.
		{"ny dated before", nyDated, "2026-03-07T16:59:00Z", false, ""},
		{"ny dated from (EST)", nyDated, "2026-03-07T17:00:00Z", true, "2026-03-09T16:00:00Z"},
		{"ny dated last second (EDT)", nyDated, "2026-03-09T15:59:59Z", true, "2026-03-09T16:00:00Z"},
		{"ny dated to", nyDated, "2026-03-09T16:00:00Z", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := mustCompile(t, freezePolicy(tt.freeze))
			name, until, ok := cp.ActiveFreeze("prod", utc(tt.at))
			if ok != tt.active {
				t.Fatalf("active = %v, want %v (until %v)", ok, tt.active, until)
			}
			if !ok {
				if name != "" || !until.IsZero() {
					t.Errorf("inactive freeze returned %q %v", name, until)
				}
				return
			}
			if name != tt.freeze.Name {
				t.Errorf("name = %q", name)
			}
			if !until.Equal(utc(tt.until)) {
				t.Errorf("until = %s, want %s", until.UTC().Format(time.RFC3339), tt.until)
			}
		})
	}
}

func TestActiveFreezeSkippedLocalTime(t *testing.T) {
	// 02:30 does not exist in Berlin on 2026-03-29: Go moves it forward by
	// the shift, to 03:30 CEST (01:30Z).
	cp := mustCompile(t, freezePolicy(Freeze{Name: "gap", TimeZone: "Europe/Berlin",
		Weekly: []WeeklyWindow{{Days: []string{"sun"}, Start: "02:30", End: "05:00"}}}))
	if _, _, ok := cp.ActiveFreeze("prod", utc("2026-03-29T01:29:00Z")); ok {
		t.Error("active before the shifted start")
	}
	if _, until, ok := cp.ActiveFreeze("prod", utc("2026-03-29T01:30:00Z")); !ok || !until.Equal(utc("2026-03-29T03:00:00Z")) {
		t.Errorf("at the shifted start: ok=%v until=%v", ok, until)
	}
}

func TestActiveFreezeScopeAndChaining(t *testing.T) {
	p := DefaultPolicy()
	p.TimeZone = "Europe/Berlin"
	p.Environments["staging"] = EnvironmentPolicy{Aliases: []string{"stage"}, Rules: []string{CodeFreeze}}
	p.Freezes = []Freeze{
		{Name: "friday", Weekly: []WeeklyWindow{{Days: []string{"fri"}, Start: "08:00", End: "17:00"}}},
		{Name: "friday-evening", Environments: []string{"production"}, Weekly: []WeeklyWindow{{Days: []string{"fri"}, Start: "16:00", End: "20:00"}}},
		{Name: "release-party", Environments: []string{"production"}, Dated: []DatedWindow{{From: "2026-11-27T20:00", To: "2026-11-28T02:00"}}},
		{Name: "staging-only", Environments: []string{"stage"}, Dated: []DatedWindow{{From: "2026-11-30", To: "2026-12-01"}}},
	}
	cp := mustCompile(t, p)
	fri := utc("2026-11-27T09:00:00Z") // 10:00 CET

	tests := []struct {
		env    string
		at     time.Time
		name   string
		until  string
		active bool
	}{
		// friday → friday-evening → release-party: deploys resume at 02:00 CET.
		{"production", fri, "friday", "2026-11-28T01:00:00Z", true},
		{"prod", utc("2026-11-27T18:30:00Z"), "friday-evening", "2026-11-28T01:00:00Z", true},
		// staging enables FREEZE, so the environment-less friday freeze covers
		// it, but not the production-only ones.
		{"stage", fri, "friday", "2026-11-27T16:00:00Z", true},
		{"staging", utc("2026-11-30T10:00:00Z"), "staging-only", "2026-11-30T23:00:00Z", true},
		{"production", utc("2026-11-30T10:00:00Z"), "", "", false},
		// development has no FREEZE rule; unknown environments have no freeze.
		{"dev", fri, "", "", false},
		{"qa", fri, "", "", false},
	}
	for _, tt := range tests {
		name, until, ok := cp.ActiveFreeze(tt.env, tt.at)
		if ok != tt.active || name != tt.name || (ok && !until.Equal(utc(tt.until))) {
			t.Errorf("ActiveFreeze(%s, %s) = %q, %s, %v; want %q, %s, %v", tt.env, tt.at.Format(time.RFC3339),
				name, until.UTC().Format(time.RFC3339), ok, tt.name, tt.until, tt.active)
		}
	}
}

func TestActiveFreezeEndlessChainTerminates(t *testing.T) {
	cp := mustCompile(t, freezePolicy(Freeze{Name: "always", Weekly: []WeeklyWindow{
		{Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, Start: "00:00", End: "24:00"}}}))
	at := utc("2026-11-27T09:00:00Z")
	name, until, ok := cp.ActiveFreeze("production", at)
	if !ok || name != "always" || until.Sub(at) < 300*24*time.Hour {
		t.Errorf("got %q %v %v", name, until, ok)
	}
}
