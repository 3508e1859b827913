package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The vendor payloads the webhook target sends (copies of
// /work/shared/fixtures: a ServiceNow change as the Change Management API
// returns it, a Jira Cloud issue_updated, a GitHub deployment_status).
//
//go:embed testdata/sn_chg_rest.get_change.response.json
//go:embed testdata/webhook.jira_issue_updated.status-resolved.cloud.json
//go:embed testdata/deployment_status.created.json
var fixtures embed.FS

// webhooks builds signed deliveries: half ServiceNow changes, a quarter
// Jira issues, a quarter GitHub deployment statuses, over c.Keys record
// keys, each a newer version than the last one sent — except c.OutOfOrder
// of them, which carry a version older than one already sent, and c.Dup
// of them, which resend a worker's previous delivery byte for byte (same
// body, same delivery id: the inbox must answer duplicate).
type webhooks struct {
	c                  config
	sn, jira, gh       string
	snT, jiraT, ghT    template     // the fixtures split at what varies
	run                string       // distinguishes this run's delivery ids and keys from earlier runs'
	seq                atomic.Int64 // version counter shared by the workers
	base               time.Time    // version 0's time
	snTime, snDisplay  string       // the fixture's version stamps, replaced per delivery
	jiraUpdated        string
	jiraTS, ghStatusID string
}

func newWebhooks(c config) (*webhooks, error) {
	read := func(name string) (string, error) {
		b, err := fixtures.ReadFile("testdata/" + name)
		return string(b), err
	}
	w := &webhooks{c: c, base: time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Second),
		run:    strconv.FormatUint(c.Seed, 36) + strconv.FormatInt(time.Now().UnixNano()%1e9, 36),
		snTime: "2015-07-06 18:59:27", snDisplay: "2015-07-06 11:59:27",
		jiraUpdated: "2019-02-15T19:15:40.477-0800", jiraTS: "1550286940507", ghStatusID: "209916254"}
	var err error
	if w.sn, err = read("sn_chg_rest.get_change.response.json"); err != nil {
		return nil, err
	}
	if w.jira, err = read("webhook.jira_issue_updated.status-resolved.cloud.json"); err != nil {
		return nil, err
	}
	if w.gh, err = read("deployment_status.created.json"); err != nil {
		return nil, err
	}
	for _, must := range []struct{ doc, s string }{
		{w.sn, "CHG0000024"}, {w.sn, w.snTime}, {w.sn, w.snDisplay},
		{w.jira, "TES-41"}, {w.jira, w.jiraUpdated}, {w.jira, w.jiraTS}, {w.gh, w.ghStatusID},
	} {
		if !strings.Contains(must.doc, must.s) {
			return nil, fmt.Errorf("fixture lacks %q to vary", must.s)
		}
	}
	w.snT = newTemplate(w.sn, -1, "CHG0000024", w.snTime, w.snDisplay)
	w.jiraT = newTemplate(w.jira, -1, "TES-41", w.jiraUpdated, w.jiraTS)
	w.ghT = newTemplate(w.gh, 1, w.ghStatusID)
	return w, nil
}

// template is a fixture split at the strings a delivery replaces, so a
// body is assembled in one allocation (the load generator shares the
// cores with what it measures: a strings.Replacer built per delivery
// cost several times the server's own work on it).
type template struct {
	parts []string // text between the slots: len(slots)+1 of them
	slots []int    // which of the replaced strings goes in each slot
}

// newTemplate splits doc at the leftmost non-overlapping occurrences of
// olds (the first that matches at a position wins, as with
// strings.NewReplacer), at most n of them (n < 0: all).
func newTemplate(doc string, n int, olds ...string) template {
	var t template
	start := 0
	for i := 0; i < len(doc) && n != 0; {
		hit := -1
		for k, o := range olds {
			if strings.HasPrefix(doc[i:], o) {
				hit = k
				break
			}
		}
		if hit < 0 {
			i++
			continue
		}
		t.parts = append(t.parts, doc[start:i])
		t.slots = append(t.slots, hit)
		i += len(olds[hit])
		start = i
		n--
	}
	t.parts = append(t.parts, doc[start:])
	return t
}

// render is the document with slot k's string replaced by news[k].
func (t template) render(news ...string) []byte {
	size := 0
	for _, p := range t.parts {
		size += len(p)
	}
	for _, k := range t.slots {
		size += len(news[k])
	}
	b := make([]byte, 0, size)
	for i, k := range t.slots {
		b = append(b, t.parts[i]...)
		b = append(b, news[k]...)
	}
	return append(b, t.parts[len(t.parts)-1]...)
}

func (w *webhooks) sign(body string) string {
	return w.signer()([]byte(body))
}

// signer returns a function signing bodies with the secret; one per
// worker, reusing its HMAC state.
func (w *webhooks) signer() func(body []byte) string {
	m := hmac.New(sha256.New, []byte(w.c.Secret))
	var sum [sha256.Size]byte
	return func(body []byte) string {
		m.Reset()
		m.Write(body)
		return "sha256=" + hex.EncodeToString(m.Sum(sum[:0]))
	}
}

// worker returns worker n's source of deliveries.
func (w *webhooks) worker(n int) func() request {
	rng := rand.New(rand.NewPCG(w.c.Seed, uint64(n)+1))
	sign := w.signer()
	var prev request
	return func() request {
		p := rng.Float64()
		if p < w.c.Dup && prev.body != nil {
			return prev
		}
		v := w.seq.Add(1)
		if p < w.c.Dup+w.c.OutOfOrder && v > 1000 {
			v -= 1 + int64(rng.IntN(1000)) // older than versions already sent
		}
		at := w.base.Add(time.Duration(v) * time.Second) // ServiceNow stamps have whole seconds
		key := rng.IntN(w.c.Keys)
		id := fmt.Sprintf("%s-%d-%d", w.run, n, v)
		var rq request
		switch k := rng.IntN(4); {
		case k < 2:
			stamp := at.Format("2006-01-02 15:04:05")
			body := w.snT.render(fmt.Sprintf("CHG8%06d", key), stamp, stamp)
			rq = request{path: "/webhooks/servicenow", body: body, header: [][2]string{
				{"Content-Type", "application/json"}, {"X-Tollgate-Signature", sign(body)}}}
		case k == 2:
			body := w.jiraT.render(fmt.Sprintf("LOAD-%d", key), at.Format("2006-01-02T15:04:05.000-0700"), strconv.FormatInt(at.UnixMilli(), 10))
			rq = request{path: "/webhooks/jira", body: body, header: [][2]string{
				{"Content-Type", "application/json"}, {"X-Hub-Signature", sign(body)},
				{"X-Atlassian-Webhook-Identifier", "jira-" + id}}}
		default:
			body := w.ghT.render(strconv.FormatInt(1e10+v, 10))
			rq = request{path: "/webhooks/github", body: body, header: [][2]string{
				{"Content-Type", "application/json"}, {"X-GitHub-Event", "deployment_status"},
				{"X-GitHub-Delivery", "gh-" + id}, {"X-Hub-Signature-256", sign(body)}}}
		}
		prev = rq
		return rq
	}
}
