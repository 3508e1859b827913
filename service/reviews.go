package service

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tollgate-dev/tollgate/core"
)

// MaxPIRSummary is the longest post-implementation review summary, in
// characters.
const MaxPIRSummary = 10000

// PIRStore is what Reviews needs from storage.
type PIRStore interface {
	// SignOffPIR marks the release's review signed off by by at at, with
	// summary, in the audit chain; KindNotFound when the release requires
	// no review.
	SignOffPIR(ctx context.Context, releaseID, by, summary string, at time.Time) (core.PIR, error)
}

// Reviews signs off post-implementation reviews, the writes change
// managers make through the API.
type Reviews struct {
	store PIRStore
	clock core.Clock
}

// NewReviews wires the service.
func NewReviews(store PIRStore, clock core.Clock) *Reviews {
	return &Reviews{store: store, clock: clock}
}

// SignOff signs off the review of release releaseID now. The summary is
// optional, at most MaxPIRSummary characters of valid UTF-8 without NUL
// (KindInvalid otherwise); a release without a required review is
// KindNotFound.
func (r *Reviews) SignOff(ctx context.Context, releaseID, by, summary string) (core.PIR, error) {
	releaseID = strings.TrimSpace(releaseID)
	if releaseID == "" {
		return core.PIR{}, core.Invalid("id", "a release id is required")
	}
	switch {
	case !utf8.ValidString(summary) || strings.ContainsRune(summary, 0):
		return core.PIR{}, core.Invalid("summary", "must be text (valid UTF-8, no NUL characters)")
	case utf8.RuneCountInString(summary) > MaxPIRSummary:
		return core.PIR{}, core.Invalid("summary", "is longer than %d characters", MaxPIRSummary)
	}
	p, err := r.store.SignOffPIR(ctx, releaseID, by, summary, r.clock.Now())
	if err != nil {
		return core.PIR{}, fmt.Errorf("sign off the review of release %s: %w", releaseID, err)
	}
	return p, nil
}
