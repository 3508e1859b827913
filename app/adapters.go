package app

import (
	"github.com/tollgate-dev/tollgate/api"
	"github.com/tollgate-dev/tollgate/service"
	"github.com/tollgate-dev/tollgate/store"
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
	_ api.Reader              = (*store.DB)(nil)
)
