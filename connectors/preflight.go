package connectors

import (
	"net/url"
	"strings"
)

// The preflight (tollgate doctor): each connector with an API checks, with
// its configured credentials and against the live system, what tollgate
// will ask of that system once it serves — read-only, so it is safe to run
// against production before a rollout or whenever an alert fires.

// Status is how one preflight finding stands.
type Status string

// Finding statuses. A fail is something tollgate will not be able to do
// (bad credentials, a project it may not read, a webhook that will never
// reach it); a warn is something that works but loses or delays
// something, or could not be checked (a role the token lacks to look).
const (
	StatusOK   Status = "ok"
	StatusWarn Status = "warn"
	StatusFail Status = "fail"
)

// Finding is one result of a preflight.
type Finding struct {
	// Check names what was checked, short and stable ("credentials",
	// "webhook", "project acme/payments").
	Check string `json:"check"`
	// Status is ok, warn or fail.
	Status Status `json:"status"`
	// Detail says what was found and, when not ok, what to do about it.
	// It never holds a secret.
	Detail string `json:"detail"`
}

// Section is what a preflight found about one thing it checked: the
// database, or one connector.
type Section struct {
	// Scope is "database" or "connector <name>" (also "mappings" or
	// "configuration" when those cannot be read).
	Scope string `json:"scope"`
	// Type is the database's dialect or the connector's type.
	Type     string    `json:"type"`
	Findings []Finding `json:"findings"`
}

// Count returns how many findings of sections failed and warned.
func Count(sections []Section) (failed, warnings int) {
	for _, s := range sections {
		for _, f := range s.Findings {
			switch f.Status {
			case StatusFail:
				failed++
			case StatusWarn:
				warnings++
			}
		}
	}
	return failed, warnings
}

// OK, Warn and Fail build findings.
func OK(check, detail string) Finding { return Finding{Check: check, Status: StatusOK, Detail: detail} }
func Warn(check, detail string) Finding {
	return Finding{Check: check, Status: StatusWarn, Detail: detail}
}
func Fail(check, detail string) Finding {
	return Finding{Check: check, Status: StatusFail, Detail: detail}
}

// PreflightInput is what a connector's preflight needs beyond its own
// configuration.
type PreflightInput struct {
	// Name is the connector's name: its webhook path is /webhooks/<Name>.
	Name string
	// Events are the event types the connector's mapping profiles and CI
	// gate consume, as the inbox names them (X-GitHub-Event values such as
	// deployment_status; X-Gitlab-Event values such as "Deployment Hook";
	// Jira's webhookEvent; Jenkins's phases). Empty when a profile accepts
	// any event: then no subscription is required by name.
	Events []string
}

// Wants reports whether event is one the connector consumes (compared
// without regard to case, as the mapping profiles compare them).
func (in PreflightInput) Wants(event string) bool {
	for _, e := range in.Events {
		if strings.EqualFold(e, event) {
			return true
		}
	}
	return false
}

// PointsAt reports whether a webhook URL is the connector named name's:
// its path ends with /webhooks/<name>. (A sender may mask parts of a URL;
// the path of tollgate's webhooks carries no secret, so it stays
// readable.)
func PointsAt(rawURL, name string) bool {
	path := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		path = u.Path
	}
	return strings.HasSuffix(strings.TrimSuffix(path, "/"), "/webhooks/"+name)
}
