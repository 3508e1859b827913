package service

import (
	"context"
	"slices"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

// storedEnvs is an EnvironmentHistory; reads counts its calls.
type storedEnvs struct {
	names []string
	err   error
	reads *int
}

func (s storedEnvs) HistoryEnvironments(context.Context) ([]string, error) {
	*s.reads++
	return s.names, s.err
}

// TestHistoryEnvironment: a read of history takes the policy's names and
// aliases (without reading the history), then the names stored records
// carry, in any case, as stored; a listing also matches the stored names
// the policy now counts as aliases; a name neither knows is refused
// listing both.
func TestHistoryEnvironment(t *testing.T) {
	pol := core.DefaultPolicy() // production (also prod), staging, development, test
	cp, err := core.Compile(pol, 1)
	if err != nil {
		t.Fatal(err)
	}
	history := []string{"Prod-EU", "dev", "prod", "production", "qa-old"} // prod: production's name before a rename
	for _, tc := range []struct {
		name, in  string
		want      string
		also      []string
		reads     int    // history reads of HistoryEnvironment
		refusal   string // "": accepted
		noHistory bool
	}{
		{name: "empty", in: " ", want: ""},
		{name: "a policy name", in: "Staging", want: "staging"},
		{name: "an alias and its old records", in: "PROD", want: "production", also: []string{"prod"}},
		{name: "a dropped environment", in: "qa-old", want: "qa-old", reads: 1},
		{name: "in another case", in: "prod-eu", want: "Prod-EU", reads: 1},
		{name: "a typo", in: "prodution", reads: 1, refusal: `unknown environment "prodution"; the policy knows development, production, staging, test; the history also holds Prod-EU, qa-old`},
		{name: "no history kept", in: "qa-old", noHistory: true, refusal: `unknown environment "qa-old"; the policy knows development, production, staging, test`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reads := 0
			p := &Policies{}
			if !tc.noHistory {
				p.history = storedEnvs{names: history, reads: &reads}
			}
			got, err := p.HistoryEnvironment(context.Background(), cp, "environment", tc.in)
			if tc.refusal != "" {
				ce, ok := err.(*core.Error)
				if !ok || ce.Kind != core.KindInvalid || ce.Field != "environment" || ce.Message != tc.refusal {
					t.Fatalf("%q: %v, want refused: %s", tc.in, err, tc.refusal)
				}
				return
			}
			if err != nil || got != tc.want || reads != tc.reads {
				t.Fatalf("%q: %q %v after %d history reads, want %q after %d", tc.in, got, err, reads, tc.want, tc.reads)
			}
			env, also, err := p.HistoryEnvironments(context.Background(), cp, "environment", tc.in)
			if err != nil || env != tc.want || !slices.Equal(also, tc.also) {
				t.Fatalf("listing %q: %q %v %v, want %q %v", tc.in, env, also, err, tc.want, tc.also)
			}
		})
	}
	reads := 0
	p := &Policies{history: storedEnvs{err: core.Errorf(core.KindUnavailable, "database down"), reads: &reads}}
	if _, err := p.HistoryEnvironment(context.Background(), cp, "environment", "qa-old"); !core.IsKind(err, core.KindUnavailable) {
		t.Fatalf("history unreadable: %v, want the store's error, not a refusal", err)
	}
	if _, err := p.HistoryEnvironment(context.Background(), cp, "environment", "production"); err != nil || reads != 1 {
		t.Fatalf("a policy name with the history unreadable: %v (%d reads)", err, reads)
	}
}
