package main

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestOpenLoopPacesAndChargesStalls: at a fixed rate the open loop sends
// about rate × duration requests whatever the answers do, and a server
// stall is charged to every request that was due during it, from its
// intended send time — a closed loop, or an open loop timing from the
// actual send, would report the stall once.
func TestOpenLoopPacesAndChargesStalls(t *testing.T) {
	var sent atomic.Int64
	stallAt := time.Now().Add(600 * time.Millisecond) // after the warm-up
	var stalled atomic.Bool
	send := func(int, request) ([]byte, error) {
		sent.Add(1)
		if time.Now().After(stallAt) && stalled.CompareAndSwap(false, true) {
			time.Sleep(300 * time.Millisecond) // the one worker is stuck: requests queue up behind it
		}
		return []byte(`{"decision":"allow"}`), nil
	}
	gen := func(int) func() request { return func() request { return request{path: "/x"} } }
	c := config{Target: "gate", Concurrency: 1, Rate: 100, Warmup: 200 * time.Millisecond, Duration: 1500 * time.Millisecond}
	st, elapsed, missed, _ := drive(c, gen, send)

	n := len(st.lat) + int(missed)
	if want := 150; n < want*8/10 || n > want*12/10 {
		t.Errorf("%d requests due in %v at 100/s, want ~%d", n, elapsed, want)
	}
	if st.allow != len(st.lat) || st.errors != 0 {
		t.Errorf("allow %d of %d, errors %d", st.allow, len(st.lat), st.errors)
	}
	// Requests due during the 300 ms stall waited for it: at 100/s about
	// 30 of them, with latencies spread from ~300 ms down (missed ones
	// aside); answers otherwise take microseconds.
	slow := 0
	for _, l := range st.lat {
		if l > 50*time.Millisecond {
			slow++
		}
	}
	if slow < 3 {
		t.Errorf("%d requests slower than 50 ms after a 300 ms stall, want the ones due during it (missed %d)", slow, missed)
	}
}

// TestClosedLoopCountsErrorsAndWebhooks: answers are classified: gate
// decisions, webhook acceptances and duplicates, errors with the first one
// kept.
func TestClassify(t *testing.T) {
	var st stats
	classify(&st, []byte(`{"decision":"wait"}`), nil)
	classify(&st, []byte(`{"event_id":"e1","duplicate":false}`), nil)
	classify(&st, []byte(`{"event_id":"e1","duplicate":true}`), nil)
	classify(&st, nil, errString("status 503: down"))
	if st.wait != 1 || st.accepted != 2 || st.duplicate != 1 || st.errors != 1 || !strings.Contains(st.firstErr, "503") {
		t.Fatalf("%+v", st)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// TestWebhooksVaryAndRepeat: deliveries are signed, keys and versions
// vary, duplicates resend the previous delivery byte for byte, and some
// versions go backwards.
func TestWebhooksVaryAndRepeat(t *testing.T) {
	w, err := newWebhooks(config{Secret: "s3cret", Seed: 1, Dup: 0.2, OutOfOrder: 0.2, Keys: 50})
	if err != nil {
		t.Fatal(err)
	}
	next := w.worker(0)
	paths := map[string]int{}
	bodies := map[string]int{}
	dups := 0
	var prev request
	for range 3000 {
		rq := next()
		paths[rq.path]++
		if string(rq.body) == string(prev.body) {
			dups++
		}
		bodies[string(rq.body)]++
		signed := false
		for _, h := range rq.header {
			if strings.HasPrefix(h[0], "X-") && strings.HasPrefix(h[1], "sha256=") {
				signed = h[1] == w.sign(string(rq.body))
			}
		}
		if !signed {
			t.Fatalf("%s: not signed with the secret", rq.path)
		}
		prev = rq
	}
	for _, p := range []string{"/webhooks/servicenow", "/webhooks/jira", "/webhooks/github"} {
		if paths[p] < 300 {
			t.Errorf("%s: %d deliveries of 3000", p, paths[p])
		}
	}
	if dups < 400 || dups > 800 {
		t.Errorf("%d duplicates of 3000 at -dup 0.2", dups)
	}
	if len(bodies) < 2000 {
		t.Errorf("only %d distinct bodies", len(bodies))
	}
}

// TestTemplateRendersAsReplacer: a body assembled from a template is the
// fixture with strings.NewReplacer's (or strings.Replace's) result.
func TestTemplateRendersAsReplacer(t *testing.T) {
	w, err := newWebhooks(config{Secret: "s3cret", Seed: 1, Keys: 50})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"servicenow", w.snT.render("CHG8000042", "2026-01-02 03:04:05", "2026-01-02 03:04:05"),
			strings.NewReplacer("CHG0000024", "CHG8000042", w.snTime, "2026-01-02 03:04:05", w.snDisplay, "2026-01-02 03:04:05").Replace(w.sn)},
		{"jira", w.jiraT.render("LOAD-7", "2026-01-02T03:04:05.000+0000", "1767323045000"),
			strings.NewReplacer("TES-41", "LOAD-7", w.jiraUpdated, "2026-01-02T03:04:05.000+0000", w.jiraTS, "1767323045000").Replace(w.jira)},
		{"github", w.ghT.render("10000000042"), strings.Replace(w.gh, w.ghStatusID, "10000000042", 1)},
		{"nothing to replace", newTemplate("abc", -1, "x").render("y"), "abc"},
		{"adjacent", newTemplate("xxax", -1, "x", "a").render("1", "2"), "1121"},
		{"first only", newTemplate("xx", 1, "x").render("y"), "yx"},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("%s: rendered body differs from the replaced fixture", tt.name)
		}
	}
}
