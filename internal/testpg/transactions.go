package testpg

import (
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"
)

// Transactions returns how many transactions wrote the rows now in tables
// (the distinct xmin of their row versions): a test that stores records
// "with one commit" checks that it is 1.
func Transactions(t testing.TB, db sqlx.Queryer, tables ...string) int {
	t.Helper()
	parts := make([]string, len(tables))
	for i, table := range tables {
		parts[i] = "SELECT xmin::text AS x FROM " + table
	}
	var n int
	if err := sqlx.Get(db, &n, "SELECT count(DISTINCT x) FROM ("+strings.Join(parts, " UNION ALL ")+") t"); err != nil {
		t.Fatalf("count the transactions that wrote %s: %v", strings.Join(tables, ", "), err)
	}
	return n
}
