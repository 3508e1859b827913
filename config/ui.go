package config

// UIConfig configures the web UI's sessions.
type UIConfig struct {
	// IdleTimeout ends a session after this long without a request
	// (default 30m).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxAge ends a session this long after sign-in (default 12h).
	MaxAge Duration `yaml:"max_age"`
	// TrustProxy: a request with X-Forwarded-Proto: https counts as
	// TLS, so session cookies are Secure — from a peer listed in
	// http.trusted_proxies when any is, from any peer otherwise. Set it
	// only behind a proxy that sets (and strips clients' own)
	// X-Forwarded-Proto.
	TrustProxy bool `yaml:"trust_proxy"`
}
