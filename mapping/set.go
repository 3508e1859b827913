package mapping

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/tollgate-dev/tollgate/core"
)

// Set is an ordered set of compiled profiles. It is immutable and safe for
// concurrent use.
type Set struct {
	ordered []*Compiled
	byName  map[string]*Compiled
}

// NewSet orders profiles most specific first: a profile naming a connector
// type outranks one that does not, then one naming event types, then the
// one with more match.when conditions; profiles of equal specificity keep
// the order given. Nil entries are skipped; for duplicate names the first
// wins.
func NewSet(ps ...*Compiled) *Set {
	s := &Set{byName: make(map[string]*Compiled, len(ps))}
	for _, p := range ps {
		if p == nil {
			continue
		}
		if _, dup := s.byName[p.Name()]; dup {
			continue
		}
		s.byName[p.Name()] = p
		s.ordered = append(s.ordered, p)
	}
	sort.SliceStable(s.ordered, func(i, j int) bool { return s.ordered[i].spec > s.ordered[j].spec })
	return s
}

// Select returns the first profile, in the Set's order, that matches the
// event; false when none does (the event is then ignored).
func (s *Set) Select(connectorType, eventType string, payload []byte) (*Compiled, bool) {
	if s == nil {
		return nil, false
	}
	var text *string
	for _, c := range s.ordered {
		if c.matches(connectorType, eventType, payload, &text) {
			return c, true
		}
	}
	return nil, false
}

// Describe says what the profiles of connectorType (or of any type)
// recognize, for a reason that no profile matched: each profile's name
// with the conditions it matches on ("generic-deployment (service
// present, run_id present, provider present)").
func (s *Set) Describe(connectorType string) string {
	var out []string
	for _, c := range s.Profiles() {
		m := c.profile.Match
		if m.ConnectorType != "" && !strings.EqualFold(m.ConnectorType, connectorType) {
			continue
		}
		conds := make([]string, 0, len(m.When)+1)
		if len(m.EventTypes) > 0 {
			conds = append(conds, "event type "+strings.Join(m.EventTypes, " or "))
		}
		for _, w := range m.When {
			conds = append(conds, w.describe())
		}
		if len(conds) == 0 {
			out = append(out, c.Name())
			continue
		}
		out = append(out, c.Name()+" ("+strings.Join(conds, ", ")+")")
	}
	if len(out) == 0 {
		return "no profile is configured for connector type " + connectorType
	}
	return "the profiles recognize " + strings.Join(out, "; ")
}

// describe says what c tests, in words.
func (c Condition) describe() string {
	switch {
	case c.Exists != nil && *c.Exists:
		return c.Path + " present"
	case c.Exists != nil:
		return c.Path + " absent"
	case c.Equals != nil:
		return c.Path + " = " + *c.Equals
	case len(c.In) > 0:
		return c.Path + " one of " + strings.Join(c.In, ", ")
	case len(c.NotIn) > 0:
		return c.Path + " none of " + strings.Join(c.NotIn, ", ")
	default:
		return c.Path + " matching " + c.Matches
	}
}

// SelectAfter returns the first profile after prev, in the Set's order,
// that matches the event (prev's ThenNext); false when none does.
func (s *Set) SelectAfter(prev *Compiled, connectorType, eventType string, payload []byte) (*Compiled, bool) {
	if s == nil {
		return nil, false
	}
	var text *string
	after := false
	for _, c := range s.ordered {
		if c == prev {
			after = true
			continue
		}
		if after && c.matches(connectorType, eventType, payload, &text) {
			return c, true
		}
	}
	return nil, false
}

// ThenNext reports whether the next matching profile applies to the
// event after this one (Profile.ThenNext).
func (c *Compiled) ThenNext() bool { return c.profile.ThenNext }

// WholeRun reports whether the profile's events describe a whole run
// (Profile.WholeRun).
func (c *Compiled) WholeRun() bool { return c.profile.WholeRun }

// Get returns the profile named name.
func (s *Set) Get(name string) (*Compiled, bool) {
	if s == nil {
		return nil, false
	}
	c, ok := s.byName[name]
	return c, ok
}

// Profiles returns the profiles in selection order.
func (s *Set) Profiles() []*Compiled {
	if s == nil {
		return nil
	}
	return append([]*Compiled(nil), s.ordered...)
}

// LoadDir parses and compiles every *.yaml and *.yml file at the top of
// fsys, in file name order. It reports every bad file and duplicate name
// at once; on error it returns no profiles.
func LoadDir(fsys fs.FS) ([]*Compiled, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("load mapping profiles: %w", err)
	}
	var out []*Compiled
	var errs []error
	seen := map[string]string{}
	for _, e := range entries {
		if e.IsDir() || (path.Ext(e.Name()) != ".yaml" && path.Ext(e.Name()) != ".yml") {
			continue
		}
		src, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name(), err))
			continue
		}
		p, err := Parse(src)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name(), err))
			continue
		}
		c, err := Compile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name(), err))
			continue
		}
		if prev, dup := seen[c.Name()]; dup {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name(), core.Invalid("name", "profile name %q is already used by %s", c.Name(), prev)))
			continue
		}
		seen[c.Name()] = e.Name()
		out = append(out, c)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("load mapping profiles: %w", errors.Join(errs...))
	}
	return out, nil
}
