package config

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate-dev/tollgate/core"
)

// Check examines a configuration file offline and reports every problem it
// finds, not only the first: YAML syntax, unknown keys (each with its line),
// environment variables the file references that are not set, values of
// the wrong type, everything Validate refuses (missing or short secrets,
// bad addresses, out-of-range numbers, an invalid policy), URLs that are
// not absolute http(s) URLs, and a policy that does not compile. It
// touches no database and no network.
//
// The Config returned is what could be decoded (environment overrides and
// defaults applied, unset variables replaced by placeholders), for the
// checks that need more than this package knows (connector types, mapping
// profiles). It is nil only when the file is not YAML at all.
func Check(raw []byte, getenv func(string) string) (*Config, []error) {
	var problems []error
	c := &Config{}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, []error{fmt.Errorf("not valid YAML: %w", err)}
	}
	if len(doc.Content) > 0 {
		root := doc.Content[0]
		problems = append(problems, expandInPlace(root, getenv)...)
		problems = append(problems, unknownKeys(root, reflect.TypeFor[Config](), "")...)
		problems = append(problems, badURLs(root, "")...)
		if err := root.Decode(c); err != nil {
			var te *yaml.TypeError
			if errors.As(err, &te) {
				for _, e := range te.Errors {
					problems = append(problems, errors.New(e))
				}
			} else {
				problems = append(problems, err)
			}
		}
	}
	c.applyEnv(getenv)
	if err := c.readAdminTokenFile(); err != nil {
		problems = append(problems, err)
	}
	c.defaults()
	if err := c.Validate(); err != nil {
		problems = append(problems, flatten(err)...)
	} else if c.Policy != nil {
		if _, err := core.Compile(*c.Policy, 0); err != nil {
			problems = append(problems, fmt.Errorf("policy: %w", err))
		}
	}
	return c, problems
}

// placeholder stands for an unset variable's value: long enough for every
// length rule, so the one problem reported is the unset variable.
const placeholder = "unset-variable-placeholder-0123456789"

// expandInPlace expands ${VAR} in scalar values like Parse does, reporting
// each unset variable (with its line) instead of stopping at the first.
func expandInPlace(n *yaml.Node, getenv func(string) string) []error {
	var problems []error
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		n.Value = varRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			sub := varRef.FindStringSubmatch(m)
			if v := getenv(sub[1]); v != "" {
				return v
			}
			if sub[2] != "" {
				return sub[2][2:]
			}
			problems = append(problems, fmt.Errorf("line %d: environment variable %s is not set (use ${%s:-default} for an optional value)", n.Line, sub[1], sub[1]))
			return placeholder
		})
		n.Tag, n.Style = "", 0
	}
	for _, ch := range n.Content {
		problems = append(problems, expandInPlace(ch, getenv)...)
	}
	return problems
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// unknownKeys walks the YAML against the Go type it decodes into and
// reports every key the type does not have, with its line and path.
func unknownKeys(n *yaml.Node, t reflect.Type, path string) []error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	var problems []error
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			fields[name] = f.Type
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				problems = append(problems, fmt.Errorf("line %d: %s: unknown key", k.Line, join(path, k.Value)))
				continue
			}
			problems = append(problems, unknownKeys(v, ft, join(path, k.Value))...)
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			problems = append(problems, unknownKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))...)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			problems = append(problems, unknownKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return problems
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// badURLs reports every `url` or `*_url` value (database_url aside, which
// Validate checks) that is not an absolute http(s) URL with a host.
func badURLs(n *yaml.Node, path string) []error {
	var problems []error
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if v.Kind == yaml.ScalarNode && (k.Value == "url" || strings.HasSuffix(k.Value, "_url")) && k.Value != "database_url" &&
				v.Value != "" && !strings.Contains(v.Value, placeholder) {
				if u, err := url.Parse(v.Value); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					problems = append(problems, fmt.Errorf("line %d: %s: %q is not an absolute http(s) URL", v.Line, p, v.Value))
				}
			}
			problems = append(problems, badURLs(v, p)...)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			problems = append(problems, badURLs(item, fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return problems
}

// flatten splits joined errors into their parts.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // only this level's join, not one wrapped inside a message
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
