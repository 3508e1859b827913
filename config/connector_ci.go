package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// CIGateConfig configures a gate where the CI waits: a GitHub deployment
// protection rule (protection_rule) or GitLab deployment approvals
// (approvals).
type CIGateConfig struct {
	// Deadline is how long a request may wait for an allow before it is
	// rejected with DEADLINE (fail closed); default 4h.
	Deadline Duration `yaml:"deadline"`
	// WebhookSecret (protection_rule only) is the GitHub App's own webhook
	// secret: deployment_protection_rule requests must be signed with it,
	// not with the connector's webhook_secret, which every repository and
	// organization webhook pointed at the connector also carries.
	WebhookSecret string `yaml:"webhook_secret"`
	// WebhookSecretPrevious (protection_rule only), while the App's
	// secret is rotated, is accepted beside WebhookSecret.
	WebhookSecretPrevious string `yaml:"webhook_secret_previous"`
	// MaxOpen caps the requests of one repository (GitHub) or project
	// (GitLab) waiting for their decision at once; default 200. One more
	// is rejected on arrival with TOO_MANY_WAITING (fail closed, the
	// pipeline told why), so one pipeline's flood (a large matrix re-run
	// again and again) does not crowd out every other team's requests.
	MaxOpen int `yaml:"max_open"`
}

// DefaultCIGateDeadline is the deadline of a CI gate request.
const DefaultCIGateDeadline = 4 * time.Hour

// DefaultCIGateMaxOpen is the requests of one repository or project that
// may wait at once.
const DefaultCIGateMaxOpen = 200

// maxCIGateMaxOpen bounds max_open: every waiting request is looked at
// when a fact changes.
const maxCIGateMaxOpen = 100000

// DefaultChangeKeyPatterns find change keys in a CI gate request when the
// connector names no change_key_patterns: ServiceNow change numbers and
// Jira issue keys.
var DefaultChangeKeyPatterns = []string{`CHG\d{7}`, `[A-Z][A-Z0-9]+-\d+`}

// maxCIGateDeadline is GitHub's own limit: a protection rule that is not
// answered within 30 days fails the run.
const maxCIGateDeadline = 30 * 24 * time.Hour

// ciAPITypes are the CI connector types with an API client: they answer
// the gates where the CI waits.
var ciAPITypes = []string{"github", "gitlab"}

var serviceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/@:+-]{0,127}$`)

func (cc *ConnectorConfig) ciGateDefaults() {
	for _, g := range []*CIGateConfig{cc.ProtectionRule, cc.Approvals} {
		if g != nil && g.Deadline == 0 {
			g.Deadline = Duration(DefaultCIGateDeadline)
		}
		if g != nil && g.MaxOpen == 0 {
			g.MaxOpen = DefaultCIGateMaxOpen
		}
	}
}

// CIGate returns the connector's gate configuration (protection_rule on
// github, approvals on gitlab), or nil when it answers no CI gate: that
// needs the gate block and an api block to answer through.
func (cc *ConnectorConfig) CIGate() *CIGateConfig {
	if cc.API == nil {
		return nil
	}
	switch cc.Type {
	case "github":
		return cc.ProtectionRule
	case "gitlab":
		return cc.Approvals
	}
	return nil
}

// validateCIGate checks the github and gitlab api block and the keys of
// the gates where the CI waits: protection_rule, approvals, services,
// change_key_patterns. f is the connector's path ("connectors[2]").
func (cc *ConnectorConfig) validateCIGate(f string, bad func(field, format string, args ...any)) {
	for _, k := range []struct {
		name string
		set  bool
		typ  string
	}{
		{"write_back", cc.WriteBack, "servicenow/jira"}, {"change_creation", cc.ChangeCreation != nil, "servicenow/jira"},
		{"projects", len(cc.Projects) > 0 && cc.Type != "gitlab", "jira/gitlab"},
	} {
		if k.set {
			bad(f+"."+k.name, "is a %s setting", k.typ)
		}
	}
	if cc.ProtectionRule != nil && cc.Type != "github" {
		bad(f+".protection_rule", "is a github setting (GitLab: approvals)")
	}
	if cc.Approvals != nil && cc.Type != "gitlab" {
		bad(f+".approvals", "is a gitlab setting (GitHub: protection_rule)")
	}
	if g := cc.Approvals; g != nil && (g.WebhookSecret != "" || g.WebhookSecretPrevious != "") {
		bad(f+".approvals.webhook_secret", "is a protection_rule setting: GitLab signs its deployment hooks with the connector's webhook_secret")
	}
	if g := cc.ProtectionRule; g != nil {
		cc.validateAppSecrets(f+".protection_rule.", g, bad)
	}
	for _, g := range []struct {
		name string
		c    *CIGateConfig
	}{{"protection_rule", cc.ProtectionRule}, {"approvals", cc.Approvals}} {
		if g.c != nil && (g.c.Deadline.D() < time.Second || g.c.Deadline.D() > maxCIGateDeadline) {
			bad(f+"."+g.name+".deadline", "must be between 1s and 720h (GitHub fails a run whose rule is unanswered for 30 days)")
		}
		if g.c != nil && (g.c.MaxOpen < 1 || g.c.MaxOpen > maxCIGateMaxOpen) {
			bad(f+"."+g.name+".max_open", "must be between 1 and %d (requests of one repository or project waiting at once)", maxCIGateMaxOpen)
		}
	}
	for repo, svc := range cc.Services {
		if strings.TrimSpace(repo) == "" {
			bad(f+".services", "has an empty repository name")
		}
		if !serviceName.MatchString(svc) {
			bad(f+".services", "%q → %q: the service is not a valid name", repo, svc)
		}
	}
	for i, p := range cc.ChangeKeyPatterns {
		if _, err := regexp.Compile(p); err != nil {
			bad(fmt.Sprintf("%s.change_key_patterns[%d]", f, i), "is not a regular expression: %v", err)
		}
	}
	a := cc.API
	if a == nil {
		if len(cc.Projects) > 0 && cc.Type == "gitlab" {
			bad(f+".projects", "are the gitlab poller's: it needs api with poll_interval")
		}
		if cc.ProtectionRule != nil || cc.Approvals != nil {
			bad(f+".api", "is required to answer the CI's gate (GitHub: url, app_id, private_key_file; GitLab: url, token)")
		}
		return
	}
	p := f + ".api"
	if err := validateAPIURL(a.URL); err != nil {
		bad(p+".url", "%v", err)
	}
	if a.Username != "" || a.Password != "" || a.ClientID != "" || a.ClientSecret != "" {
		bad(p+".username", "username, password, client_id and client_secret are servicenow/jira settings")
	}
	switch {
	case cc.Type != "gitlab" && a.PollInterval != 0:
		bad(p+".poll_interval", "is a servicenow/jira/gitlab setting")
	case cc.Type == "gitlab":
		cc.validateGitLabPoll(f, bad)
	}
	if a.Timeout < 0 || a.Timeout.D() > 5*time.Minute {
		bad(p+".timeout", "must be between 0 and 5m")
	}
	if r := a.Redeliver(); r != 0 && (r < 30*time.Second || r > 24*time.Hour) {
		bad(p+".redeliver_interval", "must be 0s (never) or between 30s and 24h")
	}
	switch cc.Type {
	case "github":
		if a.Token != "" {
			bad(p+".token", "GitHub authenticates as a GitHub App: app_id and private_key_file (or private_key)")
		}
		if !regexp.MustCompile(`^[0-9]{1,20}$`).MatchString(a.AppID) {
			bad(p+".app_id", "is required: the GitHub App's numeric id (quote it: \"123456\")")
		}
		if _, err := a.GitHubAppKey(); err != nil {
			bad(p+".private_key_file", "%v", err)
		}
	case "gitlab":
		if a.RedeliverInterval != nil && a.Redeliver() > 0 && len(cc.Projects) == 0 && len(cc.Groups) == 0 {
			bad(p+".redeliver_interval", "redelivers the projects' and groups' webhook events: set projects (and api.poll_interval) or groups")
		}
		if a.AppID != "" || a.PrivateKey != "" || a.PrivateKeyFile != "" {
			bad(p+".app_id", "app_id and private_key are github settings")
		}
		if strings.TrimSpace(a.Token) == "" {
			bad(p+".token", "is required: a token of a user allowed to approve deployments to the protected environments (without approvals: one that reads the projects' deployments)")
		}
	}
}

// gitlabProject is a GitLab project id or its path with namespace.
var gitlabProject = regexp.MustCompile(`^([0-9]{1,20}|[A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)+)$`)

// validateGitLabPoll checks the gitlab poller: api.poll_interval, and the
// projects whose deployments it reads.
func (cc *ConnectorConfig) validateGitLabPoll(f string, bad func(field, format string, args ...any)) {
	a := cc.API
	if a.PollInterval < 0 || (a.PollInterval > 0 && a.PollInterval.D() < 10*time.Second) || a.PollInterval.D() > 24*time.Hour {
		bad(f+".api.poll_interval", "must be 0 (no poller) or between 10s and 24h")
	}
	if a.PollInterval > 0 && len(cc.Projects) == 0 && len(cc.Groups) == 0 {
		bad(f+".projects", "the gitlab poller needs the projects it looks at (ids or paths such as acme/payments), or the groups whose webhooks it watches")
	}
	if a.PollInterval == 0 && len(cc.Projects) > 0 {
		bad(f+".projects", "are the gitlab poller's: set api.poll_interval")
	}
	for i, pr := range cc.Projects {
		if !gitlabProject.MatchString(pr) {
			bad(fmt.Sprintf("%s.projects[%d]", f, i), "%q is not a GitLab project id or path (group/project)", pr)
		}
	}
}

// GitHubAppKey returns the GitHub App's private key (PEM), from
// private_key or the file private_key_file names, after checking that it
// is an RSA private key. Errors never quote the key.
func (a *APIConfig) GitHubAppKey() ([]byte, error) {
	var pem []byte
	switch {
	case a.PrivateKey != "" && a.PrivateKeyFile != "":
		return nil, fmt.Errorf("set private_key_file or private_key, not both")
	case a.PrivateKey != "":
		pem = []byte(a.PrivateKey)
	case a.PrivateKeyFile != "":
		b, err := os.ReadFile(a.PrivateKeyFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read the GitHub App key %s: %v", a.PrivateKeyFile, unwrapPath(err))
		}
		pem = b
	default:
		return nil, fmt.Errorf("is required: the GitHub App's private key (PEM), or private_key with the PEM text")
	}
	if _, err := jwt.ParseRSAPrivateKeyFromPEM(pem); err != nil {
		return nil, fmt.Errorf("the GitHub App key is not an RSA private key in PEM form")
	}
	return pem, nil
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// validateAppSecrets checks the GitHub App's own secrets: each 16
// characters or more and none of the connector's webhook_secret (current
// or previous), which its repository webhooks carry; the previous one only
// beside a current one, and another.
func (cc *ConnectorConfig) validateAppSecrets(f string, g *CIGateConfig, bad func(field, format string, args ...any)) {
	for _, k := range []struct{ name, v string }{{"webhook_secret", g.WebhookSecret}, {"webhook_secret_previous", g.WebhookSecretPrevious}} {
		switch {
		case k.v == "":
		case len(k.v) < 16:
			bad(f+k.name, "must be at least 16 characters")
		case k.v == cc.WebhookSecret || k.v == cc.WebhookSecretPrevious:
			bad(f+k.name, "is the connector's webhook_secret (or its previous one), which its repository webhooks carry: set the GitHub App's own secret here")
		}
	}
	switch p := g.WebhookSecretPrevious; {
	case p != "" && g.WebhookSecret == "":
		bad(f+"webhook_secret_previous", "needs webhook_secret, the App's new secret")
	case p != "" && p == g.WebhookSecret:
		bad(f+"webhook_secret_previous", "is the same as webhook_secret: set the old secret here and the new one in webhook_secret")
	}
}

// ciGateLogValue renders the CI gate keys for the start-up log.
func (cc *ConnectorConfig) ciGateLogValue() map[string]any {
	g := cc.ProtectionRule
	if g == nil {
		g = cc.Approvals
	}
	if g == nil && len(cc.Services) == 0 && len(cc.ChangeKeyPatterns) == 0 {
		return nil
	}
	out := map[string]any{"services": cc.Services, "change_key_patterns": cc.ChangeKeyPatterns}
	if g != nil {
		out["deadline"] = g.Deadline.D().String()
		out["max_open"] = g.MaxOpen
		if g.WebhookSecret != "" {
			out["webhook_secret"] = mask(g.WebhookSecret)
		}
		if g.WebhookSecretPrevious != "" {
			out["webhook_secret_previous"] = mask(g.WebhookSecretPrevious)
		}
	}
	return out
}

var (
	gitlabGroup = regexp.MustCompile(`^([0-9]{1,20}|[A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)*)$`)
	githubRepo  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$`)
	githubOrg   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}$`)
)

// validateOwnHooks checks the lists of those whose own webhooks a
// connector reads: repositories and organizations (github, through the
// App), groups (gitlab, with the token).
func (cc *ConnectorConfig) validateOwnHooks(f string, bad func(field, format string, args ...any)) {
	lists := []struct {
		key, typ string
		items    []string
		form     *regexp.Regexp
		what     string
	}{
		{"repositories", "github", cc.Repositories, githubRepo, "a GitHub repository (owner/name)"},
		{"organizations", "github", cc.Organizations, githubOrg, "a GitHub organization name"},
		{"groups", "gitlab", cc.Groups, gitlabGroup, "a GitLab group id or path"},
	}
	for _, l := range lists {
		switch {
		case len(l.items) == 0:
			continue
		case cc.Type != l.typ:
			bad(f+"."+l.key, "is a %s setting", l.typ)
			continue
		case cc.API == nil && l.typ == "github":
			bad(f+"."+l.key, "are read through the GitHub App: set api (url, app_id, private_key_file)")
		case cc.API == nil:
			bad(f+"."+l.key, "are read with the GitLab API: set api (url, token)")
		}
		for i, it := range l.items {
			if !l.form.MatchString(it) {
				bad(fmt.Sprintf("%s.%s[%d]", f, l.key, i), "%q is not %s", it, l.what)
			}
		}
	}
}
