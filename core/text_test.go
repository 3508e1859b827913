package core

import "testing"

func TestOneLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"plain ascii text", "plain ascii text"},
		{"a\nb", "a b"},
		{"tab\there", "tab here"},
		{"del\x7f", "del "},
		{"ünïcode ok", "ünïcode ok"},
		{"ü\u2028x", "ü x"},
		{"bidi\u202Eend", "bidi end"},
	} {
		if got := OneLine(tc.in); got != tc.want {
			t.Errorf("OneLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
