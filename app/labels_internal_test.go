package app

import (
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

// TestEnvironmentLabelIsBounded: with a "*" catch-all any environment name
// passes the gate, but only the policy's own names become metrics labels.
func TestEnvironmentLabelIsBounded(t *testing.T) {
	p := core.DefaultPolicy()
	p.Environments[core.CatchAllEnvironment] = core.EnvironmentPolicy{Preset: core.PresetOpen}
	cp, err := core.Compile(p, 1)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{"production": "production", "PROD": "production", "moon-42": "other", "": "other"} {
		if got := environmentLabel(cp, in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
	if got := environmentLabel(nil, "production"); got != "other" {
		t.Errorf("no policy: %q", got)
	}
}
