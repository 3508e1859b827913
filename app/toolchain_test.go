package app

import (
	"os"
	"strings"
	"testing"
)

func TestToolchainMatchesGoMod(t *testing.T) {
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(mod)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "toolchain "); ok {
			if v != Toolchain {
				t.Fatalf("go.mod's toolchain is %s, app.Toolchain %s: change both", v, Toolchain)
			}
			return
		}
	}
	t.Fatal("go.mod has no toolchain line")
}

func TestOlderGo(t *testing.T) {
	for _, tt := range []struct{ built, want string }{
		{"go1.26.8", "go1.26.8"},
		{"go1.27.2", "go1.27.2"},
		{Toolchain, ""},
		{"go1.27.10", ""},
		{"go1.28rc1", ""},
		{"devel go1.28-abcdef Mon Jan 1 00:00:00 2027 +0000", ""},
	} {
		if got := OlderGo(tt.built); got != tt.want {
			t.Errorf("OlderGo(%q) = %q, want %q", tt.built, got, tt.want)
		}
	}
}
