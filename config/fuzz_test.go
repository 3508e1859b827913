package config

import (
	"os"
	"testing"

	"github.com/tollgate-dev/tollgate/core"
)

// FuzzParsePolicy feeds arbitrary documents to the policy parser (YAML,
// and JSON as YAML) and compiles what it accepts: neither panics, and
// every refusal is a client error naming what is wrong.
func FuzzParsePolicy(f *testing.F) {
	if b, err := os.ReadFile("tollgate.example.yaml"); err == nil {
		f.Add(b)
	}
	if b, err := os.ReadFile("../core/testdata/policy_example.json"); err == nil {
		f.Add(b)
	}
	if b, err := MarshalPolicy(core.DefaultPolicy()); err == nil {
		f.Add(b)
	}
	for _, s := range []string{
		"environments:\n  production:\n    rules: [CHANGE_APPROVED, FREEZE]\n",
		"freezes:\n  - {name: x, from: 2026-12-20T00:00:00Z, to: 2026-12-01T00:00:00Z}\n",
		"a: &a [*a]\n", "environments: {p: {rules: [NOPE]}}\n", "{}", "- 1\n", "\t", "environments: !!binary AAAA\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := ParsePolicy(src)
		if err != nil {
			if !core.IsKind(err, core.KindInvalid) {
				t.Fatalf("ParsePolicy error of kind %q: %v", core.KindOf(err), err)
			}
			return
		}
		if _, err := core.Compile(p, 1); err != nil && !core.IsKind(err, core.KindInvalid) {
			t.Fatalf("Compile error of kind %q: %v", core.KindOf(err), err)
		}
	})
}
