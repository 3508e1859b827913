package gitlab

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/connectors/internal/rebase"
	"github.com/tollgate-dev/tollgate/core"
)

// GitLab sends a Deployment Hook once. A deployment held for approval
// whose hook found tollgate away stays blocked until someone approves it
// by hand: nothing would ever put it before the gate; and a deployment
// that ran meanwhile (approved by hand, or to an environment without
// approvals) is one the reconciler never sees. The poller asks GitLab
// for the configured projects' deployments that wait (status blocked)
// and for those updated since its watermark, and hands each to the inbox
// as the hook GitLab would have sent: a deployment tollgate already has
// a gate request for is that request (the CI gates know it by its
// deployment id), and one it has recorded is recorded again as it is.

// CloseIdleConnections closes the API client's idle connections.
func (w *Webhook) CloseIdleConnections() {
	if w.api != nil {
		w.api.http.CloseIdleConnections()
	}
}

// Polls reports whether the connector polls its projects' deployments
// (an api block and projects; with approvals too, the waiting ones are
// gate requests), or watches its groups' webhooks after each poll (an api
// block and groups: a poll of no project reads nothing).
func (w *Webhook) Polls() bool { return w.api != nil && (len(w.projects) > 0 || len(w.groups) > 0) }

// Poll implements service.PollSource: the configured projects'
// deployments that started, ran or ended since since, oldest first
// across the projects, then every deployment still waiting for approval
// (status blocked, whenever it was last updated: they are few), as
// Deployment Hook records; the inbox stores each once per update. The
// order keeps the poller's watermark (the newest record stored) from
// passing a deployment not yet stored when a call fails part-way. A
// project with more deployments since since than one poll reads (after
// a long outage) is read oldest first up to the limit, and nothing newer
// than the last one read is emitted, from any project, so the next poll
// goes on from there.
func (w *Webhook) Poll(ctx context.Context, since time.Time, emit func(connectors.Record) error) error {
	if !w.Polls() {
		return core.Errorf(core.KindInvalid, "connector has no GitLab API and projects or groups to poll")
	}
	projects := make([]glProject, len(w.projects))
	var recent []projectDeployment
	var cutoff time.Time // zero: every project read to the end
	for i, ref := range w.projects {
		p, err := w.project(ctx, ref)
		if err != nil {
			return err
		}
		projects[i] = p
		ds, more, err := w.recent(ctx, ref, p, since)
		if err != nil {
			return err
		}
		if more && len(ds) > 0 && (cutoff.IsZero() || ds[len(ds)-1].UpdatedAt.Before(cutoff)) {
			cutoff = ds[len(ds)-1].UpdatedAt
		}
		for _, d := range ds {
			recent = append(recent, projectDeployment{p, d})
		}
	}
	after := func(d glDeployment) bool { return !cutoff.IsZero() && d.UpdatedAt.After(cutoff) }
	sort.SliceStable(recent, func(i, j int) bool { return recent[i].d.UpdatedAt.Before(recent[j].d.UpdatedAt) })
	for _, r := range recent {
		if after(r.d) {
			break
		}
		if r.d.Status == "blocked" || r.d.Status == "created" {
			continue // the waiting ones are emitted below; created ones have not started
		}
		if err := emitHook(r.p, r.d, emit); err != nil {
			return err
		}
	}
	for i, ref := range w.projects {
		if err := w.emitBlocked(ctx, ref, projects[i], after, emit); err != nil {
			return err
		}
	}
	return nil
}

type projectDeployment struct {
	p glProject
	d glDeployment
}

// emitHook emits deployment d of project p as its Deployment Hook.
func emitHook(p glProject, d glDeployment, emit func(connectors.Record) error) error {
	body, err := json.Marshal(hookOf(p, d))
	if err != nil {
		return err
	}
	return emit(connectors.Record{Type: "Deployment Hook", Key: "deployment:" + d.ID.String(), UpdatedAt: d.UpdatedAt.UTC(), Body: body})
}

// glProject is what a Deployment Hook says of its project.
type glProject struct {
	ID                json.Number `json:"id"`
	Name              string      `json:"name"`
	PathWithNamespace string      `json:"path_with_namespace"`
	WebURL            string      `json:"web_url"`
}

// glDeployment is a deployment as GET /projects/:id/deployments lists it.
type glDeployment struct {
	ID          json.Number `json:"id"`
	Ref         string      `json:"ref"`
	SHA         string      `json:"sha"`
	Status      string      `json:"status"`
	UpdatedAt   time.Time   `json:"updated_at"`
	User        *glUser     `json:"user"`
	Environment struct {
		Name        string `json:"name"`
		ExternalURL string `json:"external_url"`
	} `json:"environment"`
	Deployable *struct {
		ID        json.Number `json:"id"`
		WebURL    string      `json:"web_url"`
		StartedAt *time.Time  `json:"started_at"`
		Commit    *struct {
			Title string `json:"title"`
		} `json:"commit"`
	} `json:"deployable"`
}

type glUser struct {
	Username string `json:"username"`
	Name     string `json:"name"`
}

// pollPages bounds the pages read per project, listing and poll (100
// deployments a page).
const pollPages = 20

// maxPages is how many pages of a listing one run reads: def, or the
// tests' smaller number.
func (a *api) maxPages(def int) int {
	if a.pages > 0 {
		return a.pages
	}
	return def
}

// emitBlocked emits the project's deployments waiting for approval, but
// none updated after the poll's cutoff (skip): the next poll emits those.
func (w *Webhook) emitBlocked(ctx context.Context, ref string, proj glProject, skip func(glDeployment) bool, emit func(connectors.Record) error) error {
	for page := 1; page <= w.api.maxPages(pollPages); page++ {
		var ds []glDeployment
		q := url.Values{"status": {"blocked"}, "order_by": {"id"}, "sort": {"asc"}, "per_page": {"100"}, "page": {strconv.Itoa(page)}}
		h, err := w.api.get(ctx, "/api/v4/projects/"+url.PathEscape(proj.ID.String())+"/deployments?"+q.Encode(),
			"project "+ref+" deployments waiting for approval", &ds)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if d.Status != "blocked" || d.ID == "" || skip(d) {
				continue // a GitLab that ignores the filter lists the others too
			}
			if err := emitHook(proj, d, emit); err != nil {
				return err
			}
		}
		if h.Get("X-Next-Page") == "" || len(ds) == 0 {
			return nil
		}
	}
	return nil
}

// recent lists the project's deployments updated since since, oldest
// first, and whether more remain past the pages one poll reads. Each page
// is asked from the newest update read so far (package rebase; GitLab
// pages by number, so from the page holding that offset): with plain
// page numbers, a deployment updated while the pages are read would
// shift the listing and one would be skipped for good.
func (w *Webhook) recent(ctx context.Context, ref string, proj glProject, since time.Time) ([]glDeployment, bool, error) {
	const per = 100
	var out []glDeployment
	cur := rebase.New(since.UTC(), time.Second, per)
	for range w.api.maxPages(pollPages) {
		at, offset := cur.Next()
		var ds []glDeployment
		q := url.Values{"order_by": {"updated_at"}, "sort": {"asc"}, "per_page": {strconv.Itoa(per)}, "page": {strconv.Itoa(offset/per + 1)},
			"updated_after": {at.Format(time.RFC3339)}}
		h, err := w.api.get(ctx, "/api/v4/projects/"+url.PathEscape(proj.ID.String())+"/deployments?"+q.Encode(),
			"project "+ref+" deployments since "+at.Format(time.RFC3339), &ds)
		if err != nil {
			return nil, false, err
		}
		var page []glDeployment
		for _, d := range ds {
			if d.ID != "" && !d.UpdatedAt.Before(since) {
				page = append(page, d)
			}
		}
		ids, times := make([]string, len(page)), make([]time.Time, len(page))
		for i, d := range page {
			ids[i], times[i] = d.ID.String(), d.UpdatedAt
		}
		more := h.Get("X-Next-Page") != "" && len(ds) > 0
		for i, fresh := range cur.Read(ids, times) {
			if fresh {
				out = append(out, page[i])
			}
		}
		if !more {
			return out, false, nil
		}
	}
	return out, true, nil
}

// hookOf is the Deployment Hook GitLab sends for deployment d in its
// current status (status_changed_at: its last update).
func hookOf(p glProject, d glDeployment) deploymentHook {
	h := deploymentHook{
		ObjectKind: "deployment", Status: d.Status, StatusChangedAt: d.UpdatedAt.UTC().Format(time.RFC3339),
		DeploymentID: d.ID, Environment: d.Environment.Name, ExternalURL: d.Environment.ExternalURL,
		Project: p, User: d.User, Ref: d.Ref, CommitURL: p.WebURL + "/-/commit/" + d.SHA, ShortSHA: d.SHA,
	}
	if len(d.SHA) > 8 {
		h.ShortSHA = d.SHA[:8]
	}
	if dep := d.Deployable; dep != nil {
		h.DeployableID, h.DeployableURL = dep.ID, dep.WebURL
		if dep.StartedAt != nil && !dep.StartedAt.IsZero() && d.Status != "created" && d.Status != "blocked" {
			h.DeployableStartedAt = dep.StartedAt.UTC().Format(time.RFC3339)
		}
		if h.DeployableURL == "" && dep.ID != "" {
			h.DeployableURL = p.WebURL + "/-/jobs/" + dep.ID.String()
		}
		if dep.Commit != nil {
			h.CommitTitle = dep.Commit.Title
		}
	}
	return h
}

// project returns a configured project (an id or a path) as GitLab
// names it, read once.
func (w *Webhook) project(ctx context.Context, ref string) (glProject, error) {
	if p, ok := w.projectsRead.Load(ref); ok {
		return p.(glProject), nil
	}
	var p glProject
	if _, err := w.api.get(ctx, "/api/v4/projects/"+url.PathEscape(ref), "project "+ref, &p); err != nil {
		return p, err
	}
	if p.ID == "" {
		return p, core.Errorf(core.KindUnavailable, "%s: project %s: the answer has no id", w.api.system, ref)
	}
	w.projectsRead.Store(ref, p)
	return p, nil
}

// get reads one API answer into out and returns its headers.
func (a *api) get(ctx context.Context, path, what string, out any) (http.Header, error) {
	what = a.system + ": " + what
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return nil, core.Wrap(core.KindInvalid, err, what+": bad request")
	}
	req.Header.Set("PRIVATE-TOKEN", a.token)
	resp, err := a.http.Do(req)
	if err != nil {
		err = apiclient.UnwrapURL(err) // the caller names what was asked
		return nil, core.Wrap(core.KindUnavailable, err, what)
	}
	body, rerr := apiclient.ReadBody(resp, 4<<20)
	if resp.StatusCode >= 300 {
		return nil, a.refusal(resp.StatusCode, body, what)
	}
	if rerr != nil {
		return nil, core.Wrap(core.KindUnavailable, rerr, what)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return nil, core.Wrap(core.KindUnavailable, err, what+": unreadable answer")
	}
	return resp.Header, nil
}
