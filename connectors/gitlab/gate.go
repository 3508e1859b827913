package gitlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
)

// deploymentHook is the part of a Deployment Hook a gate request needs.
type deploymentHook struct {
	ObjectKind    string      `json:"object_kind"`
	Status        string      `json:"status"`
	DeploymentID  json.Number `json:"deployment_id"`
	DeployableURL string      `json:"deployable_url"`
	Environment   string      `json:"environment"`
	ShortSHA      string      `json:"short_sha"`
	CommitURL     string      `json:"commit_url"`
	CommitTitle   string      `json:"commit_title"`
	Ref           string      `json:"ref"`
	Project       struct {
		ID                json.Number `json:"id"`
		PathWithNamespace string      `json:"path_with_namespace"`
		WebURL            string      `json:"web_url"`
	} `json:"project"`
	User *struct {
		Username string `json:"username"`
	} `json:"user"`
}

var commitSHA = regexp.MustCompile(`([0-9a-f]{7,64})$`)

// ParseBlockedDeployment reads a Deployment Hook: ok is true only for a
// deployment with status blocked (held for approval on a protected
// environment). Its commit (and version, as the gitlab-deployment mapping
// reads it) is the sha at the end of commit_url, else short_sha; change
// keys come from the commit title.
func ParseBlockedDeployment(eventType string, body []byte) (ev deploymentHook, ok bool, err error) {
	if eventType != "Deployment Hook" && eventType != "deployment" {
		return ev, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&ev); err != nil {
		return ev, true, core.Invalid("body", "not a Deployment Hook: %v", err)
	}
	if ev.Status != "blocked" {
		return ev, false, nil
	}
	switch {
	case ev.DeploymentID == "":
		return ev, true, core.Invalid("deployment_id", "is required")
	case ev.Project.ID == "":
		return ev, true, core.Invalid("project.id", "is required")
	case ev.Environment == "":
		return ev, true, core.Invalid("environment", "is required")
	case ev.sha() == "":
		return ev, true, core.Invalid("commit_url", "names no commit (nor does short_sha)")
	}
	return ev, true, nil
}

func (ev deploymentHook) sha() string {
	if m := commitSHA.FindString(ev.CommitURL); m != "" {
		return m
	}
	return commitSHA.FindString(ev.ShortSHA)
}

// GateRequest implements service.GateRequester: a deployment blocked for
// approval is a gate request, answered through the deployment approval API.
func (w *Webhook) GateRequest(_ context.Context, eventType string, body []byte) (core.PendingGate, bool, error) {
	ev, ok, err := ParseBlockedDeployment(eventType, body)
	if !ok || err != nil {
		return core.PendingGate{}, ok, err
	}
	project := ev.Project.PathWithNamespace
	if project == "" {
		project = ev.Project.ID.String()
	}
	sha := ev.sha()
	actor := ""
	if ev.User != nil {
		actor = ev.User.Username
	}
	runURL := ev.DeployableURL
	if runURL == "" {
		runURL = strings.TrimSuffix(ev.Project.WebURL, "/") + "/-/environments"
	}
	req := core.GateRequest{
		Service: w.gate.Service(project), Environment: ev.Environment, Version: sha, Commit: sha,
		Changes: w.gate.ChangeKeys(ev.CommitTitle, ev.Ref), Actor: actor,
		Pipeline: &core.Pipeline{Provider: Type, RunID: ev.DeploymentID.String(), URL: runURL},
	}
	return core.PendingGate{
		Provider: Type, ExternalID: "deployment:" + ev.DeploymentID.String(),
		Request: req, RunURL: runURL,
		Target: map[string]string{"project_id": ev.Project.ID.String(), "deployment_id": ev.DeploymentID.String(), "project": project},
	}, true, nil
}

// Answer implements service.Answerer: POST
// /api/v4/projects/:id/deployments/:deployment_id/approval with the
// configured approver token.
func (w *Webhook) Answer(ctx context.Context, p core.PendingGate, approved bool, comment string) error {
	if w.api == nil {
		return core.Errorf(core.KindInvalid, "connector has no GitLab API configured")
	}
	status := "rejected"
	if approved {
		status = "approved"
	}
	b, err := json.Marshal(map[string]string{"status": status, "comment": comment})
	if err != nil {
		return fmt.Errorf("encode approval: %w", err)
	}
	what := w.api.system + ": deployment " + p.Target["deployment_id"] + " approval"
	u := w.api.base + "/api/v4/projects/" + url.PathEscape(p.Target["project_id"]) + "/deployments/" + url.PathEscape(p.Target["deployment_id"]) + "/approval"
	// Safe to repeat: GitLab keeps one approval per user and deployment
	// (Deployments::ApprovalService upserts it), so a second one updates
	// the first or is refused once the deployment no longer waits.
	req, err := http.NewRequestWithContext(apiclient.Idempotent(ctx), http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return core.Wrap(core.KindInvalid, err, what+": bad request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("PRIVATE-TOKEN", w.api.token)
	resp, err := w.api.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL adds nothing to what was asked
		}
		return core.Wrap(core.KindUnavailable, err, what)
	}
	body, _ := apiclient.ReadBody(resp, 1<<20)
	if resp.StatusCode < 300 {
		// The status is the answer: GitLab recorded the approval, whatever
		// the body says (asking again would meet "already approved").
		return nil
	}
	var msg struct {
		Message any    `json:"message"`
		Error   string `json:"error"`
	}
	_ = json.Unmarshal(body, &msg)
	text := msg.Error
	if text == "" && msg.Message != nil {
		text = fmt.Sprint(msg.Message)
	}
	se := &apiclient.StatusError{Status: resp.StatusCode, Message: apiclient.Trim(text)}
	kind := core.KindInvalid // GitLab refused it for good (already approved, not blocked any more …)
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusUnauthorized {
		kind = core.KindUnavailable
	}
	return core.Wrap(kind, se, what)
}

// api is the GitLab API access of a connector that answers approvals.
type api struct {
	system string // "GitLab <connector>", in errors
	base   string
	token  string
	http   *http.Client
}
