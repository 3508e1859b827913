package groupcommit

import "sync"

// onceMemo remembers the Once keys of rows this process saw committed, so
// that a later request leaves them out (a pipeline asking again about the
// release it waits on does not carry the release's insert, whose conflict
// check costs two index lookups inside the group every check waits for).
// Such rows are never deleted, so a key once known stays true; an unknown
// one is inserted (its insert does nothing on conflict). Two generations of
// at most onceMax keys each bound its memory.
type onceMemo struct {
	mu        sync.Mutex
	cur, prev map[string]struct{}
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
	if _, ok := m.cur[key]; ok {
		return true
	}
	_, ok := m.prev[key]
	return ok
}

func (m *onceMemo) add(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil || len(m.cur) >= onceMax {
		m.prev, m.cur = m.cur, make(map[string]struct{}, 1024)
	}
	m.cur[key] = struct{}{}
}

func hasOnce(rows []Row) bool {
	for _, r := range rows {
		if r.Once != "" {
			return true
		}
	}
	return false
}
