package app

import (
	"github.com/tollgate-dev/tollgate/api"
	"github.com/tollgate-dev/tollgate/connectors/github"
	"github.com/tollgate-dev/tollgate/connectors/gitlab"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
	"github.com/tollgate-dev/tollgate/ui"
)

// The store is the adapter behind every interface its consumers declare:
// checked here, where they are wired together, so a consumer's interface
// and the store cannot drift apart unnoticed.
var (
	_ service.GateStore       = (*store.DB)(nil)
	_ service.Subscriber      = (*store.DB)(nil)
	_ service.DeploymentStore = (*store.DB)(nil)
	_ service.PIRStore        = (*store.DB)(nil)
	_ service.PolicyStore     = (*store.DB)(nil)
	_ service.TokenStore      = (*store.DB)(nil)
	_ service.MappingStore    = (*store.DB)(nil)
	_ service.InboxStore      = (*store.DB)(nil)
	_ service.PendingStore    = (*store.DB)(nil)
	_ api.Reader              = onlineReader{}
	_ ui.Reader               = onlineReader{}
	_ ui.Sessions             = (*store.DB)(nil)
)

// The CI connectors that answer a gate: the worker finds their optional
// read-back by a type assertion, so a renamed method would silently turn
// it off; these keep it on.
var (
	_ service.Answerer       = (*github.Webhook)(nil)
	_ service.AnswerChecker  = (*github.Webhook)(nil)
	_ service.AnswerPreparer = (*github.Webhook)(nil)
	_ service.Answerer       = (*gitlab.Webhook)(nil)
	_ service.AnswerChecker  = (*gitlab.Webhook)(nil)
)
