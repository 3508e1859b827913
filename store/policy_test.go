package store

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

func TestPolicyVersions(t *testing.T) {
	forEachStore(t, func(t *testing.T, db *DB, clock *testClock) {
		ctx := context.Background()
		if _, err := db.CurrentPolicy(ctx); !core.IsKind(err, core.KindNotFound) {
			t.Fatalf("no policy yet: %v", err)
		}
		if _, err := db.PutPolicy(ctx, "  \n", "alice"); !core.IsKind(err, core.KindInvalid) {
			t.Fatalf("empty source: %v", err)
		}
		sub, cancel := db.Subscribe()
		defer cancel()
		stop := listen(t, db)
		defer stop()
		v, err := db.PutPolicy(ctx, "rules: []\n", "alice")
		if err != nil || v != 1 {
			t.Fatalf("put: %d %v", v, err)
		}
		waitTopic(t, sub, "policy")
		cur, err := db.CurrentPolicy(ctx)
		if err != nil || cur.Version != 1 || cur.Source != "rules: []\n" || cur.CreatedBy != "alice" || !cur.CreatedAt.Equal(clock.t) {
			t.Fatalf("current: %+v %v", cur, err)
		}
		// Concurrent puts never collide and end up numbered 2..11.
		var wg sync.WaitGroup
		errs := make(chan error, 10)
		for i := range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := db.PutPolicy(ctx, fmt.Sprintf("rules: [%d]\n", i), "bob")
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		cur, err = db.CurrentPolicy(ctx)
		if err != nil || cur.Version != 11 {
			t.Fatalf("after concurrent puts: %+v %v", cur, err)
		}
		entries, err := db.ListAudit(ctx, core.AuditFilter{Action: "policy.put"})
		if err != nil || len(entries) != 11 {
			t.Fatalf("audit: %d %v", len(entries), err)
		}
		var data struct {
			Version int    `json:"version"`
			SHA     string `json:"sha256"`
		}
		if err := json.Unmarshal(entries[0].Data, &data); err != nil {
			t.Fatal(err)
		}
		if data.Version != 1 || data.SHA != fmt.Sprintf("%x", sha256.Sum256([]byte("rules: []\n"))) || entries[0].Actor != "alice" || entries[0].Subject != "policy:1" {
			t.Fatalf("audit entry %+v data %+v", entries[0], data)
		}
		checkLinear(t, db, 11)
	})
}

// TestPolicyPutsFromTwoReplicas: two stores on one PostgreSQL database
// (two replicas, two appenders) put policies at once. Their groups may read
// the same next version; the primary key rejects the later insert and that
// put retries, so every put gets its own number.
func TestPolicyPutsFromTwoReplicas(t *testing.T) {
	a := newTestDB(t, Postgres, nil)
	b := openReplica(t, a)
	ctx := context.Background()
	const each = 15
	var wg sync.WaitGroup
	versions := make(chan int, 2*each)
	for _, db := range []*DB{a, b} {
		for i := range each {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := db.PutPolicy(ctx, fmt.Sprintf("n: %d\n", i), "x")
				if err != nil {
					t.Error(err)
				}
				versions <- v
			}()
		}
	}
	wg.Wait()
	close(versions)
	seen := map[int]bool{}
	for v := range versions {
		if seen[v] {
			t.Fatalf("version %d given twice", v)
		}
		seen[v] = true
	}
	for v := 1; v <= 2*each; v++ {
		if !seen[v] {
			t.Fatalf("version %d missing: %v", v, seen)
		}
	}
	checkLinear(t, a, 2*each)
}
