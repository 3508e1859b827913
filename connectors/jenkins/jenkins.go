// Package jenkins is the Jenkins connector's inbound side: it
// authenticates deliveries of the Jenkins Notification plugin (an
// X-Tollgate-Signature HMAC, or the secret as the HTTP Basic password,
// which the plugin sends when the endpoint URL holds user:secret@) and
// classifies them by build.phase.
package jenkins

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"

	"github.com/tollgate-dev/tollgate/connectors"
	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/connectors/internal/hook"
	"github.com/tollgate-dev/tollgate/core"
)

// Type is the connector type name in the config file.
const Type = "jenkins"

// Build phases the Notification plugin reports.
const (
	PhaseQueued    = "QUEUED"
	PhaseStarted   = "STARTED"
	PhaseCompleted = "COMPLETED"
	PhaseFinalized = "FINALIZED"
)

// keptHeaders are stored with the raw event; Authorization is not.
var keptHeaders = []string{"User-Agent", "Content-Type"}

// Notification is the Notification plugin's JSON message. It accepts both
// the old shape of the plugin's wiki example (name, url, build{full_url,
// number, phase, status, url, scm, artifacts}) and the fields newer plugin
// versions add (display_name, build.queue_id, timestamp, duration,
// parameters, log, notes, test_summary, scm.changes, scm.culprits).
// Numbers are json.Number so that neither a large id nor a quoted number
// fails the decode.
type Notification struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name,omitempty"`
	URL         string `json:"url"`
	Build       Build  `json:"build"`
}

// Build is the build member of a Notification.
type Build struct {
	FullURL     string                       `json:"full_url"`
	Number      json.Number                  `json:"number"`
	QueueID     json.Number                  `json:"queue_id,omitempty"`
	Timestamp   json.Number                  `json:"timestamp,omitempty"` // ms since the epoch
	Duration    json.Number                  `json:"duration,omitempty"`  // ms
	Phase       string                       `json:"phase"`
	Status      string                       `json:"status,omitempty"` // absent until COMPLETED
	URL         string                       `json:"url"`
	DisplayName string                       `json:"display_name,omitempty"`
	SCM         *SCM                         `json:"scm,omitempty"`
	Parameters  map[string]json.RawMessage   `json:"parameters,omitempty"`
	Artifacts   map[string]map[string]string `json:"artifacts,omitempty"`
	Log         string                       `json:"log,omitempty"`
	Notes       string                       `json:"notes,omitempty"`
	TestSummary json.RawMessage              `json:"test_summary,omitempty"`
}

// SCM is the source-control part of a Build.
type SCM struct {
	URL      string   `json:"url"`
	Branch   string   `json:"branch"`
	Commit   string   `json:"commit"`
	Changes  []string `json:"changes,omitempty"`
	Culprits []string `json:"culprits,omitempty"`
}

// Webhook verifies and classifies Jenkins deliveries and, with an api
// block and jobs, reads the jobs' builds (poll.go).
type Webhook struct {
	secret []byte
	api    *jenkinsAPI
	jobs   []string
}

var _ connectors.Webhook = (*Webhook)(nil)

// New builds the webhook for cfg; the secret is required.
// cfg.DefaultEnvironment matters for Jenkins (its messages name no
// environment) but is applied by the normalizer through
// connectors.ApplyDefaultEnvironment, not here.
func New(cfg connectors.Config) (*Webhook, error) { return newWebhook(cfg, apiclient.Options{}) }

// newWebhook is New with the API client's options (tests make its waits
// short); Instance and, when unset, Timeout come from cfg.
func newWebhook(cfg connectors.Config, o apiclient.Options) (*Webhook, error) {
	secret, err := hook.Secret(cfg)
	if err != nil {
		return nil, err
	}
	w := &Webhook{secret: secret, jobs: cfg.Jobs}
	if a := cfg.API; a != nil {
		o.Instance = cfg.Name
		if o.Timeout == 0 {
			o.Timeout = a.Timeout
		}
		w.api = &jenkinsAPI{system: "Jenkins " + cfg.Name, base: strings.TrimSuffix(a.URL, "/"), user: a.Username, password: a.Password,
			http: apiclient.New(o).HTTPClient()}
	}
	return w, nil
}

// Factory adapts New to connectors.Factory.
func Factory(cfg connectors.Config) (connectors.Webhook, error) { return New(cfg) }

// Verify checks X-Tollgate-Signature: sha256=<hex HMAC-SHA256 of the body>,
// or else HTTP Basic auth with the secret as password (any user name).
// The plugin signs no timestamp, so there is no replay window; a replay is
// deduplicated on the body hash.
func (w *Webhook) Verify(h http.Header, _ url.Values, body []byte) error {
	return hook.VerifySignatureOrBasic(h, w.secret, body)
}

// Classify implements connectors.Webhook; see Classify.
func (w *Webhook) Classify(h http.Header, body []byte) (connectors.Inbound, error) {
	return Classify(h, body)
}

// Classify reads a Notification plugin message: the type is build.phase
// ("STARTED", "COMPLETED" …). The plugin sends no delivery id, so
// DeliveryID stays empty and the inbox deduplicates on the body hash.
// Only build.phase is required, so an unusual member elsewhere never stops
// a delivery at the door; Parse decodes the whole message. The body is
// validated once and build.phase read in place, not decoded; of duplicate
// keys the last wins, as in Parse.
func Classify(h http.Header, body []byte) (connectors.Inbound, error) {
	phase, err := readPhase(body)
	if err != nil {
		return connectors.Inbound{}, err
	}
	return connectors.Inbound{Type: phase, Headers: hook.Keep(h, keptHeaders...)}, nil
}

// readPhase returns the validated build.phase of a message.
func readPhase(body []byte) (string, error) {
	obj, err := hook.ParseObject(body)
	if err != nil {
		return "", err
	}
	build, ok, err := hook.Member(obj, "build", "build")
	if err != nil {
		return "", err
	}
	if !ok {
		return "", core.Invalid("build", "missing: the body is not a Jenkins Notification plugin message")
	}
	phase, ok, err := hook.String(build, "phase", "build.phase")
	if err != nil {
		return "", err
	}
	if !ok {
		return "", core.Invalid("build.phase", "missing")
	}
	return hook.Label("build.phase", phase, hook.MaxTypeLen)
}

// Parse decodes a whole Notification plugin message, with the same checks
// as Classify first. Type mismatches are KindInvalid errors naming the
// offending field.
func Parse(body []byte) (Notification, error) {
	phase, err := readPhase(body)
	if err != nil {
		return Notification{}, err
	}
	var n Notification
	if err := json.Unmarshal(body, &n); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Notification{}, core.Invalid(te.Field, "must be %s, got %s", goKind(te), article(te.Value))
		}
		return Notification{}, core.Errorf(core.KindInvalid, "body is not a Notification plugin message: %v", err)
	}
	n.Build.Phase = phase
	return n, nil
}

// article turns encoding/json's value names into the wording of the other
// messages ("string" → "a string").
func article(v string) string {
	switch v {
	case "array", "object":
		return "an " + v
	case "bool":
		return "a boolean"
	case "":
		return "another type"
	default:
		return "a " + v
	}
}

func goKind(te *json.UnmarshalTypeError) string {
	if te.Type == nil {
		return "another type"
	}
	if te.Type == reflect.TypeFor[json.Number]() {
		// Go 1.27's encoding/json reports a number field holding text as
		// a type error (Go 1.26's as a syntax error): a json.Number is a
		// string to reflect, but a number to the sender.
		return "a number"
	}
	switch te.Type.Kind().String() {
	case "string":
		return "a string"
	case "map", "struct", "ptr":
		return "an object"
	case "slice":
		return "an array"
	default:
		return fmt.Sprintf("a %s", te.Type)
	}
}
