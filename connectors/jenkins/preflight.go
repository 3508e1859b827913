package jenkins

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
)

// Preflight implements the doctor's check of the connector against its
// Jenkins, with the configured user and API token; it only reads (GET
// requests), never changes anything. In order:
//
//   - "credentials": Jenkins accepts the user and token (else that is the
//     only finding), and reads as that user, not as anonymous;
//   - "job <path>", for each configured job: the user may read it, and it
//     is a job that builds (not disabled, not a folder);
//   - "plugin": the Notification plugin, which sends builds to tollgate
//     as they happen, is installed and active.
//
// A connector without an API has nothing to check: nil.
func (w *Webhook) Preflight(ctx context.Context, _ connectors.PreflightInput) []connectors.Finding {
	if w.api == nil {
		return nil
	}
	creds, goOn := w.checkCredentials(ctx)
	if !goOn {
		return []connectors.Finding{creds}
	}
	out := []connectors.Finding{creds}
	for _, job := range w.jobs {
		out = append(out, w.checkJob(ctx, job))
	}
	return append(out, w.checkPlugin(ctx))
}

// checkCredentials is the "credentials" check (GET /whoAmI/api/json);
// goOn is false when there is no point in the others.
func (w *Webhook) checkCredentials(ctx context.Context) (connectors.Finding, bool) {
	var who struct {
		Name          string `json:"name"`
		Anonymous     bool   `json:"anonymous"`
		Authenticated *bool  `json:"authenticated"`
	}
	err := w.api.get(ctx, "/whoAmI/api/json", "who am I", &who)
	switch st := apiclient.Status(err); {
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		return connectors.Fail("credentials", "Jenkins refused user "+w.api.user+" or its API token (HTTP "+strconv.Itoa(st)+
			"): tollgate cannot read the jobs' builds"), false
	case err != nil:
		return connectors.Fail("credentials", err.Error()), false
	case who.Anonymous || (who.Authenticated != nil && !*who.Authenticated):
		return connectors.Warn("credentials", "Jenkins reads tollgate's calls as anonymous: jobs anonymous may not read are hidden; "+
			"set the API user and token"), true
	}
	return connectors.OK("credentials", "as "+who.Name), true
}

// checkJob is the "job <path>" check.
func (w *Webhook) checkJob(ctx context.Context, job string) connectors.Finding {
	check := "job " + job
	var j struct {
		Name      string `json:"name"`
		Buildable *bool  `json:"buildable"` // absent for a folder
	}
	err := w.api.get(ctx, jobPath(job)+"/api/json?tree="+url.QueryEscape("name,buildable"), check, &j)
	switch st := apiclient.Status(err); {
	case st == http.StatusNotFound || st == http.StatusForbidden:
		return connectors.Fail(check, "no job "+job+", or the user may not read it")
	case err != nil:
		return connectors.Fail(check, err.Error())
	case j.Buildable == nil:
		return connectors.Warn(check, job+" is not a job that builds (a folder?): it has no builds of its own to read")
	case !*j.Buildable:
		return connectors.Warn(check, job+" is disabled: it runs no builds until it is enabled again")
	}
	return connectors.OK(check, "readable and buildable")
}

// checkPlugin is the "plugin" check: whether the Notification plugin is
// installed and active (GET /pluginManager/api/json).
func (w *Webhook) checkPlugin(ctx context.Context) connectors.Finding {
	var pm struct {
		Plugins []struct {
			ShortName string `json:"shortName"`
			Active    bool   `json:"active"`
			Version   string `json:"version"`
		} `json:"plugins"`
	}
	err := w.api.get(ctx, "/pluginManager/api/json?tree="+url.QueryEscape("plugins[shortName,active,version]"), "plugins", &pm)
	switch {
	case apiclient.Status(err) == http.StatusForbidden:
		return connectors.Warn("plugin", "cannot list plugins (needs Overall/SystemRead or Administer): "+
			"whether the Notification plugin is installed is not checked")
	case err != nil:
		return connectors.Warn("plugin", "whether the Notification plugin is installed is not checked: "+err.Error())
	}
	const polling = ": builds reach tollgate only by polling every poll_interval"
	for _, p := range pm.Plugins {
		switch {
		case p.ShortName != "notification":
		case p.Active:
			return connectors.OK("plugin", "Notification plugin "+p.Version+" is installed and active")
		default:
			return connectors.Warn("plugin", "the Notification plugin "+p.Version+" is installed but not active"+polling)
		}
	}
	return connectors.Warn("plugin", "the Notification plugin is not installed"+polling)
}
