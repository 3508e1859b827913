package core

import (
	"regexp"
	"testing"
)

func TestReleaseID(t *testing.T) {
	uuid5 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a := ReleaseID("payments-api", "1.4.2", "production")
	if !uuid5.MatchString(a) {
		t.Fatalf("%q is not a version-5 UUID", a)
	}
	if a != ReleaseID("payments-api", "1.4.2", "production") {
		t.Fatal("not deterministic")
	}
	for _, other := range [][3]string{
		{"payments-api", "1.4.2", "staging"},
		{"payments-api", "1.4.3", "production"},
		{"payments-ap", "i1.4.2", "production"}, // the separator matters
	} {
		if ReleaseID(other[0], other[1], other[2]) == a {
			t.Errorf("%v collides with the original", other)
		}
	}
}
