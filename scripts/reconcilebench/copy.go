package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/store"
)

// copiedTables are the tables a reconciliation reads, copied in this
// order (parents before children), and the audit chain, which holds an
// entry for every gate decision: without it the copy's chain would not
// verify.
var copiedTables = []string{
	"changes", "change_versions", "incidents", "incident_services", "incident_versions",
	"releases", "gate_decisions", "deployments", "pirs", "audit_log",
}

// copyToSQLite copies a seeded PostgreSQL store's reconciliation tables
// into a fresh, migrated SQLite store, so both can be timed on the same
// history (the seed writes PostgreSQL only). Values go through the drivers
// as the store itself writes them: times as time.Time, documents as text.
func copyToSQLite(ctx context.Context, pgURL, sqliteURL string) error {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	src, err := store.Open(ctx, pgURL, store.Options{Logger: log})
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := store.Open(ctx, sqliteURL, store.Options{Logger: log})
	if err != nil {
		return err
	}
	defer dst.Close()
	if _, err := dst.Migrate(ctx); err != nil {
		return err
	}
	for _, table := range copiedTables {
		start := time.Now()
		var cols []struct {
			Name string `db:"column_name"`
			Type string `db:"data_type"`
		}
		if err := src.SQLX().SelectContext(ctx, &cols, `SELECT column_name, data_type FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, table); err != nil {
			return fmt.Errorf("columns of %s: %w", table, err)
		}
		names := make([]string, len(cols))
		sel := make([]string, len(cols))
		for i, c := range cols {
			names[i], sel[i] = c.Name, c.Name
			if c.Type == "jsonb" {
				sel[i] = c.Name + "::text"
			}
		}
		rows, err := src.SQLX().QueryContext(ctx, "SELECT "+strings.Join(sel, ", ")+" FROM "+table)
		if err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		const batch = 400
		tx, err := dst.SQLX().BeginTxx(ctx, nil)
		if err != nil {
			rows.Close()
			return err
		}
		var buf []any
		n := 0
		flush := func() error {
			if len(buf) == 0 {
				return nil
			}
			k := len(buf) / len(cols)
			one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
			q := "INSERT INTO " + table + " (" + strings.Join(names, ", ") + ") VALUES " + strings.TrimSuffix(strings.Repeat(one+", ", k), ", ")
			if _, err := tx.ExecContext(ctx, q, buf...); err != nil {
				return fmt.Errorf("write %s: %w", table, err)
			}
			buf = buf[:0]
			return nil
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				_ = tx.Rollback()
				return err
			}
			for i, v := range vals {
				if b, ok := v.([]byte); ok {
					vals[i] = string(b)
				}
			}
			buf = append(buf, vals...)
			n++
			if n%batch == 0 {
				if err := flush(); err != nil {
					rows.Close()
					_ = tx.Rollback()
					return err
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := flush(); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		fmt.Printf("copied %-18s %9d rows  %5.1fs\n", table, n, time.Since(start).Seconds())
	}
	_, err = dst.SQLX().ExecContext(ctx, "ANALYZE")
	return err
}
