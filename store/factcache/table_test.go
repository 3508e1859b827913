package factcache

import (
	"bytes"
	"hash/maphash"
	"strconv"
	"testing"
	"time"
)

// TestChangeTable: entries are found by their key only (another key of
// the same hash misses), replaced and removed; a document handed out
// keeps its bytes whatever the table does after (replacements, removals,
// compaction, reset); dropping by age and by count drops what it says;
// chunks emptied are let go, and compaction keeps the chunks held within
// about twice what the entries use.
func TestChangeTable(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	tb := newChangeTable()
	doc := func(i int) []byte { return bytes.Repeat([]byte(strconv.Itoa(i%10)), 600) }

	tb.put("CHG1", doc(1), true, t0)
	tb.put("CHG2", nil, false, t0.Add(time.Second))
	got, found, at, ok := tb.get("CHG1")
	if !ok || !found || !bytes.Equal(got, doc(1)) || !at.Equal(t0) {
		t.Fatalf("get CHG1: %q %v %v %v", got, found, at, ok)
	}
	if d, found, at, ok := tb.get("CHG2"); !ok || found || d != nil || !at.Equal(t0.Add(time.Second)) {
		t.Fatalf("an absent change kept: %q %v %v %v", d, found, at, ok)
	}
	if _, _, _, ok := tb.get("CHG3"); ok {
		t.Fatal("a key never put is found")
	}
	// Another key under CHG1's hash: a miss, never CHG1's document.
	tb.index[maphash.String(tb.seed, "CHG9")] = tb.index[maphash.String(tb.seed, "CHG1")]
	if _, _, _, ok := tb.get("CHG9"); ok {
		t.Fatal("a key of the same hash answered with another key's entry")
	}
	delete(tb.index, maphash.String(tb.seed, "CHG9"))

	held := got
	tb.put("CHG1", doc(7), true, t0.Add(2*time.Second))
	if got, _, _, _ := tb.get("CHG1"); !bytes.Equal(got, doc(7)) || tb.len() != 2 {
		t.Fatalf("replaced: %q, %d entries", got[:3], tb.len())
	}
	for i := range 5000 { // enough churn to compact many times
		tb.put("K"+strconv.Itoa(i%300), doc(i), true, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if !bytes.Equal(held, doc(1)) {
		t.Fatal("a document handed out changed under its holder")
	}
	if tb.len() != 302 || tb.held > max(compactAbove, 2*tb.live+chunkSize)+chunkSize {
		t.Fatalf("%d entries; chunks of %d bytes held for %d used", tb.len(), tb.held, tb.live)
	}
	for i := 4700; i < 5000; i++ {
		if got, _, _, ok := tb.get("K" + strconv.Itoa(i%300)); !ok || !bytes.Equal(got, doc(i)) {
			t.Fatalf("K%d after compaction: %q", i%300, got)
		}
	}

	tb.remove("CHG1")
	tb.remove("nothing")
	if _, _, _, ok := tb.get("CHG1"); ok || tb.len() != 301 {
		t.Fatalf("removed CHG1: still there (%v) or %d entries", ok, tb.len())
	}
	// By age: the entries read before the cutoff go, the others stay.
	cut := t0.Add(4850 * time.Millisecond)
	tb.removeIf(-1, func(at time.Time) bool { return at.Before(cut) })
	if tb.len() != 150 {
		t.Fatalf("%d entries after dropping those older than the cutoff, want 150", tb.len())
	}
	tb.removeIf(40, func(time.Time) bool { return true })
	if tb.len() != 110 {
		t.Fatalf("%d entries after dropping 40, want 110", tb.len())
	}
	// An entry larger than a chunk gets one of its own.
	big := bytes.Repeat([]byte("x"), 2*chunkSize)
	tb.put("BIG", big, true, t0.Add(time.Hour))
	if got, _, _, ok := tb.get("BIG"); !ok || !bytes.Equal(got, big) {
		t.Fatal("an entry larger than a chunk")
	}
	kept, _, _, _ := tb.get("K199") // put last, at i = 4999
	tb.removeIf(-1, func(time.Time) bool { return true })
	if tb.len() != 0 || tb.held != 0 {
		t.Fatalf("every entry dropped: %d left, %d bytes of chunks held", tb.len(), tb.held)
	}
	tb.reset()
	if tb.len() != 0 || !bytes.Equal(kept, doc(4999)) {
		t.Fatal("reset: entries left, or a document handed out changed")
	}
	tb.put("CHG1", doc(3), true, t0)
	if got, _, _, ok := tb.get("CHG1"); !ok || !bytes.Equal(got, doc(3)) {
		t.Fatal("put after reset")
	}
}
