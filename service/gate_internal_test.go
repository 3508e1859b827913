package service

import (
	"regexp"
	"strings"
	"testing"
)

// The patterns shapeOK checks byte by byte.
var (
	namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/@:+-]{0,127}$`)
	keyPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,127}$`)
)

var shapeSamples = []string{
	"", "a", "Z9", "payments-api", "svc.1_2/3@4:5+6-7", "CHG0000024", "INC#1", "a:b/c#d", "-a", ".a", "_", "a b", "a\n",
	"a\x00", "é", "aé", "a\xff", "a\u212a", "a$", "a^", "a*", "a,b", strings.Repeat("a", 128), strings.Repeat("a", 129),
	"a" + strings.Repeat("-", 127), "a" + strings.Repeat("é", 10), "1.4.2", "sha256:00", "a@b", "a+b", "a#b", "a/b",
}

// checkShape fails when shapeOK and the patterns disagree on s.
func checkShape(t *testing.T, s string) {
	t.Helper()
	if got, want := shapeOK(s, nameChars), namePattern.MatchString(s); got != want {
		t.Errorf("name %q: shapeOK %v, pattern %v", s, got, want)
	}
	if got, want := shapeOK(s, keyChars), keyPattern.MatchString(s); got != want {
		t.Errorf("key %q: shapeOK %v, pattern %v", s, got, want)
	}
}

func TestShapeMatchesPatterns(t *testing.T) {
	for _, s := range shapeSamples {
		checkShape(t, s)
	}
	for c := 0; c < 256; c++ { // every byte, first and later
		checkShape(t, string(rune(c)))
		checkShape(t, string([]byte{byte(c)}))
		checkShape(t, "a"+string([]byte{byte(c)}))
		checkShape(t, "a"+string(rune(c))+"b")
	}
}

func FuzzShapeMatchesPatterns(f *testing.F) {
	for _, s := range shapeSamples {
		f.Add(s)
	}
	f.Fuzz(checkShape)
}

// BenchmarkShape checks a service name and a change key, byte by byte and
// with the patterns.
func BenchmarkShape(b *testing.B) {
	b.Run("shapeOK", func(b *testing.B) {
		for b.Loop() {
			if !shapeOK("payments-api", nameChars) || !shapeOK("CHG0000024", keyChars) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("regexp", func(b *testing.B) {
		for b.Loop() {
			if !namePattern.MatchString("payments-api") || !keyPattern.MatchString("CHG0000024") {
				b.Fatal("refused")
			}
		}
	})
}
