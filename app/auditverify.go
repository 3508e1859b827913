package app

import (
	"context"
	"sync/atomic"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store"
)

// onlineReader is the store as the API and the UI read it, but for the
// audit chain's verification (GET /api/v1/audit/verify, the UI's audit
// page with ?verify=1). A verification walks the whole chain — minutes
// for tens of millions of rows, with a snapshot held open on PostgreSQL
// all along — so one runs at a time on a replica: another asked for
// meanwhile, by the same auditor or a token used to wear the database
// down, is refused (429 with Retry-After) instead of walking the chain
// again beside it. `tollgate audit verify`, offline, is not limited.
type onlineReader struct {
	*store.DB
	verify *oneVerification
}

func newOnlineReader(db *store.DB) onlineReader {
	return onlineReader{DB: db, verify: &oneVerification{run: db.VerifyAuditTo}}
}

// VerifyAudit verifies the chain unless a verification is already
// running on this replica.
func (r onlineReader) VerifyAudit(ctx context.Context) (*core.AuditBreak, int64, error) {
	return r.verify.do(ctx, core.AuditHead{})
}

// VerifyAuditTo is VerifyAudit held to a head kept outside (the API's
// ?expect_head=): every way of verifying goes through the one guard, or
// the store's own method, promoted from the embedded DB, would walk the
// chain unguarded.
func (r onlineReader) VerifyAuditTo(ctx context.Context, expect core.AuditHead) (*core.AuditBreak, int64, error) {
	return r.verify.do(ctx, expect)
}

// oneVerification runs one verification at a time.
type oneVerification struct {
	busy atomic.Bool
	run  func(context.Context, core.AuditHead) (*core.AuditBreak, int64, error)
}

func (o *oneVerification) do(ctx context.Context, expect core.AuditHead) (*core.AuditBreak, int64, error) {
	if !o.busy.CompareAndSwap(false, true) {
		return nil, 0, core.Errorf(core.KindRateLimited,
			"a verification of the audit chain is already running on this replica: ask again once it has ended (tollgate audit verify, offline, is not limited)")
	}
	defer o.busy.Store(false)
	return o.run(ctx, expect)
}
