package core

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestCoreImportsOnlyPureLibraries keeps the domain free of HTTP, SQL and
// vendors (the depguard rule of .golangci.yml, enforced by the test suite
// so it holds even where golangci-lint is not installed).
func TestCoreImportsOnlyPureLibraries(t *testing.T) {
	allowed := []string{"github.com/rickar/cal/v2"} // tiny, pure business-calendar library
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		af, err := parser.ParseFile(fset, f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			first := strings.Split(p, "/")[0]
			if !strings.Contains(first, ".") { // standard library
				continue
			}
			ok := false
			for _, a := range allowed {
				ok = ok || p == a || strings.HasPrefix(p, a+"/")
			}
			if !ok {
				t.Errorf("%s imports %s: core may import only the standard library and %v", f, p, allowed)
			}
		}
	}
}
