// Command pgprobe exits 0 when the PostgreSQL at the URL in its first
// argument answers, for scripts/test.sh on machines without psql.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"time"

	_ "github.com/lib/pq"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: pgprobe URL")
		os.Exit(2)
	}
	db, err := sql.Open("postgres", os.Args[1])
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
