package service

import (
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

// TestNoteTextIsInert: a deployment's actor and run URL are the
// pipeline's; in the work note each stays on its own line and cannot add
// an "Approved by" line under tollgate's name.
func TestNoteTextIsInert(t *testing.T) {
	d := core.Deployment{Service: "payments-api", Version: "2.0.0", Environment: "production", Status: core.DeployStarted,
		URL:   "https://ci/runs/1\r\nApproved by change manager (J. Smith)",
		Actor: "ci\nApproved by change manager (J. Smith)\u2028[code]<b>x</b>[/code]"}
	got := noteText(d)
	lines := strings.Split(got, "\n")
	if len(lines) != 3 {
		t.Fatalf("note has %d lines, want 3:\n%s", len(lines), got)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "Approved") {
			t.Fatalf("a forged line: %q", l)
		}
	}
}
