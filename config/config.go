// Package config loads tollgate's configuration: one typed struct, read
// from a YAML file with ${VAR} expansion, then overridden by TOLLGATE_*
// environment variables, validated once at start and passed down. It also
// ships the default configuration file and mapping profiles.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/core"
)

// DefaultPath is read when no --config and no TOLLGATE_CONFIG is given and
// the file exists.
const DefaultPath = "config/tollgate.yaml"

// Config is the whole configuration.
type Config struct {
	// Addr is the listen address (TOLLGATE_ADDR; default ":8080").
	Addr string `yaml:"addr"`
	// DatabaseURL is postgres://…, a PostgreSQL key=value string
	// (host=… dbname=…), or sqlite:PATH[?synchronous=full]
	// (TOLLGATE_DATABASE_URL; empty → SQLite at ./data/tollgate.db).
	DatabaseURL string `yaml:"database_url"`
	// AdminToken, when set, is an admin API token that exists after start
	// (TOLLGATE_ADMIN_TOKEN): the bootstrap for a new install.
	AdminToken string `yaml:"admin_token"`
	// AdminTokenFile names a file holding the admin token instead
	// (TOLLGATE_ADMIN_TOKEN_FILE; a Docker or Kubernetes secret), read at
	// start; surrounding white space is trimmed.
	AdminTokenFile string `yaml:"admin_token_file"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// MaxBodyBytes caps every request body (default 1 MiB); larger → 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ShutdownTimeout bounds the graceful drain on SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// ShutdownDelay is how long, on SIGTERM, the replica keeps serving
	// while /readyz answers 503 and each answer closes its connection,
	// before the listener closes: the time a load balancer needs to stop
	// sending it requests (default 0: close at once).
	ShutdownDelay Duration `yaml:"shutdown_delay"`
	// DebugAddr, when set, serves Go's profiler (net/http/pprof, under
	// /debug/pprof/) on a listener of its own (TOLLGATE_DEBUG_ADDR). It has
	// no authentication, so it must be a loopback address
	// (127.0.0.1:6060, [::1]:6060, localhost:6060); off when empty.
	DebugAddr string `yaml:"debug_addr"`

	// HTTP bounds what one client may hold of the listener.
	HTTP HTTPConfig `yaml:"http"`
	// RateLimit caps requests per API token and per webhook connector.
	RateLimit RateLimitConfig `yaml:"rate_limit"`

	Gate       GateConfig        `yaml:"gate"`
	Inbox      InboxConfig       `yaml:"inbox"`
	Connectors []ConnectorConfig `yaml:"connectors"`
	// MappingsDir holds extra mapping profiles (*.yaml) loaded at start in
	// addition to the built-in ones; profiles with the same name replace
	// built-ins.
	MappingsDir string `yaml:"mappings_dir"`
	// Policy seeds the stored policy when the store has none yet; after
	// that GET/PUT /api/v1/policy owns it. Absent → core.DefaultPolicy().
	Policy *core.Policy `yaml:"policy"`
	// UI configures the web UI's sessions.
	UI UIConfig `yaml:"ui"`
	// Governance: four_eyes stores every policy and mapping change as a
	// proposal a second admin must confirm. It lives here, not in the
	// policy, so a policy change cannot switch it off.
	Governance core.Governance `yaml:"governance"`
	// Reports are scheduled reconciliation reports (reports.go), run by one
	// replica at a time; ReportsRetention is how long any report is kept
	// (default 400d).
	Reports          []ReportSchedule `yaml:"reports"`
	ReportsRetention *Period          `yaml:"reports_retention"`
	// VerdictsRefresh is how often the replica holding the reports lease
	// brings the reconciler's stored verdicts up to date, so that reports
	// find them judged (default 5m; "0s" turns it off).
	VerdictsRefresh *Period `yaml:"verdicts_refresh"`
	// ReleaseMetricsRefresh is how often the replica holding the reports
	// lease recomputes the tollgate_release_metric gauges (default 1h; 0s:
	// off, the gauges stay absent; the API computes on request anyway).
	ReleaseMetricsRefresh *Period `yaml:"release_metrics_refresh"`
	// DoctorInterval is how often each replica runs tollgate doctor's
	// checks and exports their findings (tollgate_doctor_findings), so
	// that a credential about to expire or a webhook someone disabled is
	// alerted on (default 6h, the first run one interval after start; 0s:
	// off).
	DoctorInterval *Period `yaml:"doctor_interval"`
	// Evidence signs evidence bundles; Audit anchors the audit chain's
	// head outside the database (audit.go).
	Evidence EvidenceConfig `yaml:"evidence"`
	Audit    AuditConfig    `yaml:"audit"`
}

// GateConfig configures the gate check.
type GateConfig struct {
	// MaxWait caps ?wait= long-polls (default 15m).
	MaxWait Duration `yaml:"max_wait"`
	// MaxListItems caps the changes and incidents lists of one check
	// (default 50).
	MaxListItems int `yaml:"max_list_items"`
	// MaxWaiting caps the checks long-polling (?wait=) at once on a
	// replica (default 2000), MaxWaitingPerToken those of one token
	// (default 500, or max_waiting when lower): past either, a check asking to wait is answered 429
	// with Retry-After, before anything is recorded.
	MaxWaiting         int `yaml:"max_waiting"`
	MaxWaitingPerToken int `yaml:"max_waiting_per_token"`
	// FactsCacheTTL bounds how long the gate's in-memory fact cache keeps
	// an entry (default 30s; 0 turns the cache off, every check then reads
	// the database). The cache is kept coherent by change notifications;
	// the TTL only bounds staleness should one be lost unnoticed.
	FactsCacheTTL *Duration `yaml:"facts_cache_ttl"`
	// MaxClockSkew, when set, is how far this replica's clock may be from
	// the database server's (measured every 10 s, PostgreSQL) before it
	// refuses gate checks and CI gate answers (503) and answers /readyz
	// 503: change windows and freezes are judged by its clock, and one
	// that far off does not know whether a window is open. 0 (the
	// default): only said (metric, log, alert, doctor).
	MaxClockSkew Duration `yaml:"max_clock_skew"`
}

func (g GateConfig) cacheTTLString() string {
	switch ttl := g.CacheTTL(); {
	case ttl < 0:
		return "off"
	case ttl == 0:
		return "30s (default)"
	default:
		return ttl.String()
	}
}

// CacheTTL is the fact cache's TTL for store.Options: negative when off.
func (g GateConfig) CacheTTL() time.Duration {
	switch {
	case g.FactsCacheTTL == nil:
		return 0 // the store's default
	case *g.FactsCacheTTL == 0:
		return -1
	}
	return g.FactsCacheTTL.D()
}

// HTTPConfig holds the listener's limits against slow or hostile clients.
type HTTPConfig struct {
	// ReadHeaderTimeout closes a connection whose request headers have not
	// all arrived in time (slowloris; default 10s).
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included
	// (default 60s).
	ReadTimeout Duration `yaml:"read_timeout"`
	// IdleTimeout closes keep-alive connections idle that long
	// (default 120s).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes caps a request's header block (default 64 KiB);
	// larger → 431.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// TrustedProxies are the reverse proxies and load balancers in front
	// of tollgate (IP addresses or CIDRs) whose X-Forwarded-For is
	// believed: a request whose connection comes from one of them is from
	// the right-most address of its X-Forwarded-For that is not one of
	// them. Empty (the default): no proxy is trusted, the connection's
	// peer is the client and X-Forwarded-For and X-Real-IP are ignored,
	// since any client can write them. The client address keys the
	// failed-authentication limit and is logged as remote_ip.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// TrustedProxyPrefixes returns TrustedProxies parsed, each address a
// one-address prefix (/32, /128). Load has validated them.
func (h HTTPConfig) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(h.TrustedProxies))
	for i, s := range h.TrustedProxies {
		p, err := parseTrustedProxy(s)
		if err != nil {
			return nil, core.Invalid(fmt.Sprintf("http.trusted_proxies[%d]", i), "%v", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// parseTrustedProxy reads one trusted_proxies entry: an IP address or a
// CIDR. A CIDR with bits set past its prefix (10.0.0.7/8) is refused
// rather than widened or narrowed by guess, and so is a prefix of length
// 0: trusting every address would let any client choose the address it
// is limited and logged under.
func parseTrustedProxy(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	const like = "like 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7"
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR (%s)", s, like)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR (%s)", s, like)
	case p.Addr().Is4In6():
		return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 range: write it in IPv4 form", s)
	case p.Bits() == 0:
		return netip.Prefix{}, fmt.Errorf("%q trusts every address: any client could then pick its own address with X-Forwarded-For; list the proxies' addresses", s)
	case p != p.Masked():
		return netip.Prefix{}, fmt.Errorf("%q has address bits set past its /%d: write %s for the network or %s for the one address",
			s, p.Bits(), p.Masked(), netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
	}
	return p, nil
}

// RateLimitConfig sets the token buckets of the API and the webhooks.
type RateLimitConfig struct {
	// PerToken limits each API token (default 10000/s, burst 20000).
	PerToken Limit `yaml:"per_token"`
	// PerConnector limits each webhook connector (default 10000/s, burst
	// 20000).
	PerConnector Limit `yaml:"per_connector"`
	// AuthFailuresPerClient limits the failed authentications (bad bearer
	// tokens, bad webhook signatures, UI sign-ins with a wrong token) of
	// one client address (default 10/s, burst 50), and requests to an
	// authenticated API route that carry no credential at all: past it
	// the client's requests to authenticated routes, webhooks and the UI
	// sign-in get 429 before any credential is checked. The client address
	// is the connection's peer unless http.trusted_proxies says otherwise.
	AuthFailuresPerClient Limit `yaml:"auth_failures_per_client"`
}

// Limit is a token bucket: Rate requests per second on average, bursts of
// up to Burst. Over it the server answers 429 with Retry-After.
type Limit struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
	// Off turns the limit off.
	Off bool `yaml:"off"`
}

// InboxConfig configures the normalizer.
type InboxConfig struct {
	// Workers is the number of normalizer workers (default 4; SQLite: 1).
	// Each worker mostly waits on its commits, so several overlap them.
	Workers int `yaml:"workers"`
	// BatchSize is how many events a worker claims at once (default 50).
	BatchSize int `yaml:"batch_size"`
	// Lease is how long a claim lasts before another worker may take the
	// event (default 2m).
	Lease Duration `yaml:"lease"`
	// PollInterval is how often an idle worker looks for work (default 1s;
	// new webhooks wake it at once, on every replica).
	PollInterval Duration `yaml:"poll_interval"`
	// MaxAttempts is how many times the normalizer tries an event whose
	// processing keeps failing (or crashing) before it quarantines it with
	// the last error (default 5).
	MaxAttempts int `yaml:"max_attempts"`
	// MaxFutureSkew is how far in the future a source's own stamp (a
	// change's or incident's update time, a deployment's start) may lie;
	// an event stamped later is quarantined, so it cannot freeze a record
	// against the source's later updates (default 5m).
	MaxFutureSkew Duration `yaml:"max_future_skew"`
	// Normalize: false makes this replica store and acknowledge deliveries
	// without normalizing them — the replicas that normalize (the default)
	// take them from the shared database. For webhook receivers scaled
	// apart from the normalizers; meaningless on SQLite (one process).
	Normalize *bool `yaml:"normalize"`
	// Retention is how long a delivery settled as processed or ignored
	// is kept (default 400d, at least 30d; "0d" keeps every one): what
	// it said is in the records, their versions and the audit trail, and
	// a replay or re-mapping needs the raw body only while it is recent.
	// Pending and quarantined deliveries are never deleted.
	Retention *Period `yaml:"retention"`
}

// DefaultInboxRetention is how long settled deliveries are kept unless
// inbox.retention says otherwise.
const DefaultInboxRetention = Period(400 * 24 * time.Hour)

// RetentionD is inbox.retention, or its default; 0 keeps every delivery.
func (c InboxConfig) RetentionD() time.Duration {
	if c.Retention == nil {
		return DefaultInboxRetention.D()
	}
	return c.Retention.D()
}

// Normalizes reports whether this replica runs the normalizer
// (inbox.normalize, default true).
func (c InboxConfig) Normalizes() bool { return c.Normalize == nil || *c.Normalize }

// ConnectorConfig declares one connector.
type ConnectorConfig struct {
	// Name is the webhook path segment: POST /webhooks/{name}.
	Name string `yaml:"name"`
	// Type is servicenow, jira, github, gitlab, jenkins or generic.
	Type string `yaml:"type"`
	// WebhookSecret authenticates deliveries (scheme by type; DESIGN.md).
	WebhookSecret string `yaml:"webhook_secret"`
	// WebhookSecretPrevious, while a secret is rotated, is accepted beside
	// WebhookSecret: the sender moves to the new secret while deliveries
	// signed with the old one still arrive (and are counted, so it is
	// known when none does any more and it can be removed).
	WebhookSecretPrevious string `yaml:"webhook_secret_previous"`
	// DefaultEnvironment is used for CI events that name none.
	DefaultEnvironment string `yaml:"default_environment"`
	// Mappings names the mapping profiles to use; empty → the type's
	// built-in profiles.
	Mappings []string `yaml:"mappings"`
	// Options holds type-specific settings.
	Options map[string]string `yaml:"options"`
	// Records grants record kinds (changes, incidents, deployments,
	// reviews) beyond the type's defaults: servicenow and jira write
	// changes, incidents and reviews; github, gitlab, jenkins and generic
	// deployments only.
	Records []string `yaml:"records"`
	// API is access to the system's API (servicenow, jira): polling,
	// read-back, approvals, change creation and write-back go through it.
	API *APIConfig `yaml:"api"`
	// WriteBack writes work notes on the change when a deployment it
	// covers starts and ends.
	WriteBack bool `yaml:"write_back"`
	// ChangeCreation opens a change for a gate check that links none.
	ChangeCreation *ChangeCreationConfig `yaml:"change_creation"`
	// Projects are the Jira projects the poller reads; GitLab: the
	// projects (ids or paths) whose deployments the poller reads.
	Projects []string `yaml:"projects"`
	// Jobs are the Jenkins jobs (folder/job paths) whose builds the
	// poller reads.
	Jobs []string `yaml:"jobs"`
	// Repositories and Organizations (github, with the App) are those
	// whose own webhooks pointing at the connector have their failed
	// deliveries redelivered, through the App's installation on them.
	Repositories  []string `yaml:"repositories"`
	Organizations []string `yaml:"organizations"`
	// Groups (gitlab) are those whose own webhooks pointing at the
	// connector are watched and have their failed events resent.
	Groups []string `yaml:"groups"`
	// ProtectionRule (github) and Approvals (gitlab) configure the gates
	// where the CI waits (connector_ci.go).
	ProtectionRule *CIGateConfig `yaml:"protection_rule"`
	Approvals      *CIGateConfig `yaml:"approvals"`
	// Services maps a repository or project path (acme/payments) to its
	// service; default: the repository's name.
	Services map[string]string `yaml:"services"`
	// ChangeKeyPatterns find change keys in a CI gate request's texts.
	ChangeKeyPatterns []string `yaml:"change_key_patterns"`
}

// Duration is a time.Duration written as "15m" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		// A *yaml.TypeError lets the decoder go on and report the other
		// problems of the file too.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration (like 30s, 15m): %v", n.Line, s, err)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// LogValue logs the duration as a duration (text with logging.ReplaceAttr).
func (d Duration) LogValue() slog.Value { return slog.DurationValue(time.Duration(d)) }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ConnectorTypes are the known connector types.
var ConnectorTypes = []string{"servicenow", "jira", "github", "gitlab", "jenkins", "generic"}

// Load reads the configuration. path "" means TOLLGATE_CONFIG, else
// DefaultPath when that file exists, else built-in defaults. getenv is the
// environment (os.Getenv in production).
func Load(path string, getenv func(string) string) (*Config, string, error) {
	if path == "" {
		path = getenv("TOLLGATE_CONFIG")
	}
	if path == "" {
		if _, err := os.Stat(DefaultPath); err == nil {
			path = DefaultPath
		}
	}
	var raw []byte
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, path, fmt.Errorf("read config: %w", err)
		}
		raw = b
	}
	c, err := Parse(raw, getenv)
	if err != nil {
		if path != "" {
			return nil, path, fmt.Errorf("config %s: %w", path, err)
		}
		return nil, path, err
	}
	return c, path, nil
}

var varRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)

// Expand replaces ${VAR} with the variable's value and ${VAR:-default}
// with its value or the default. An unset ${VAR} without default is an
// error naming it (a silently empty secret is worse than a failed start).
func Expand(src []byte, getenv func(string) string) ([]byte, error) {
	var missing []string
	out := varRef.ReplaceAllFunc(src, func(m []byte) []byte {
		sub := varRef.FindSubmatch(m)
		name := string(sub[1])
		if v := getenv(name); v != "" {
			return []byte(v)
		}
		if len(sub[2]) > 0 {
			return sub[2][2:]
		}
		missing = append(missing, name)
		return nil
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("environment variables referenced by the config are not set: %s (use ${NAME:-default} for optional ones)", strings.Join(missing, ", "))
	}
	return out, nil
}

// expandValues expands ${VAR} inside the YAML's scalar values only (not in
// comments or keys), so a value with YAML syntax in it (a secret with ": "
// or "#") cannot change the document's structure.
func expandValues(raw []byte, getenv func(string) string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	var errs []error
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
			v, err := Expand([]byte(n.Value), getenv)
			if err != nil {
				errs = append(errs, fmt.Errorf("line %d: %w", n.Line, err))
				return
			}
			// Let the encoder resolve the value's type afresh (a number
			// stays a number) and quote it when plain text would not
			// round-trip.
			n.Value, n.Tag, n.Style = string(v), "", 0
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return yaml.Marshal(&doc)
}

// Parse expands, decodes (unknown keys are errors), applies environment
// overrides and defaults, and validates.
func Parse(raw []byte, getenv func(string) string) (*Config, error) {
	c := &Config{}
	if len(bytes.TrimSpace(raw)) > 0 {
		exp, err := expandValues(raw, getenv)
		if err != nil {
			return nil, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(exp))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("parse config: %w", err)
		}
	}
	c.applyEnv(getenv)
	if err := c.readAdminTokenFile(); err != nil {
		return nil, err
	}
	c.defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// applyEnv applies the TOLLGATE_* environment overrides.
func (c *Config) applyEnv(getenv func(string) string) {
	for env, dst := range map[string]*string{
		"TOLLGATE_ADDR":             &c.Addr,
		"TOLLGATE_DEBUG_ADDR":       &c.DebugAddr,
		"TOLLGATE_DATABASE_URL":     &c.DatabaseURL,
		"TOLLGATE_ADMIN_TOKEN":      &c.AdminToken,
		"TOLLGATE_ADMIN_TOKEN_FILE": &c.AdminTokenFile,
		"TOLLGATE_LOG_LEVEL":        &c.LogLevel,
	} {
		if v := getenv(env); v != "" {
			*dst = v
		}
	}
}

// readAdminTokenFile sets AdminToken from AdminTokenFile. Both set is an
// error: which one wins would be a guess.
func (c *Config) readAdminTokenFile() error {
	if c.AdminTokenFile == "" {
		return nil
	}
	if c.AdminToken != "" {
		return core.Invalid("admin_token_file", "set the admin token or its file (TOLLGATE_ADMIN_TOKEN or TOLLGATE_ADMIN_TOKEN_FILE), not both")
	}
	b, err := os.ReadFile(c.AdminTokenFile)
	if err != nil {
		return core.Invalid("admin_token_file", "cannot read %s: %v", c.AdminTokenFile, errors.Unwrap(err))
	}
	c.AdminToken = strings.TrimSpace(string(b))
	if c.AdminToken == "" {
		return core.Invalid("admin_token_file", "%s is empty", c.AdminTokenFile)
	}
	return nil
}

func (c *Config) defaults() {
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(30 * time.Second)
	}
	if c.Gate.MaxWait == 0 {
		c.Gate.MaxWait = Duration(15 * time.Minute)
	}
	c.httpDefaults()
	if c.Gate.MaxListItems == 0 {
		c.Gate.MaxListItems = 50
	}
	if c.Gate.MaxWaiting == 0 {
		c.Gate.MaxWaiting = 2000
	}
	if c.Gate.MaxWaitingPerToken == 0 && c.Gate.MaxWaiting > 0 {
		c.Gate.MaxWaitingPerToken = min(500, c.Gate.MaxWaiting)
	}
	if c.Inbox.Workers == 0 {
		c.Inbox.Workers = 4
	}
	if c.Inbox.BatchSize == 0 {
		c.Inbox.BatchSize = 50
	}
	if c.Inbox.Lease == 0 {
		c.Inbox.Lease = Duration(2 * time.Minute)
	}
	if c.Inbox.PollInterval == 0 {
		c.Inbox.PollInterval = Duration(time.Second)
	}
	if c.Inbox.MaxAttempts == 0 {
		c.Inbox.MaxAttempts = 5
	}
	if c.Inbox.MaxFutureSkew == 0 {
		c.Inbox.MaxFutureSkew = Duration(5 * time.Minute)
	}
	for i := range c.Connectors {
		if a := c.Connectors[i].API; a != nil {
			a.defaults()
		}
		c.Connectors[i].ciGateDefaults()
	}
}

// Default rate limits: far above what one pipeline or one vendor sends,
// so that they only stop a runaway client; set them to the traffic seen.
const (
	defaultRate  = 10_000
	defaultBurst = 20_000
	// The failed-authentication limit per client: a person mistyping or a
	// pipeline with a stale token never reaches it; a guesser is slowed to
	// 10 tries a second.
	defaultAuthFailureRate  = 10
	defaultAuthFailureBurst = 50
)

func (c *Config) httpDefaults() {
	h := &c.HTTP
	if h.ReadHeaderTimeout == 0 {
		h.ReadHeaderTimeout = Duration(10 * time.Second)
	}
	if h.ReadTimeout == 0 {
		h.ReadTimeout = Duration(60 * time.Second)
	}
	if h.IdleTimeout == 0 {
		h.IdleTimeout = Duration(120 * time.Second)
	}
	if h.MaxHeaderBytes == 0 {
		h.MaxHeaderBytes = 64 << 10
	}
	for _, l := range []*Limit{&c.RateLimit.PerToken, &c.RateLimit.PerConnector} {
		if l.Rate == 0 {
			l.Rate = defaultRate
		}
		if l.Burst == 0 {
			l.Burst = max(defaultBurst, int(2*l.Rate))
		}
	}
	if l := &c.RateLimit.AuthFailuresPerClient; l.Rate == 0 {
		l.Rate = defaultAuthFailureRate
		if l.Burst == 0 {
			l.Burst = defaultAuthFailureBurst
		}
	} else if l.Burst == 0 {
		l.Burst = max(1, int(5*l.Rate))
	}
}

// PerSecond is the limit's rate, 0 when off.
func (l Limit) PerSecond() float64 {
	if l.Off {
		return 0
	}
	return l.Rate
}

func (c *Config) validateHTTP(bad func(field, format string, args ...any)) {
	for f, d := range map[string]Duration{
		"http.read_header_timeout": c.HTTP.ReadHeaderTimeout, "http.read_timeout": c.HTTP.ReadTimeout, "http.idle_timeout": c.HTTP.IdleTimeout,
	} {
		if d.D() < 100*time.Millisecond || d.D() > time.Hour {
			bad(f, "must be between 100ms and 1h")
		}
	}
	if c.HTTP.MaxHeaderBytes < 4096 || c.HTTP.MaxHeaderBytes > 1<<20 {
		bad("http.max_header_bytes", "must be between 4096 and 1048576, got %d", c.HTTP.MaxHeaderBytes)
	}
	for i, s := range c.HTTP.TrustedProxies {
		if _, err := parseTrustedProxy(s); err != nil {
			bad(fmt.Sprintf("http.trusted_proxies[%d]", i), "%v", err)
		}
	}
	for f, l := range map[string]Limit{"rate_limit.per_token": c.RateLimit.PerToken, "rate_limit.per_connector": c.RateLimit.PerConnector,
		"rate_limit.auth_failures_per_client": c.RateLimit.AuthFailuresPerClient} {
		if l.Rate < 0.01 || l.Rate > 1e6 {
			bad(f+".rate", "must be between 0.01 and 1000000 requests per second (off: true turns the limit off)")
		}
		if l.Burst < 1 || l.Burst > 1e7 {
			bad(f+".burst", "must be between 1 and 10000000")
		}
	}
}

var connectorName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Validate checks everything and reports every problem, each naming its
// field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) { errs = append(errs, core.Invalid(field, format, args...)) }
	if _, _, err := splitAddr(c.Addr); err != nil {
		bad("addr", "%v", err)
	}
	if c.DebugAddr != "" {
		if err := loopbackAddr(c.DebugAddr); err != nil {
			bad("debug_addr", "%v", err)
		}
	}
	if err := validateDatabaseURL(c.DatabaseURL); err != nil {
		bad("database_url", "%v", err)
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		bad("admin_token", "must be at least 16 characters")
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		bad("log_level", "%v", err)
	}
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > 64<<20 {
		bad("max_body_bytes", "must be between 1024 and 67108864, got %d", c.MaxBodyBytes)
	}
	if c.ShutdownDelay < 0 || c.ShutdownDelay.D() > 5*time.Minute {
		bad("shutdown_delay", "must be between 0 and 5m")
	}
	if c.ShutdownTimeout < 0 {
		bad("shutdown_timeout", "must not be negative")
	}
	c.validateHTTP(bad)
	if c.Gate.MaxWait < 0 || c.Gate.MaxWait.D() > 24*time.Hour {
		bad("gate.max_wait", "must be between 0 and 24h")
	}
	if t := c.Gate.FactsCacheTTL; t != nil && (*t < 0 || t.D() > time.Hour) {
		bad("gate.facts_cache_ttl", "must be between 0 (off) and 1h")
	}
	if c.Gate.MaxClockSkew != 0 && (c.Gate.MaxClockSkew.D() < time.Second || c.Gate.MaxClockSkew.D() > time.Hour) {
		bad("gate.max_clock_skew", "must be 0 (off) or between 1s and 1h")
	}
	if c.Gate.MaxListItems < 1 || c.Gate.MaxListItems > 1000 {
		bad("gate.max_list_items", "must be between 1 and 1000")
	}
	if r := c.Inbox.Retention; r != nil && *r != 0 && (r.D() < 30*24*time.Hour || r.D() > 100*365*24*time.Hour) {
		bad("inbox.retention", "must be 0d (keep every delivery) or between 30d and 36500d: the CIs' redelivery and a replay read recent deliveries")
	}
	if c.Gate.MaxWaiting < 1 || c.Gate.MaxWaiting > 1000000 {
		bad("gate.max_waiting", "must be between 1 and 1000000")
	}
	if c.Gate.MaxWaitingPerToken < 1 || c.Gate.MaxWaitingPerToken > c.Gate.MaxWaiting {
		bad("gate.max_waiting_per_token", "must be between 1 and gate.max_waiting (%d)", c.Gate.MaxWaiting)
	}
	if c.Inbox.Workers < 1 || c.Inbox.Workers > 64 {
		bad("inbox.workers", "must be between 1 and 64")
	}
	if c.Inbox.BatchSize < 1 || c.Inbox.BatchSize > 1000 {
		bad("inbox.batch_size", "must be between 1 and 1000")
	}
	if c.Inbox.Lease.D() < time.Second {
		bad("inbox.lease", "must be at least 1s")
	}
	if c.Inbox.PollInterval.D() < 10*time.Millisecond {
		bad("inbox.poll_interval", "must be at least 10ms")
	}
	if !c.Inbox.Normalizes() && (c.DatabaseURL == "" || strings.HasPrefix(c.DatabaseURL, "sqlite:")) {
		bad("inbox.normalize", "false needs PostgreSQL: on SQLite no other replica could normalize the deliveries")
	}
	if c.Inbox.MaxAttempts < 1 || c.Inbox.MaxAttempts > 100 {
		bad("inbox.max_attempts", "must be between 1 and 100")
	}
	if c.Inbox.MaxFutureSkew.D() < time.Second || c.Inbox.MaxFutureSkew.D() > 24*time.Hour {
		bad("inbox.max_future_skew", "must be between 1s and 24h")
	}
	seen := map[string]bool{}
	for i, cc := range c.Connectors {
		f := fmt.Sprintf("connectors[%d]", i)
		switch {
		case cc.Name == "":
			bad(f+".name", "is required (it is the webhook path /webhooks/{name})")
		case !connectorName.MatchString(cc.Name):
			bad(f+".name", "%q must be lower-case letters, digits, - or _ (it is a URL path segment)", cc.Name)
		case seen[cc.Name]:
			bad(f+".name", "%q is declared twice", cc.Name)
		}
		seen[cc.Name] = true
		if !contains(ConnectorTypes, cc.Type) {
			bad(f+".type", "%q is not one of %s", cc.Type, strings.Join(ConnectorTypes, ", "))
		}
		if err := connectors.ValidateRecords(cc.Records); err != nil {
			var ce *core.Error
			if errors.As(err, &ce) {
				ce.Field = f + "." + ce.Field
			}
			errs = append(errs, err)
		}
		if cc.WebhookSecret == "" {
			bad(f+".webhook_secret", "is required: tollgate never accepts unauthenticated webhooks")
		} else if len(cc.WebhookSecret) < 16 {
			bad(f+".webhook_secret", "must be at least 16 characters")
		}
		switch p := cc.WebhookSecretPrevious; {
		case p == "":
		case len(p) < 16:
			bad(f+".webhook_secret_previous", "must be at least 16 characters")
		case p == cc.WebhookSecret:
			bad(f+".webhook_secret_previous", "is the same as webhook_secret: set the old secret here and the new one in webhook_secret")
		}
		cc.validateAPI(f, bad)
	}
	c.validateReports(bad)
	c.validateAudit(bad)
	if c.Policy != nil {
		if err := c.Policy.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("policy: %w", err))
		}
	}
	return errors.Join(errs...)
}

func splitAddr(addr string) (string, string, error) {
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		return "", "", fmt.Errorf("%q is not host:port (e.g. :8080)", addr)
	}
	return addr[:i], addr[i+1:], nil
}

// loopbackAddr accepts host:port whose host is a loopback address or
// localhost: the profiler it is for answers anyone who reaches it.
func loopbackAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:6060)", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: the port must be a number from 0 to 65535", addr)
	}
	if ip, err := netip.ParseAddr(host); (err == nil && ip.IsLoopback()) || host == "localhost" {
		return nil
	}
	return fmt.Errorf("%q: the profiler has no authentication, so it listens on loopback only (127.0.0.1, ::1 or localhost); reach it through an SSH tunnel or kubectl port-forward", addr)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ParseLevel turns a log level name into a slog.Level.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}

const masked = "****"

func mask(s string) string {
	if s == "" {
		return ""
	}
	return masked
}

// LogValue renders the effective configuration for the start-up log with
// every secret masked.
func (c *Config) LogValue() slog.Value {
	conns := make([]any, 0, len(c.Connectors))
	for _, cc := range c.Connectors {
		opts := map[string]string{}
		for k, v := range cc.Options {
			if isSecretKey(k) {
				v = mask(v)
			}
			opts[k] = v
		}
		conns = append(conns, map[string]any{
			"name": cc.Name, "type": cc.Type, "webhook_secret": mask(cc.WebhookSecret),
			"webhook_secret_previous": mask(cc.WebhookSecretPrevious),
			"default_environment":     cc.DefaultEnvironment, "mappings": cc.Mappings, "options": opts, "records": cc.Records,
			"api": cc.API.logValue(cc.Type), "write_back": cc.WriteBack, "change_creation": cc.ChangeCreation != nil,
			"projects": cc.Projects, "jobs": cc.Jobs, "ci_gate": cc.ciGateLogValue(),
			"repositories": cc.Repositories, "organizations": cc.Organizations, "groups": cc.Groups,
		})
	}
	db := MaskDatabaseURL(c.DatabaseURL)
	if db == "" {
		db = "sqlite:./data/tollgate.db (embedded)"
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("debug_addr", c.DebugAddr),
		slog.String("database_url", db),
		slog.String("admin_token", mask(c.AdminToken)),
		slog.String("admin_token_file", c.AdminTokenFile),
		slog.String("log_level", c.LogLevel),
		slog.Int64("max_body_bytes", c.MaxBodyBytes),
		slog.Duration("shutdown_timeout", c.ShutdownTimeout.D()), slog.Duration("shutdown_delay", c.ShutdownDelay.D()),
		slog.Duration("http.read_header_timeout", c.HTTP.ReadHeaderTimeout.D()),
		slog.Int("http.max_header_bytes", c.HTTP.MaxHeaderBytes),
		slog.Any("http.trusted_proxies", c.HTTP.TrustedProxies),
		slog.Float64("rate_limit.per_token", c.RateLimit.PerToken.PerSecond()),
		slog.Float64("rate_limit.per_connector", c.RateLimit.PerConnector.PerSecond()),
		slog.Float64("rate_limit.auth_failures_per_client", c.RateLimit.AuthFailuresPerClient.PerSecond()),
		slog.Duration("gate.max_wait", c.Gate.MaxWait.D()),
		slog.Int("gate.max_list_items", c.Gate.MaxListItems),
		slog.Int("gate.max_waiting", c.Gate.MaxWaiting),
		slog.Int("gate.max_waiting_per_token", c.Gate.MaxWaitingPerToken),
		slog.String("gate.facts_cache_ttl", c.Gate.cacheTTLString()),
		slog.Duration("gate.max_clock_skew", c.Gate.MaxClockSkew.D()),
		slog.Int("inbox.workers", c.Inbox.Workers),
		slog.Int("inbox.batch_size", c.Inbox.BatchSize),
		slog.Duration("inbox.lease", c.Inbox.Lease.D()),
		slog.Bool("inbox.normalize", c.Inbox.Normalizes()),
		slog.Duration("inbox.retention", c.Inbox.RetentionD()),
		slog.Int("inbox.max_attempts", c.Inbox.MaxAttempts),
		slog.Duration("inbox.max_future_skew", c.Inbox.MaxFutureSkew.D()),
		slog.String("mappings_dir", c.MappingsDir),
		slog.Bool("policy_in_config", c.Policy != nil),
		slog.Any("connectors", conns),
		slog.Any("reports", c.reportsLogValue()),
		slog.Any("audit", c.auditLogValue()),
	)
}

func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"secret", "password", "passwd", "pwd", "token", "key", "credential"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// ParsePolicy decodes a policy document (YAML, or JSON, which is YAML) with
// unknown keys rejected, and validates it. Errors name the field. A
// source of more than one YAML document is refused: the rest would be
// stored with the policy and never enforced.
func ParsePolicy(src []byte) (core.Policy, error) {
	p, more, err := parsePolicy(src)
	if err == nil && more {
		err = core.Invalid("policy", "more than one YAML document; a policy is one document")
	}
	return p, err
}

// ParseStoredPolicy is ParsePolicy for a version already stored. Versions
// stored before ParsePolicy refused further documents may hold some after
// the first: they were never enforced, and are ignored here as they were
// (more reports them, for a warning), so such a store still starts.
func ParseStoredPolicy(src []byte) (p core.Policy, more bool, err error) {
	return parsePolicy(src)
}

func parsePolicy(src []byte) (core.Policy, bool, error) {
	var p core.Policy
	if len(bytes.TrimSpace(src)) == 0 {
		return p, false, core.Invalid("policy", "the policy document is empty")
	}
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return p, false, core.Invalid("policy", "not a valid policy document: %v", err)
	}
	// A second document is one with content: a file ending in "---"
	// yields an empty (null) one, which is no document.
	var extra any
	err := dec.Decode(&extra)
	more := !errors.Is(err, io.EOF) && (err != nil || extra != nil)
	if err := p.Validate(); err != nil {
		return p, more, err
	}
	return p, more, nil
}

// MarshalPolicy renders a policy as YAML (to seed the store).
func MarshalPolicy(p core.Policy) ([]byte, error) {
	b, err := yaml.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	return b, nil
}
