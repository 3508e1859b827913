// Package connectors defines the contract every source-system adapter
// implements on its inbound side (verify a webhook delivery, classify it),
// the per-connector configuration, and a registry that builds an adapter
// from its configured type. The API side of the ITSM connectors (records
// read, changes opened, notes written) crosses into the services as the
// plain values of api.go; connectors/all builds those clients.
//
// One package per system lives beneath this one (connectors/github,
// connectors/gitlab, connectors/jira, connectors/servicenow,
// connectors/jenkins, connectors/generic). Each imports this package for
// Config and Inbound; connectors/all wires them into a Registry, so the
// HTTP layer looks an adapter up by type instead of branching on it.
package connectors

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// Config is one connector as declared in the config file.
type Config struct {
	// Name is the connector's webhook path segment: /webhooks/{name}.
	Name string
	// Type selects the adapter: servicenow, jira, github, gitlab, jenkins or
	// generic.
	Type string
	// WebhookSecret authenticates deliveries. It is required: an empty
	// secret is a configuration error, never "accept everything".
	WebhookSecret string
	// WebhookSecretPrevious is the secret being rotated out, still
	// accepted (a webhook of its own verifies it); here it is only
	// compared with the other connectors' secrets (TrustFindings).
	WebhookSecretPrevious string
	// DefaultEnvironment is used for CI events that name no environment
	// (the Jenkins notification plugin sends none).
	DefaultEnvironment string
	// Mappings names the mapping profiles to use; empty means the type's
	// defaults.
	Mappings []string
	// Options holds type-specific settings.
	Options map[string]string
	// API is access to the system's API; nil when not configured.
	API *API
	// WriteBack writes work notes on changes about the deployments they
	// cover.
	WriteBack bool
	// ChangeCreation, when set, opens changes for gate checks that link
	// none in its environments.
	ChangeCreation *ChangeCreation
	// Projects are the Jira projects the poller reads, and the only ones
	// whose issues the connector's records may be (OwnsKey); GitLab: the
	// projects whose deployments it reads.
	Projects []string
	// Jobs are the Jenkins jobs whose builds the poller reads.
	Jobs []string
	// Repositories ("owner/name") and Organizations (GitHub, with the
	// App): their own webhooks pointing at the connector have their failed
	// deliveries redelivered, as the App's are.
	Repositories, Organizations []string
	// Groups (GitLab) are those whose own webhooks are watched and whose
	// failed events are resent, as the projects' are.
	Groups []string
	// CIGate, when set (github, gitlab with an API), makes the CI's own
	// gate a gate request tollgate answers (cigate.go).
	CIGate *CIGate
	// Records grants the connector record kinds (RecordChanges …) beyond
	// those its type may write by default (DefaultRecords).
	Records []string
}

// API is a connector's API access. Its String never shows a secret.
type API struct {
	URL                    string
	Username, Password     string // HTTP Basic (Jira Cloud: e-mail + API token)
	ClientID, ClientSecret string // ServiceNow OAuth client credentials
	Token                  string // Jira Data Center personal access token; GitLab approver token
	AppID                  string // GitHub App id
	PrivateKey             []byte // GitHub App private key (PEM)
	Timeout                time.Duration
	PollInterval           time.Duration
	ReadBackTimeout        time.Duration
	// RedeliverInterval is how often the deliveries the sender failed to
	// make are asked for again (GitHub App webhooks); 0: never.
	RedeliverInterval time.Duration
}

// String describes the API access without secrets.
func (a API) String() string { return "api " + a.URL }

// GoString keeps %#v from printing secrets.
func (a API) GoString() string { return a.String() }

// ChangeCreation says where and how a connector opens changes.
type ChangeCreation struct {
	Environments  []string
	Type          string // servicenow: normal or standard
	Template      string // servicenow standard change template
	Project       string // jira
	IssueType     string // jira
	ServiceDeskID string // jira service management
	RequestTypeID string // jira service management
}

// Covers reports whether environment env is one change creation serves.
func (c *ChangeCreation) Covers(env string) bool {
	if c == nil {
		return false
	}
	for _, e := range c.Environments {
		if strings.EqualFold(e, env) {
			return true
		}
	}
	return false
}

// Record kinds: what a connector's events may write. Source authority
// decides them per connector, so that a CI system's secret can never
// approve a change.
const (
	RecordChanges     = "changes"
	RecordIncidents   = "incidents"
	RecordDeployments = "deployments"
	// RecordReviews are post-implementation review sign-offs.
	RecordReviews = "reviews"
)

// RecordKinds are the kinds a connector's records key may name.
var RecordKinds = []string{RecordChanges, RecordIncidents, RecordDeployments, RecordReviews}

// DefaultRecords returns the record kinds a connector type may write
// without a grant: the ITSM types (servicenow, jira) changes, incidents and
// reviews; every other type (the CI types and generic, whose secrets CI
// pipelines hold) deployments only.
func DefaultRecords(typ string) []string {
	switch typ {
	case "servicenow", "jira":
		return []string{RecordChanges, RecordIncidents, RecordReviews}
	}
	return []string{RecordDeployments}
}

// Writes reports whether the connector may write records of kind: its
// type's default or a grant in its records key.
func (c Config) Writes(kind string) bool {
	return slices.Contains(DefaultRecords(c.Type), kind) || slices.Contains(c.Records, kind)
}

// OwnsKey reports whether a change or incident keyed key may come from
// the connector: for a Jira connector with projects, only an issue of one
// of them (a Jira webhook sends every project's issues, and whoever may
// create an issue of the change type anywhere on the site could otherwise
// write a change); any key for the others.
func (c Config) OwnsKey(key string) bool {
	if c.Type != "jira" || len(c.Projects) == 0 {
		return true
	}
	project, _, ok := strings.Cut(strings.TrimSpace(key), "-")
	return ok && slices.ContainsFunc(c.Projects, func(p string) bool { return strings.EqualFold(strings.TrimSpace(p), project) })
}

// TrustFindings are warnings about what a set of connectors lets a
// sender do beyond what their configuration says: two connectors sharing
// a webhook secret, current or previous, while one may write records the
// other may not (the holder of the lesser one's secret can sign the
// other's events: a CI secret must never approve a change), and a Jira
// connector writing
// changes or incidents with no projects (any project's issue of the
// mapped type is a record), and two connectors that may write changes of
// the same keys (a change belongs to the first source to write its key: a
// test instance numbering as production does could take production's
// keys).
func TrustFindings(cs []Config) []Finding {
	var out []Finding
	for i, a := range cs {
		for _, b := range cs[i+1:] {
			if a.Writes(RecordChanges) && b.Writes(RecordChanges) && sharedKeys(a, b) {
				out = append(out, Warn("keys", fmt.Sprintf("connectors %s and %s may both write changes of the same keys: a change belongs to the first to write its key, so one (a test instance numbering as production does) could take the other's; keep one change writer per key space (Jira: disjoint projects)",
					a.Name, b.Name)))
			}
			if !shareSecret(a, b) || slices.Equal(a.WritableRecords(), b.WritableRecords()) {
				continue
			}
			out = append(out, Warn("secrets", fmt.Sprintf("connectors %s (writes %s) and %s (writes %s) share a webhook secret (current or previous): whoever holds one can sign the other's events; give each its own",
				a.Name, strings.Join(a.WritableRecords(), ", "), b.Name, strings.Join(b.WritableRecords(), ", "))))
		}
		out = append(out, gateSecretFindings(a, cs)...)
		if (a.Type == "github" || a.Type == "gitlab") && a.CIGate != nil && strings.TrimSpace(a.DefaultEnvironment) != "" {
			out = append(out, Warn("default_environment", fmt.Sprintf("connector %s answers its CI's gate for jobs that name their environment, and has default_environment %q: each whole run (GitHub workflow_run, GitLab Pipeline Hook) is also recorded as a deployment to %[2]q, beside its jobs' deployments and without their gate decision; unset default_environment unless the connector's runs name no environment",
				a.Name, a.DefaultEnvironment)))
		}
		if a.Type == "jira" && len(a.Projects) == 0 && (a.Writes(RecordChanges) || a.Writes(RecordIncidents)) {
			out = append(out, Warn("projects", fmt.Sprintf("connector %s takes changes and incidents from every project of the Jira site: anyone who may create an issue of the mapped type in any project writes one; set projects to the change and incident projects", a.Name)))
		}
	}
	return out
}

// gateSecretFindings warns about a GitHub connector answering protection
// rules whose requests any repository webhook's secret can sign: without
// protection_rule.webhook_secret they are verified with webhook_secret,
// and with it, when another connector holds the same secret.
func gateSecretFindings(a Config, cs []Config) []Finding {
	if a.Type != "github" || a.CIGate == nil {
		return nil
	}
	s := a.CIGate.WebhookSecret
	if s == "" {
		return []Finding{Warn("secrets", fmt.Sprintf("connector %s answers GitHub deployment protection rules but verifies them with its webhook_secret, which every repository and organization webhook pointed at it carries: whoever set one up can sign a request naming another repository's waiting run; set protection_rule.webhook_secret to the GitHub App's own webhook secret", a.Name))}
	}
	var out []Finding
	for _, b := range cs {
		if b.Name != a.Name && shareSecret(Config{WebhookSecret: s, WebhookSecretPrevious: a.CIGate.WebhookSecretPrevious}, b) {
			out = append(out, Warn("secrets", fmt.Sprintf("connector %s's protection_rule.webhook_secret is connector %s's webhook secret: whoever holds it can sign protection-rule requests; keep the GitHub App's secret its own", a.Name, b.Name)))
		}
	}
	return out
}

// shareSecret reports whether a secret of a (current or previous) is one
// of b's.
func shareSecret(a, b Config) bool {
	for _, s := range []string{a.WebhookSecret, a.WebhookSecretPrevious} {
		if s != "" && (s == b.WebhookSecret || s == b.WebhookSecretPrevious) {
			return true
		}
	}
	return false
}

// sharedKeys reports whether two change-writing connectors may write the
// same keys: ServiceNow numbers (CHG…) and Jira issue keys (PROJECT-N)
// never meet, Jira sites meet in a shared project (or when one lists
// none), and any other writer (a generic connector granted changes) may
// write any key.
func sharedKeys(a, b Config) bool {
	switch {
	case a.Type == "servicenow" && b.Type == "jira", a.Type == "jira" && b.Type == "servicenow":
		return false
	case a.Type != "jira" || b.Type != "jira" || len(a.Projects) == 0 || len(b.Projects) == 0:
		return true
	}
	for _, p := range a.Projects {
		if slices.ContainsFunc(b.Projects, func(q string) bool { return strings.EqualFold(strings.TrimSpace(p), strings.TrimSpace(q)) }) {
			return true
		}
	}
	return false
}

// WritableRecords lists what the connector may write, in RecordKinds
// order.
func (c Config) WritableRecords() []string {
	var out []string
	for _, k := range RecordKinds {
		if c.Writes(k) {
			out = append(out, k)
		}
	}
	return out
}

// ValidateRecords checks a records grant: known kinds, each once. Errors
// are *core.Error of KindInvalid naming the entry ("records[1]").
func ValidateRecords(records []string) error {
	for i, r := range records {
		if !slices.Contains(RecordKinds, r) {
			return core.Invalid(fmt.Sprintf("records[%d]", i), "%q is not a record kind (one of %s)", r, strings.Join(RecordKinds, ", "))
		}
		if slices.Index(records, r) != i {
			return core.Invalid(fmt.Sprintf("records[%d]", i), "%q is listed twice", r)
		}
	}
	return nil
}

// String describes the connector without its secret, for logs.
func (c Config) String() string {
	return fmt.Sprintf("connector %q (type %s)", c.Name, c.Type)
}

// GoString keeps %#v from printing the secret too.
func (c Config) GoString() string { return c.String() }

// Inbound is what verification and classification of one delivery yield:
// the facts stored beside the raw body in the inbox.
type Inbound struct {
	// Type is the vendor's event type: the X-GitHub-Event value, the
	// X-Gitlab-Event value, Jira's body webhookEvent, ServiceNow's
	// sys_class_name, the Jenkins build.phase, or the generic connector's
	// kind.
	Type string
	// DeliveryID is the vendor's delivery id when it sends one (stable
	// across the vendor's retries); empty otherwise, and the caller then
	// deduplicates on a hash of the body.
	DeliveryID string
	// Headers are the delivery headers worth keeping with the raw event
	// (event, delivery, user agent, retry …), keyed by canonical header
	// name. They never include secrets, signatures or Authorization.
	Headers map[string]string
}

// Webhook is the inbound side of one connector type.
type Webhook interface {
	// Verify authenticates a delivery from its headers, URL query and raw
	// body, comparing in constant time. On failure it returns a
	// *core.Error of KindUnauthorized whose message says what was wrong
	// ("missing X-Hub-Signature-256", "signature mismatch") and never
	// echoes the secret.
	Verify(h http.Header, query url.Values, body []byte) error
	// Classify reads the event type and delivery id of an authenticated
	// delivery. A body that is not a JSON object, or lacks what the type
	// needs, gives a *core.Error of KindInvalid. It never panics.
	Classify(h http.Header, body []byte) (Inbound, error)
}

// MeantForTollgate is implemented by a Webhook whose every delivery is
// sent for tollgate to record (the generic scheme: a CI sends canonical
// bodies, not its whole event stream): one that no mapping profile
// matches is malformed, and is quarantined with the reason rather than
// ignored, as a GitHub push would be.
type MeantForTollgate interface {
	EveryDeliveryMeant() bool
}

// Factory builds the Webhook for one configured connector. It validates
// cfg and reports problems as *core.Error of KindInvalid whose Field is the
// config key relative to the connector (e.g. "webhook_secret"); the caller
// prefixes the connector's path in the config file.
type Factory func(cfg Config) (Webhook, error)

// Registry maps connector types to their factories. Build one with
// NewRegistry and Register, or take the full set from connectors/all.
// A Registry is not safe for concurrent Register calls; register
// everything at start, then share it read-only.
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{factories: make(map[string]Factory)}
}

// Register adds the factory for typ. Registering an empty type, a nil
// factory or a type twice is a programming error and panics.
func (r *Registry) Register(typ string, f Factory) {
	if typ == "" || f == nil {
		panic("connectors: Register with empty type or nil factory")
	}
	if _, dup := r.factories[typ]; dup {
		panic("connectors: type " + typ + " registered twice")
	}
	r.factories[typ] = f
}

// Types returns the registered types, sorted.
func (r *Registry) Types() []string {
	types := make([]string, 0, len(r.factories))
	for t := range r.factories {
		types = append(types, t)
	}
	slices.Sort(types)
	return types
}

// namePattern is what a connector name may look like: it is a URL path
// segment and a key in the inbox.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// New validates the fields common to every connector (name, type,
// mappings, records) and builds the Webhook with the type's factory. Errors are
// *core.Error of KindInvalid naming the field ("name", "type",
// "mappings[1]", "webhook_secret" …).
func (r *Registry) New(cfg Config) (Webhook, error) {
	if cfg.Name == "" {
		return nil, core.Invalid("name", "is required (it is the webhook path /webhooks/{name})")
	}
	if !namePattern.MatchString(cfg.Name) {
		return nil, core.Invalid("name", "%q is not a valid name: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", cfg.Name)
	}
	if cfg.Type == "" {
		return nil, core.Invalid("type", "is required (one of %s)", strings.Join(r.Types(), ", "))
	}
	f, ok := r.factories[cfg.Type]
	if !ok {
		return nil, core.Invalid("type", "unknown connector type %q (known: %s)", cfg.Type, strings.Join(r.Types(), ", "))
	}
	for i, m := range cfg.Mappings {
		if strings.TrimSpace(m) == "" {
			return nil, core.Invalid(fmt.Sprintf("mappings[%d]", i), "is empty")
		}
	}
	if err := ValidateRecords(cfg.Records); err != nil {
		return nil, err
	}
	w, err := f(cfg)
	if err != nil {
		return nil, err
	}
	return w, nil
}

// ApplyDefaultEnvironment implements the environment rule for CI events:
// an event that names an environment keeps it; one that names none takes
// the connector's default_environment; with neither, the result is a
// KindInvalid error (field "environment") and the event is quarantined
// with that reason.
func ApplyDefaultEnvironment(cfg Config, env string) (string, error) {
	if env = strings.TrimSpace(env); env != "" {
		return env, nil
	}
	if def := strings.TrimSpace(cfg.DefaultEnvironment); def != "" {
		return def, nil
	}
	return "", core.Invalid("environment", "event names no environment and connector %q has no default_environment", cfg.Name)
}
