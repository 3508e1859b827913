package mapping

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tollgate-dev/tollgate/core"
)

// Profile is a mapping profile as written in YAML. It is plain data: Compile
// validates it and turns it into something that can be applied.
type Profile struct {
	// Name identifies the profile; it is unique within a set.
	Name string `yaml:"name" json:"name"`
	// Kind is the canonical kind produced: change, incident, deployment or pir.
	Kind        string `yaml:"kind" json:"kind"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Match selects the events the profile applies to.
	Match Match `yaml:"match,omitempty" json:"match"`
	// Unwrap is the path of the record inside an envelope ({"result": …}).
	// When the path is present the record is that value (or the single
	// element of a one-element array); when absent the payload itself is
	// the record.
	Unwrap string `yaml:"unwrap,omitempty" json:"unwrap,omitempty"`
	// Fields maps canonical field names (the json tags of the core types)
	// to where their value comes from.
	Fields map[string]*FieldSpec `yaml:"fields" json:"fields"`
	// ThenNext, when true, has the next profile of the set that matches
	// the event (in the set's order, after this one) apply to it too: one
	// delivery that carries two facts — a change withdrawn because its
	// issue became an incident, or moved to a new key — records both.
	ThenNext bool `yaml:"then_next,omitempty" json:"then_next,omitempty"`
	// WholeRun (deployment profiles only) says the event describes a whole
	// pipeline run (GitHub's workflow_run, GitLab's Pipeline Hook), not one
	// job: a run names no single environment, and its deploying jobs are
	// recorded by their own events. It is recorded only with an
	// environment (the connector's default_environment, for CIs whose runs
	// are deployments to one environment) and ignored, with that reason,
	// without one, rather than quarantined: a connector subscribed to every
	// run would otherwise quarantine each build.
	WholeRun bool `yaml:"whole_run,omitempty" json:"whole_run,omitempty"`
}

// Match selects events. Every condition given must hold; an empty Match
// matches every event.
type Match struct {
	// ConnectorType is the connector type (servicenow, jira, github, gitlab,
	// jenkins, generic); empty matches any.
	ConnectorType string `yaml:"connector_type,omitempty" json:"connector_type,omitempty"`
	// EventTypes lists the event types accepted (compared without regard to
	// case); empty accepts any.
	EventTypes []string `yaml:"event_types,omitempty" json:"event_types,omitempty"`
	// When lists payload conditions, evaluated on the (unwrapped) record.
	When []Condition `yaml:"when,omitempty" json:"when,omitempty"`
}

// Condition tests the value at Path. Exactly one of Equals, In, NotIn,
// Exists and Matches is set. The value is read with the same rules as a
// field (objects with "value"/"name" are unwrapped, numbers are
// normalized: 3.0 is "3"); for a list, Equals/In/Matches hold when any
// element does. NotIn holds when no value at Path is in the list: also
// when there is none (absent, null, ""), so a record that lost a value
// matches as one that never had it.
type Condition struct {
	Path    string   `yaml:"path" json:"path"`
	Equals  *string  `yaml:"equals,omitempty" json:"equals,omitempty"`
	In      []string `yaml:"in,omitempty" json:"in,omitempty"`
	NotIn   []string `yaml:"not_in,omitempty" json:"not_in,omitempty"`
	Exists  *bool    `yaml:"exists,omitempty" json:"exists,omitempty"`
	Matches string   `yaml:"matches,omitempty" json:"matches,omitempty"`
}

// FieldSpec says where one canonical field comes from.
//
// Evaluation order: When (if false the field counts as absent) → Const, or
// the first of Path/Paths giving a non-empty value (or every Union group's)
// → Transform, in order →
// Map → Default when still empty → Required check → conversion to the
// field's type.
type FieldSpec struct {
	Path  string   `yaml:"path,omitempty" json:"path,omitempty"`
	Paths []string `yaml:"paths,omitempty" json:"paths,omitempty"`
	// Union reads several sources into one list (list fields only): each
	// group is read as Paths is (its first path with a value), and the
	// values of every group that has one are joined, in order, before the
	// transforms, each value kept once — a change's or an incident's
	// configuration item and its business service are both what it
	// affects.
	Union [][]string `yaml:"union,omitempty" json:"union,omitempty"`
	// Const is a fixed value; no path is read.
	Const any `yaml:"const,omitempty" json:"const,omitempty"`
	// Default is used when the paths give nothing (absent, null, "" or an
	// empty list, also after transforms). It is a canonical value: it is
	// neither transformed nor mapped.
	Default any `yaml:"default,omitempty" json:"default,omitempty"`
	// Required makes an empty value an error.
	Required  bool        `yaml:"required,omitempty" json:"required,omitempty"`
	Transform []Transform `yaml:"transform,omitempty" json:"transform,omitempty"`
	// Map translates vendor values (exact match) to canonical ones.
	Map map[string]string `yaml:"map,omitempty" json:"map,omitempty"`
	// MapDefault is the result for a value not in Map.
	MapDefault *string `yaml:"map_default,omitempty" json:"map_default,omitempty"`
	// Unmapped says what happens to a value not in Map when there is no
	// MapDefault: "error" (the default) or "keep".
	Unmapped string `yaml:"unmapped,omitempty" json:"unmapped,omitempty"`
	// When makes the field conditional: if any condition fails, the field
	// counts as absent (its Default applies).
	When []Condition `yaml:"when,omitempty" json:"when,omitempty"`
	// Each maps the elements of the array at Path to list items (approvals):
	// each sub-field's paths are relative to one element.
	Each map[string]*FieldSpec `yaml:"each,omitempty" json:"each,omitempty"`
}

// Transform is one step of a field's transform chain. In YAML it is either a
// bare name (trim, lower, upper, present, bool, int, unix_seconds, unix_ms,
// first) or a one-key mapping with the step's argument:
//
//	{split: ","}  {join: ", "}  {minus_ms: build.duration}
//	{regex: "CHG[0-9]+"}  {regex: {pattern: "/commit/([0-9a-f]+)", group: 1}}
//	{time: "2006-01-02 15:04:05"}  {time: {layout: datetime, zone: Europe/Paris}}
//	{time: {layouts: [rfc3339, "2006-01-02 15:04:05 MST"]}}
type Transform struct {
	Name    string   `json:"name"`
	Sep     string   `json:"sep,omitempty"`     // split, join
	Pattern string   `json:"pattern,omitempty"` // regex
	Group   *int     `json:"group,omitempty"`   // regex; default 1 when the pattern has a group, else 0
	Layouts []string `json:"layouts,omitempty"` // time
	Zone    string   `json:"zone,omitempty"`    // time: IANA zone for layouts without an offset; default UTC
	Path    string   `json:"path,omitempty"`    // minus_ms, minus_seconds: where the duration is read
}

// UnmarshalYAML decodes the bare-name and one-key forms. It checks shapes
// only; names and arguments are validated by Compile.
func (t *Transform) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		t.Name = n.Value
		return nil
	case yaml.MappingNode:
	default:
		return fmt.Errorf("line %d: a transform is a name or a one-key mapping", n.Line)
	}
	if len(n.Content) != 2 {
		return fmt.Errorf("line %d: a transform mapping has exactly one key (the transform name)", n.Line)
	}
	t.Name = n.Content[0].Value
	arg := n.Content[1]
	switch t.Name {
	case "split", "join":
		if arg.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: %s takes a separator string", arg.Line, t.Name)
		}
		t.Sep = arg.Value
	case "minus_ms", "minus_seconds":
		if arg.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: %s takes the path of a duration", arg.Line, t.Name)
		}
		t.Path = arg.Value
	case "regex":
		if arg.Kind == yaml.ScalarNode {
			t.Pattern = arg.Value
			return nil
		}
		return decodeArgs(arg, t.Name, map[string]func(*yaml.Node) error{
			"pattern": func(v *yaml.Node) error { return scalarInto(v, &t.Pattern) },
			"group": func(v *yaml.Node) error {
				var g int
				if err := v.Decode(&g); err != nil {
					return fmt.Errorf("line %d: regex.group must be an integer", v.Line)
				}
				t.Group = &g
				return nil
			},
		})
	case "time":
		if arg.Kind == yaml.ScalarNode {
			t.Layouts = []string{arg.Value}
			return nil
		}
		return decodeArgs(arg, t.Name, map[string]func(*yaml.Node) error{
			"layout": func(v *yaml.Node) error {
				var s string
				if err := scalarInto(v, &s); err != nil {
					return err
				}
				t.Layouts = append(t.Layouts, s)
				return nil
			},
			"layouts": func(v *yaml.Node) error {
				var l []string
				if err := v.Decode(&l); err != nil {
					return fmt.Errorf("line %d: time.layouts must be a list of strings", v.Line)
				}
				t.Layouts = append(t.Layouts, l...)
				return nil
			},
			"zone": func(v *yaml.Node) error { return scalarInto(v, &t.Zone) },
		})
	default:
		// Unknown names (or argument-less names given an argument) are
		// reported by Compile with the field path; keep the argument shape
		// error-free here.
		if arg.Kind == yaml.ScalarNode {
			t.Sep = arg.Value
		}
	}
	return nil
}

func scalarInto(n *yaml.Node, dst *string) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a string", n.Line)
	}
	*dst = n.Value
	return nil
}

func decodeArgs(n *yaml.Node, name string, keys map[string]func(*yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s takes a string or a mapping", n.Line, name)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		f, ok := keys[k]
		if !ok {
			known := make([]string, 0, len(keys))
			for kk := range keys {
				known = append(known, kk)
			}
			return fmt.Errorf("line %d: unknown key %q in %s (known: %s)", n.Content[i].Line, k, name, strings.Join(sortedCopy(known), ", "))
		}
		if err := f(n.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// Parse decodes one YAML mapping profile. Unknown keys are errors (a typo
// never silently drops a rule); the error names the line. Parse checks the
// shape only: Compile validates the content.
func Parse(src []byte) (*Profile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	var p Profile
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, core.Invalid("profile", "empty document")
		}
		return nil, core.Invalid("profile", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, core.Invalid("profile", "more than one YAML document; put one profile per file")
	}
	return &p, nil
}
