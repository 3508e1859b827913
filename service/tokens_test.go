package service

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/core"
)

// tokenStore is a TokenStore of one token whose reads are counted and
// may be held until released.
type tokenStore struct {
	mu      sync.Mutex
	token   core.Token
	fail    error         // returned by TokenByHash when set
	hold    chan struct{} // when set, TokenByHash waits for it to close
	reads   atomic.Int64
	started chan struct{} // receives once per read begun, when set
}

func (f *tokenStore) TokenByHash(ctx context.Context, hash string) (core.Token, error) {
	f.reads.Add(1)
	f.mu.Lock()
	hold, started, t, fail := f.hold, f.started, f.token, f.fail
	f.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return core.Token{}, ctx.Err()
		}
	}
	if fail != nil {
		return core.Token{}, fail
	}
	if t.Hash != hash {
		return core.Token{}, core.Errorf(core.KindNotFound, "no such token")
	}
	return t, nil
}

func (f *tokenStore) CreateToken(context.Context, core.Token, string) error { return nil }
func (f *tokenStore) ListTokens(context.Context) ([]core.Token, error)      { return nil, nil }
func (f *tokenStore) RevokeToken(_ context.Context, id, _ string, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.token.ID == id {
		f.token.RevokedAt = &at
	}
	return nil
}

func (f *tokenStore) set(fn func(f *tokenStore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// testTokens returns Tokens over a store holding the token of secret, and
// the cache's clock, which the test moves.
func testTokens(secret string) (*Tokens, *tokenStore, *atomic.Pointer[time.Time]) {
	st := &tokenStore{token: core.Token{ID: "t1", Name: "ci", Role: core.RoleCI, Hash: HashToken(secret)}}
	ts := NewTokens(st, core.SystemClock)
	var now atomic.Pointer[time.Time]
	t0 := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	now.Store(&t0)
	ts.now = func() time.Time { return *now.Load() }
	return ts, st, &now
}

func advance(now *atomic.Pointer[time.Time], d time.Duration) {
	t := now.Load().Add(d)
	now.Store(&t)
}

// TestTokensShareOneRead: requests carrying a token not cached read the
// store once between them, however many arrive while the read runs.
func TestTokensShareOneRead(t *testing.T) {
	const secret = "tg_share-one-read"
	ts, st, _ := testTokens(secret)
	st.set(func(f *tokenStore) { f.hold, f.started = make(chan struct{}), make(chan struct{}, 100) })
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			tok, err := ts.Authenticate(context.Background(), secret)
			if err == nil && tok.ID != "t1" {
				err = errors.New("wrong token " + tok.ID)
			}
			errs <- err
		})
	}
	<-st.started
	time.Sleep(50 * time.Millisecond) // the others arrive while the read is held
	close(st.hold)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := st.reads.Load(); n != 1 {
		t.Fatalf("%d store reads for 64 concurrent requests, want 1", n)
	}
}

// TestTokensRefreshAhead: a token in use is read again in its entry's
// last RefreshAhead, in the background, so its entry does not expire
// under load; a revocation the read finds takes effect then.
func TestTokensRefreshAhead(t *testing.T) {
	const secret = "tg_refresh-ahead"
	ctx := context.Background()
	ts, st, now := testTokens(secret)
	if _, err := ts.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	advance(now, CacheTTL/2)
	if _, err := ts.Authenticate(ctx, secret); err != nil || st.reads.Load() != 1 {
		t.Fatalf("within the TTL: err %v, reads %d (want 1)", err, st.reads.Load())
	}

	// In the last RefreshAhead: the cached token answers, and one read runs.
	st.set(func(f *tokenStore) { f.hold, f.started = make(chan struct{}), make(chan struct{}, 100) })
	advance(now, CacheTTL/2-RefreshAhead/2)
	for range 10 {
		if _, err := ts.Authenticate(ctx, secret); err != nil {
			t.Fatalf("while refreshing: %v", err)
		}
	}
	<-st.started
	close(st.hold)
	waitFor(t, 5*time.Second, "the refresh", func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		c := ts.cache[HashToken(secret)]
		return !c.refreshing && c.expires.After(now.Load().Add(RefreshAhead))
	})
	if n := st.reads.Load(); n != 2 {
		t.Fatalf("%d store reads, want 2 (one refresh for ten requests)", n)
	}

	// Revoked meanwhile (on another replica): refused once a refresh saw it.
	revoked := now.Load().Add(-time.Second)
	st.set(func(f *tokenStore) { f.hold, f.started = nil, nil; f.token.RevokedAt = &revoked })
	advance(now, CacheTTL-RefreshAhead/2)
	if _, err := ts.Authenticate(ctx, secret); err != nil {
		t.Fatalf("still cached: %v", err)
	}
	waitFor(t, 5*time.Second, "the revocation", func() bool {
		_, err := ts.Authenticate(ctx, secret)
		return core.IsKind(err, core.KindUnauthorized)
	})
}

// TestTokensReadFailures: an unknown token is unauthorized; a store that
// fails is an error of its own (not a refusal of the token), and a
// request that gives up waiting for a shared read does not fail the others.
func TestTokensReadFailures(t *testing.T) {
	const secret = "tg_read-failures"
	ctx := context.Background()
	ts, st, _ := testTokens(secret)
	if _, err := ts.Authenticate(ctx, "tg_unknown"); !core.IsKind(err, core.KindUnauthorized) {
		t.Fatalf("unknown token: %v", err)
	}
	down := core.Errorf(core.KindUnavailable, "database unavailable")
	st.set(func(f *tokenStore) { f.fail = down })
	if _, err := ts.Authenticate(ctx, secret); !core.IsKind(err, core.KindUnavailable) {
		t.Fatalf("store down: %v, want unavailable", err)
	}

	st.set(func(f *tokenStore) { f.fail = nil; f.hold, f.started = make(chan struct{}), make(chan struct{}, 100) })
	gone, cancel := context.WithCancel(ctx)
	res := make(chan error, 2)
	go func() { _, err := ts.Authenticate(gone, secret); res <- err }()
	<-st.started
	go func() { _, err := ts.Authenticate(ctx, secret); res <- err }()
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("the request that gave up: %v", err)
	}
	close(st.hold)
	if err := <-res; err != nil {
		t.Fatalf("the request still waiting: %v", err)
	}
}

// TestTokensRevokeRacingRead: a revocation through this process takes
// effect for every request that arrives after it returns, even while a
// read of the token begun before it (which saw the token live) is still
// under way: that read is neither shared with later requests nor cached.
func TestTokensRevokeRacingRead(t *testing.T) {
	const secret = "tg_revoke-racing-read"
	ctx := context.Background()
	ts, st, _ := testTokens(secret)
	st.set(func(f *tokenStore) { f.hold, f.started = make(chan struct{}), make(chan struct{}, 100) })
	before := make(chan error, 1)
	go func() { _, err := ts.Authenticate(ctx, secret); before <- err }()
	<-st.started // the read has the token as it was before the revocation

	if err := ts.Revoke(ctx, "t1", "admin"); err != nil {
		t.Fatal(err)
	}
	after := make(chan error, 1)
	go func() { _, err := ts.Authenticate(ctx, secret); after <- err }()
	select {
	case <-st.started: // a read of its own, not the one under way
	case <-time.After(5 * time.Second):
		close(st.hold)
		t.Fatalf("a request after the revocation joined the read begun before it (answer: %v)", <-after)
	}
	close(st.hold)
	if err := <-before; err != nil {
		t.Fatalf("the request that arrived before the revocation: %v", err)
	}
	if err := <-after; !core.IsKind(err, core.KindUnauthorized) {
		t.Fatalf("a request after the revocation, while an earlier read ran: %v, want unauthorized", err)
	}
	st.set(func(f *tokenStore) { f.hold, f.started = nil, nil })
	if _, err := ts.Authenticate(ctx, secret); !core.IsKind(err, core.KindUnauthorized) {
		t.Fatalf("once the earlier read ended: %v, want unauthorized (its token must not be cached)", err)
	}
	if n := st.reads.Load(); n != 3 {
		t.Fatalf("%d store reads, want 3", n)
	}
}
