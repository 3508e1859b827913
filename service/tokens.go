package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tollgate-dev/tollgate/core"
)

// TokenStore is what Tokens needs from storage.
type TokenStore interface {
	CreateToken(ctx context.Context, t core.Token, actor string) error
	TokenByHash(ctx context.Context, hash string) (core.Token, error)
	ListTokens(ctx context.Context) ([]core.Token, error)
	RevokeToken(ctx context.Context, id, actor string, at time.Time) error
}

// Tokens issues, checks and revokes API bearer tokens. Only SHA-256 hashes
// are stored; the secret is shown once, at creation.
//
// Authenticated tokens are cached for CacheTTL so the gate's hot path does
// not read the token table on every request. A revocation through this
// process takes effect at once — for a request that arrives after Revoke
// returns, even if a read of the token begun before the revocation is
// still under way: that read's answer is not cached, and later requests
// do not share it; one made on another replica within CacheTTL.
//
// A token in use is read again in the background in its entry's last
// RefreshAhead, so under load its entry never expires: were it let
// expire, every request in flight with it would read the token table at
// once — a burst of round trips that took the pool from the gate's
// writes every CacheTTL. A token not cached is read once however many
// requests carry it meanwhile.
type Tokens struct {
	store TokenStore
	clock core.Clock
	mu    sync.Mutex
	cache map[string]cachedToken // by hash
	reads singleflight.Group     // store reads by hash and generation
	now   func() time.Time       // the cache's clock: real time, whatever clock decisions use
	// gen counts revocations through this process. A read caches its
	// token only if no revocation happened since it began, and requests
	// share only reads begun in their generation: a read racing a
	// revocation may have seen the token before it was revoked.
	gen uint64
}

type cachedToken struct {
	token      core.Token
	expires    time.Time
	refreshing bool // a background read of it is under way
}

// CacheTTL is how long an authenticated token is trusted without reading
// the store again.
const CacheTTL = 5 * time.Second

// RefreshAhead is how long before its entry expires a token in use is
// read again, in the background.
const RefreshAhead = time.Second

// tokenReadTimeout bounds a token read that requests share: it runs
// apart from any one request's context, so that one request gone does
// not fail the others waiting for the same read.
const tokenReadTimeout = 10 * time.Second

const maxCachedTokens = 10000

// NewTokens wires the service.
func NewTokens(store TokenStore, clock core.Clock) *Tokens {
	return &Tokens{store: store, clock: clock, cache: map[string]cachedToken{}, now: time.Now}
}

// TokenPrefix starts every generated token, so leaked tokens are easy to
// recognize (secret scanners).
const TokenPrefix = "tg_"

// HashToken is how a token secret is stored and looked up.
func HashToken(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Create issues a token with a fresh random secret and returns the secret
// (shown once) and the stored record.
func (s *Tokens) Create(ctx context.Context, name string, role core.Role, actor string) (string, core.Token, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 128 {
		return "", core.Token{}, core.Invalid("name", "is required (at most 128 characters)")
	}
	if !role.Valid() {
		return "", core.Token{}, core.Invalid("role", "%q is not one of admin, change_manager, auditor, ci", role)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", core.Token{}, fmt.Errorf("generate token: %w", err)
	}
	secret := TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	t := core.Token{ID: newID(), Name: name, Role: role, Hash: HashToken(secret), CreatedAt: s.clock.Now(), CreatedBy: actor}
	if err := s.store.CreateToken(ctx, t, actor); err != nil {
		return "", core.Token{}, fmt.Errorf("create token: %w", err)
	}
	return secret, t, nil
}

// Bootstrap tokens are the admin tokens tollgate creates from
// TOLLGATE_ADMIN_TOKEN: this name, created by BootstrapActor. No API or CLI
// caller can create one (their tokens are created by "token:…" or "cli:…").
const (
	BootstrapName  = "bootstrap-admin"
	BootstrapActor = "system"
)

// IsBootstrap reports whether t is a bootstrap token.
func IsBootstrap(t core.Token) bool { return t.Name == BootstrapName && t.CreatedBy == BootstrapActor }

// BootstrapResult says what EnsureBootstrap did.
type BootstrapResult struct {
	Token   core.Token   // the bootstrap token in force
	Created bool         // Token was created now (a new value)
	Revoked []core.Token // earlier bootstrap tokens revoked now (the value changed)
}

// EnsureBootstrap makes sure an admin token with the given secret exists
// (TOLLGATE_ADMIN_TOKEN) and that it is the only live bootstrap token:
// when the value changed, the tokens of earlier values are revoked
// (audited as token.revoke by "system"), so rotating the variable rotates
// the credential. Idempotent across restarts and replicas.
func (s *Tokens) EnsureBootstrap(ctx context.Context, secret string) (BootstrapResult, error) {
	var res BootstrapResult
	hash := HashToken(secret)
	t, err := s.store.TokenByHash(ctx, hash)
	switch {
	case err == nil && t.RevokedAt != nil:
		return res, core.Errorf(core.KindConflict, "the bootstrap admin token (TOLLGATE_ADMIN_TOKEN) was revoked; set a new value")
	case err == nil:
		res.Token = t
	case core.IsKind(err, core.KindNotFound):
		t = core.Token{ID: newID(), Name: BootstrapName, Role: core.RoleAdmin, Hash: hash, CreatedAt: s.clock.Now(), CreatedBy: BootstrapActor}
		err = s.store.CreateToken(ctx, t, BootstrapActor)
		switch {
		case err == nil:
			res.Token, res.Created = t, true
		case core.IsKind(err, core.KindConflict): // another replica won
			if res.Token, err = s.store.TokenByHash(ctx, hash); err != nil {
				return res, fmt.Errorf("look up bootstrap token: %w", err)
			}
		default:
			return res, fmt.Errorf("create bootstrap token: %w", err)
		}
	default:
		return res, fmt.Errorf("look up bootstrap token: %w", err)
	}
	all, err := s.store.ListTokens(ctx)
	if err != nil {
		return res, fmt.Errorf("list tokens: %w", err)
	}
	for _, old := range all {
		if old.ID == res.Token.ID || old.RevokedAt != nil || !IsBootstrap(old) {
			continue
		}
		err := s.Revoke(ctx, old.ID, BootstrapActor+":admin-token-replaced")
		if err != nil && !core.IsKind(err, core.KindConflict) { // conflict: another replica revoked it
			return res, fmt.Errorf("revoke earlier bootstrap token %s: %w", old.ID, err)
		}
		res.Revoked = append(res.Revoked, old)
	}
	return res, nil
}

// HasLiveAdmin reports whether any unrevoked admin token exists.
func (s *Tokens) HasLiveAdmin(ctx context.Context) (bool, error) {
	all, err := s.store.ListTokens(ctx)
	if err != nil {
		return false, fmt.Errorf("list tokens: %w", err)
	}
	for _, t := range all {
		if t.Role == core.RoleAdmin && t.RevokedAt == nil {
			return true, nil
		}
	}
	return false, nil
}

// Authenticate returns the live token for secret; KindUnauthorized for an
// unknown or revoked token (the same message for both).
func (s *Tokens) Authenticate(ctx context.Context, secret string) (core.Token, error) {
	if secret == "" || len(secret) > 512 {
		return core.Token{}, core.Errorf(core.KindUnauthorized, "invalid or revoked token")
	}
	hash := HashToken(secret)
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[hash]
	gen := s.gen
	if ok && now.Before(c.expires) && c.expires.Sub(now) < RefreshAhead && !c.refreshing {
		c.refreshing = true
		s.cache[hash] = c
		go s.refresh(hash, gen)
	}
	s.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.token, nil
	}
	ch := s.reads.DoChan(readKey(hash, gen), func() (any, error) { return s.read(context.WithoutCancel(ctx), hash, gen) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return core.Token{}, r.Err
		}
		return r.Val.(core.Token), nil
	case <-ctx.Done():
		return core.Token{}, fmt.Errorf("authenticate: %w", ctx.Err())
	}
}

// readKey names a read that requests may share: the token's hash in
// the generation the read began in (Tokens.gen).
func readKey(hash string, gen uint64) string {
	return hash + "/" + strconv.FormatUint(gen, 10)
}

// refresh reads a cached token again before its entry expires (see
// Tokens).
func (s *Tokens) refresh(hash string, gen uint64) {
	_, _, _ = s.reads.Do(readKey(hash, gen), func() (any, error) { return s.read(context.Background(), hash, gen) })
	s.mu.Lock()
	if c, ok := s.cache[hash]; ok && c.refreshing { // the read failed: a later request may try again
		c.refreshing = false
		s.cache[hash] = c
	}
	s.mu.Unlock()
}

// read reads the token of hash from the store and caches it — unless a
// revocation through this process happened since generation gen, when
// what it read may be older than the revocation — or drops it from the
// cache when it is unknown or revoked.
func (s *Tokens) read(ctx context.Context, hash string, gen uint64) (core.Token, error) {
	ctx, cancel := context.WithTimeout(ctx, tokenReadTimeout)
	defer cancel()
	t, err := s.store.TokenByHash(ctx, hash)
	if err == nil && t.RevokedAt != nil {
		err = core.Errorf(core.KindNotFound, "token revoked")
	}
	if core.IsKind(err, core.KindNotFound) {
		s.mu.Lock()
		delete(s.cache, hash)
		s.mu.Unlock()
		return core.Token{}, core.Errorf(core.KindUnauthorized, "invalid or revoked token")
	}
	if err != nil {
		return core.Token{}, fmt.Errorf("authenticate: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen {
		// The requests sharing this read arrived before the revocation
		// returned, so answering them with what it read is as if they had
		// been answered just before; nothing later may rely on it.
		return t, nil
	}
	if len(s.cache) >= maxCachedTokens {
		clear(s.cache)
	}
	s.cache[hash] = cachedToken{token: t, expires: s.now().Add(CacheTTL)}
	return t, nil
}

// List returns every token (never secrets).
func (s *Tokens) List(ctx context.Context) ([]core.Token, error) { return s.store.ListTokens(ctx) }

// Revoke revokes a token.
func (s *Tokens) Revoke(ctx context.Context, id, actor string) error {
	if err := s.store.RevokeToken(ctx, id, actor, s.clock.Now()); err != nil {
		return err
	}
	s.mu.Lock()
	s.gen++ // reads under way may have seen the token before its revocation
	for h, c := range s.cache {
		if c.token.ID == id {
			delete(s.cache, h)
		}
	}
	s.mu.Unlock()
	return nil
}
