package main

//go:generate go test -run ^TestCLIReference$ -update

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

var update = flag.Bool("update", false, "rewrite docs/cli.md from the commands' help")

const cliDocPath = "../../docs/cli.md"

// cliReference renders every command's own help (cobra's markdown
// generator) into one page, commands in tree order, links as anchors.
func cliReference() ([]byte, error) {
	root := newRoot(io.Discard, io.Discard, func(string) string { return "" })
	var b bytes.Buffer
	b.WriteString("# tollgate command line\n\n" +
		"<!-- Generated from the commands' own help by `go generate ./cmd/tollgate`; do not edit. " +
		"TestCLIReference fails when this file and the help differ. -->\n\n")
	anchor := func(file string) string {
		return "#" + strings.ReplaceAll(strings.TrimSuffix(file, ".md"), "_", "-")
	}
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		if !c.IsAvailableCommand() && c != root {
			return nil
		}
		c.DisableAutoGenTag = true
		if err := doc.GenMarkdownCustom(c, &b, anchor); err != nil {
			return err
		}
		b.WriteString("\n")
		for _, sub := range c.Commands() {
			if err := walk(sub); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// TestCLIReference: docs/cli.md is exactly what the commands' help says;
// `go generate ./cmd/tollgate` (or -update) rewrites it.
func TestCLIReference(t *testing.T) {
	got, err := cliReference()
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile(cliDocPath, got, 0o644); err != nil { //nolint:gosec // a documentation file
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(filepath.Clean(cliDocPath))
	if err != nil {
		t.Fatalf("%v (run go generate ./cmd/tollgate)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/cli.md differs from the commands' help: run go generate ./cmd/tollgate")
	}
	for _, cmd := range []string{"## tollgate serve", "## tollgate config validate", "## tollgate check"} {
		if !bytes.Contains(got, []byte(cmd)) {
			t.Errorf("docs/cli.md has no section %q", cmd)
		}
	}
}
