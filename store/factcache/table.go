package factcache

import (
	"hash/maphash"
	"time"
)

// changeTable holds the cached changes with no pointer for the garbage
// collector to follow: each key and its encoded change are bytes in one
// arena, and the index maps the key's hash to a slot of plain numbers. A
// map of strings to byte slices is two small objects per change, each
// marked one by one at every collection — for a busy gateway tens of
// thousands of them, while its checks wait for the processor the marking
// takes; here the whole cache is three objects the collector does not
// scan.
//
// The arena is only appended to: the bytes of a slot are never written
// again, so a document handed out (get) stays valid after the cache's
// lock is released, whatever is stored or dropped meanwhile. Dropped
// entries leave their bytes behind until compact copies the live ones to
// a new arena.
type changeTable struct {
	seed  maphash.Seed
	index map[uint64]uint32 // the key's hash → its slot
	slots []changeSlot
	free  []uint32 // slots no entry uses
	arena []byte
	live  int // arena bytes that entries use; the rest is dead
}

// changeSlot is one entry: the key's bytes at arena[off:off+klen], then
// its document's, dlen long (none for an absent change).
type changeSlot struct {
	hash       uint64
	at         int64 // when it was read, Unix nanoseconds
	off        int
	klen, dlen int32
	found      bool // the change exists (its document follows the key)
	used       bool
}

func newChangeTable() *changeTable {
	return &changeTable{seed: maphash.MakeSeed(), index: map[uint64]uint32{}}
}

// compactAbove is the arena size below which dead bytes are left alone.
const compactAbove = 1 << 20

func (t *changeTable) len() int { return len(t.index) }

// get returns key's entry. doc aliases the arena: read only.
func (t *changeTable) get(key string) (doc []byte, found bool, at time.Time, ok bool) {
	i, ok := t.index[maphash.String(t.seed, key)]
	if !ok {
		return nil, false, time.Time{}, false
	}
	s := &t.slots[i]
	if string(t.arena[s.off:s.off+int(s.klen)]) != key {
		return nil, false, time.Time{}, false // another key of the same hash
	}
	if s.found {
		start := s.off + int(s.klen)
		doc = t.arena[start : start+int(s.dlen) : start+int(s.dlen)]
	}
	return doc, s.found, time.Unix(0, s.at), true
}

// put stores key's entry, replacing one of the same key (or hash).
func (t *changeTable) put(key string, doc []byte, found bool, at time.Time) {
	h := maphash.String(t.seed, key)
	if i, ok := t.index[h]; ok {
		t.release(i)
	}
	if !found {
		doc = nil
	}
	s := changeSlot{hash: h, at: at.UnixNano(), off: len(t.arena), klen: int32(len(key)), dlen: int32(len(doc)), found: found, used: true}
	t.arena = append(append(t.arena, key...), doc...)
	t.live += len(key) + len(doc)
	var i uint32
	if n := len(t.free); n > 0 {
		i, t.free = t.free[n-1], t.free[:n-1]
		t.slots[i] = s
	} else {
		i = uint32(len(t.slots))
		t.slots = append(t.slots, s)
	}
	t.index[h] = i
	t.compact()
}

// remove drops key's entry, if any.
func (t *changeTable) remove(key string) {
	h := maphash.String(t.seed, key)
	if i, ok := t.index[h]; ok && t.keyAt(i) == key {
		t.release(i)
		t.compact()
	}
}

// removeIf drops the entries for which drop(at) is true, and at most max
// of them (max < 0: no limit).
func (t *changeTable) removeIf(max int, drop func(at time.Time) bool) {
	for i := range t.slots {
		if max == 0 {
			break
		}
		if s := &t.slots[i]; s.used && drop(time.Unix(0, s.at)) {
			t.release(uint32(i))
			max--
		}
	}
	t.compact()
}

// reset drops every entry. The arena is not reused: documents handed
// out still point into it.
func (t *changeTable) reset() {
	clear(t.index)
	t.slots, t.free, t.arena, t.live = t.slots[:0], t.free[:0], nil, 0
}

func (t *changeTable) keyAt(i uint32) string {
	s := &t.slots[i]
	return string(t.arena[s.off : s.off+int(s.klen)])
}

func (t *changeTable) release(i uint32) {
	s := &t.slots[i]
	delete(t.index, s.hash)
	t.live -= int(s.klen) + int(s.dlen)
	*s = changeSlot{}
	t.free = append(t.free, i)
}

// compact copies the live entries to a new arena once the dead bytes
// outweigh them: the arena stays within about twice what it holds.
func (t *changeTable) compact() {
	if len(t.arena) < compactAbove || len(t.arena)-t.live < t.live {
		return
	}
	arena := make([]byte, 0, 2*t.live)
	for i := range t.slots {
		s := &t.slots[i]
		if !s.used {
			continue
		}
		n := int(s.klen) + int(s.dlen)
		off := len(arena)
		arena = append(arena, t.arena[s.off:s.off+n]...)
		s.off = off
	}
	t.arena = arena
}
