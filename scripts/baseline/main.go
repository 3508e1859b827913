// Command baseline is the gate's yardstick in scripts/paths.sh: an echo
// server whose POST /api/v1/gate/check reads the JSON body and does one
// durable INSERT of a decision-sized row (the id, a release id, the
// decision, the time, the actor and a ~4.6 KB JSON document, as in
// gate_decisions) on a lib/pq pool of tollgate's default size, then
// answers {"decision":"allow"}. No policy, no facts, no audit chain: what
// any handler writing one durable row per request costs on this machine.
// The gate's figures are read against it (docs/benchmarks.md).
//
// It also prepares the webhook ingest's pgbench baseline (-pgbench-setup):
// a table shaped like inbox_events and the fixture bodies to insert.
//
// It listens on a loopback address only and creates its tables in -db.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v5"
	_ "github.com/lib/pq"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback only)")
	dsn := flag.String("db", "", "PostgreSQL URL (the tables baseline_decisions, baseline_inbox and baseline_bodies are created there)")
	pool := flag.Int("pool", 20, "connections in the pool (tollgate's default)")
	setup := flag.String("pgbench-setup", "", "create baseline_inbox and baseline_bodies from these comma-separated payload files, print the pgbench script's path and exit")
	flag.Parse()
	if err := run(*addr, *dsn, *pool, *setup); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run(addr, dsn string, pool int, setup string) error {
	if dsn == "" {
		return errors.New("-db is required")
	}
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(pool)
	db.SetMaxIdleConns(pool)
	ctx := context.Background()
	if setup != "" {
		return pgbenchSetup(ctx, db, setup)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		return fmt.Errorf("-addr %s: loopback only", addr)
	}
	e, err := newHandler(ctx, db)
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
	return srv.Serve(ln)
}

// newHandler creates baseline_decisions and returns the echo server whose
// POST /api/v1/gate/check inserts one row per request.
func newHandler(ctx context.Context, db *sqlx.DB) (*echo.Echo, error) {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS baseline_decisions (
		id text PRIMARY KEY, release_id text NOT NULL, decision text NOT NULL,
		policy_version integer NOT NULL, evaluated_at timestamptz NOT NULL, actor text NOT NULL, doc text NOT NULL)`); err != nil {
		return nil, fmt.Errorf("create baseline_decisions: %w", err)
	}
	ins, err := db.PreparexContext(ctx, `INSERT INTO baseline_decisions (id, release_id, decision, policy_version, evaluated_at, actor, doc)
		VALUES ($1, $2, 'allow', 1, $3, $4, $5)`)
	if err != nil {
		return nil, err
	}
	e := echo.New()
	e.POST("/api/v1/gate/check", func(c *echo.Context) error {
		body, err := io.ReadAll(io.LimitReader(c.Request().Body, 1<<20))
		if err != nil {
			return err
		}
		var req struct {
			Service, Version, Actor string
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return c.JSON(http.StatusBadRequest, map[string]string{"message": err.Error()})
		}
		id := newID()
		if _, err := ins.ExecContext(c.Request().Context(), id, req.Service+"@"+req.Version, time.Now().UTC(), req.Actor, decisionDoc(body)); err != nil {
			return c.JSON(http.StatusServiceUnavailable, map[string]string{"message": err.Error()})
		}
		return c.JSON(http.StatusOK, map[string]string{"id": id, "decision": "allow"})
	})
	return e, nil
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// decisionDoc is a document the size and make of a stored decision
// (~4.6 KB: the request, reasons and the facts), random enough not to
// compress better than a real one.
func decisionDoc(req []byte) string {
	facts := make([]map[string]string, 12)
	for i := range facts {
		facts[i] = map[string]string{"key": newID(), "state": "scheduled", "approval": "approved",
			"title": "Routine change " + newID(), "window": time.Now().UTC().Format(time.RFC3339), "sha": newID() + newID()}
	}
	doc, _ := json.Marshal(map[string]any{"request": json.RawMessage(req), "decision": "allow", "reasons": []string{},
		"facts": map[string]any{"request": json.RawMessage(req), "changes": facts}, "policy_version": 1})
	return string(doc)
}

// pgbenchSetup makes the webhook ingest's baseline: baseline_inbox shaped
// like inbox_events (same columns, primary key, unique and partial
// indexes) and baseline_bodies holding the payloads, so that pgbench
// inserts the same row the ingest path stores.
func pgbenchSetup(ctx context.Context, db *sqlx.DB, files string) error {
	stmts := []string{
		`DROP TABLE IF EXISTS baseline_inbox, baseline_bodies`,
		`CREATE TABLE baseline_inbox (LIKE inbox_events INCLUDING ALL)`,
		`CREATE TABLE baseline_bodies (n integer PRIMARY KEY, body bytea NOT NULL)`,
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	n := 0
	for f := range splitComma(files) {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		n++
		if _, err := db.ExecContext(ctx, `INSERT INTO baseline_bodies VALUES ($1, $2)`, n, b); err != nil {
			return err
		}
	}
	script := fmt.Sprintf(`\set n random(1, %d)
INSERT INTO baseline_inbox (id, connector, type, dedupe_key, headers, body, received_at, status)
SELECT md5(random()::text), 'servicenow', 'change', md5(random()::text), '{"Content-Type": ["application/json"]}', body, now(), 'pending'
FROM baseline_bodies WHERE n = :n;
`, n)
	f, err := os.CreateTemp("", "baseline-pgbench-*.sql")
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteString(script); err != nil {
		return err
	}
	fmt.Println(f.Name())
	return nil
}

func splitComma(s string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for len(s) > 0 {
			i := 0
			for i < len(s) && s[i] != ',' {
				i++
			}
			if i > 0 && !yield(s[:i]) {
				return
			}
			if i == len(s) {
				return
			}
			s = s[i+1:]
		}
	}
}
