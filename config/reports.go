package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"
)

// ReportSchedule is one scheduled reconciliation report.
type ReportSchedule struct {
	// Name identifies the schedule (its reports carry it).
	Name string `yaml:"name"`
	// Cron is a standard five-field cron expression ("0 7 * * 1": Mondays
	// 07:00) or a descriptor such as "@daily", evaluated in UTC.
	Cron string `yaml:"cron"`
	// Period is how far back each run looks from its fire time ("7d").
	Period Period `yaml:"period"`
	// Environment limits the report to one environment (optional).
	Environment string `yaml:"environment"`
	// WebhookURL, when set, receives a Slack/Teams-compatible JSON message
	// with the summary (never a secret) after each run.
	WebhookURL string `yaml:"webhook_url"`
}

// DefaultReportsRetention is how long reports are kept unless configured.
const DefaultReportsRetention = Period(400 * 24 * time.Hour)

// Period is a duration that also accepts days and weeks: "7d", "2w",
// "36h".
type Period time.Duration

// D returns the period as a time.Duration.
func (p Period) D() time.Duration { return time.Duration(p) }

var dayPeriod = regexp.MustCompile(`^([0-9]{1,5})([dw])$`)

// ParsePeriod reads "7d", "2w" or a Go duration.
func ParsePeriod(s string) (Period, error) {
	if m := dayPeriod.FindStringSubmatch(strings.TrimSpace(s)); m != nil {
		n, _ := strconv.Atoi(m[1])
		days := n
		if m[2] == "w" {
			days = 7 * n
		}
		return Period(time.Duration(days) * 24 * time.Hour), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a period like 7d, 2w or 36h", s)
	}
	return Period(d), nil
}

// UnmarshalYAML parses a period.
func (p *Period) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParsePeriod(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*p = v
	return nil
}

// MarshalYAML writes the period in hours.
func (p Period) MarshalYAML() (any, error) { return time.Duration(p).String(), nil }

var scheduleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ParseCron parses a schedule's cron expression.
func ParseCron(expr string) (cron.Schedule, error) {
	return cron.ParseStandard(expr)
}

// validateReports checks the report schedules and the retention.
func (c *Config) validateReports(bad func(field, format string, args ...any)) {
	seen := map[string]bool{}
	for i, r := range c.Reports {
		f := fmt.Sprintf("reports[%d]", i)
		switch {
		case !scheduleName.MatchString(r.Name):
			bad(f+".name", "%q must be letters, digits, . _ or - (at most 64)", r.Name)
		case seen[r.Name]:
			bad(f+".name", "%q is declared twice", r.Name)
		}
		seen[r.Name] = true
		if _, err := ParseCron(r.Cron); err != nil {
			bad(f+".cron", "%q is not a cron expression (five fields, e.g. \"0 7 * * 1\"): %v", r.Cron, err)
		}
		if r.Period.D() < time.Hour || r.Period.D() > 5*366*24*time.Hour {
			bad(f+".period", "must be between 1h and 5 years (e.g. 7d)")
		}
		if r.WebhookURL != "" {
			u, err := url.Parse(r.WebhookURL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				bad(f+".webhook_url", "must be an http(s) URL")
			}
		}
	}
	if c.ReportsRetention != nil && c.ReportsRetention.D() < 24*time.Hour {
		bad("reports_retention", "must be at least 1d")
	}
	if v := c.VerdictsRefresh; v != nil && v.D() != 0 && (v.D() < 10*time.Second || v.D() > 24*time.Hour) {
		bad("verdicts_refresh", "must be 0s (off) or between 10s and 24h")
	}
	if v := c.ReleaseMetricsRefresh; v != nil && v.D() != 0 && (v.D() < time.Minute || v.D() > 24*time.Hour) {
		bad("release_metrics_refresh", "must be 0s (off) or between 1m and 24h")
	}
	if v := c.DoctorInterval; v != nil && v.D() != 0 && (v.D() < 5*time.Minute || v.D() > 7*24*time.Hour) {
		bad("doctor_interval", "must be 0s (off) or between 5m and 7d")
	}
}

// DefaultDoctorInterval is how often the doctor's checks run in serve
// unless configured.
const DefaultDoctorInterval = Period(6 * time.Hour)

// DoctorEvery is how often serve runs the doctor's checks (0: never).
func (c *Config) DoctorEvery() time.Duration {
	if c.DoctorInterval == nil {
		return DefaultDoctorInterval.D()
	}
	return c.DoctorInterval.D()
}

// DefaultReleaseMetricsRefresh is how often the release metrics gauges
// are recomputed unless configured.
const DefaultReleaseMetricsRefresh = Period(time.Hour)

// MetricsEvery is how often the release metrics gauges are recomputed
// (0: never).
func (c *Config) MetricsEvery() time.Duration {
	if c.ReleaseMetricsRefresh == nil {
		return DefaultReleaseMetricsRefresh.D()
	}
	return c.ReleaseMetricsRefresh.D()
}

// DefaultVerdictsRefresh is how often stored verdicts are brought up to
// date unless configured.
const DefaultVerdictsRefresh = Period(5 * time.Minute)

// VerdictsEvery is how often the stored verdicts are brought up to date
// (0: never).
func (c *Config) VerdictsEvery() time.Duration {
	if c.VerdictsRefresh == nil {
		return DefaultVerdictsRefresh.D()
	}
	return c.VerdictsRefresh.D()
}

// Retention is how long reports are kept.
func (c *Config) Retention() time.Duration {
	if c.ReportsRetention == nil {
		return DefaultReportsRetention.D()
	}
	return c.ReportsRetention.D()
}

// reportsLogValue lists the schedules for the start-up log. A webhook URL
// is a credential (Slack and Teams put the secret in the path): only its
// host is shown.
func (c *Config) reportsLogValue() []any {
	out := make([]any, 0, len(c.Reports)+1)
	for _, r := range c.Reports {
		hook := ""
		if u, err := url.Parse(r.WebhookURL); err == nil && r.WebhookURL != "" {
			hook = u.Scheme + "://" + u.Host + "/" + masked
		}
		out = append(out, map[string]any{"name": r.Name, "cron": r.Cron, "period": r.Period.D().String(),
			"environment": r.Environment, "webhook_url": hook})
	}
	return append(out, map[string]any{"retention": c.Retention().String()})
}
