package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/config/mappings"
	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/all"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/testpg"
	"github.com/tollgate-dev/tollgate/store"
)

// drainBacklog is the backlog BenchmarkInboxDrain stores before each run.
const drainBacklog = 1000

// BenchmarkInboxDrain measures how fast the normalizer (Run, serve's
// workers and batch size) drains a backlog of stored deliveries: the
// payloads scripts/loadgen sends (half ServiceNow changes, a quarter Jira
// issues, a quarter GitHub deployment statuses) over 2,000 keys, mostly
// newer versions, 5% older ones, received through Receive as the webhook
// handler does. Each
// iteration drains drainBacklog events; events/s is the figure. Run:
//
//	go test -run '^$' -bench InboxDrain -benchtime 3x ./service/
func BenchmarkInboxDrain(b *testing.B) {
	for _, dialect := range []string{"postgres", "sqlite"} {
		b.Run(dialect, func(b *testing.B) {
			in, db, deliver := newDrainInbox(b, dialect)
			ctx := context.Background()
			seq := 0
			var elapsed time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for range drainBacklog {
					seq++
					deliver(seq)
				}
				if _, n, err := db.InboxLag(ctx); err != nil || n < drainBacklog*9/10 {
					b.Fatalf("backlog: %d pending (%v)", n, err)
				}
				b.StartTimer()
				start := time.Now()
				rctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { in.Run(rctx); close(done) }()
				for {
					_, n, err := db.InboxLag(ctx)
					if err != nil {
						b.Fatal(err)
					}
					if n == 0 {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				elapsed += time.Since(start)
				cancel()
				<-done
			}
			b.ReportMetric(float64(b.N*drainBacklog)/elapsed.Seconds(), "events/s")
			var bad []core.Event
			bad, err := db.ListEvents(ctx, core.EventFilter{Status: core.EventQuarantined, Limit: 3})
			if err != nil {
				b.Fatal(err)
			}
			for _, e := range bad {
				b.Errorf("quarantined: %s %s %s: %s", e.Connector, e.Type, e.ID, e.Reason)
			}
		})
	}
}

// newDrainInbox wires an inbox with the servicenow, jira and github
// connectors on a fresh store, and returns a function that receives the
// n-th delivery.
func newDrainInbox(b *testing.B, dialect string) (*Inbox, *store.DB, func(n int)) {
	b.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	url := "sqlite:" + filepath.Join(b.TempDir(), "drain.db")
	if dialect == "postgres" {
		url = testpg.NewDatabase(b)
	}
	db, err := store.Open(ctx, url, store.Options{Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	maps, err := NewMappings(db, log, mappings.FS)
	if err != nil {
		b.Fatal(err)
	}
	if err := maps.Reload(ctx); err != nil {
		b.Fatal(err)
	}
	policies := NewPolicies(db, log)
	if err := policies.Load(ctx, nil); err != nil {
		b.Fatal(err)
	}
	const secret = "drain-secret"
	reg := all.Registry()
	var conns []Connector
	for _, name := range []string{"servicenow", "jira", "github"} {
		cfg := connectors.Config{Name: name, Type: name, WebhookSecret: secret}
		wh, err := reg.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, Connector{Config: cfg, Webhook: wh})
	}
	// As tollgate serve runs it: inbox.workers' default on PostgreSQL, one
	// worker on SQLite; BENCH_INBOX_WORKERS overrides.
	workers := 4
	if dialect == "sqlite" {
		workers = 1
	}
	if w, err := strconv.Atoi(os.Getenv("BENCH_INBOX_WORKERS")); err == nil && w > 0 {
		workers = w
	}
	in := NewInbox(db, conns, maps, NewDeployments(db, policies, core.SystemClock, log, 0), metrics.New(), core.SystemClock, log, InboxConfig{Workers: workers})

	read := func(name string) string {
		body, err := os.ReadFile(filepath.Join("..", "scripts", "loadgen", "testdata", name))
		if err != nil {
			b.Fatal(err)
		}
		return string(body)
	}
	sn := read("sn_chg_rest.get_change.response.json")
	jira := read("webhook.jira_issue_updated.status-resolved.cloud.json")
	gh := read("deployment_status.created.json")
	sign := func(body string) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(body))
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	base := time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Second)
	run := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	deliver := func(n int) {
		v := n
		if n%20 == 7 && n > 1000 { // an older version
			v -= 1 + n%1000
		}
		at := base.Add(time.Duration(v) * time.Second)
		key := (n * 7919) % 2000
		h := http.Header{"Content-Type": {"application/json"}}
		var conn, body string
		switch n % 4 {
		case 0, 1:
			conn = "servicenow"
			body = strings.NewReplacer("CHG0000024", fmt.Sprintf("CHG8%06d", key),
				"2015-07-06 18:59:27", at.Format("2006-01-02 15:04:05"), "2015-07-06 11:59:27", at.Format("2006-01-02 15:04:05")).Replace(sn)
			h.Set("X-Tollgate-Signature", sign(body))
		case 2:
			conn = "jira"
			body = strings.NewReplacer("TES-41", fmt.Sprintf("LOAD-%d", key),
				"2019-02-15T19:15:40.477-0800", at.Format("2006-01-02T15:04:05.000-0700"), "1550286940507", strconv.FormatInt(at.UnixMilli(), 10)).Replace(jira)
			h.Set("X-Hub-Signature", sign(body))
			h.Set("X-Atlassian-Webhook-Identifier", fmt.Sprintf("jira-%s-%d", run, n))
		default:
			conn = "github"
			body = strings.Replace(gh, "209916254", strconv.FormatInt(1e10+int64(n), 10), 1)
			h.Set("X-GitHub-Event", "deployment_status")
			h.Set("X-GitHub-Delivery", fmt.Sprintf("gh-%s-%d", run, n))
			h.Set("X-Hub-Signature-256", sign(body))
		}
		if _, _, err := in.Receive(ctx, conn, h, nil, []byte(body), nil); err != nil {
			b.Fatalf("delivery %d (%s): %v", n, conn, err)
		}
	}
	return in, db, deliver
}
