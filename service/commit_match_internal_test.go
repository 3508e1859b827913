package service

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
)

const fullSHA = "abc123d4e5f60718293a4b5c6d7e8f9012345678"

// TestReleaseMismatchAbbreviatedCommit: a deployment naming, as its
// decision_id, the allow of a gate check that named its commit in full
// keeps it when it reports the commit abbreviated (and the other way
// round), as the reconciler and the gate compare commits; another commit
// is still a mismatch.
func TestReleaseMismatchAbbreviatedCommit(t *testing.T) {
	req := core.GateRequest{Service: "payments-api", Environment: "production", Version: "1.2.3", Commit: fullSHA}
	dep := core.Deployment{Service: "payments-api", Environment: "production", Version: "1.2.3"}
	for _, tc := range []struct{ decision, deployed, want string }{
		{fullSHA, fullSHA[:7], ""},
		{fullSHA[:7], fullSHA, ""},
		{fullSHA, "ABC123D", ""},
		{fullSHA, "abc123e", "commit"},
		{fullSHA, "abc12", "commit"}, // shorter than git's short hash: not taken for it
	} {
		r, d := req, dep
		r.Commit, d.Commit = tc.decision, tc.deployed
		if got := releaseMismatch(r, d); got != tc.want {
			t.Errorf("decision commit %q, deployed %q: mismatch %q, want %q", tc.decision, tc.deployed, got, tc.want)
		}
	}
}

// TestInheritGateAbbreviatedCommit: a deployment the CI reports after its
// gate released it takes the gate request's decision when it names the
// request's commit abbreviated; not when it names another.
func TestInheritGateAbbreviatedCommit(t *testing.T) {
	for _, tc := range []struct {
		commit string
		want   string
	}{{fullSHA[:7], "d1"}, {fullSHA, "d1"}, {"fff9990", ""}} {
		in, conn := releasedDeployment900001(t)
		d := core.Deployment{Service: "payments", Environment: "production", Commit: tc.commit, RunID: "900001", StartedAt: time.Now()}
		in.inheritGate(context.Background(), conn, &d)
		if d.DecisionID != tc.want {
			t.Errorf("deployment of commit %q: decision %q, want %q", tc.commit, d.DecisionID, tc.want)
		}
	}
}

// TestInheritGateByCIDeploymentID: a deployment reported under its run id
// finds the request that held it by the CI's deployment id
// (CIDeploymentID); one naming no CI deployment id is looked up by its run
// id, as custom profiles keyed by the deployment id are.
func TestInheritGateByCIDeploymentID(t *testing.T) {
	for _, tc := range []struct {
		name, run, ciDeployment, want string
	}{
		{"run id and deployment id", "7200001", "900001", "d1"},
		{"deployment id as run id", "900001", "", "d1"},
		{"run id alone", "7200001", "", ""},
		{"another deployment of the run", "7200001", "900002", ""},
	} {
		in, conn := releasedDeployment900001(t)
		d := core.Deployment{Service: "payments", Environment: "production", Commit: fullSHA, RunID: tc.run, CIDeploymentID: tc.ciDeployment, StartedAt: time.Now()}
		in.inheritGate(context.Background(), conn, &d)
		if d.DecisionID != tc.want {
			t.Errorf("%s: decision %q, want %q", tc.name, d.DecisionID, tc.want)
		}
	}
}

// releasedDeployment900001 is an Inbox whose GitHub connector's gate
// allowed (decision d1) GitHub deployment 900001 of commit fullSHA.
func releasedDeployment900001(t *testing.T) (*Inbox, Connector) {
	st := &memPending{items: map[string]core.PendingGate{}}
	conns := []Connector{{Config: connectors.Config{Name: "github", Type: "github", CIGate: &connectors.CIGate{Deadline: time.Hour}}, Webhook: &flakyAnswerer{}}}
	gate := newTestGate(t, &fakeGateStore{change: approvedAround(time.Now())}, nil)
	g := NewCIGates(st, gate, nil, conns, core.SystemClock, slog.New(slog.NewTextHandler(io.Discard, nil)), CIGatesConfig{})
	req := checkReq
	req.Commit = fullSHA
	st.items["p1"] = core.PendingGate{ID: "p1", Connector: "github", Provider: "github", ExternalID: "deployment:900001",
		State: core.PendingAnswered, Request: req, Decision: core.Allow, DecisionID: "d1"}
	return &Inbox{gates: g}, conns[0]
}
