// Package pgconn is how every PostgreSQL pool of tollgate's connects: one
// place that parses the database URL into lib/pq's configuration and sets
// the session defaults tollgate's queries are written for.
//
// The one default today is jit=off. tollgate's statements are short
// lookups and writes, and its reports scan in pages; PostgreSQL's JIT
// compiles a statement whose estimated cost passes jit_above_cost on every
// execution, which for these statements costs tens to hundreds of
// milliseconds of CPU and returns nothing (the release metrics, an hourly
// job, took several times as long with it on, and starved the gate on the
// same cores while they ran). A URL that names jit (…?jit=on) keeps its
// own setting.
package pgconn

import (
	"database/sql"
	"fmt"

	"github.com/lib/pq"
)

// Defaults are the run-time parameters set on every session unless the URL
// sets them.
var defaults = map[string]string{"jit": "off"}

// Config parses url (postgres://…, postgresql://… or a key=value string)
// with the session defaults added; application names the connections in
// pg_stat_activity unless the URL names them ("" leaves lib/pq's default).
func Config(url, application string) (pq.Config, error) {
	cfg, err := pq.NewConfig(url)
	if err != nil {
		return pq.Config{}, fmt.Errorf("open postgres: %w", err)
	}
	if cfg.Runtime == nil {
		cfg.Runtime = map[string]string{}
	}
	for k, v := range defaults {
		if _, set := cfg.Runtime[k]; !set {
			cfg.Runtime[k] = v
		}
	}
	if application != "" && cfg.ApplicationName == "" {
		cfg.ApplicationName = application
	}
	return cfg, nil
}

// Open returns a pool connecting with cfg.
func Open(cfg pq.Config) (*sql.DB, error) {
	conn, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return sql.OpenDB(conn), nil
}
