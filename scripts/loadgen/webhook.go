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
	return w, nil
}

func (w *webhooks) sign(body string) string {
	m := hmac.New(sha256.New, []byte(w.c.Secret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// worker returns worker n's source of deliveries.
func (w *webhooks) worker(n int) func() request {
	rng := rand.New(rand.NewPCG(w.c.Seed, uint64(n)+1))
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
			body := strings.NewReplacer("CHG0000024", fmt.Sprintf("CHG8%06d", key),
				w.snTime, at.Format("2006-01-02 15:04:05"), w.snDisplay, at.Format("2006-01-02 15:04:05")).Replace(w.sn)
			rq = request{path: "/webhooks/servicenow", body: []byte(body), header: [][2]string{
				{"Content-Type", "application/json"}, {"X-Tollgate-Signature", w.sign(body)}}}
		case k == 2:
			body := strings.NewReplacer("TES-41", fmt.Sprintf("LOAD-%d", key),
				w.jiraUpdated, at.Format("2006-01-02T15:04:05.000-0700"), w.jiraTS, strconv.FormatInt(at.UnixMilli(), 10)).Replace(w.jira)
			rq = request{path: "/webhooks/jira", body: []byte(body), header: [][2]string{
				{"Content-Type", "application/json"}, {"X-Hub-Signature", w.sign(body)},
				{"X-Atlassian-Webhook-Identifier", "jira-" + id}}}
		default:
			body := strings.Replace(w.gh, w.ghStatusID, strconv.FormatInt(1e10+v, 10), 1)
			rq = request{path: "/webhooks/github", body: []byte(body), header: [][2]string{
				{"Content-Type", "application/json"}, {"X-GitHub-Event", "deployment_status"},
				{"X-GitHub-Delivery", "gh-" + id}, {"X-Hub-Signature-256", w.sign(body)}}}
		}
		prev = rq
		return rq
	}
}
