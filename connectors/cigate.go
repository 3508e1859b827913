package connectors

import (
	"regexp"
	"strings"
	"time"
)

// CIGate configures a gate where the CI waits for tollgate's answer: a
// GitHub deployment protection rule or a GitLab deployment approval.
type CIGate struct {
	// Deadline is how long a request may wait before it is rejected with
	// DEADLINE.
	Deadline time.Duration
	// Services maps a repository or project path ("acme/payments") to its
	// service; unmapped ones are their last path segment, lower case.
	Services map[string]string
	// ChangeKeyPatterns find change keys in the request's texts.
	ChangeKeyPatterns []*regexp.Regexp
	// WebhookSecret, when set, is the secret only the gate's requests are
	// signed with (GitHub: the App's own webhook secret): a request signed
	// with the connector's webhook_secret, which repository webhooks share,
	// is refused.
	WebhookSecret string
	// WebhookSecretPrevious is accepted beside WebhookSecret while the
	// App's secret is rotated.
	WebhookSecretPrevious string
	// MaxOpen caps the requests of one repository (GitHub) or project
	// (GitLab) waiting at once (DefaultMaxOpen when 0): one past it is
	// rejected on arrival with TOO_MANY_WAITING.
	MaxOpen int
}

// DefaultMaxOpen is CIGate.MaxOpen's default.
const DefaultMaxOpen = 200

// Service names the service a repository path deploys.
func (g *CIGate) Service(repo string) string {
	if g != nil {
		for k, v := range g.Services {
			if strings.EqualFold(k, repo) {
				return v
			}
		}
	}
	if i := strings.LastIndex(repo, "/"); i >= 0 {
		repo = repo[i+1:]
	}
	return strings.ToLower(repo)
}

// maxChangeKeys bounds the keys taken from one request's texts.
const maxChangeKeys = 20

// ChangeKeys finds the change keys in texts by the patterns, in order of
// appearance, each once.
func (g *CIGate) ChangeKeys(texts ...string) []string {
	if g == nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, t := range texts {
		for _, p := range g.ChangeKeyPatterns {
			for _, k := range p.FindAllString(t, -1) {
				if !seen[k] && len(out) < maxChangeKeys {
					seen[k] = true
					out = append(out, k)
				}
			}
		}
	}
	return out
}

// MaxComment is the longest answer comment the CIs take (GitHub: 1024).
const MaxComment = 1024

// Comment trims an answer's comment to MaxComment bytes on a rune
// boundary, marking the cut.
func Comment(s string) string {
	if len(s) <= MaxComment {
		return s
	}
	cut := MaxComment - len("…")
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
