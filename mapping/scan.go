package mapping

import (
	"math/bits"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/tollgate-dev/tollgate/internal/jsonscan"
)

// This file is Apply's single pass over a payload: it validates the JSON
// (accepting exactly what gjson.ValidBytes accepts: RFC 8259 syntax, with
// no UTF-8 check) and, on the way, records where the values of the first
// path components the profile uses sit, both at the top level and inside
// the envelope (unwrap) object. Apply then reads fields from those small
// spans instead of walking the payload again with gjson.

// span is a byte range [start, end) of the payload; end 0 means absent
// (no value starts at offset 0 below the top level).
type span struct{ start, end int }

// scanner validates one payload and indexes it for one profile.
type scanner struct {
	jsonscan.Scanner                // the payload (Data) and the validator
	keys             map[string]int // top-level key → slot (Compiled.topKeys)
	filter           *keyFilter
	unwrap           string // envelope key, "" when not indexing an envelope
	// root holds the spans of the indexed keys of the top-level object,
	// rec those of the first envelope value when it is an object; nil
	// slices index nothing.
	root, rec []span
	env       span // the first envelope value
	envFound  bool
}

// keyFilter finds the slot of a top-level key without hashing: bits
// rejects most keys a profile does not use (bit first byte mod 64 of entry
// length mod 64); a key shorter than 64 bytes is then compared with the
// few indexed keys of its length. Longer keys go to the map.
type keyFilter struct {
	bits  [64]uint64
	byLen [64][]keySlot
}

type keySlot struct {
	key  string
	slot int
}

func newKeyFilter(keys map[string]int) *keyFilter {
	var f keyFilter
	for k, i := range keys {
		if k == "" {
			continue
		}
		f.bits[len(k)&63] |= 1 << (k[0] & 63)
		if len(k) < 64 {
			f.byLen[len(k)] = append(f.byLen[len(k)], keySlot{k, i})
		}
	}
	return &f
}

// valid reports whether the payload is one JSON value, indexing it: object
// reads the top-level object when there is something to index (and the
// envelope object inside it, its only recursion); skip validates all the
// rest, with an explicit stack for nesting (no recursion).
func (s *scanner) valid() bool {
	d := s.Data
	i := jsonscan.WS(d, 0)
	var ok bool
	if i < len(d) && d[i] == '{' && (s.root != nil || s.unwrap != "") {
		i, ok = s.object(i, s.root, true)
	} else {
		i, ok = s.Skip(i)
	}
	return ok && jsonscan.WS(d, i) == len(d)
}

// object validates the object whose '{' is at i and records in slots
// (when not nil) where the first value of each indexed key starts and
// ends. At the top level (top) it also finds the first envelope member
// and, when its value is an object and s.rec is not nil, indexes that
// object into s.rec. It returns the offset after the object.
func (s *scanner) object(i int, slots []span, top bool) (int, bool) {
	d := s.Data
	i = jsonscan.WS(d, i+1)
	if i < len(d) && d[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(d) || d[i] != '"' {
			return i, false
		}
		ks := i + 1
		var esc, ok bool
		if i, esc, ok = jsonscan.Str(d, ks); !ok {
			return i, false
		}
		key := d[ks : i-1]
		i = jsonscan.WS(d, i)
		if i >= len(d) || d[i] != ':' {
			return i, false
		}
		i = jsonscan.WSColon(d, i+1)
		vs, slot := i, -1
		if slots != nil {
			slot = s.slot(key, esc)
		}
		if top && s.unwrap != "" && !s.envFound && s.keyIs(key, esc, s.unwrap) {
			if i < len(d) && d[i] == '{' && s.rec != nil {
				i, ok = s.object(i, s.rec, false)
			} else {
				i, ok = s.Skip(i)
			}
			s.env, s.envFound = span{vs, i}, true
		} else {
			i, ok = s.Skip(i)
		}
		if !ok {
			return i, false
		}
		if slot >= 0 && slots[slot].end == 0 {
			slots[slot] = span{vs, i}
		}
		i = jsonscan.WS(d, i)
		if i >= len(d) {
			return i, false
		}
		switch d[i] {
		case ',':
			i = jsonscan.WS(d, i+1)
		case '}':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// unescapeKey returns a key's text as gjson compares it.
func unescapeKey(key []byte) string {
	return gjson.Parse(`"` + string(key) + `"`).Str
}

func (s *scanner) keyIs(key []byte, esc bool, want string) bool {
	if esc {
		return unescapeKey(key) == want
	}
	return string(key) == want
}

// slot returns the slot of an indexed key, or -1.
func (s *scanner) slot(key []byte, esc bool) int {
	if esc {
		if i, ok := s.keys[unescapeKey(key)]; ok {
			return i
		}
		return -1
	}
	if len(key) == 0 || s.filter.bits[len(key)&63]&(1<<(key[0]&63)) == 0 {
		return -1
	}
	if len(key) < 64 {
		for _, e := range s.filter.byLen[len(key)] {
			if string(key) == e.key {
				return e.slot
			}
		}
		return -1
	}
	if i, ok := s.keys[string(key)]; ok {
		return i
	}
	return -1
}

// scanRecord validates payload and, when the record can be read from the
// index (the top level is an object; the envelope, if the profile names one
// and the payload has it, is an object), fills d. handled is false when the caller must find
// the record the general way; valid is false for invalid JSON.
func (c *Compiled) scanRecord(payload []byte, d *doc) (valid, handled bool) {
	s := scanner{Scanner: jsonscan.Scanner{Data: payload}, keys: c.topKeys, filter: c.filter}
	if c.indexable {
		s.unwrap = c.unwrap
	}
	var buf [32]span
	var spans []span
	if n := c.topCount; n > 0 && c.indexable {
		if s.unwrap != "" {
			n *= 2
		}
		if n <= len(buf) {
			spans = buf[:n]
		} else {
			spans = make([]span, n)
		}
		s.root = spans[:c.topCount]
		if s.unwrap != "" {
			s.rec = spans[c.topCount:]
		}
	}
	if !s.valid() {
		return false, false
	}
	if !c.indexable {
		return true, false
	}
	start := jsonscan.WS(payload, 0)
	if payload[start] != '{' {
		return true, false
	}
	rec, slots := span{start, len(payload)}, s.root // as gjson.Parse: the rest of the payload
	if s.envFound {
		if payload[s.env.start] != '{' {
			return true, false
		}
		rec, slots = s.env, s.rec
	}
	// One string holds what the fields read: the record when some path
	// needs it whole, else just the indexed values.
	d.vals = make([]string, c.topCount)
	if c.needRaw {
		d.raw = string(payload[rec.start:rec.end])
		for i, sp := range slots {
			if sp.end != 0 {
				d.vals[i] = d.raw[sp.start-rec.start : sp.end-rec.start]
			}
		}
		return true, true
	}
	n := 0
	for _, sp := range slots {
		n += sp.end - sp.start
	}
	var b strings.Builder
	b.Grow(n)
	for _, sp := range slots {
		b.Write(payload[sp.start:sp.end])
	}
	text := b.String()
	off := 0
	for i, sp := range slots {
		if sp.end != 0 {
			l := sp.end - sp.start
			d.vals[i] = text[off : off+l]
			off += l
		}
	}
	return true, true
}

// objectGet is r.Get(key) for a key without gjson path syntax, reading an
// object's members directly (gjson's general path walk costs more, and
// Apply does this for every {display_value,value} pair).
func objectGet(r gjson.Result, key string) gjson.Result {
	if v, ok := lookupKey(r.Raw, key); ok {
		return v
	}
	return r.Get(key)
}

// lookupKey returns the value of the first member named key of the JSON
// object raw (zero when there is none). ok is false when it cannot decide
// quickly — raw is not an object, a key before the match is escaped, or
// the syntax is unexpected — and gjson must.
func lookupKey(raw, key string) (gjson.Result, bool) {
	v, found, ok := lookupRaw(raw, key)
	if !ok || !found {
		return gjson.Result{}, ok
	}
	return parseValue(v), true
}

// lookupRaw is lookupKey returning the member's JSON text (found false
// when there is no such member).
func lookupRaw(raw, key string) (v string, found, ok bool) {
	v, _, found, _, ok = members(raw, key, "")
	return v, found, ok
}

// members scans the JSON object raw once for the first member named key
// and, unless key is found first, the first named alt (alt "" for none),
// returning their JSON text. ok is false as for lookupKey: the scan stops
// at the key, so an escaped key or odd syntax after it is not looked at.
func members(raw, key, alt string) (kv, av string, kFound, aFound, ok bool) {
	i := wsStr(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return "", "", false, false, false
	}
	i = wsStr(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return "", "", false, false, true
	}
	for {
		if i >= len(raw) || raw[i] != '"' {
			return "", "", false, false, false
		}
		ks := i + 1
		j := quoteOrBackslash(raw, ks)
		if j < 0 || raw[j] != '"' {
			return "", "", false, false, false
		}
		k := raw[ks:j]
		i = wsStr(raw, j+1)
		if i >= len(raw) || raw[i] != ':' {
			return "", "", false, false, false
		}
		i = wsStr(raw, i+1)
		vs := i
		ve, good := skipValue(raw, i)
		if !good {
			return "", "", false, false, false
		}
		if k == key {
			return raw[vs:ve], av, true, aFound, true
		}
		if alt != "" && !aFound && k == alt {
			av, aFound = raw[vs:ve], true
		}
		i = wsStr(raw, ve)
		if i >= len(raw) {
			return "", "", false, false, false
		}
		switch raw[i] {
		case ',':
			i = wsStr(raw, i+1)
		case '}':
			return "", av, false, aFound, true
		default:
			return "", "", false, false, false
		}
	}
}

// parseValue is gjson.Parse for one exact JSON value, without its general
// scan for the common string and object cases.
func parseValue(v string) gjson.Result {
	switch v[0] {
	case '"':
		if strings.IndexByte(v, '\\') < 0 {
			return gjson.Result{Type: gjson.String, Raw: v, Str: v[1 : len(v)-1]}
		}
	case '{', '[':
		return gjson.Result{Type: gjson.JSON, Raw: v}
	}
	return gjson.Parse(v)
}

func wsStr(s string, i int) int {
	if i < len(s) && s[i] > ' ' {
		return i
	}
	return jsonscan.SkipWS(s, i)
}

// skipString returns the offset after the (valid) string whose opening
// quote is at i-1.
func skipString(s string, i int) (int, bool) {
	for {
		j := quoteOrBackslash(s, i)
		if j < 0 {
			return len(s), false
		}
		if s[j] == '"' {
			return j + 1, true
		}
		i = j + 2 // past the escape pair, which may be \"
	}
}

// Byte-lane constants for testing eight bytes at a time.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// quoteOrBackslash returns the offset of the first '"' or '\\' in s from
// i, or -1. Strings in payloads are mostly short, so it tests 8 bytes at a
// time in place of two IndexByte calls.
func quoteOrBackslash(s string, i int) int {
	for ; i+8 <= len(s); i += 8 {
		w := s[i : i+8] // one bounds check for the 8 bytes
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		q := x ^ (lsb * '"')
		b := x ^ (lsb * '\\')
		// Borrows may flag bytes above the lowest flagged one, which is exact.
		if m := ((q-lsb)&^q | (b-lsb)&^b) & msb; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			return i
		}
	}
	return -1
}

// skipValue returns the offset after the (valid) JSON value at s[i].
func skipValue(s string, i int) (int, bool) {
	if i >= len(s) {
		return i, false
	}
	switch s[i] {
	case '"':
		return skipString(s, i+1)
	case '{', '[':
		depth := 0
		for i < len(s) {
			switch s[i] {
			case '"':
				var ok bool
				if i, ok = skipString(s, i+1); !ok {
					return i, false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return i, false
	}
	j := i
	for j < len(s) {
		switch s[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j, j > i
		}
		j++
	}
	return j, j > i
}
