package github

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate-dev/tollgate/connectors/internal/apiclient"
	"github.com/tollgate-dev/tollgate/core"
)

// appClient calls the GitHub API as a GitHub App: an RS256 JWT signed
// with the App's key (issuer: the app id) buys an installation access
// token (POST /app/installations/{id}/access_tokens), which is cached per
// installation until shortly before it expires.
type appClient struct {
	system string // "GitHub <connector>", in errors
	base   string // API base URL without the trailing slash
	appID  string
	key    *rsa.PrivateKey
	http   *http.Client
	now    func() time.Time
	// pages bounds the pages of a delivery log one run reads
	// (deliveryPages when 0; tests set fewer).
	pages int

	mu     sync.Mutex
	tokens map[string]installationToken
}

type installationToken struct {
	token   string
	expires time.Time
}

// tokenMargin is how long before its expiry a cached installation token
// is replaced: a call started with it must not meet its expiry.
const tokenMargin = 5 * time.Minute

// jwtLifetime is the App JWT's life: GitHub refuses more than 10 minutes;
// its iat is set a minute back for clock drift, as GitHub advises.
const jwtLifetime = 9 * time.Minute

func newAppClient(system, base, appID string, pemKey []byte, hc *http.Client) (*appClient, error) {
	key, err := jwt.ParseRSAPrivateKeyFromPEM(pemKey)
	if err != nil {
		return nil, core.Invalid("api.private_key_file", "the GitHub App key is not an RSA private key in PEM form")
	}
	return &appClient{system: system, base: strings.TrimSuffix(base, "/"), appID: appID, key: key, http: hc, now: time.Now, tokens: map[string]installationToken{}}, nil
}

// appJWT signs a fresh App JWT.
func (c *appClient) appJWT() (string, error) {
	now := c.now()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.RegisteredClaims{
		Issuer:    c.appID,
		IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
		ExpiresAt: jwt.NewNumericDate(now.Add(jwtLifetime)),
	})
	s, err := tok.SignedString(c.key)
	if err != nil {
		return "", fmt.Errorf("sign the GitHub App JWT: %w", err)
	}
	return s, nil
}

// installationToken returns a cached or new access token of installation.
func (c *appClient) installationToken(ctx context.Context, installation string) (string, error) {
	c.mu.Lock()
	t, ok := c.tokens[installation]
	c.mu.Unlock()
	if ok && c.now().Add(tokenMargin).Before(t.expires) {
		return t.token, nil
	}
	signed, err := c.appJWT()
	if err != nil {
		return "", err
	}
	var out struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	what := "installation " + installation + " access token"
	// A token grant is safe to repeat: a lost answer only leaves an
	// unused token that expires within the hour.
	if err := c.do(apiclient.Idempotent(ctx), http.MethodPost, "/app/installations/"+url.PathEscape(installation)+"/access_tokens", "Bearer "+signed, nil, what, &out); err != nil {
		return "", err
	}
	if out.Token == "" {
		return "", core.Errorf(core.KindUnavailable, "%s: %s: the answer has no token", c.system, what)
	}
	if out.ExpiresAt.IsZero() {
		out.ExpiresAt = c.now().Add(time.Hour) // GitHub's documented lifetime
	}
	c.mu.Lock()
	c.tokens[installation] = installationToken{token: out.Token, expires: out.ExpiresAt}
	c.mu.Unlock()
	return out.Token, nil
}

func (c *appClient) forget(installation string) {
	c.mu.Lock()
	delete(c.tokens, installation)
	c.mu.Unlock()
}

// reviewBody is the protection rule review (deployment_protection_rule
// callback) body.
type reviewBody struct {
	EnvironmentName string `json:"environment_name"`
	State           string `json:"state"`
	Comment         string `json:"comment,omitempty"`
}

// review answers a protection rule. A refused token is dropped and the
// call reported transient (the next attempt gets a new token).
func (c *appClient) review(ctx context.Context, installation, repo, run string, body reviewBody) error {
	token, err := c.installationToken(ctx, installation)
	if err != nil {
		return err
	}
	path := "/repos/" + repo + "/actions/runs/" + url.PathEscape(run) + "/deployment_protection_rule"
	// Not marked Idempotent, so not repeated once it may have reached
	// GitHub (a reset, a timeout): GitHub takes one review per run and
	// environment and refuses a second with a 4xx, so repeating a review
	// whose reply was lost turns an answer GitHub took into a refusal.
	// The error says the outcome is unknown; the CI gate worker tries
	// again later and, refused then, reads the deployment back
	// (Webhook.AnswerTaken).
	err = c.do(ctx, http.MethodPost, path, "Bearer "+token, body, "run "+run+" protection rule review", nil)
	return c.refusedToken(installation, err)
}

// refusedToken drops the cached token of installation when GitHub
// refused it (401), and reports the call transient: the next attempt gets
// a new token.
func (c *appClient) refusedToken(installation string, err error) error {
	var se *apiclient.StatusError
	if errors.As(err, &se) && se.Status == http.StatusUnauthorized {
		c.forget(installation)
		return core.Wrap(core.KindUnavailable, err, "github refused the installation token")
	}
	return err
}

// deploymentStatus is one status of a deployment, as GitHub lists them.
type deploymentStatus struct {
	State string `json:"state"`
}

// deploymentStatuses lists a deployment's statuses
// (GET /repos/{owner}/{repo}/deployments/{id}/statuses; the App's
// Deployments permission, which a protection rule App has, reads them).
func (c *appClient) deploymentStatuses(ctx context.Context, installation, repo, id string) ([]deploymentStatus, error) {
	token, err := c.installationToken(ctx, installation)
	if err != nil {
		return nil, err
	}
	var out []deploymentStatus
	err = c.do(ctx, http.MethodGet, "/repos/"+repo+"/deployments/"+url.PathEscape(id)+"/statuses?per_page=100", "Bearer "+token, nil,
		"deployment "+id+" statuses", &out)
	return out, c.refusedToken(installation, err)
}

// commitMessage reads a commit's message as the installation.
func (c *appClient) commitMessage(ctx context.Context, installation, repo, sha string) (string, error) {
	token, err := c.installationToken(ctx, installation)
	if err != nil {
		return "", err
	}
	var out struct {
		Commit struct {
			Message string `json:"message"`
		} `json:"commit"`
	}
	if err := c.do(ctx, http.MethodGet, "/repos/"+repo+"/commits/"+url.PathEscape(sha), "Bearer "+token, nil, "commit "+sha, &out); err != nil {
		return "", err
	}
	return out.Commit.Message, nil
}

// maxAnswer bounds an API answer read.
const maxAnswer = 1 << 20

// do sends one API call: 2xx decodes into out (when set; a call without
// out takes any 2xx as done, whatever its body); other statuses are
// *apiclient.StatusError wrapped as KindUnavailable (5xx, 429, 401) or
// KindInvalid (other 4xx: GitHub refused it for good, e.g. a run that no
// longer waits); no answer, an answer that cannot be read or decoded are
// KindUnavailable. Every error names the instance and what was asked.
func (c *appClient) do(ctx context.Context, method, path, auth string, in any, what string, out any) error {
	_, err := c.call(ctx, method, path, auth, in, what, out)
	return err
}

// call is do that also returns the answer's headers (on a 2xx).
func (c *appClient) call(ctx context.Context, method, path, auth string, in any, what string, out any) (http.Header, error) {
	what = c.system + ": " + what
	var body *bytes.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s: encode: %w", what, err)
		}
		body = bytes.NewReader(b)
	} else {
		body = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, core.Wrap(core.KindInvalid, err, what+": bad request")
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "tollgate")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		err = apiclient.UnwrapURL(err) // the caller names what was asked
		return nil, core.Wrap(core.KindUnavailable, err, what)
	}
	b, rerr := apiclient.ReadBody(resp, maxAnswer)
	if resp.StatusCode >= 300 {
		var msg struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(b, &msg)
		status := resp.StatusCode
		if status == http.StatusForbidden && rateLimited(resp.Header, msg.Message) {
			// GitHub answers a rate limit with 403 as often as 429: it is
			// a "come back later", not a refusal of what was asked.
			status = http.StatusTooManyRequests
		}
		se := &apiclient.StatusError{Status: status, Message: apiclient.Trim(msg.Message)}
		kind := core.KindInvalid
		if status >= 500 || status == http.StatusTooManyRequests || status == http.StatusUnauthorized {
			kind = core.KindUnavailable
		}
		return nil, core.Wrap(kind, se, what)
	}
	if out == nil {
		return resp.Header, nil
	}
	if rerr != nil {
		return nil, core.Wrap(core.KindUnavailable, rerr, what)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return nil, core.Wrap(core.KindUnavailable, err, what+": the answer is not valid JSON")
	}
	return resp.Header, nil
}

// rateLimited reports whether a 403 is GitHub's primary or secondary rate
// limit: no requests left (x-ratelimit-remaining 0), a Retry-After, or the
// message saying so ("API rate limit exceeded", "You have exceeded a
// secondary rate limit").
func rateLimited(h http.Header, message string) bool {
	return h.Get("X-Ratelimit-Remaining") == "0" || h.Get("Retry-After") != "" ||
		strings.Contains(strings.ToLower(message), "rate limit")
}
