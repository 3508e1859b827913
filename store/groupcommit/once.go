package groupcommit

import (
	"hash/maphash"
	"sync"
)

// onceMemo remembers the Once keys of rows this process saw committed, so
// that a later request leaves them out (a pipeline asking again about the
// release it waits on does not carry the release's insert, whose conflict
// check costs two index lookups inside the group every check waits for).
// Such rows are never deleted, so a key once known stays true; an unknown
// one is inserted (its insert does nothing on conflict). Two generations of
// at most onceMax keys each bound its memory.
//
// A key is kept as two 64-bit hashes of it under different seeds: a map
// without pointers is one object the garbage collector does not scan,
// where the keys themselves would be tens of thousands of strings it
// marks at every collection while checks wait. A key taken for another
// (an insert left out that was needed) needs both hashes to collide:
// about 2^-128 a pair.
type onceMemo struct {
	mu        sync.Mutex
	seeds     [2]maphash.Seed
	seeded    bool
	cur, prev map[onceKey]struct{}
}

type onceKey [2]uint64

func (m *onceMemo) hash(key string) onceKey {
	if !m.seeded {
		m.seeds, m.seeded = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, true
	}
	return onceKey{maphash.String(m.seeds[0], key), maphash.String(m.seeds[1], key)}
}

const onceMax = 1 << 16

// skipKnown returns rows without those whose Once key is known (rows
// itself when none is).
func (m *onceMemo) skipKnown(rows []Row) []Row {
	if !hasOnce(rows) {
		return rows
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Row
	for i, r := range rows {
		if r.Once == "" || !m.hasLocked(r.Once) {
			if out != nil {
				out = append(out, r)
			}
			continue
		}
		if out == nil {
			out = append(make([]Row, 0, len(rows)-1), rows[:i]...)
		}
	}
	if out == nil {
		return rows
	}
	return out
}

// known reports whether key is a committed Once key.
func (m *onceMemo) known(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hasLocked(key)
}

// remember adds the Once keys of committed rows.
func (m *onceMemo) remember(rows []Row) {
	for _, r := range rows {
		if r.Once != "" {
			m.add(r.Once)
		}
	}
}

func (m *onceMemo) hasLocked(key string) bool {
	h := m.hash(key)
	if _, ok := m.cur[h]; ok {
		return true
	}
	_, ok := m.prev[h]
	return ok
}

func (m *onceMemo) add(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil || len(m.cur) >= onceMax {
		m.prev, m.cur = m.cur, make(map[onceKey]struct{}, 1024)
	}
	m.cur[m.hash(key)] = struct{}{}
}

func hasOnce(rows []Row) bool {
	for _, r := range rows {
		if r.Once != "" {
			return true
		}
	}
	return false
}
