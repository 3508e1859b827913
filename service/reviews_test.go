package service

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// pirSignOffs records sign-offs; release "none" requires no review.
type pirSignOffs struct{ calls []core.PIR }

func (s *pirSignOffs) SignOffPIR(_ context.Context, releaseID, by, summary string, at time.Time) (core.PIR, error) {
	if releaseID == "none" {
		return core.PIR{}, core.NotFound("pir", releaseID)
	}
	p := core.PIR{ReleaseID: releaseID, Status: core.PIRSignedOff, SignedOffBy: by, SignedOffAt: &at, Summary: summary}
	s.calls = append(s.calls, p)
	return p, nil
}

func TestReviewsSignOff(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name, id, summary string
		kind              core.ErrorKind // "" for success
		field             string
	}{
		{"signed off now", "r1", "went fine", "", ""},
		{"no summary", "r1", "", "", ""},
		{"10,000 characters, multibyte", "r1", strings.Repeat("ü", MaxPIRSummary), "", ""},
		{"one character too many", "r1", strings.Repeat("a", MaxPIRSummary+1), core.KindInvalid, "summary"},
		{"NUL", "r1", "fine\x00", core.KindInvalid, "summary"},
		{"invalid UTF-8", "r1", "fine\xff", core.KindInvalid, "summary"},
		{"no release id", " ", "fine", core.KindInvalid, "id"},
		{"no review required", "none", "fine", core.KindNotFound, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := &pirSignOffs{}
			r := NewReviews(store, core.ClockFunc(func() time.Time { return now }))
			p, err := r.SignOff(context.Background(), tt.id, "carla", tt.summary)
			if tt.kind == "" {
				if err != nil || len(store.calls) != 1 || !p.SignedOffAt.Equal(now) || p.SignedOffBy != "carla" || p.Summary != tt.summary {
					t.Fatalf("got %+v, %v", p, err)
				}
				return
			}
			var ce *core.Error
			if !core.IsKind(err, tt.kind) || (tt.field != "" && (!asError(err, &ce) || ce.Field != tt.field)) {
				t.Fatalf("err %v, want %s on %q", err, tt.kind, tt.field)
			}
			if tt.kind == core.KindInvalid && len(store.calls) != 0 {
				t.Fatal("invalid input reached the store")
			}
		})
	}
}
