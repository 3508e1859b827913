// Package jsonscan validates JSON in one pass over its bytes, accepting
// exactly what gjson.ValidBytes accepts (RFC 8259 syntax, with no UTF-8
// check) at a fraction of its cost: strings and indentation are crossed
// eight bytes at a time, nesting is tracked on an explicit stack (no
// recursion, so no depth can exhaust the goroutine's stack), and the
// members of objects that repeat the same keys are recognised by their
// first bytes. The webhook receivers validate every delivery with it
// (connectors/internal/hook), and mapping builds its single-pass payload
// index on Scanner.
package jsonscan

import (
	"encoding/binary"
	"math/bits"
)

// Valid reports whether data is one JSON value (surrounded by optional
// whitespace), as gjson.ValidBytes.
func Valid(data []byte) bool {
	s := Scanner{Data: data}
	i, ok := s.Skip(WS(data, 0))
	return ok && WS(data, i) == len(data)
}

// Scanner validates the values of one payload, Data. It remembers the
// members of the last objects it crossed, so one Scanner should cross the
// values of one payload in turn. Its zero value with Data set is ready.
type Scanner struct {
	Data []byte
	memo [4]memoKey // keys remembered by flat, by position
}

// Skip validates the JSON value at i, indexing nothing, and returns the
// offset after it. A string is checked directly; an object goes to flat
// first, which handles objects of scalars, and the general loop (nested)
// takes over at the first member value that is itself a container.
func (s *Scanner) Skip(i int) (int, bool) {
	d := s.Data
	if i < len(d) {
		switch d[i] {
		case '"':
			j, _, ok := Str(d, i+1)
			return j, ok
		case '{':
			j, nested, ok := s.flat(i)
			if !nested || !ok {
				return j, ok
			}
			return s.nested(j, true)
		}
	}
	return s.nested(i, false)
}

// nested validates the JSON value at i with one loop and an explicit stack
// of open containers (no recursion); inObject says that i is a member value
// of an object already open, whose '}' ends the value. Objects go to flat
// first, as in skip.
func (s *Scanner) nested(i int, inObject bool) (int, bool) {
	d := s.Data
	var (
		buf   [32]byte
		stack = buf[:0] // '{' or '[' per open container
		ok    bool
	)
	if inObject {
		stack = append(stack, '{')
	}
value:
	if i >= len(d) {
		return i, false
	}
	switch d[i] {
	case '"':
		if i, _, ok = Str(d, i+1); !ok {
			return i, false
		}
	case '{':
		var nested bool
		if i, nested, ok = s.flat(i); !ok {
			return i, false
		}
		if nested {
			stack = append(stack, '{')
			goto value
		}
	case '[':
		stack = append(stack, '[')
		i = WS(d, i+1)
		if i < len(d) && d[i] == ']' {
			i++
			stack = stack[:len(stack)-1]
			break
		}
		goto value
	default:
		if i, ok = scalarEnd(d, i); !ok {
			return i, false
		}
	}
after: // a value ended at i
	if len(stack) == 0 {
		return i, true
	}
	i = WS(d, i)
	if i >= len(d) {
		return i, false
	}
	switch d[i] {
	case ',':
		i = WS(d, i+1)
		if stack[len(stack)-1] == '[' {
			goto value
		}
	case '}':
		if stack[len(stack)-1] != '{' {
			return i, false
		}
		i++
		stack = stack[:len(stack)-1]
		goto after
	case ']':
		if stack[len(stack)-1] != '[' {
			return i, false
		}
		i++
		stack = stack[:len(stack)-1]
		goto after
	default:
		return i, false
	}
	// The next member's key.
	if i >= len(d) || d[i] != '"' {
		return i, false
	}
	if i, _, ok = Str(d, i+1); !ok {
		return i, false
	}
	i = WS(d, i)
	if i >= len(d) || d[i] != ':' {
		return i, false
	}
	i = WSColon(d, i+1)
	goto value
}

// flat validates the object whose '{' is at i without a stack. It returns
// the offset after the object (nested false), or the offset of the first
// member value that is an object or array (nested true), from where
// nested goes on with the object open; ok is false for invalid JSON.
//
// Objects of one payload tend to have the same keys in the same order
// (ServiceNow's {"display_value","value"} pairs, {"link","value"}
// references), so flat remembers, for each of the first members of the
// last object, the text from the key's opening quote to the value (key,
// colon and whitespace); a member starting with the same bytes is valid up
// to its value without looking at them one by one.
func (s *Scanner) flat(i int) (end int, nested, ok bool) {
	d := s.Data
	i = WS(d, i+1)
	if i < len(d) && d[i] == '}' {
		return i + 1, false, true
	}
	for k := 0; ; k++ {
		if i >= len(d) || d[i] != '"' {
			return i, false, false
		}
		if k < len(s.memo) && s.memo[k].match(d, i) {
			i = WS(d, i+s.memo[k].n)
		} else {
			ks := i
			var esc bool
			if i, esc, ok = Str(d, i+1); !ok {
				return i, false, false
			}
			i = WS(d, i)
			if i >= len(d) || d[i] != ':' {
				return i, false, false
			}
			i = WSColon(d, i+1)
			if k < len(s.memo) {
				s.memo[k].set(d, ks, i, esc)
			}
		}
		if i >= len(d) {
			return i, false, false
		}
		switch d[i] {
		case '"':
			if i+1 < len(d) && d[i+1] == '"' {
				i += 2 // ""
			} else if i, _, ok = Str(d, i+1); !ok {
				return i, false, false
			}
		case '{', '[':
			return i, true, true
		default:
			if i, ok = scalarEnd(d, i); !ok {
				return i, false, false
			}
		}
		i = WS(d, i)
		if i >= len(d) {
			return i, false, false
		}
		switch d[i] {
		case ',':
			i = WS(d, i+1)
		case '}':
			return i + 1, false, true
		default:
			return i, false, false
		}
	}
}

// memoKey is what flat remembers of a member: the n bytes (n <= 32) from
// its key's opening quote to its value, as four little-endian words and
// masks of the bytes that count. n 0 matches nothing.
type memoKey struct {
	n    int
	w, m [4]uint64
}

// set remembers d[start:end], a key (escaped when esc), its colon and the
// whitespace around it; what does not fit, or has escapes, is forgotten.
func (m *memoKey) set(d []byte, start, end int, esc bool) {
	n := end - start
	if esc || n > 32 || start+32 > len(d) {
		m.n = 0
		return
	}
	m.n = n
	for j := range 4 {
		var mask uint64
		switch b := n - 8*j; {
		case b >= 8:
			mask = ^uint64(0)
		case b > 0:
			mask = 1<<(8*b) - 1
		}
		m.m[j] = mask
		m.w[j] = binary.LittleEndian.Uint64(d[start+8*j:]) & mask
	}
}

// match reports whether d[i:] starts with the remembered bytes.
func (m *memoKey) match(d []byte, i int) bool {
	if m.n == 0 || i < 0 || i+32 > len(d) {
		return false
	}
	p := d[i : i+32]
	x := (binary.LittleEndian.Uint64(p)&m.m[0] ^ m.w[0]) |
		(binary.LittleEndian.Uint64(p[8:])&m.m[1] ^ m.w[1]) |
		(binary.LittleEndian.Uint64(p[16:])&m.m[2] ^ m.w[2]) |
		(binary.LittleEndian.Uint64(p[24:])&m.m[3] ^ m.w[3])
	return x == 0
}

// WSColon is ws after a colon, where one space is usual.
func WSColon(d []byte, i int) int {
	if i < len(d) && d[i] == ' ' {
		i++
	}
	return WS(d, i)
}

// WS skips whitespace from i. The test for none is small enough to inline.
func WS(d []byte, i int) int {
	if i < len(d) && d[i] > ' ' {
		return i
	}
	return SkipWS(d, i)
}

// SkipWS skips whitespace from i in a payload or one of its values.
//
//go:noinline // keeps WS (and mapping's wsStr) small enough to inline
func SkipWS[T string | []byte](d T, i int) int {
	for i < len(d) {
		switch d[i] {
		case '\n':
			// A line break and its indentation.
			i++
			fallthrough
		case ' ':
			// Indentation: skip a run of spaces 8 bytes at a time.
			if i+8 <= len(d) {
				w := d[i : i+8] // one bounds check for the 8 bytes
				x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
					uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
				if x ^= lsb * ' '; x != 0 {
					i += bits.TrailingZeros64(x) / 8
					if d[i] > ' ' {
						return i
					}
				} else {
					i += 8
				}
				continue
			}
			if i < len(d) && d[i] == ' ' {
				i++
			}
		case '\t', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scalarEnd validates the literal (true, false, null) or number at i.
func scalarEnd(d []byte, i int) (int, bool) {
	switch c := d[i]; {
	case c == 't':
		return lit(d, i, "true")
	case c == 'f':
		return lit(d, i, "false")
	case c == 'n':
		return lit(d, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		return number(d, i)
	}
	return i, false
}

func lit(d []byte, i int, w string) (int, bool) {
	if len(d)-i >= len(w) && string(d[i:i+len(w)]) == w {
		return i + len(w), true
	}
	return i, false
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// special flags the bytes of x (little endian) that are '"', '\\' or
// control characters. Borrows may flag bytes above a flagged one, but the
// lowest flag is exact.
//
// x^2 permutes the control characters among themselves and maps '"' to
// 0x20, and no other byte below 0x21, so one "less than 0x21" test finds
// both.
func special(x uint64) uint64 {
	q := x ^ (lsb * 2)
	b := x ^ (lsb * '\\')
	return ((q-lsb*0x21)&^q | (b-lsb)&^b) & msb
}

// Str validates a string whose opening quote is at i-1; it returns the
// offset after the closing quote and whether the string has escapes.
func Str(d []byte, i int) (int, bool, bool) {
	esc := false
	for {
		for i+8 <= len(d) {
			if m := special(binary.LittleEndian.Uint64(d[i : i+8])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				if d[i] == '"' {
					return i + 1, esc, true
				}
				break
			}
			i += 8
		}
		if i >= len(d) {
			return i, esc, false
		}
		switch c := d[i]; {
		case c == '"':
			return i + 1, esc, true
		case c == '\\':
			esc = true
			i++
			if i >= len(d) {
				return i, esc, false
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				for range 4 {
					i++
					if i >= len(d) || !ishex(d[i]) {
						return i, esc, false
					}
				}
				i++
			default:
				return i, esc, false
			}
		case c < ' ':
			return i, esc, false
		default:
			i++
		}
	}
}

func ishex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number validates a JSON number starting at i.
func number(d []byte, i int) (int, bool) {
	if d[i] == '-' {
		i++
		if i >= len(d) || !isDigit(d[i]) {
			return i, false
		}
	}
	if d[i] == '0' {
		i++
	} else {
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || !isDigit(d[i]) {
			return i, false
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || !isDigit(d[i]) {
			return i, false
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	}
	return i, true
}
