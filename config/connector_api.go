package config

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// APIConfig is a connector's access to its system's API (ServiceNow,
// Jira): where it is, how to authenticate, and how often and how long to
// ask. Credentials are one of: username + password (HTTP Basic; Jira
// Cloud: e-mail + API token), client_id + client_secret (ServiceNow OAuth
// client credentials, token from {url}/oauth_token.do), or token (a Jira
// Data Center personal access token, sent as a bearer token).
type APIConfig struct {
	URL          string `yaml:"url"`
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	Token        string `yaml:"token"`
	// AppID, PrivateKeyFile and PrivateKey are the GitHub App's
	// credentials (connector_ci.go); Token is also GitLab's approver token.
	AppID          string `yaml:"app_id"`
	PrivateKeyFile string `yaml:"private_key_file"`
	PrivateKey     string `yaml:"private_key"`
	// Timeout bounds one HTTP call (default 10s).
	Timeout Duration `yaml:"timeout"`
	// PollInterval is how often the poller asks for updated records; 0
	// (the default) runs no poller.
	PollInterval Duration `yaml:"poll_interval"`
	// ReadBackTimeout is the budget of a gate check's read-back of a
	// change the store does not know (default 2s).
	ReadBackTimeout Duration `yaml:"read_back_timeout"`
	// RedeliverInterval (github; gitlab with projects) is how often the
	// sender's webhook deliveries that failed are asked for again (default
	// 5m; 0s: never).
	RedeliverInterval *Duration `yaml:"redeliver_interval"`
}

// DefaultRedeliverInterval is how often a GitHub App's or GitLab
// project's failed webhook deliveries are looked for when
// redeliver_interval is not set.
const DefaultRedeliverInterval = 5 * time.Minute

// Redeliver returns how often a CI's failed deliveries are asked for
// again: redeliver_interval, DefaultRedeliverInterval when it is not
// set, 0 (never) when it is 0s.
func (a *APIConfig) Redeliver() time.Duration {
	if a.RedeliverInterval == nil {
		return DefaultRedeliverInterval
	}
	return a.RedeliverInterval.D()
}

// ChangeCreationConfig turns on change creation for the environments
// named: a gate check there that links no change opens one.
type ChangeCreationConfig struct {
	Environments []string `yaml:"environments"`
	// ServiceNow: type normal (default) or standard with a template
	// (sys_id or name of the standard change template).
	Type     string `yaml:"type"`
	Template string `yaml:"template"`
	// Jira: the project and issue type of the created issue, or, with
	// service_desk_id and request_type_id, a JSM request.
	Project       string `yaml:"project"`
	IssueType     string `yaml:"issue_type"`
	ServiceDeskID string `yaml:"service_desk_id"`
	RequestTypeID string `yaml:"request_type_id"`
}

// API defaults.
const (
	DefaultAPITimeout      = 10 * time.Second
	DefaultReadBackTimeout = 2 * time.Second
)

// apiTypes are the connector types with an API client.
var apiTypes = []string{"servicenow", "jira"}

var jiraProject = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,31}$`)

func (a *APIConfig) defaults() {
	if a.Timeout == 0 {
		a.Timeout = Duration(DefaultAPITimeout)
	}
	if a.ReadBackTimeout == 0 {
		a.ReadBackTimeout = Duration(DefaultReadBackTimeout)
	}
}

// validateAPI checks the api, write_back, change_creation and projects
// keys of one connector; f is the connector's path ("connectors[0]").
func (cc *ConnectorConfig) validateAPI(f string, bad func(field, format string, args ...any)) {
	a := cc.API
	if len(cc.Jobs) > 0 && cc.Type != "jenkins" {
		bad(f+".jobs", "is a jenkins setting")
	}
	cc.validateOwnHooks(f, bad)
	if contains(ciAPITypes, cc.Type) {
		cc.validateCIGate(f, bad)
		return
	}
	if cc.Type == "jenkins" {
		cc.validateJenkinsAPI(f, bad)
		return
	}
	hasAPI := contains(apiTypes, cc.Type)
	if a == nil {
		if cc.WriteBack {
			bad(f+".write_back", "needs an api block to write through")
		}
		if cc.ChangeCreation != nil {
			bad(f+".change_creation", "needs an api block to create changes through")
		}
		if len(cc.Projects) > 0 && cc.Type != "jira" {
			bad(f+".projects", "is a jira setting")
		}
		return
	}
	if !hasAPI {
		bad(f+".api", "connectors of type %q have no API client (only %s)", cc.Type, strings.Join(append(append(apiTypes, ciAPITypes...), "jenkins"), ", "))
		return
	}
	p := f + ".api"
	if err := validateAPIURL(a.URL); err != nil {
		bad(p+".url", "%v", err)
	}
	validateCredentials(cc.Type, p, a, bad)
	if a.Timeout < 0 || a.Timeout.D() > 5*time.Minute {
		bad(p+".timeout", "must be between 0 and 5m")
	}
	if a.PollInterval < 0 || (a.PollInterval > 0 && a.PollInterval.D() < time.Second) || a.PollInterval.D() > 24*time.Hour {
		bad(p+".poll_interval", "must be 0 (no poller) or between 1s and 24h")
	}
	if a.ReadBackTimeout < 0 || a.ReadBackTimeout.D() > time.Minute {
		bad(p+".read_back_timeout", "must be between 0 and 1m")
	}
	if a.RedeliverInterval != nil {
		bad(p+".redeliver_interval", "is a github/gitlab setting (the ITSMs' missed webhooks are read back by poll_interval)")
	}
	if cc.Type == "jira" {
		for i, pr := range cc.Projects {
			if !jiraProject.MatchString(pr) {
				bad(fmt.Sprintf("%s.projects[%d]", f, i), "%q is not a Jira project key (upper-case letters, digits, _)", pr)
			}
		}
		if a.PollInterval > 0 && len(cc.Projects) == 0 {
			bad(f+".projects", "the jira poller needs the projects it reads")
		}
	} else if len(cc.Projects) > 0 {
		bad(f+".projects", "is a jira setting")
	}
	if c := cc.ChangeCreation; c != nil {
		validateChangeCreation(cc.Type, f+".change_creation", c, bad)
	}
}

// jenkinsJob is a Jenkins job's full name: its folders and name, by /.
var jenkinsJob = regexp.MustCompile(`^[^/\s]([^/]*[^/\s])?(/[^/\s]([^/]*[^/\s])?)*$`)

// validateJenkinsAPI checks a jenkins connector's api block, which only
// its poller uses, and jobs.
func (cc *ConnectorConfig) validateJenkinsAPI(f string, bad func(field, format string, args ...any)) {
	for _, k := range []struct {
		name string
		set  bool
	}{{"write_back", cc.WriteBack}, {"change_creation", cc.ChangeCreation != nil}, {"projects", len(cc.Projects) > 0}} {
		if k.set {
			bad(f+"."+k.name, "is not a jenkins setting")
		}
	}
	a := cc.API
	if a == nil {
		if len(cc.Jobs) > 0 {
			bad(f+".jobs", "are the jenkins poller's: it needs api with url, username, password (an API token) and poll_interval")
		}
		return
	}
	p := f + ".api"
	if err := validateAPIURL(a.URL); err != nil {
		bad(p+".url", "%v", err)
	}
	if a.Username == "" || a.Password == "" {
		bad(p+".username", "username and password (a Jenkins API token) are required")
	}
	if a.ClientID != "" || a.ClientSecret != "" || a.Token != "" || a.AppID != "" || a.PrivateKey != "" || a.PrivateKeyFile != "" || a.RedeliverInterval != nil {
		bad(p, "jenkins takes url, username, password, timeout and poll_interval only")
	}
	if a.Timeout < 0 || a.Timeout.D() > 5*time.Minute {
		bad(p+".timeout", "must be between 0 and 5m")
	}
	if a.PollInterval.D() < 10*time.Second || a.PollInterval.D() > 24*time.Hour {
		bad(p+".poll_interval", "must be between 10s and 24h (the api block only serves the poller)")
	}
	if len(cc.Jobs) == 0 {
		bad(f+".jobs", "the jenkins poller needs the jobs whose builds it reads (folder/job paths)")
	}
	for i, j := range cc.Jobs {
		if !jenkinsJob.MatchString(j) {
			bad(fmt.Sprintf("%s.jobs[%d]", f, i), "%q is not a Jenkins job name (folder/job)", j)
		}
	}
}

// validateCredentials checks that one kind of credentials fits the type.
func validateCredentials(typ, p string, a *APIConfig, bad func(field, format string, args ...any)) {
	basic := a.Username != "" || a.Password != ""
	oauth := a.ClientID != "" || a.ClientSecret != ""
	pat := a.Token != ""
	switch {
	case basic && (a.Username == "" || a.Password == ""):
		bad(p+".username", "username and password go together (Basic auth)")
	case oauth && typ != "servicenow":
		bad(p+".client_id", "OAuth client credentials are a servicenow setting")
	case oauth && (a.ClientID == "" || a.ClientSecret == ""):
		bad(p+".client_id", "client_id and client_secret go together (OAuth client credentials)")
	case pat && typ != "jira":
		bad(p+".token", "a personal access token is a jira setting; servicenow takes username/password or client_id/client_secret")
	case !basic && !oauth && !pat:
		if typ == "jira" {
			bad(p+".username", "credentials are required: username + password (Cloud: e-mail + API token) or token (Data Center personal access token)")
		} else {
			bad(p+".username", "credentials are required: username + password, or client_id + client_secret")
		}
	case basic && (oauth || pat), oauth && pat:
		bad(p+".username", "give one kind of credentials, not several")
	}
}

// validateChangeCreation checks a change_creation block (cp is its path).
func validateChangeCreation(typ, cp string, c *ChangeCreationConfig, bad func(field, format string, args ...any)) {
	if len(c.Environments) == 0 {
		bad(cp+".environments", "names no environment")
	}
	switch typ {
	case "servicenow":
		switch c.Type {
		case "", "normal":
		case "standard":
			if c.Template == "" {
				bad(cp+".template", "a standard change needs its template (sys_id or name)")
			}
		default:
			bad(cp+".type", "%q is not normal or standard", c.Type)
		}
		if c.Project != "" || c.IssueType != "" || c.ServiceDeskID != "" || c.RequestTypeID != "" {
			bad(cp, "project, issue_type, service_desk_id and request_type_id are jira settings")
		}
	case "jira":
		if c.Type != "" || c.Template != "" {
			bad(cp, "type and template are servicenow settings")
		}
		if (c.ServiceDeskID == "") != (c.RequestTypeID == "") {
			bad(cp+".service_desk_id", "service_desk_id and request_type_id go together (a JSM request)")
		}
		if c.ServiceDeskID == "" && !jiraProject.MatchString(c.Project) {
			bad(cp+".project", "a Jira project key is required (or service_desk_id + request_type_id)")
		}
	}
}

// validateAPIURL checks an API base URL without echoing it (it could hold
// user info): http or https, a host, no credentials, no query.
func validateAPIURL(raw string) error {
	if raw == "" {
		return fmt.Errorf("is required (the instance's base URL, like https://acme.service-now.com)")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("is not an http(s) base URL like https://acme.service-now.com")
	}
	if u.User != nil {
		return fmt.Errorf("must not carry credentials; use username/password")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("must be a base URL without query or fragment")
	}
	return nil
}

// logValue renders the API block with its secrets masked.
func (a *APIConfig) logValue(typ string) map[string]any {
	if a == nil {
		return nil
	}
	v := map[string]any{
		"url": a.URL, "username": a.Username, "password": mask(a.Password),
		"client_id": a.ClientID, "client_secret": mask(a.ClientSecret), "token": mask(a.Token),
		"app_id": a.AppID, "private_key_file": a.PrivateKeyFile, "private_key": mask(a.PrivateKey),
		"timeout": a.Timeout.D().String(), "poll_interval": a.PollInterval.D().String(),
		"read_back_timeout": a.ReadBackTimeout.D().String(),
	}
	if typ == "github" || typ == "gitlab" {
		v["redeliver_interval"] = a.Redeliver().String()
	}
	return v
}
