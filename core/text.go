package core

import (
	"strings"
	"unicode"
)

// OneLine is s on one line: every control character, line or paragraph
// separator and bidirectional override (which can make a line read in
// another order than it is stored) becomes a space. Reasons are one line:
// they quote record and request text (an incident's title, a pipeline's
// commit) and go into CI comments, work notes and the CLI's output, where
// a line break could forge a verdict line or a CI workflow command.
func OneLine(s string) string {
	// Printable ASCII is skipped a byte at a time: reasons are that,
	// and every gate check's pass through here.
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f {
		i++
	}
	if i == len(s) || strings.IndexFunc(s[i:], breaksLine) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if breaksLine(r) {
			return ' '
		}
		return r
	}, s)
}

func breaksLine(r rune) bool {
	switch {
	case unicode.IsControl(r), r == '\u2028', r == '\u2029':
		return true
	case r >= '\u202A' && r <= '\u202E', r >= '\u2066' && r <= '\u2069':
		return true
	}
	return false
}
