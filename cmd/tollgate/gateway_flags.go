package main

import (
	"github.com/spf13/pflag"
)

// gatewayFlags are the gateway's address and the caller's token, shared by
// the commands that call a running gateway (check, reconcile, attest).
type gatewayFlags struct {
	url, token string
}

// bind adds --url and --token; role names the token's role in the help.
func (g *gatewayFlags) bind(f *pflag.FlagSet, role string) {
	f.StringVar(&g.url, "url", "", "gateway base URL (env TOLLGATE_URL)")
	f.StringVar(&g.token, "token", "", "API token with role "+role+" (env TOLLGATE_TOKEN)")
}

// fromEnv fills what the flags left empty from TOLLGATE_URL and
// TOLLGATE_TOKEN.
func (g *gatewayFlags) fromEnv(getenv func(string) string) {
	if g.url == "" {
		g.url = getenv("TOLLGATE_URL")
	}
	if g.token == "" {
		g.token = getenv("TOLLGATE_TOKEN")
	}
}
