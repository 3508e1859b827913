package config

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestReportSchedules(t *testing.T) {
	env := func(string) string { return "" }
	good := `
reports:
  - name: weekly-prod
    cron: "0 7 * * 1"
    period: 7d
    environment: production
    webhook_url: https://hooks.slack.com/services/T000/B000/XXXXSECRET
  - name: daily
    cron: "@daily"
    period: 36h
reports_retention: 90d
`
	c, err := Parse([]byte(good), env)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if len(c.Reports) != 2 || c.Reports[0].Period.D() != 7*24*time.Hour || c.Reports[1].Period.D() != 36*time.Hour || c.Retention() != 90*24*time.Hour {
		t.Fatalf("parsed %+v retention %v", c.Reports, c.Retention())
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", c)
	if strings.Contains(buf.String(), "XXXXSECRET") || !strings.Contains(buf.String(), "weekly-prod") {
		t.Errorf("start-up log: %s", buf.String())
	}
	if d, _ := Parse(nil, env); d.Retention() != 400*24*time.Hour || d.VerdictsEvery() != 5*time.Minute {
		t.Errorf("default retention %v, verdicts refresh %v", d.Retention(), d.VerdictsEvery())
	}
	if d, _ := Parse(nil, env); d.MetricsEvery() != time.Hour {
		t.Errorf("default release metrics refresh %v", d.MetricsEvery())
	}
	if off, err := Parse([]byte("release_metrics_refresh: 0s"), env); err != nil || off.MetricsEvery() != 0 {
		t.Errorf("release_metrics_refresh: 0s → %v, %v; want off", off.MetricsEvery(), err)
	}
	if _, err := Parse([]byte("release_metrics_refresh: 10s"), env); err == nil || !strings.Contains(err.Error(), "release_metrics_refresh") {
		t.Errorf("release_metrics_refresh: 10s accepted (%v)", err)
	}
	if off, err := Parse([]byte("verdicts_refresh: 0s"), env); err != nil || off.VerdictsEvery() != 0 {
		t.Errorf("verdicts_refresh: 0s → %v, %v; want off", off.VerdictsEvery(), err)
	}
	for _, tc := range []struct{ yaml, field string }{
		{"reports: [{name: a, cron: \"61 * * * *\", period: 7d}]", "reports[0].cron"},
		{"reports: [{name: a, cron: \"@daily\", period: 10m}]", "reports[0].period"},
		{"reports: [{name: a, cron: \"@daily\", period: 7d, webhook_url: \"ftp://x\"}]", "reports[0].webhook_url"},
		{"reports: [{name: a, cron: \"@daily\", period: 7d}, {name: a, cron: \"@daily\", period: 7d}]", "reports[1].name"},
		{"reports: [{name: \"bad name\", cron: \"@daily\", period: 7d}]", "reports[0].name"},
		{"reports_retention: 1h", "reports_retention"},
		{"verdicts_refresh: 2s", "verdicts_refresh"},
		{"verdicts_refresh: 2d", "verdicts_refresh"},
	} {
		if _, err := Parse([]byte(tc.yaml), env); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err %v, want one naming %s", tc.yaml, err, tc.field)
		}
	}
	if _, err := Parse([]byte("reports: [{name: a, cron: \"@daily\", period: 7 days}]"), env); err == nil {
		t.Error("period \"7 days\" accepted")
	}
}
