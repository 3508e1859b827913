package api

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
)

// PendingLister lists the stored gate requests CIs wait on.
type PendingLister interface {
	List(ctx context.Context) ([]core.PendingGate, error)
}

// pendingItem is one waiting gate in GET /api/v1/gate/pending.
type pendingItem struct {
	Kind        string        `json:"kind"` // protection_rule, approval, check
	ID          string        `json:"id,omitempty"`
	Provider    string        `json:"provider"`
	Connector   string        `json:"connector,omitempty"`
	State       string        `json:"state"`
	RunURL      string        `json:"run_url,omitempty"`
	RunID       string        `json:"run_id,omitempty"`
	Service     string        `json:"service"`
	Environment string        `json:"environment"`
	Version     string        `json:"version"`
	Commit      string        `json:"commit,omitempty"`
	Changes     []string      `json:"changes"`
	Reasons     []core.Reason `json:"reasons"`
	Decision    core.Decision `json:"decision,omitempty"`
	DecisionID  string        `json:"decision_id,omitempty"`
	Since       time.Time     `json:"since"`
	Deadline    time.Time     `json:"deadline"`
	NextCheckAt *time.Time    `json:"next_check_at,omitempty"`
	Attempts    int           `json:"attempts,omitempty"`
	LastError   string        `json:"last_error,omitempty"`
}

// gatePending lists every waiting gate: the stored CI gate requests
// (GitHub protection rules, GitLab approvals; those whose answer could not
// be delivered are listed as failed, those whose delivery could not be
// told as unknown) and this replica's long-polled checks.
func (s *Server) gatePending(c *echo.Context) error {
	items := []pendingItem{}
	if s.deps.CIGates != nil {
		list, err := s.deps.CIGates.List(c.Request().Context())
		if err != nil {
			return err
		}
		for _, p := range list {
			kind := "protection_rule"
			if p.Provider == "gitlab" {
				kind = "approval"
			}
			next := p.NextCheckAt
			it := pendingItem{Kind: kind, ID: p.ID, Provider: p.Provider, Connector: p.Connector, State: p.State,
				RunURL: p.RunURL, Service: p.Request.Service, Environment: p.Request.Environment, Version: p.Request.Version,
				Commit: p.Request.Commit, Changes: nonNil(p.Request.Changes), Reasons: p.Reasons, Decision: p.Decision,
				DecisionID: p.DecisionID, Since: p.CreatedAt, Deadline: p.Deadline, Attempts: p.Attempts, LastError: p.LastError}
			if p.Request.Pipeline != nil {
				it.RunID = p.Request.Pipeline.RunID
			}
			if p.State != core.PendingFailed && p.State != core.PendingUnknown {
				it.NextCheckAt = &next
			}
			items = append(items, it)
		}
	}
	for _, w := range s.deps.Gate.Waiting() {
		r := w.Request
		it := pendingItem{Kind: "check", Provider: "api", State: core.PendingWaiting, Service: r.Service,
			Environment: r.Environment, Version: r.Version, Commit: r.Commit, Changes: nonNil(r.Changes),
			Reasons: w.Reasons(), Since: w.Since, Deadline: w.Deadline}
		if p := r.Pipeline; p != nil {
			if p.Provider != "" {
				it.Provider = p.Provider
			}
			it.RunID, it.RunURL = p.RunID, p.URL
		}
		items = append(items, it)
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].Since.Before(items[j].Since) })
	return c.JSON(http.StatusOK, map[string]any{"items": items})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
