package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/tollgate-dev/tollgate/internal/testpg"
)

// TestBaselineInsertsOneRowPerRequest: each check is one stored,
// decision-sized row; a body that is not JSON is a 400 and stores nothing.
// The pgbench setup copies inbox_events' shape and the payloads.
func TestBaselineInsertsOneRowPerRequest(t *testing.T) {
	if err := testpg.Available(); err != nil {
		t.Skip(err)
	}
	db := sqlx.MustOpen("postgres", testpg.NewMigratedDatabase(t))
	defer db.Close()
	ctx := context.Background()
	e, err := newHandler(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`{"service":"a","version":"1"}`, `{"service":"b","version":"2"}`, `not json`} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/gate/check", strings.NewReader(body)))
		want := http.StatusOK
		if body == "not json" {
			want = http.StatusBadRequest
		}
		if rec.Code != want || (want == 200 && !strings.Contains(rec.Body.String(), `"decision":"allow"`)) {
			t.Errorf("%s: %d %s", body, rec.Code, rec.Body)
		}
	}
	var n, size int
	if err := db.QueryRowContext(ctx, `SELECT count(*), min(length(doc)) FROM baseline_decisions`).Scan(&n, &size); err != nil || n != 2 || size < 3000 {
		t.Fatalf("%d rows, smallest document %d bytes, %v: want 2 decision-sized rows", n, size, err)
	}

	old := os.Stdout
	r, w, _ := os.Pipe()
	os.Stdout = w
	err = pgbenchSetup(ctx, db, "../loadgen/testdata/deployment_status.created.json,../loadgen/testdata/sn_chg_rest.get_change.response.json")
	w.Close()
	os.Stdout = old
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 512)
	k, _ := r.Read(out)
	script := strings.TrimSpace(string(out[:k]))
	defer os.Remove(script)
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM baseline_bodies`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d bodies, %v", n, err)
	}
	text, err := os.ReadFile(script)
	if err != nil || !strings.Contains(string(text), "random(1, 2)") {
		t.Fatalf("pgbench script %q: %s %v", script, text, err)
	}
	// The script's statement runs (the row fits inbox_events' shape).
	stmt := strings.ReplaceAll(strings.SplitN(string(text), "\n", 2)[1], ":n", "1")
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		t.Fatalf("the pgbench statement: %v", err)
	}
}
