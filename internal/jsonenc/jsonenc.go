// Package jsonenc encodes JSON with segmentio/encoding's json, several
// times faster than encoding/json on tollgate's documents, and returns
// the bytes the build's encoding/json writes for the same value.
//
// The two agree on everything but invalid UTF-8 in a string, whose
// replacement character segmentio always writes as the escape \ufffd:
// encoding/json did the same up to Go 1.26, and from Go 1.27 (encoding/json
// on top of json/v2) writes the character itself. Which one the build's
// encoding/json does is asked once, and the escapes are rewritten when it
// writes the character, so a document's bytes — and the SHA-256 the audit
// chain records for a gate decision — do not depend on which encoder
// wrote it.
package jsonenc

import (
	"bytes"
	"encoding/json"

	segjson "github.com/segmentio/encoding/json"
)

// Flags are segmentio's append flags.
type Flags = segjson.AppendFlags

// The flags segjson.Marshal uses, and those without map key sorting.
const (
	MarshalFlags = segjson.EscapeHTML | segjson.SortMapKeys
	EscapeHTML   = segjson.EscapeHTML
)

// rawReplacement says whether the build's encoding/json writes invalid
// UTF-8 as the character U+FFFD rather than its escape. It is a property
// of the toolchain, fixed for the life of the process.
var rawReplacement = func() bool {
	b, _ := json.Marshal("\xff")
	return string(b) == "\"\uFFFD\""
}()

// Marshal is json.Marshal's output.
func Marshal(v any) ([]byte, error) {
	return Append(nil, v, MarshalFlags)
}

// Append appends v's encoding to b, as segjson.Append with flags, then
// as encoding/json writes it.
func Append(b []byte, v any, flags Flags) ([]byte, error) {
	start := len(b)
	b, err := segjson.Append(b, v, flags)
	if err != nil || !rawReplacement {
		return b, err
	}
	return unescapeReplacement(b, start), nil
}

var replacementEscape = []byte(`\ufffd`)

// unescapeReplacement rewrites, in place, every \ufffd escape of b[start:]
// as the character U+FFFD (3 bytes for 6). In a JSON text every
// backslash begins an escape, so walking escape by escape never takes the
// tail of `\\ufffd` (an escaped backslash, then text) for one.
func unescapeReplacement(b []byte, start int) []byte {
	if !bytes.Contains(b[start:], replacementEscape) {
		return b
	}
	w := start
	for r := start; r < len(b); {
		i := bytes.IndexByte(b[r:], '\\')
		if i < 0 {
			w += copy(b[w:], b[r:])
			break
		}
		w += copy(b[w:], b[r:r+i])
		r += i
		n := 2 // \" \\ \n …
		if r+1 < len(b) && b[r+1] == 'u' {
			n = 6
			if bytes.HasPrefix(b[r:], replacementEscape) {
				w += copy(b[w:], "\uFFFD")
				r += n
				continue
			}
		}
		n = min(n, len(b)-r)
		w += copy(b[w:], b[r:r+n])
		r += n
	}
	return b[:w]
}
