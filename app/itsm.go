package app

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/all"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/service"
)

// buildAPIs builds the API client of every connector with an api block
// and makes it the connector's enricher (references and approvals are
// completed for webhook and poll records alike).
func (a *App) buildAPIs(conns []service.Connector) error {
	a.APIs = map[string]all.API{}
	for i := range conns {
		cfg := conns[i].Config
		if cfg.API == nil || cfg.Type == "github" || cfg.Type == "gitlab" || cfg.Type == "jenkins" {
			continue // the CI connectors' api answers their gates (service.CIGates) or serves their pollers
		}
		name := cfg.Name
		circuit := a.Metrics.APICircuit.WithLabelValues(name)
		circuit.Set(0)
		c, err := all.NewAPI(cfg, connectors.APIHooks{
			Observe: func(outcome string) { a.Metrics.APIRequests.WithLabelValues(name, outcome).Inc() },
			OnCircuit: func(state string) {
				circuit.Set(map[string]float64{"closed": 0, "half-open": 1, "open": 2}[state])
			},
		}, a.Log.With("connector", name))
		if err != nil {
			return fmt.Errorf("connectors[%d] (%s): %w", i, name, err)
		}
		a.APIs[name] = c
		conns[i].Enricher = c
	}
	return nil
}

// wireITSM builds the pollers, the gate's read-back and change creation,
// and the write-back outbox of the connectors with an api block.
func (a *App) wireITSM(conns []service.Connector, clock core.Clock) {
	if len(a.APIs) == 0 {
		return
	}
	holder := a.replica.ID
	a.ReadBack = service.NewReadBack(a.Inbox, a.Log)
	a.Creator = service.NewCreator(a.DB, a.Log, a.Metrics)
	a.WriteBack = service.NewWriteBack(a.DB, clock, a.Log)
	a.WriteBack.FlagEmergencies(a.DB, a.Policies)
	for _, c := range conns {
		api, ok := a.APIs[c.Config.Name]
		if !ok {
			continue
		}
		cfg := c.Config
		if cfg.API.PollInterval > 0 {
			a.Pollers = append(a.Pollers, service.NewPoller(cfg.Name, api, a.DB, a.Inbox, cfg.API.PollInterval, holder, clock, a.Log, a.Metrics))
		}
		a.ReadBack.Add(api, cfg.API.ReadBackTimeout)
		if cfg.ChangeCreation != nil {
			a.Creator.Add(api, cfg.ChangeCreation)
		}
		if cfg.WriteBack {
			a.WriteBack.Add(api)
		}
	}
	itsm := service.ITSM{Reads: a.ReadBack}
	if a.Creator.Len() > 0 {
		itsm.Creates = a.Creator
	}
	a.Gate.ITSM = itsm
	if a.WriteBack.Len() > 0 {
		a.Deployments.OnRecorded = a.WriteBack.DeploymentRecorded
	} else {
		a.WriteBack = nil
	}
}

// readyDetails reports each ITSM API's circuit for /readyz.
func (a *App) readyDetails() map[string]any {
	if len(a.APIs) == 0 {
		return nil
	}
	circuits := map[string]string{}
	for name, c := range a.APIs {
		circuits[name] = c.Circuit()
	}
	return map[string]any{"api_circuits": circuits}
}

// wireCIRecovery brings back what the CIs' webhooks could not deliver
// while tollgate was away, as no CI sends a delivery again by itself:
// each GitHub connector with an App (and a redeliver_interval that is
// not 0s) gets a redeliverer (service.Redeliverer), each GitLab
// connector with projects and an api.poll_interval a poller of the
// projects' deployments (those waiting for approval, and those that ran
// since its watermark), each Jenkins connector with jobs and an
// api.poll_interval a poller of the jobs' builds.
func (a *App) wireCIRecovery(conns []service.Connector, clock core.Clock) {
	holder := a.replica.ID
	for _, c := range conns {
		api := c.Config.API
		if api == nil {
			continue
		}
		if dl, ok := c.Webhook.(redeliverable); ok && dl.RedeliversFailed() && api.RedeliverInterval > 0 {
			a.Redeliverers = append(a.Redeliverers, service.NewRedeliverer(c.Config.Name, dl, a.DB, api.RedeliverInterval, holder, clock, a.Log, a.Metrics))
		}
		if ps, ok := c.Webhook.(apiPoller); ok && ps.Polls() && api.PollInterval > 0 {
			a.Pollers = append(a.Pollers, service.NewPoller(c.Config.Name, ps, a.DB, a.Inbox, api.PollInterval, holder, clock, a.Log, a.Metrics))
		}
	}
}

// redeliverable is a webhook whose sender's delivery log tollgate can read
// (connectors/github with an App).
type redeliverable interface {
	service.DeliveryLog
	RedeliversFailed() bool
}

// apiPoller is a webhook whose CI lists what its hooks sent
// (connectors/gitlab with projects, connectors/jenkins with jobs).
type apiPoller interface {
	service.PollSource
	Polls() bool
}

// replicaID names this process for leases: host, pid and a random part.
func replicaID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
}
