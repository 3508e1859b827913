package factcache

import (
	"hash/maphash"
	"time"
)

// changeTable holds the cached changes with almost nothing for the
// garbage collector to mark: each key and its encoded change are bytes in
// large chunks, and the index maps the key's hash to a slot of plain
// numbers. A map of strings to byte slices is two small objects per
// change, each marked one by one at every collection — for a busy
// gateway tens of thousands of them, while its checks wait for the
// processor the marking takes; here it is a chunk per 256 KiB of entries.
//
// Chunks are only appended to: the bytes of a slot are never written
// again, so a document handed out (get) stays valid after the cache's
// lock is released, whatever is stored or dropped meanwhile.
type changeTable struct {
	seed  maphash.Seed
	index map[uint64]uint32 // the key's hash → its slot
	slots []changeSlot
	free  []uint32 // slots no entry uses
	// chunks hold the entries' bytes, appended to the last one; a chunk
	// no entry uses any more is let go (nil, its index in freeChunks for
	// reuse). Chunks of a fixed size, rather than one growing arena, so
	// that growing never copies and the memory held stays close to what
	// the entries use: entries expire about in the order they came, so
	// whole chunks empty out.
	chunks     [][]byte
	chunkLive  []int // bytes of each chunk that entries use
	freeChunks []int32
	cur        int32 // the chunk appended to; -1 for none
	live, held int   // bytes entries use; bytes of the chunks held
}

// changeSlot is one entry: the key's bytes at chunks[chunk][off:off+klen],
// then its document's, dlen long (none for an absent change).
type changeSlot struct {
	hash       uint64
	at         int64 // when it was read, Unix nanoseconds
	chunk, off int32
	klen, dlen int32
	found      bool // the change exists (its document follows the key)
	used       bool
}

const (
	// chunkSize is the size of a chunk; an entry larger than that gets
	// a chunk of its own.
	chunkSize = 256 << 10
	// compactAbove is the memory held below which partly used chunks are
	// left alone; above it, compact copies the entries to new chunks once
	// the chunks hold twice what the entries use.
	compactAbove = 1 << 20
)

func newChangeTable() *changeTable {
	return &changeTable{seed: maphash.MakeSeed(), index: map[uint64]uint32{}, cur: -1}
}

func (t *changeTable) len() int { return len(t.index) }

func (t *changeTable) bytes(s *changeSlot) []byte {
	n := s.off + s.klen + s.dlen
	return t.chunks[s.chunk][s.off:n:n]
}

// get returns key's entry. doc aliases a chunk: read only.
func (t *changeTable) get(key string) (doc []byte, found bool, at time.Time, ok bool) {
	i, ok := t.index[maphash.String(t.seed, key)]
	if !ok {
		return nil, false, time.Time{}, false
	}
	s := &t.slots[i]
	b := t.bytes(s)
	if string(b[:s.klen]) != key {
		return nil, false, time.Time{}, false // another key of the same hash
	}
	if s.found {
		doc = b[s.klen:]
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
	c, off := t.room(len(key) + len(doc))
	t.chunks[c] = append(append(t.chunks[c], key...), doc...)
	n := len(key) + len(doc)
	t.chunkLive[c] += n
	t.live += n
	s := changeSlot{hash: h, at: at.UnixNano(), chunk: c, off: off, klen: int32(len(key)), dlen: int32(len(doc)), found: found, used: true}
	var i uint32
	if k := len(t.free); k > 0 {
		i, t.free = t.free[k-1], t.free[:k-1]
		t.slots[i] = s
	} else {
		i = uint32(len(t.slots))
		t.slots = append(t.slots, s)
	}
	t.index[h] = i
	t.compact()
}

// room returns the chunk to append n bytes to, and where they will start.
func (t *changeTable) room(n int) (int32, int32) {
	if t.cur >= 0 {
		if b := t.chunks[t.cur]; cap(b)-len(b) >= n {
			return t.cur, int32(len(b))
		}
		t.letGoIfEmpty(t.cur) // no longer appended to
	}
	b := make([]byte, 0, max(chunkSize, n))
	t.held += cap(b)
	if k := len(t.freeChunks); k > 0 {
		t.cur, t.freeChunks = t.freeChunks[k-1], t.freeChunks[:k-1]
		t.chunks[t.cur], t.chunkLive[t.cur] = b, 0
	} else {
		t.cur = int32(len(t.chunks))
		t.chunks, t.chunkLive = append(t.chunks, b), append(t.chunkLive, 0)
	}
	return t.cur, 0
}

// remove drops key's entry, if any.
func (t *changeTable) remove(key string) {
	h := maphash.String(t.seed, key)
	if i, ok := t.index[h]; ok {
		if s := &t.slots[i]; string(t.bytes(s)[:s.klen]) == key {
			t.release(i)
			t.compact()
		}
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

// reset drops every entry. The chunks are not reused: documents handed
// out still point into them.
func (t *changeTable) reset() {
	clear(t.index)
	t.slots, t.free = t.slots[:0], t.free[:0]
	t.chunks, t.chunkLive, t.freeChunks, t.cur, t.live, t.held = nil, nil, nil, -1, 0, 0
}

func (t *changeTable) release(i uint32) {
	s := &t.slots[i]
	delete(t.index, s.hash)
	n := int(s.klen) + int(s.dlen)
	t.live -= n
	t.chunkLive[s.chunk] -= n
	c := s.chunk
	*s = changeSlot{}
	t.free = append(t.free, i)
	t.letGoIfEmpty(c)
}

// letGoIfEmpty lets chunk c go when no entry uses it.
func (t *changeTable) letGoIfEmpty(c int32) {
	if t.chunkLive[c] > 0 || t.chunks[c] == nil {
		return
	}
	t.held -= cap(t.chunks[c])
	t.chunks[c] = nil
	t.freeChunks = append(t.freeChunks, c)
	if c == t.cur {
		t.cur = -1
	}
}

// compact copies the entries to new chunks once the chunks held are more
// than twice what the entries use (chunks partly emptied by entries
// dropped out of order), keeping the memory within about twice the
// entries' bytes.
func (t *changeTable) compact() {
	if t.held < compactAbove || t.held < 2*t.live+chunkSize {
		return
	}
	old := t.chunks
	t.chunks, t.chunkLive, t.freeChunks, t.cur, t.held = nil, nil, nil, -1, 0
	for i := range t.slots {
		s := &t.slots[i]
		if !s.used {
			continue
		}
		n := s.klen + s.dlen
		b := old[s.chunk][s.off : s.off+n]
		c, off := t.room(int(n))
		t.chunks[c] = append(t.chunks[c], b...)
		t.chunkLive[c] += int(n)
		s.chunk, s.off = c, off
	}
}
