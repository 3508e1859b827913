package api

import (
	"strconv"
	"testing"
	"time"
)

func TestLimiterBucket(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		rate      float64
		burst     int
		calls     int
		wantOK    int
		wantAfter time.Duration // minimum wait reported for the first refusal
	}{
		{"burst then refuse", 1, 3, 5, 3, 900 * time.Millisecond},
		{"fast rate", 100, 10, 12, 10, 5 * time.Millisecond},
		{"off", 0, 0, 1000, 1000, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(tt.rate, tt.burst)
			ok, firstWait := 0, time.Duration(0)
			for range tt.calls {
				allowed, wait := l.allow("k", now)
				if allowed {
					ok++
				} else if firstWait == 0 {
					firstWait = wait
				}
			}
			if ok != tt.wantOK {
				t.Errorf("allowed %d of %d, want %d", ok, tt.calls, tt.wantOK)
			}
			if tt.wantAfter > 0 && firstWait < tt.wantAfter {
				t.Errorf("first refusal says wait %v, want ≥ %v", firstWait, tt.wantAfter)
			}
		})
	}
}

func TestLimiterRefusalDoesNotSpendAndRefills(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	l := newLimiter(1, 1)
	if ok, _ := l.allow("a", now); !ok {
		t.Fatal("first request refused")
	}
	for range 100 { // hammering while empty must not push the refill back
		if ok, _ := l.allow("a", now); ok {
			t.Fatal("second request in the same instant allowed")
		}
	}
	if ok, _ := l.allow("a", now.Add(time.Second)); !ok {
		t.Error("refused one second later: refused requests spent the bucket")
	}
	if ok, _ := l.allow("b", now); !ok {
		t.Error("another key shares the bucket")
	}
}

func TestLimiterKeysBounded(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	l := newLimiter(1, 1)
	for i := range maxLimiterKeys + 500 {
		l.allow("connector-"+strconv.Itoa(i), now)
	}
	if n := len(l.buckets); n != maxLimiterKeys {
		t.Errorf("%d buckets kept, want the bound %d", n, maxLimiterKeys)
	}
	// Past the bound, invented keys share the overflow bucket (already
	// spent by the first of them).
	if ok, _ := l.allow("yet-another", now); ok {
		t.Error("a key past the bound got a fresh bucket")
	}
}

// TestFixedLimiterUnknownKeysShareOneBucket: connector names nobody
// configured (invented by a client) neither make buckets nor spend a
// configured connector's.
func TestFixedLimiterUnknownKeysShareOneBucket(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	l := newFixedLimiter(1, 1, []string{"servicenow"})
	for i := range 20_000 {
		l.allow("invented-"+strconv.Itoa(i), now)
	}
	if n := len(l.buckets); n != 1 {
		t.Errorf("%d buckets after 20,000 invented names, want 1 (the configured connector's)", n)
	}
	if ok, _ := l.allow("servicenow", now); !ok {
		t.Error("the configured connector's bucket was spent by invented names")
	}
}

// TestFailureLimiterPeekAndSweep: peek refuses only an empty bucket and
// takes nothing; at the key bound, full buckets are dropped so that a new
// client gets a bucket of its own instead of the shared overflow, while a
// client with failures on record keeps its bucket.
func TestFailureLimiterPeekAndSweep(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	l := NewAuthFailureLimit(1, 2, nil).l
	if ok, _ := l.peek("10.0.0.1", now); !ok {
		t.Fatal("a client with no failures refused")
	}
	l.allow("10.0.0.1", now)
	l.allow("10.0.0.1", now)
	for range 3 {
		if ok, wait := l.peek("10.0.0.1", now); ok || wait < 900*time.Millisecond || wait > time.Second {
			t.Fatalf("after the burst: ok %v wait %v, want refused for about 1 s", ok, wait)
		}
	}
	if ok, _ := l.peek("10.0.0.1", now.Add(time.Second)); !ok {
		t.Fatal("not refilled after a second")
	}
	for i := range maxLimiterKeys - 1 { // clients that failed once, long ago
		l.allow("10.1."+strconv.Itoa(i), now.Add(-time.Hour))
	}
	l.allow("10.9.9.9", now.Add(time.Second)) // at the bound: the full buckets go
	if n := len(l.buckets); n != 2 {
		t.Errorf("%d buckets after the sweep, want 2 (the limited client and the new one)", n)
	}
	if ok, _ := l.peek("10.0.0.1", now.Add(500*time.Millisecond)); ok {
		t.Error("the limited client lost its record in the sweep")
	}
}

// TestClientKey: the auth-failure limit counts an IPv6 client by its /64
// (its other addresses spend the same bucket), an IPv4 client by its
// address, whatever form either comes in.
func TestClientKey(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", true},
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"fe80::1%eth0", "fe80::2", true},
		{"192.0.2.1", "::ffff:192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"not-an-address", "not-an-address", true},
		{"not-an-address", "192.0.2.1", false},
	}
	for _, tt := range tests {
		if got := clientKey(tt.a) == clientKey(tt.b); got != tt.same {
			t.Errorf("%s and %s: same bucket %v (%q, %q), want %v", tt.a, tt.b, got, clientKey(tt.a), clientKey(tt.b), tt.same)
		}
	}
}
