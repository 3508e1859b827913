package gitlab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/inert"
)

// deploymentHook is a Deployment Hook (fixtures/gitlab/deployment_hook.json's
// fields that tollgate reads): what a gate request needs, and what the
// poller writes for a deployment whose hook never came (poll.go).
type deploymentHook struct {
	ObjectKind      string `json:"object_kind"`
	Status          string `json:"status"`
	StatusChangedAt string `json:"status_changed_at,omitempty"`
	// DeployableStartedAt is not in GitLab's hook: the poller adds the
	// deployment job's start, so a deployment it sees only once finished
	// (its running hook lost) is judged as of when it ran, not of its
	// last update (gitlab-deployment reads it first for started_at).
	DeployableStartedAt string      `json:"deployable_started_at,omitempty"`
	DeploymentID        json.Number `json:"deployment_id"`
	DeployableID        json.Number `json:"deployable_id,omitempty"`
	DeployableURL       string      `json:"deployable_url,omitempty"`
	Environment         string      `json:"environment"`
	ExternalURL         string      `json:"environment_external_url,omitempty"`
	ShortSHA            string      `json:"short_sha"`
	CommitURL           string      `json:"commit_url"`
	CommitTitle         string      `json:"commit_title"`
	Ref                 string      `json:"ref"`
	Project             glProject   `json:"project"`
	User                *glUser     `json:"user,omitempty"`
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
// The deployment is read back from GitLab first (confirm): what is
// evaluated and answered is GitLab's deployment, not the hook's word. When
// the read-back refuses the request, p still names it (ExternalID), so a
// caller can tell a redelivery of a request it already holds.
func (w *Webhook) GateRequest(ctx context.Context, eventType string, body []byte) (core.PendingGate, bool, error) {
	ev, ok, err := ParseBlockedDeployment(eventType, body)
	if !ok || err != nil {
		return core.PendingGate{}, ok, err
	}
	project := ev.Project.PathWithNamespace
	if project == "" {
		project = ev.Project.ID.String()
	}
	if w.api != nil {
		if err := w.confirm(ctx, project, &ev); err != nil {
			return core.PendingGate{Provider: Type, ExternalID: "deployment:" + ev.DeploymentID.String()}, true, err
		}
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
		Provider: Type, ExternalID: "deployment:" + ev.DeploymentID.String(), Repository: strings.ToLower(project),
		Request: req, RunURL: runURL,
		Target: map[string]string{"project_id": ev.Project.ID.String(), "deployment_id": ev.DeploymentID.String(), "project": project},
	}, true, nil
}

// confirm reads the hook's deployment back from GitLab
// (GET /projects/:path/deployments/:id) and holds the request to it. A
// webhook token proves only that the sender holds it, and one token may
// serve many projects (a group's hook, one secret configured everywhere):
// a maintainer of one project could otherwise sign a hook naming another
// project's waiting deployment with their own commit, environment and
// change keys, and tollgate would approve that deployment with its own
// credentials. Read by the project's path, the deployment is found only
// in the project the request names (its service); it must still be
// blocked, for the hook's commit and environment. GitLab's commit,
// environment, ref, user and commit title then replace the hook's (a
// field GitLab leaves out keeps the hook's). A refusal is KindInvalid (the
// event is quarantined with it); a failed read is KindUnavailable (the
// event is retried).
func (w *Webhook) confirm(ctx context.Context, project string, ev *deploymentHook) error {
	id := ev.DeploymentID.String()
	var d glDeployment
	if _, err := w.api.get(ctx, "/api/v4/projects/"+url.PathEscape(project)+"/deployments/"+url.PathEscape(id),
		"reading back deployment "+id+" of project "+project, &d); err != nil {
		if core.IsKind(err, core.KindUnavailable) {
			return err
		}
		return core.Wrap(core.KindInvalid, err, "the request is not answered: GitLab does not show this deployment in this project to tollgate's token")
	}
	hookSHA := strings.ToLower(ev.sha())
	switch {
	case d.Status != "" && d.Status != "blocked":
		return core.Invalid("status", "GitLab shows deployment %s of %s %s: it no longer waits for approval", id, project, d.Status)
	case d.SHA != "" && !strings.HasPrefix(strings.ToLower(d.SHA), hookSHA):
		return core.Invalid("commit_url", "the hook names commit %s, GitLab's deployment %s of %s deploys %s: the request is not answered", hookSHA, id, project, d.SHA)
	case d.Environment.Name != "" && d.Environment.Name != ev.Environment:
		return core.Invalid("environment", "the hook names environment %q, GitLab's deployment %s of %s deploys to %q: the request is not answered", ev.Environment, id, project, d.Environment.Name)
	}
	if d.SHA != "" {
		ev.CommitURL, ev.ShortSHA = "", strings.ToLower(d.SHA)
	}
	if d.Ref != "" {
		ev.Ref = d.Ref
	}
	if d.User != nil && d.User.Username != "" {
		ev.User = d.User
	}
	if d.Deployable != nil && d.Deployable.Commit != nil && d.Deployable.Commit.Title != "" {
		ev.CommitTitle = d.Deployable.Commit.Title
	}
	return nil
}

// answerProject is the project a request is answered in: the one its
// deployment was read back and confirmed in (GateRequest's "project", a
// path), never the hook's project id, which confirm did not check — a
// forged hook with a bogus id, raced ahead of GitLab's own, would have
// the answer go to a project that is not the deployment's (refused), and
// GitLab's hook, then a redelivery of a known request, never answered.
// A request stored without it falls back to the id.
func answerProject(p core.PendingGate) string {
	if project := p.Target["project"]; project != "" {
		return project
	}
	return p.Target["project_id"]
}

// maxApprovalComment bounds an approval's comment in bytes: GitLab refuses
// one over 255 characters (Deployments::Approval validates it) with a 400,
// which would leave the deployment unanswered; a character is at least a
// byte. The decision id sentBy looks for leads the comment and survives
// the cut.
const maxApprovalComment = 250

// approvalComment is what goes as an answer's comment: inert Markdown
// (GitLab renders it, and its reasons quote ITSM records and the pipeline:
// a title's @group would be notified, its image fetched), cut to
// maxApprovalComment after the escapes that lengthen it.
func approvalComment(comment string) string {
	return inert.MarkdownClip(comment, maxApprovalComment)
}

// Answer implements service.Answerer: POST
// /api/v4/projects/:path/deployments/:deployment_id/approval (the project
// the deployment was confirmed in) with the configured approver token.
func (w *Webhook) Answer(ctx context.Context, p core.PendingGate, approved bool, comment string) error {
	if w.api == nil {
		return core.Errorf(core.KindInvalid, "connector has no GitLab API configured")
	}
	status := "rejected"
	if approved {
		status = "approved"
	}
	b, err := json.Marshal(map[string]string{"status": status, "comment": approvalComment(comment)})
	if err != nil {
		return fmt.Errorf("encode approval: %w", err)
	}
	// Safe to repeat: GitLab keeps one approval per user and deployment
	// (Deployments::ApprovalService upserts it), so a second one updates
	// the first or is refused once the deployment no longer waits. The
	// status is the answer: GitLab recorded the approval whatever the body
	// says (asking again would meet "already approved").
	return w.api.post(ctx, "/api/v4/projects/"+url.PathEscape(answerProject(p))+"/deployments/"+url.PathEscape(p.Target["deployment_id"])+"/approval",
		b, "deployment "+p.Target["deployment_id"]+" approval")
}

// post sends a POST that is safe to repeat (its retries included), with
// body as JSON when there is one: nil when GitLab answers 2xx, else
// GitLab's refusal.
func (a *api) post(ctx context.Context, path string, body []byte, what string) error {
	what = a.system + ": " + what
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(apiclient.Idempotent(ctx), http.MethodPost, a.base+path, rd)
	if err != nil {
		return core.Wrap(core.KindInvalid, err, what+": bad request")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("PRIVATE-TOKEN", a.token)
	resp, err := a.http.Do(req)
	if err != nil {
		err = apiclient.UnwrapURL(err) // the caller names what was asked
		return core.Wrap(core.KindUnavailable, err, what)
	}
	answer, _ := apiclient.ReadBody(resp, 1<<20)
	if resp.StatusCode < 300 {
		return nil
	}
	return a.refusal(resp.StatusCode, answer, what)
}

// AnswerTaken implements service.AnswerChecker: it reads the deployment
// (GET /api/v4/projects/:path/deployments/:deployment_id) and looks among
// its approvals for the answer tollgate sent, known by its comment (which
// names the decision). The answer is taken when that approval carries
// the status sent; anything else — no such approval, or the other
// status — cannot tell, and why says what GitLab shows. An approval is
// never inferred from the deployment's own status, which other approval
// rules also move.
func (w *Webhook) AnswerTaken(ctx context.Context, p core.PendingGate, approved bool) (bool, string, error) {
	if w.api == nil {
		return false, "", core.Errorf(core.KindInvalid, "connector has no GitLab API configured")
	}
	id := p.Target["deployment_id"]
	if id == "" {
		return false, "the request names no deployment to read back", nil
	}
	var d struct {
		Status    string `json:"status"`
		Approvals []struct {
			Status  string `json:"status"`
			Comment string `json:"comment"`
		} `json:"approvals"`
	}
	if _, err := w.api.get(ctx, "/api/v4/projects/"+url.PathEscape(answerProject(p))+"/deployments/"+url.PathEscape(id), "deployment "+id, &d); err != nil {
		return false, "", err
	}
	want := "rejected"
	if approved {
		want = "approved"
	}
	shows := fmt.Sprintf("GitLab shows deployment %s %s with %d approval(s)", id, d.Status, len(d.Approvals))
	for _, a := range d.Approvals {
		if !sentBy(p, a.Comment) {
			continue
		}
		if a.Status == want {
			return true, shows + ", tollgate's among them " + want + ": the answer was taken", nil
		}
		return false, shows + ", tollgate's among them " + a.Status + " where " + want + " was sent", nil
	}
	return false, shows + ", none of them tollgate's: the answer was not taken, or another approver's stands in its place", nil
}

// sentBy reports whether an approval's comment is the one tollgate sent
// for p: it names p's decision (GitLab may shorten a long comment), or,
// without one, is p's comment as sent. The plain forms are what a tollgate
// sent before its comments were escaped, read back after an upgrade.
func sentBy(p core.PendingGate, comment string) bool {
	if p.DecisionID != "" {
		mark := "(decision " + p.DecisionID + ")"
		return strings.Contains(comment, inert.Markdown(mark)) || strings.Contains(comment, mark)
	}
	return comment != "" && (comment == approvalComment(p.Comment) ||
		comment == p.Comment || comment == apiclient.Clip(p.Comment, maxApprovalComment))
}

// refusal is the error of a GitLab API answer with a status of 300 or
// more: GitLab's message, transient for 5xx, 429 and 401, final
// otherwise.
func (a *api) refusal(status int, body []byte, what string) error {
	var msg struct {
		Message any    `json:"message"`
		Error   string `json:"error"`
	}
	_ = json.Unmarshal(body, &msg)
	text := msg.Error
	if text == "" && msg.Message != nil {
		text = fmt.Sprint(msg.Message)
	}
	se := &apiclient.StatusError{Status: status, Message: apiclient.Trim(text)}
	kind := core.KindInvalid // GitLab refused it for good (already approved, not blocked any more …)
	if status >= 500 || status == http.StatusTooManyRequests || status == http.StatusUnauthorized {
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
	pages  int // pages of a listing one run reads (0: the listing's own bound; tests lower it)
}
