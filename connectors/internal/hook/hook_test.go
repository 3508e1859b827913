package hook

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

func TestEqualSecret(t *testing.T) {
	tests := []struct {
		got, secret string
		want        bool
	}{
		{"abc", "abc", true},
		{"abd", "abc", false},
		{"ab", "abc", false},
		{"abcd", "abc", false},
		{"", "abc", false},
	}
	for _, tc := range tests {
		if got := EqualSecret(tc.got, []byte(tc.secret)); got != tc.want {
			t.Errorf("EqualSecret(%q, %q) = %v", tc.got, tc.secret, got)
		}
	}
}

func TestLabel(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{" push ", "push", ""},
		{"Pipeline Hook", "Pipeline Hook", ""},
		{"", "", "is empty"},
		{"a\tb", "", "contains control characters"},
		{"\xff", "", "is not valid UTF-8"},
		{strings.Repeat("x", MaxTypeLen+1), "", "is longer than"},
	}
	for _, tc := range tests {
		got, err := Label("f", tc.in, MaxTypeLen)
		if tc.wantErr != "" {
			if !core.IsKind(err, core.KindInvalid) || !strings.Contains(err.Error(), "f: "+tc.wantErr) {
				t.Errorf("Label(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Label(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestObjectErrors(t *testing.T) {
	tests := []struct{ body, want string }{
		{"", "body is empty"},
		{"  \n", "body is empty"},
		{"null", "not a JSON object (it is null)"},
		{"[1]", "not a JSON object (it is a JSON array)"},
		{`"s"`, "not a JSON object (it is a JSON string)"},
		{"12", "not a JSON object (it is a JSON number)"},
		{"{", "not valid JSON"},
		{`{"a":1}x`, "not valid JSON"},
	}
	for _, tc := range tests {
		_, err := Object([]byte(tc.body))
		if !core.IsKind(err, core.KindInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Object(%q) = %v, want %q", tc.body, err, tc.want)
		}
		if tc.want == "not valid JSON" || tc.want == "body is empty" {
			err = ValidObject([]byte(tc.body))
			if !core.IsKind(err, core.KindInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ValidObject(%q) = %v, want %q", tc.body, err, tc.want)
			}
		}
	}
	if err := ValidObject([]byte(` {"a":[1,{}]} `)); err != nil {
		t.Fatal(err)
	}
	if err := ValidObject([]byte(`[1]`)); err == nil || !strings.Contains(err.Error(), "it is an array") {
		t.Fatalf("ValidObject([1]) = %v", err)
	}
}

func TestKeep(t *testing.T) {
	h := http.Header{}
	h.Set("x-github-event", "push")
	h.Set("User-Agent", strings.Repeat("u", 5000))
	h.Set("Authorization", "Basic x")
	got := Keep(h, "X-GitHub-Event", "User-Agent", "X-Missing")
	if got["X-Github-Event"] != "push" || len(got["User-Agent"]) != maxHeaderLen || len(got) != 2 {
		t.Fatalf("Keep = %v", got)
	}
}

func TestNotJSONHint(t *testing.T) {
	err := core.Errorf(core.KindInvalid, "body is not valid JSON: x")
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	got := NotJSONHint(h, err)
	if !core.IsKind(got, core.KindInvalid) || !strings.Contains(got.Error(), "application/json") {
		t.Fatalf("NotJSONHint = %v", got)
	}
	if NotJSONHint(http.Header{}, err) != err {
		t.Fatal("hint added without form content type")
	}
}
