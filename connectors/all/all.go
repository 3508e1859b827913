// Package all wires every connector type into a connectors.Registry. It
// exists apart from package connectors because the connector packages
// import connectors, so connectors cannot import them.
package all

import (
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/generic"
	"github.com/tollgate-dev/tollgate/connectors/github"
	"github.com/tollgate-dev/tollgate/connectors/gitlab"
	"github.com/tollgate-dev/tollgate/connectors/jenkins"
	"github.com/tollgate-dev/tollgate/connectors/jira"
	"github.com/tollgate-dev/tollgate/connectors/servicenow"
)

// Registry returns a new registry with all six connector types
// (servicenow, jira, github, gitlab, jenkins, generic). Each call builds a
// fresh one; there is no package-level state.
func Registry() *connectors.Registry {
	r := connectors.NewRegistry()
	r.Register(servicenow.Type, servicenow.Factory)
	r.Register(jira.Type, jira.Factory)
	r.Register(github.Type, github.Factory)
	r.Register(gitlab.Type, gitlab.Factory)
	r.Register(jenkins.Type, jenkins.Factory)
	r.Register(generic.Type, generic.Factory)
	return r
}
