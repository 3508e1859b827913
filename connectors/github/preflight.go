package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
)

// The preflight's checks, in the order they are reported.
const (
	checkApp           = "app"
	checkEvents        = "events"
	checkPermissions   = "permissions"
	checkWebhook       = "webhook"
	checkInstallations = "installations"
	checkDeliveries    = "deliveries"
)

// preflightDeliveries is how many of the App's latest deliveries the
// preflight looks at.
const preflightDeliveries = 50

// maxNamed bounds the accounts a finding names.
const maxNamed = 10

// appInfo is what GET /app tells of the App.
type appInfo struct {
	ID          int64             `json:"id"`
	Slug        string            `json:"slug"`
	Events      []string          `json:"events"`
	Permissions map[string]string `json:"permissions"`
}

// hookConfig is the App's webhook configuration (GET /app/hook/config).
// GitHub shows a set secret as "********"; insecure_ssl is "0" or "1",
// as a string or a number.
type hookConfig struct {
	URL         string          `json:"url"`
	ContentType string          `json:"content_type"`
	Secret      *string         `json:"secret"`
	InsecureSSL json.RawMessage `json:"insecure_ssl"`
}

// appInstallation is one installation of the App (GET /app/installations).
// Its account is a user or organization (login) or an enterprise (slug).
type appInstallation struct {
	ID      int64 `json:"id"`
	Account *struct {
		Login string `json:"login"`
		Slug  string `json:"slug"`
	} `json:"account"`
	Permissions map[string]string `json:"permissions"`
	SuspendedAt *time.Time        `json:"suspended_at"`
}

// name is the installation's account as a finding names it.
func (i appInstallation) name() string {
	switch {
	case i.Account != nil && i.Account.Login != "":
		return i.Account.Login
	case i.Account != nil && i.Account.Slug != "":
		return i.Account.Slug
	}
	return "installation " + strconv.FormatInt(i.ID, 10)
}

// preflight is one run of Webhook.Preflight: the App client, the App JWT
// every call carries, and what the connector needs of the App.
type preflight struct {
	c    *appClient
	auth string
	gate bool
	in   connectors.PreflightInput
}

// Preflight implements the doctor's check of a GitHub connector with an App
// (api): as the App, with its JWT, it reads the App (GET /app: the app id
// and key work; the App is subscribed to the events the connector's
// profiles read, and to deployment_protection_rule with a CI gate; its
// Deployments permission lets the gate answer), the App's webhook
// configuration (it points at this connector's /webhooks/<name>, sends
// JSON, is signed and has TLS verified), the accounts the App is installed
// on, and its latest webhook deliveries. It only reads: nothing at GitHub
// changes. Without an App there is nothing to check, and it returns nil.
// The findings never hold the key, a JWT or the webhook URL's query.
func (w *Webhook) Preflight(ctx context.Context, in connectors.PreflightInput) []connectors.Finding {
	if w.app == nil {
		return nil
	}
	signed, err := w.app.appJWT()
	if err != nil {
		return []connectors.Finding{connectors.Fail(checkApp, "cannot sign the App JWT with api.private_key_file: "+err.Error())}
	}
	p := preflight{c: w.app, auth: "Bearer " + signed, gate: w.gate != nil, in: in}
	app, f := p.app(ctx)
	if f.Status == connectors.StatusFail {
		return []connectors.Finding{f}
	}
	out := []connectors.Finding{f}
	out = append(out, p.events(app)...)
	out = append(out, p.permissions(app)...)
	out = append(out, p.webhook(ctx)...)
	out = append(out, p.installations(ctx, app)...)
	out = append(out, p.deliveries(ctx, w.RedeliversFailed()))
	for _, owner := range w.owners {
		out = append(out, w.checkOwner(ctx, owner, in)...)
	}
	return out
}

// get reads path as the App into out.
func (p *preflight) get(ctx context.Context, path, what string, out any) error {
	return p.c.do(ctx, http.MethodGet, path, p.auth, nil, what, out)
}

// app reads the App: GitHub refusing its JWT means the app id or the key
// is wrong.
func (p *preflight) app(ctx context.Context) (appInfo, connectors.Finding) {
	var app appInfo
	err := p.get(ctx, "/app", "the App", &app)
	var se *apiclient.StatusError
	switch {
	case errors.As(err, &se) && se.Status == http.StatusUnauthorized:
		return app, connectors.Fail(checkApp, fmt.Sprintf("GitHub refused the App's JWT (%v): api.app_id (%s) or api.private_key_file is wrong: "+
			"the key must be one of App %s's private keys (the App's settings, Private keys), and this host's clock must be right", err, p.c.appID, p.c.appID))
	case errors.As(err, &se) && se.Status == http.StatusNotFound:
		return app, connectors.Fail(checkApp, fmt.Sprintf("%v: is api.url GitHub's API (https://api.github.com, or https://<host>/api/v3 for GitHub Enterprise Server)?", err))
	case err != nil:
		return app, connectors.Fail(checkApp, "cannot read the App: "+err.Error())
	}
	return app, connectors.OK(checkApp, fmt.Sprintf("app %q (id %d)", app.Slug, app.ID))
}

// events compares the App's event subscriptions with the events the
// connector reads.
func (p *preflight) events(app appInfo) []connectors.Finding {
	subscribed := func(e string) bool { return containsFold(app.Events, e) }
	var out []connectors.Finding
	if p.gate && !subscribed(EventProtectionRule) {
		out = append(out, connectors.Fail(checkEvents, "the App is not subscribed to "+EventProtectionRule+
			", so it cannot be a deployment protection rule and deployments are not gated by tollgate; "+
			"subscribe in the App's settings under Permissions & events (it needs Deployments: read and write), "+
			"then enable the App as a protection rule of each gated environment"))
	}
	wanted := uniqueFold(p.in.Events)
	var missing []string
	for _, e := range wanted {
		if !subscribed(e) && (!p.gate || !strings.EqualFold(e, EventProtectionRule)) {
			missing = append(missing, e)
		}
	}
	if len(missing) > 0 {
		out = append(out, connectors.Warn(checkEvents, "the App is not subscribed to "+strings.Join(missing, ", ")+
			": GitHub sends none, so the profiles that read them never see one; subscribe in the App's settings under Permissions & events"))
	}
	if len(out) > 0 {
		return out
	}
	if p.gate && !containsFold(wanted, EventProtectionRule) {
		wanted = append(wanted, EventProtectionRule)
	}
	if len(wanted) > 0 {
		return []connectors.Finding{connectors.OK(checkEvents, "the App is subscribed to every event the connector reads: "+strings.Join(wanted, ", "))}
	}
	if len(app.Events) == 0 {
		return []connectors.Finding{connectors.Warn(checkEvents, "the App is subscribed to no events, so GitHub sends it none; "+
			"subscribe in the App's settings under Permissions & events")}
	}
	return []connectors.Finding{connectors.OK(checkEvents, "the connector's profiles take any event; the App is subscribed to "+strings.Join(app.Events, ", "))}
}

// permissions checks the App's Deployments permission (and, with a CI
// gate, Contents: the gate reads a deployment's commit message for
// change keys).
func (p *preflight) permissions(app appInfo) []connectors.Finding {
	dep := app.Permissions["deployments"]
	list := "deployments: " + orNone(dep)
	var out []connectors.Finding
	switch {
	case p.gate && dep != "write":
		out = append(out, connectors.Fail(checkPermissions, "the App's Deployments permission is "+orNone(dep)+
			": the CI gate approves or rejects deployments, which needs read and write; set it in the App's settings under Permissions & events, "+
			"then have each installation's owner accept the new permission"))
	case !p.gate && dep != "read" && dep != "write":
		out = append(out, connectors.Warn(checkPermissions, "the App has no Deployments permission: deployment statuses cannot be read back; "+
			"give it Deployments: read in the App's settings under Permissions & events"))
	}
	if p.gate {
		contents := app.Permissions["contents"]
		list += ", contents: " + orNone(contents)
		if contents != "read" && contents != "write" {
			out = append(out, connectors.Warn(checkPermissions, "the App has no Contents permission: the CI gate cannot read a private repository's commit messages, "+
				"so change keys written only there are not found; give it Contents: read"))
		}
	}
	if len(out) > 0 {
		return out
	}
	return []connectors.Finding{connectors.OK(checkPermissions, list)}
}

// webhook checks the App's webhook configuration.
func (p *preflight) webhook(ctx context.Context) []connectors.Finding {
	var cfg hookConfig
	if err := p.get(ctx, "/app/hook/config", "the App's webhook configuration", &cfg); err != nil {
		return []connectors.Finding{connectors.Fail(checkWebhook, "cannot read the App's webhook configuration: "+err.Error())}
	}
	where := "https://<tollgate host>/webhooks/" + p.in.Name
	var out []connectors.Finding
	switch {
	case cfg.URL == "":
		out = append(out, connectors.Fail(checkWebhook, "the App has no webhook URL, so GitHub sends tollgate nothing; "+
			"set it to "+where+" in the App's settings (and check that its webhook is Active)"))
	case !connectors.PointsAt(cfg.URL, p.in.Name):
		out = append(out, connectors.Fail(checkWebhook, "the App's webhook URL is "+redactURL(cfg.URL)+
			", not this connector's, so GitHub sends its deliveries elsewhere; set it to "+where))
	case strings.HasPrefix(strings.ToLower(cfg.URL), "http:"):
		out = append(out, connectors.Warn(checkWebhook, "the App's webhook URL "+redactURL(cfg.URL)+
			" is plain http: deliveries cross the network unencrypted; serve tollgate over https"))
	}
	if cfg.ContentType != "json" {
		out = append(out, connectors.Fail(checkWebhook, "the App's webhook content type is "+orDefault(cfg.ContentType, "not set (GitHub's default: form)")+
			": tollgate refuses form-encoded deliveries; set content_type to json (PATCH /app/hook/config)"))
	}
	if cfg.Secret == nil || *cfg.Secret == "" {
		out = append(out, connectors.Fail(checkWebhook, "the App's webhook has no secret, so GitHub signs no delivery and tollgate refuses them all; "+
			"set the App's webhook secret to the connector's webhook_secret"))
	}
	if strings.Trim(string(cfg.InsecureSSL), `" `) == "1" {
		out = append(out, connectors.Warn(checkWebhook, "the App's webhook has SSL verification disabled (insecure_ssl 1): "+
			"GitHub does not verify tollgate's TLS certificate; enable SSL verification in the App's settings"))
	}
	if len(out) > 0 {
		return out
	}
	return []connectors.Finding{connectors.OK(checkWebhook, "the App's webhook goes to "+redactURL(cfg.URL)+" as signed JSON, with TLS verified")}
}

// installations lists the accounts the App is installed on.
func (p *preflight) installations(ctx context.Context, app appInfo) []connectors.Finding {
	var list []appInstallation
	if err := p.get(ctx, "/app/installations?per_page=100", "the App's installations", &list); err != nil {
		return []connectors.Finding{connectors.Fail(checkInstallations, "cannot list the App's installations: "+err.Error())}
	}
	if len(list) == 0 {
		return []connectors.Finding{connectors.Warn(checkInstallations, "the App is installed on no account, so GitHub sends it nothing; "+
			"install it on the accounts whose repositories tollgate serves (the App's settings, Install App)")}
	}
	var names, suspended, lagging []string
	for _, i := range list {
		names = append(names, i.name())
		if i.SuspendedAt != nil {
			suspended = append(suspended, i.name())
		}
		if p.gate && app.Permissions["deployments"] == "write" && i.Permissions["deployments"] != "write" {
			lagging = append(lagging, i.name())
		}
	}
	var out []connectors.Finding
	if len(suspended) > 0 {
		out = append(out, connectors.Warn(checkInstallations, "the App's installation on "+nameList(suspended)+
			" is suspended, so GitHub sends it nothing from there; the account's owner can unsuspend it"))
	}
	if len(lagging) > 0 {
		out = append(out, connectors.Warn(checkInstallations, "the App's installation on "+nameList(lagging)+
			" has not accepted Deployments: read and write, so the CI gate cannot answer there; the account's owner must accept the App's new permissions"))
	}
	if len(out) > 0 {
		return out
	}
	count := strconv.Itoa(len(list))
	if len(list) == 100 {
		count = "100 or more"
	}
	return []connectors.Finding{connectors.OK(checkInstallations, "installed on "+count+" "+plural(len(list), "account")+": "+nameList(names))}
}

// deliveries looks at the App's latest deliveries: a failed one is
// what tollgate missed or refused. It cannot be read: a warning, since
// nothing tollgate does depends on the log.
func (p *preflight) deliveries(ctx context.Context, redelivers bool) connectors.Finding {
	var list []hookDelivery
	if err := p.get(ctx, "/app/hook/deliveries?per_page="+strconv.Itoa(preflightDeliveries), "the App's webhook deliveries", &list); err != nil {
		return connectors.Warn(checkDeliveries, "cannot read the App's latest deliveries: "+err.Error())
	}
	if len(list) == 0 {
		return connectors.OK(checkDeliveries, "no deliveries yet")
	}
	var failed []connectors.Delivery
	delivered := map[string]bool{}
	for _, h := range list {
		if d := h.delivery(); d.OK {
			delivered[d.GUID] = true
		} else {
			failed = append(failed, d)
		}
	}
	if len(failed) == 0 {
		return connectors.OK(checkDeliveries, "the last "+strconv.Itoa(len(list))+" deliveries were delivered")
	}
	return connectors.Warn(checkDeliveries, failedDeliveries(failed, len(list), delivered, redelivers))
}

// failedDeliveries says how many of the last n deliveries failed, the
// latest, and what tollgate does about them.
func failedDeliveries(failed []connectors.Delivery, n int, delivered map[string]bool, redelivers bool) string {
	latest, transient, since := failed[0], 0, 0
	for _, d := range failed {
		if d.At.After(latest.At) {
			latest = d
		}
		if d.Transient() {
			transient++
		}
		if d.GUID != "" && delivered[d.GUID] {
			since++
		}
	}
	s := fmt.Sprintf("%d of the last %d deliveries failed, the latest at %s with status %s",
		len(failed), n, latest.At.UTC().Format(time.RFC3339), statusOf(latest))
	if latest.StatusCode == http.StatusUnauthorized {
		s += " (tollgate answers 401 to a bad signature: the App's webhook secret must be the connector's webhook_secret)"
	}
	if since > 0 {
		s += fmt.Sprintf("; later attempts delivered %d of them", since)
	}
	if redelivers && transient > 0 {
		s += fmt.Sprintf("; tollgate asks GitHub to redeliver the %d that got no answer or a server error every api.redeliver_interval "+
			"(5m unless set; 0s turns it off), not those it refused", transient)
	}
	return s
}

// statusOf is the HTTP status a delivery got, or "no answer".
func statusOf(d connectors.Delivery) string {
	if d.StatusCode == 0 {
		return "no answer"
	}
	return strconv.Itoa(d.StatusCode)
}

// redactURL is a URL's scheme, host and path: its query may hold a
// token, and its user info a password.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(a URL that cannot be read)"
	}
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}

// nameList joins names, the first maxNamed of them, then "…".
func nameList(names []string) string {
	if len(names) > maxNamed {
		return strings.Join(names[:maxNamed], ", ") + ", …"
	}
	return strings.Join(names, ", ")
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func orNone(permission string) string { return orDefault(permission, "none") }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// containsFold reports whether list holds s, without regard to case.
func containsFold(list []string, s string) bool {
	for _, e := range list {
		if strings.EqualFold(e, s) {
			return true
		}
	}
	return false
}

// uniqueFold is list without repeats (without regard to case), in order.
func uniqueFold(list []string) []string {
	var out []string
	for _, e := range list {
		if e != "" && !containsFold(out, e) {
			out = append(out, e)
		}
	}
	return out
}
