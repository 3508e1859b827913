package app

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate-dev/tollgate/api"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
)

// wireAudit builds what makes the audit evidence provable outside the
// database: the key evidence bundles are signed with (and the previous
// keys served beside it) and the anchorer of the chain's head. What the
// configuration leaves unproved is logged at start as information: it is
// a standing choice, not an event, and the scheduled doctor run warns of
// it (tollgate_doctor_findings), as config validate and the doctor do.
func (a *App) wireAudit(ctx context.Context) (api.EvidenceKeys, error) {
	ev := a.Config.Evidence
	key, err := ev.SigningKey()
	if err != nil {
		return api.EvidenceKeys{}, fmt.Errorf("evidence.signing_key_file: %w", err)
	}
	prev, err := ev.PreviousKeys()
	if err != nil {
		return api.EvidenceKeys{}, fmt.Errorf("evidence.previous_public_key_files: %w", err)
	}
	if key != nil {
		a.Log.InfoContext(ctx, "evidence bundles are signed", "key_fingerprint", key.Public.Fingerprint, "previous_keys", len(prev))
	}
	for _, f := range a.Config.AuditFindings() {
		if f.Status != connectors.StatusOK {
			a.Log.InfoContext(ctx, "configuration: "+f.Detail, "check", f.Check)
		}
	}
	if c := a.Config.Audit.Anchor; c.Enabled() {
		a.Anchorer = service.NewAnchorer(a.DB, service.AnchorConfig{File: c.File, URL: c.URL, Headers: c.Headers, Interval: c.Every()}, a.replica.ID, a.Log)
		a.Anchorer.OnWrite = func(target, outcome string) {
			a.Metrics.AnchorWrites.WithLabelValues(target, outcome).Inc()
			if outcome == "ok" {
				a.Metrics.AnchorLastWrite.Set(float64(time.Now().Unix()))
			}
		}
		a.Anchorer.OnCompare = func(brk *core.AuditBreak) {
			v := 0.0
			if brk != nil {
				v = 1
			}
			a.Metrics.AnchorMismatch.Set(v)
		}
	}
	return api.EvidenceKeys{Signing: key, Previous: prev}, nil
}
