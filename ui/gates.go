package ui

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
)

// dashboardWaiting bounds the waiting gates the dashboard shows; the
// gates page lists them all.
const dashboardWaiting = 20

// waitingRow is a gate waiting now, with its release: a long-polled check
// or a CI's request at its own gate (Kind and State as /gate/pending).
type waitingRow struct {
	Kind      string // check, protection_rule, approval
	Provider  string
	Connector string
	State     string
	RunURL    string
	Request   core.GateRequest
	ReleaseID string
	Since     time.Time
	Deadline  time.Time
	Reasons   []core.Reason
	Attempts  int
	LastError string
}

// pendingCounts are the waiting gates of every page by state.
type pendingCounts struct {
	Total, Waiting, Answering, Failed, Unknown int
}

func countsOf(by map[string]int) pendingCounts {
	c := pendingCounts{Waiting: by[core.PendingWaiting], Answering: by[core.PendingAnswering],
		Failed: by[core.PendingFailed], Unknown: by[core.PendingUnknown]}
	c.Total = c.Waiting + c.Answering + c.Failed + c.Unknown
	return c
}

func waitingRows(items []service.PendingItem) []waitingRow {
	rows := make([]waitingRow, 0, len(items))
	for _, it := range items {
		var r waitingRow
		if p := it.Gate; p != nil {
			r = waitingRow{Kind: p.Kind(), Provider: p.Provider, Connector: p.Connector, State: p.State, RunURL: p.RunURL,
				Request: p.Request, Since: p.CreatedAt, Deadline: p.Deadline, Reasons: p.Reasons, Attempts: p.Attempts, LastError: p.LastError}
		} else {
			w := it.Check
			r = waitingRow{Kind: core.PendingKindCheck, Provider: "api", State: core.PendingWaiting, Request: w.Request,
				Since: w.Since, Deadline: w.Deadline, Reasons: w.Reasons()}
			if p := w.Request.Pipeline; p != nil && p.Provider != "" {
				r.Provider = p.Provider
			}
		}
		r.ReleaseID = core.ReleaseID(r.Request.Service, r.Request.Version, r.Request.Environment)
		rows = append(rows, r)
	}
	return rows
}

// dashboardGates fills the dashboard's waiting gates: the oldest
// dashboardWaiting, and the counts that say how many more there are (and
// how many answers failed, whatever the page shows).
func (u *UI) dashboardGates(ctx context.Context, v *dashboardView) error {
	if u.deps.Pending == nil {
		return nil
	}
	l, err := u.deps.Pending.List(ctx, service.PendingQuery{Limit: dashboardWaiting})
	if err != nil {
		return err
	}
	v.Waiting, v.WaitingCounts, v.WaitingMore = waitingRows(l.Items), countsOf(l.Counts), l.Next != ""
	return nil
}

// gatesFilter is the gates page's filters as given.
type gatesFilter struct {
	State, Kind, Provider, Connector, Service, Environment string
}

func (f gatesFilter) query(after string) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"state": f.State, "kind": f.Kind, "provider": f.Provider, "connector": f.Connector,
		"service": f.Service, "environment": f.Environment, "after": after} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

// StateQuery is the query string of these filters with state instead.
func (f gatesFilter) StateQuery(state string) string {
	f.State = state
	return f.query("").Encode()
}

type gatesView struct {
	Filter gatesFilter
	Items  []waitingRow
	Counts pendingCounts
	Next   string // query string of the next page, when there is one
}

// gates lists the waiting gates a page at a time, with the filters of
// GET /api/v1/gate/pending.
func (u *UI) gates(c *echo.Context, s *session) error {
	f := gatesFilter{State: c.QueryParam("state"), Kind: c.QueryParam("kind"), Provider: strings.TrimSpace(c.QueryParam("provider")),
		Connector: strings.TrimSpace(c.QueryParam("connector")), Service: strings.TrimSpace(c.QueryParam("service")),
		Environment: strings.TrimSpace(c.QueryParam("environment"))}
	v := gatesView{Filter: f}
	if u.deps.Pending != nil {
		q := service.PendingQuery{Kind: f.Kind, Provider: f.Provider, Connector: f.Connector, Service: f.Service,
			Environment: f.Environment, Limit: pageSize, After: c.QueryParam("after")}
		if f.State != "" {
			q.States = []string{f.State}
		}
		l, err := u.deps.Pending.List(c.Request().Context(), q)
		if err != nil {
			return err
		}
		v.Items, v.Counts = waitingRows(l.Items), countsOf(l.Counts)
		if l.Next != "" {
			v.Next = f.query(l.Next).Encode()
		}
	}
	return u.render(c, s, http.StatusOK, "gates", "Waiting gates", v)
}
