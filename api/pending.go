package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
)

// PendingLister lists the gates waiting now (service.WaitingGates).
type PendingLister interface {
	List(ctx context.Context, q service.PendingQuery) (service.PendingListing, error)
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

// pendingPage is GET /api/v1/gate/pending's answer.
type pendingPage struct {
	Items  []pendingItem  `json:"items"`
	Next   string         `json:"next,omitempty"`
	Counts map[string]int `json:"counts"`
}

// gatePending lists the waiting gates a page at a time: the stored CI gate
// requests (GitHub protection rules, GitLab approvals; those whose answer
// could not be delivered are listed as failed, those whose delivery could
// not be told as unknown) and this replica's long-polled checks. The page
// is as large as the whole list was before it paged (1000), so a client
// that never pages still gets what it got, and now learns of the rest.
func (s *Server) gatePending(c *echo.Context) error {
	limit, err := queryLimitOr(c, service.MaxPendingPage)
	if err != nil {
		return err
	}
	q := service.PendingQuery{States: c.QueryParams()["state"], Kind: c.QueryParam("kind"), Provider: c.QueryParam("provider"),
		Connector: c.QueryParam("connector"), Service: c.QueryParam("service"), Environment: c.QueryParam("environment"),
		Limit: limit, After: c.QueryParam("after")}
	l, err := s.deps.Pending.List(c.Request().Context(), q)
	if err != nil {
		return err
	}
	out := pendingPage{Items: make([]pendingItem, 0, len(l.Items)), Next: l.Next, Counts: l.Counts}
	for _, it := range l.Items {
		if it.Gate != nil {
			out.Items = append(out.Items, storedItem(*it.Gate))
		} else {
			out.Items = append(out.Items, checkItem(it.Check))
		}
	}
	return c.JSON(http.StatusOK, out)
}

func storedItem(p core.PendingGate) pendingItem {
	it := pendingItem{Kind: p.Kind(), ID: p.ID, Provider: p.Provider, Connector: p.Connector, State: p.State,
		RunURL: p.RunURL, Service: p.Request.Service, Environment: p.Request.Environment, Version: p.Request.Version,
		Commit: p.Request.Commit, Changes: nonNil(p.Request.Changes), Reasons: p.Reasons, Decision: p.Decision,
		DecisionID: p.DecisionID, Since: p.CreatedAt, Deadline: p.Deadline, Attempts: p.Attempts, LastError: p.LastError}
	if p.Request.Pipeline != nil {
		it.RunID = p.Request.Pipeline.RunID
	}
	if p.State != core.PendingFailed && p.State != core.PendingUnknown {
		next := p.NextCheckAt
		it.NextCheckAt = &next
	}
	return it
}

func checkItem(w *service.WaitingCheck) pendingItem {
	r := w.Request
	it := pendingItem{Kind: core.PendingKindCheck, Provider: "api", State: core.PendingWaiting, Service: r.Service,
		Environment: r.Environment, Version: r.Version, Commit: r.Commit, Changes: nonNil(r.Changes),
		Reasons: w.Reasons(), Since: w.Since, Deadline: w.Deadline}
	if p := r.Pipeline; p != nil {
		if p.Provider != "" {
			it.Provider = p.Provider
		}
		it.RunID, it.RunURL = p.RunID, p.URL
	}
	return it
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
