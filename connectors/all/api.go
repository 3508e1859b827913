package all

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/connectors/jira"
	"github.com/tollgate-dev/tollgate/connectors/servicenow"
)

// API is an ITSM connector's API client (ServiceNow, Jira), everything
// the services ask of it.
type API interface {
	Name() string
	// System names the instance in messages ("ServiceNow acme").
	System() string
	OwnsChange(key string) bool
	Enrich(ctx context.Context, eventType string, body []byte) ([]byte, error)
	Poll(ctx context.Context, since time.Time, emit func(connectors.Record) error) error
	ReadChange(ctx context.Context, key string) (connectors.Record, error)
	CreateChange(ctx context.Context, n connectors.NewChange) (string, error)
	FindCreated(ctx context.Context, releaseID string) (string, error)
	AddWorkNote(ctx context.Context, key, text string) error
	// HasWorkNote reports whether the change already carries the note
	// (the outbox looks before writing one again).
	HasWorkNote(ctx context.Context, key, text string) (bool, error)
	// Circuit is the state of its circuit breaker: closed, half-open, open.
	Circuit() string
	// CloseIdleConnections closes the connections kept for the next call.
	CloseIdleConnections()
}

var (
	_ API = (*servicenow.Client)(nil)
	_ API = (*jira.Client)(nil)
)

// NewAPI builds the API client of a connector with an api block, on its
// own outbound client (retries, timeout, circuit).
func NewAPI(cfg connectors.Config, hooks connectors.APIHooks, log *slog.Logger) (API, error) {
	if cfg.API == nil {
		return nil, fmt.Errorf("connector %s has no api block", cfg.Name)
	}
	o := apiclient.Options{
		Instance: cfg.Name, Timeout: cfg.API.Timeout, Observe: hooks.Observe, OnState: hooks.OnCircuit, Logger: log,
	}
	if r := hooks.Retry; r != nil {
		o.RetryMax, o.RetryWaitMin, o.RetryWaitMax, o.MaxRetryAfter = r.Max, r.WaitMin, r.WaitMax, r.MaxRetryAfter
		o.FailuresToOpen, o.OpenFor = r.FailuresToOpen, r.OpenFor
	}
	hc := apiclient.New(o)
	switch cfg.Type {
	case servicenow.Type:
		return servicenow.NewClient(cfg, hc, log)
	case jira.Type:
		return jira.NewClient(cfg, hc, log)
	}
	return nil, fmt.Errorf("connector %s: type %s has no API client", cfg.Name, cfg.Type)
}
