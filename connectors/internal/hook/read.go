package hook

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/internal/jsonscan"
)

// This file reads webhook bodies in place instead of decoding them with
// encoding/json: one validation pass (internal/jsonscan), then only the
// members a connector needs, as gjson Results (ParseLookup finds the
// top-level ones during the validation pass). What it returns is exactly
// what decoding the body into map[string]json.RawMessage and
// unmarshalling the members gave (FuzzRead pins that down against Object
// and the legacy readers in hooktest):
//
//   - a member is found by its key after unescaping, compared exactly, and
//     of duplicate keys the last one wins (gjson's own paths take the
//     first);
//   - strings decode as encoding/json decodes them, invalid UTF-8 and lone
//     surrogates becoming U+FFFD;
//   - a body encoding/json refuses is refused with Object's message.
//
// A gjson.Result from ParseObject aliases the body; the strings this file
// hands out (Text, String) are copies, so nothing returned pins or shares
// the caller's buffer.

// maxDepth is encoding/json's nesting limit: it refuses a body nested more
// deeply, so such a body goes to encoding/json to be refused alike.
const maxDepth = 10000

// ParseObject validates body as one JSON object and returns it for reading
// with Lookup, String, Member and Text. Its errors are Object's, word for
// word: "body is empty", "body is not a JSON object (it is a JSON array)",
// "body is not valid JSON: …", all KindInvalid.
//
// The result reads body in place: body must not be modified while the
// result or any Result taken from it is in use.
func ParseObject(body []byte) (gjson.Result, error) {
	if !validObject(body) {
		// The rare path: let encoding/json word the error.
		if _, err := Object(body); err != nil {
			return gjson.Result{}, err
		}
	}
	return gjson.Parse(unsafe.String(unsafe.SliceData(body), len(body))), nil
}

// validObject reports whether body is one JSON object that encoding/json
// accepts.
func validObject(body []byte) bool {
	i := 0
	for i < len(body) && isSpace(body[i]) {
		i++
	}
	if i == len(body) || body[i] != '{' {
		return false
	}
	if tooDeep(body) {
		return json.Valid(body)
	}
	return jsonscan.Valid(body) // what gjson.ValidBytes accepts, in a fraction of its time
}

// tooDeep reports whether body might nest more deeply than maxDepth:
// that needs more opening brackets than maxDepth, and counting them is far
// cheaper than tracking the depth.
func tooDeep(body []byte) bool {
	return len(body) > maxDepth && bytes.Count(body, []byte{'{'})+bytes.Count(body, []byte{'['}) > maxDepth
}

// isSpace reports whether c is JSON whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// Lookup finds, in one pass over obj's members, the value of each of keys:
// vals[i] receives the value of keys[i], and does not Exist when obj has
// no such member. A key matches after unescaping, exactly, and of
// duplicate keys the last wins, as in a map[string]json.RawMessage.
// vals must be at least as long as keys.
func Lookup(obj gjson.Result, vals []gjson.Result, keys ...string) {
	lookup(obj, false, vals, keys)
}

// LookupFold is Lookup for one key matched as encoding/json matches a
// struct field: case-insensitively (strings.EqualFold), the last matching
// member winning.
func LookupFold(obj gjson.Result, key string) gjson.Result {
	var v [1]gjson.Result
	lookup(obj, true, v[:], []string{key})
	return v[0]
}

// Get returns the value of obj's member key (see Lookup); it does not
// Exist when there is none.
func Get(obj gjson.Result, key string) gjson.Result {
	var v [1]gjson.Result
	lookup(obj, false, v[:], []string{key})
	return v[0]
}

// ParseLookup is ParseObject and then Lookup of keys, in one pass over
// body: the members are looked up as they are validated. Its errors are
// ParseObject's.
func ParseLookup(body []byte, vals []gjson.Result, keys ...string) (gjson.Result, error) {
	return ParseLookupIn(body, vals, keys, "", nil, nil)
}

// ParseLookupIn is ParseLookup that also looks up inKeys inside the
// member named in, in the same pass: inVals[k] is what Get(v, inKeys[k])
// gives for v the value of the last member named in (nothing when that
// value is not an object). A ServiceNow envelope's record is read so,
// without a second walk over it.
func ParseLookupIn(body []byte, vals []gjson.Result, keys []string, in string, inVals []gjson.Result, inKeys []string) (gjson.Result, error) {
	i := 0
	for i < len(body) && isSpace(body[i]) {
		i++
	}
	clear(vals[:len(keys)])
	clear(inVals[:len(inKeys)])
	raw := unsafe.String(unsafe.SliceData(body), len(body))
	if i < len(body) && body[i] == '{' && !tooDeep(body) {
		w := walker{raw: raw[i:], s: jsonscan.Scanner{Data: body[i:]}}
		if end, ok := w.object(0, false, vals, keys, in, inVals, inKeys); ok && jsonscan.WS(w.s.Data, end) == len(w.s.Data) {
			return gjson.Parse(raw), nil
		}
	}
	// Invalid, or possibly nested more deeply than encoding/json accepts:
	// the general way words the error and decides.
	obj, err := ParseObject(body)
	if err != nil {
		return gjson.Result{}, err
	}
	lookup(obj, false, vals, keys)
	if in != "" {
		lookup(Get(obj, in), false, inVals, inKeys)
	}
	return obj, nil
}

func lookup(obj gjson.Result, fold bool, vals []gjson.Result, keys []string) {
	for i := range keys {
		vals[i] = gjson.Result{}
	}
	if obj.IsObject() {
		walk(obj.Raw, fold, vals, keys)
	}
}

// walk reads the members of the object whose '{' starts raw with the
// validator's skipping (much faster than gjson's ForEach, which also
// decodes every member it passes) and sets vals[k] to the value of the
// last member named keys[k], made a Result as gjson.Parse makes it. It
// reports whether raw is exactly one valid JSON object (and trailing
// whitespace); at the first byte that is not, it stops, keeping what it
// found, as gjson's ForEach would. vals must be cleared by the caller.
func walk(raw string, fold bool, vals []gjson.Result, keys []string) bool {
	w := walker{raw: raw, s: jsonscan.Scanner{Data: unsafe.Slice(unsafe.StringData(raw), len(raw))}}
	end, ok := w.object(0, fold, vals, keys, "", nil, nil)
	return ok && jsonscan.WS(w.s.Data, end) == len(w.s.Data)
}

// walker reads objects in raw (the same bytes as s.Data) in place.
type walker struct {
	raw string
	s   jsonscan.Scanner
}

// object walks the object whose '{' is at i, as walk describes, and
// returns the index just past its '}' and whether it was valid up to
// there. The members of the member named in (when in is not "") that is
// an object are walked the same way for inKeys, into inVals (cleared for
// each such member, so the last one wins).
func (w *walker) object(i int, fold bool, vals []gjson.Result, keys []string, in string, inVals []gjson.Result, inKeys []string) (int, bool) {
	d, raw := w.s.Data, w.raw
	i = jsonscan.WS(d, i+1)
	if i < len(d) && d[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(d) || d[i] != '"' {
			return i, false
		}
		end, esc, ok := jsonscan.Str(d, i+1)
		if !ok {
			return i, false
		}
		// Without escapes, and in valid UTF-8, the raw key is the decoded
		// one.
		name := raw[i+1 : end-1]
		if esc || !utf8.ValidString(name) {
			name = decodeString(raw[i:end])
		}
		if i = jsonscan.WS(d, end); i >= len(d) || d[i] != ':' {
			return i, false
		}
		start := jsonscan.WSColon(d, i+1)
		if in != "" && name == in {
			clear(inVals[:len(inKeys)])
			if start < len(d) && d[start] == '{' {
				i, ok = w.object(start, false, inVals, inKeys, "", nil, nil)
			} else {
				i, ok = w.s.Skip(start)
			}
		} else {
			i, ok = w.s.Skip(start)
		}
		if !ok {
			return i, false
		}
		for k, want := range keys {
			if name == want || fold && strings.EqualFold(name, want) {
				vals[k] = gjson.Parse(raw[start:i])
			}
		}
		if i = jsonscan.WS(d, i); i >= len(d) {
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

// Text returns the value of the JSON string v as encoding/json decodes it,
// as a fresh copy; "" when v is not a string.
func Text(v gjson.Result) string {
	if v.Type != gjson.String || len(v.Raw) < 2 {
		return ""
	}
	s := v.Raw[1 : len(v.Raw)-1]
	if strings.IndexByte(s, '\\') < 0 && utf8.ValidString(s) {
		return strings.Clone(s)
	}
	return decodeString(v.Raw)
}

// decodeString unquotes the JSON string literal raw with encoding/json, for
// the escapes and invalid UTF-8 whose decoding gjson words differently.
func decodeString(raw string) string {
	var s string
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		// Unreachable for a validated body; keep the bytes rather than
		// lose them.
		return strings.ToValidUTF8(raw, "\uFFFD")
	}
	return s
}

// Kind names the JSON type of v for error messages, as JSONKind does.
func Kind(v gjson.Result) string {
	switch {
	case !v.Exists():
		return "nothing"
	case v.Type == gjson.String:
		return "a string"
	case v.Type == gjson.Number:
		return "a number"
	case v.Type == gjson.True, v.Type == gjson.False:
		return "a boolean"
	case v.Type == gjson.Null:
		return "null"
	case v.IsArray():
		return "an array"
	default:
		return "an object"
	}
}

// String reads member field of obj as a string. present is false when the
// member is absent or null; a member of another JSON type is a KindInvalid
// error naming path.
func String(obj gjson.Result, field, path string) (s string, present bool, err error) {
	return StringValue(Get(obj, field), path)
}

// StringValue is String for a member already looked up (Lookup,
// ParseLookup): v that does not Exist or is null is absent.
func StringValue(v gjson.Result, path string) (s string, present bool, err error) {
	switch v.Type {
	case gjson.Null:
		return "", false, nil
	case gjson.String:
		return Text(v), true, nil
	default:
		return "", false, core.Invalid(path, "must be a string, got %s", Kind(v))
	}
}

// Member reads member field of obj as a JSON object. present is false when
// the member is absent or null; another JSON type is a KindInvalid error
// naming path.
func Member(obj gjson.Result, field, path string) (m gjson.Result, present bool, err error) {
	v := Get(obj, field)
	switch {
	case v.Type == gjson.Null:
		return gjson.Result{}, false, nil
	case v.IsObject():
		return v, true, nil
	default:
		return gjson.Result{}, false, core.Invalid(path, "must be an object, got %s", Kind(v))
	}
}
