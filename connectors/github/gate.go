package github

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/inert"
)

// EventProtectionRule is the event of a custom deployment protection rule:
// a workflow job waits for this app's answer before it deploys.
const EventProtectionRule = "deployment_protection_rule"

// protectionRule is the part of a deployment_protection_rule delivery a
// gate request needs.
type protectionRule struct {
	Action      string `json:"action"`
	Environment string `json:"environment"`
	Event       string `json:"event"`
	CallbackURL string `json:"deployment_callback_url"`
	Deployment  *struct {
		ID          json.Number     `json:"id"`
		SHA         string          `json:"sha"`
		Ref         string          `json:"ref"`
		Description *string         `json:"description"`
		Environment string          `json:"environment"`
		Payload     json.RawMessage `json:"payload"`
		Creator     *struct {
			Login string `json:"login"`
		} `json:"creator"`
	} `json:"deployment"`
	PullRequests []struct {
		Title   string `json:"title"`
		HTMLURL string `json:"html_url"`
	} `json:"pull_requests"`
	Repository struct {
		FullName string `json:"full_name"`
		HTMLURL  string `json:"html_url"`
	} `json:"repository"`
	Sender *struct {
		Login string `json:"login"`
	} `json:"sender"`
	Installation *struct {
		ID json.Number `json:"id"`
	} `json:"installation"`
}

var (
	callbackRun = regexp.MustCompile(`/repos/([^/]+/[^/]+)/actions/runs/([0-9]+)/deployment_protection_rule$`)
	shaPattern  = regexp.MustCompile(`^[0-9a-fA-F]{7,64}$`)
	repoPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)
)

// ParseProtectionRule reads a deployment_protection_rule delivery: ok is
// false for other events and actions. The request names the repository's
// service, the environment, the deployment's sha as commit, its
// payload.version (else the sha) as version, and the change keys
// found in the deployment's description and payload and in the pull
// requests' titles. It is pure: the head commit's message is read by the
// caller (Webhook.GateRequest).
func ParseProtectionRule(eventType string, body []byte) (ev protectionRule, ok bool, err error) {
	if eventType != EventProtectionRule {
		return ev, false, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		return ev, true, core.Invalid("body", "not a deployment_protection_rule event: %v", err)
	}
	if ev.Action != "requested" {
		return ev, false, nil
	}
	switch {
	case ev.Environment == "":
		return ev, true, core.Invalid("environment", "the protection rule names no environment")
	case ev.Deployment == nil || !shaPattern.MatchString(ev.Deployment.SHA):
		return ev, true, core.Invalid("deployment.sha", "the protection rule names no deployment commit")
	case !repoPattern.MatchString(ev.Repository.FullName):
		return ev, true, core.Invalid("repository.full_name", "%q is not owner/name", ev.Repository.FullName)
	case ev.Installation == nil || ev.Installation.ID == "":
		return ev, true, core.Invalid("installation.id", "the event names no app installation (is it delivered to the GitHub App's webhook?)")
	}
	m := callbackRun.FindStringSubmatch(ev.CallbackURL)
	if m == nil {
		return ev, true, core.Invalid("deployment_callback_url", "is not a …/actions/runs/{run_id}/deployment_protection_rule URL")
	}
	if !strings.EqualFold(m[1], ev.Repository.FullName) {
		return ev, true, core.Invalid("deployment_callback_url", "names another repository than the event")
	}
	return ev, true, nil
}

func (ev protectionRule) runID() string { return callbackRun.FindStringSubmatch(ev.CallbackURL)[2] }

// version is the deployment's payload.version when it names one (as the
// deployment_status mapping reads it), else its commit.
func (ev protectionRule) version() string {
	var p struct {
		Version any `json:"version"`
	}
	if len(ev.Deployment.Payload) > 0 && json.Unmarshal(ev.Deployment.Payload, &p) == nil {
		switch v := p.Version.(type) {
		case string:
			if v = strings.TrimSpace(v); v != "" {
				return v
			}
		case float64:
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
	}
	return ev.Deployment.SHA
}

// texts are where change keys are looked for, head commit message aside.
func (ev protectionRule) texts() []string {
	var out []string
	if d := ev.Deployment.Description; d != nil {
		out = append(out, *d)
	}
	if len(ev.Deployment.Payload) > 0 && string(ev.Deployment.Payload) != "{}" {
		out = append(out, string(ev.Deployment.Payload))
	}
	for _, pr := range ev.PullRequests {
		out = append(out, pr.Title)
	}
	return out
}

// GateRequest implements service.GateRequester: a deployment protection
// rule is a gate request answered through its callback. The head commit's
// message is read from the API for its change keys (a failure to read it
// only loses those keys).
func (w *Webhook) GateRequest(ctx context.Context, eventType string, body []byte) (core.PendingGate, bool, error) {
	ev, ok, err := ParseProtectionRule(eventType, body)
	if !ok || err != nil {
		return core.PendingGate{}, ok, err
	}
	texts := ev.texts()
	if w.app != nil {
		// A commit that cannot be read (gone, or not the App's to read)
		// only loses its keys (the request then waits or is denied for
		// NO_CHANGE, visibly); one GitHub cannot answer now (down, rate
		// limited) is read again with the event's retry, rather than
		// judged without its keys.
		msg, err := w.app.commitMessage(ctx, ev.Installation.ID.String(), ev.Repository.FullName, ev.Deployment.SHA)
		switch {
		case err == nil:
			texts = append(texts, msg)
		case core.IsKind(err, core.KindUnavailable):
			return core.PendingGate{}, false, err
		}
	}
	run := ev.runID()
	runURL := strings.TrimSuffix(ev.Repository.HTMLURL, "/") + "/actions/runs/" + run
	if ev.Repository.HTMLURL == "" {
		runURL = ev.CallbackURL
	}
	actor := ""
	if ev.Deployment.Creator != nil {
		actor = ev.Deployment.Creator.Login
	} else if ev.Sender != nil {
		actor = ev.Sender.Login
	}
	req := core.GateRequest{
		Service: w.gate.Service(ev.Repository.FullName), Environment: ev.Environment, Version: ev.version(),
		Commit: ev.Deployment.SHA, Changes: w.gate.ChangeKeys(texts...), Actor: actor,
		Pipeline: &core.Pipeline{Provider: Type, RunID: run, URL: runURL},
	}
	return core.PendingGate{
		Provider: Type,
		// One request per deployment: a re-run of the job creates a new
		// deployment, so it is a new request, evaluated for its own commit.
		ExternalID: "deployment:" + ev.Deployment.ID.String(),
		Repository: strings.ToLower(ev.Repository.FullName),
		Request:    req, RunURL: runURL,
		Target: map[string]string{
			"repository": ev.Repository.FullName, "run_id": run, "environment_name": ev.Environment,
			"installation_id": ev.Installation.ID.String(), "deployment_id": ev.Deployment.ID.String(),
		},
	}, true, nil
}

// NotYetStarted implements service.NotYetStarted: GitHub sends the
// "deployment" event when the job is queued, before the protection rule
// holds it; its deployment statuses say when it runs.
func (w *Webhook) NotYetStarted(eventType string) bool { return eventType == "deployment" }

// Answer implements service.Answerer: it reviews the protection rule
// (POST /repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule)
// as the GitHub App installation the event came from. GitHub renders the
// comment as Markdown, and its reasons quote ITSM records and the
// pipeline: it goes as inert Markdown (a title's @team would be notified,
// its image fetched), cut again to GitHub's limit, which the escapes may
// have passed.
func (w *Webhook) Answer(ctx context.Context, p core.PendingGate, approved bool, comment string) error {
	if w.app == nil {
		return core.Errorf(core.KindInvalid, "connector has no GitHub App configured")
	}
	state := "rejected"
	if approved {
		state = "approved"
	}
	t := p.Target
	return w.app.review(ctx, t["installation_id"], t["repository"], t["run_id"], reviewBody{
		EnvironmentName: t["environment_name"], State: state, Comment: inert.MarkdownClip(comment, connectors.MaxComment),
	})
}

// PrepareAnswer implements service.AnswerPreparer: it fetches (or finds
// cached) the installation token Answer needs, so the review is sent
// moments after the worker confirmed its decision, not after a token
// fetch retried for minutes.
func (w *Webhook) PrepareAnswer(ctx context.Context, p core.PendingGate) error {
	if w.app == nil {
		return core.Errorf(core.KindInvalid, "connector has no GitHub App configured")
	}
	_, err := w.app.installationToken(ctx, p.Target["installation_id"])
	return err
}

// AnswerTaken implements service.AnswerChecker: it reads the statuses of
// the deployment held at the rule. A deployment that reached in_progress
// or success ran, which GitHub lets it do only once every protection
// rule approved: an approval was taken. One that ended in failure or
// error without ever running was stopped: a rejection was taken. Any
// other state (still waiting, no statuses, or the opposite of the answer
// sent) cannot tell, and why says what GitHub shows; an approval is never
// inferred from anything but the deployment having run.
func (w *Webhook) AnswerTaken(ctx context.Context, p core.PendingGate, approved bool) (bool, string, error) {
	if w.app == nil {
		return false, "", core.Errorf(core.KindInvalid, "connector has no GitHub App configured")
	}
	t := p.Target
	id := t["deployment_id"]
	if id == "" {
		return false, "the request names no deployment to read back", nil
	}
	statuses, err := w.app.deploymentStatuses(ctx, t["installation_id"], t["repository"], id)
	if err != nil {
		return false, "", err
	}
	ran, stopped := false, false
	var seen []string
	for _, st := range statuses {
		switch st.State {
		case "in_progress", "success":
			ran = true
		case "failure", "error":
			stopped = true
		}
		seen = append(seen, st.State)
	}
	shows := "GitHub shows deployment " + id + " with no status"
	if len(seen) > 0 {
		shows = "GitHub shows deployment " + id + " with statuses " + strings.Join(seen, ", ")
	}
	switch {
	case ran && approved:
		return true, shows + ": it ran, so the approval was taken", nil
	case ran:
		return false, shows + ": it ran although tollgate rejected it (the rejection was not taken, or the rule was bypassed)", nil
	case stopped && !approved:
		return true, shows + ": it never ran, so the rejection was taken", nil
	case stopped:
		return false, shows + ": it never ran, so the approval was not taken or another rule stopped it", nil
	}
	return false, shows + ": it has not run yet, so whether the answer was taken cannot be told", nil
}
