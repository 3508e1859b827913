package service

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/mapping"
)

// MappingStore is what Mappings needs from storage.
type MappingStore interface {
	PutMapping(ctx context.Context, name, source, actor string) (int, error)
	GetMapping(ctx context.Context, name string) (core.MappingProfile, error)
	ListMappings(ctx context.Context) ([]core.MappingProfile, error)
	MappingVersions(ctx context.Context, name string) ([]core.MappingProfile, error)
	DeleteMapping(ctx context.Context, name, actor string) error
}

// Mappings keeps the effective set of mapping profiles: the built-in ones
// (shipped in the binary, and any in the configured directory) overlaid by
// the versions admins stored through the API. A stored profile replaces a
// built-in of the same name; deleting it brings the built-in back.
// Built-in profiles are listed with version 0.
type Mappings struct {
	store    MappingStore
	log      *slog.Logger
	builtins map[string]builtin
	mu       sync.Mutex // serializes rebuilds
	set      atomic.Pointer[mapping.Set]
	// types are the connector types this build has (SetConnectorTypes):
	// a profile naming another matches no event.
	types []string
}

// SetConnectorTypes tells which connector types exist, so that a profile
// naming another (a typo: service-now) is refused when saved rather than
// stored to match nothing, the events it replaced then ignored.
func (m *Mappings) SetConnectorTypes(types []string) { m.types = slices.Clone(types) }

// Check validates a profile as Put does before storing it: it compiles,
// and its connector type is one this build has.
func (m *Mappings) Check(p *mapping.Profile) error {
	if _, err := mapping.Compile(p); err != nil {
		return err
	}
	if t := p.Match.ConnectorType; t != "" && len(m.types) > 0 && !slices.Contains(m.types, strings.ToLower(strings.TrimSpace(t))) {
		return core.Invalid("match.connector_type", "unknown connector type %q (known: %s): the profile would match no event", t, strings.Join(m.types, ", "))
	}
	return nil
}

type builtin struct {
	source   string
	compiled *mapping.Compiled
}

// NewMappings loads the built-in profiles from each fs (later ones replace
// earlier ones of the same name).
func NewMappings(store MappingStore, log *slog.Logger, sources ...fs.FS) (*Mappings, error) {
	m := &Mappings{store: store, log: log, builtins: map[string]builtin{}}
	for _, fsys := range sources {
		names, err := fs.Glob(fsys, "*.yaml")
		if err != nil {
			return nil, fmt.Errorf("list mapping profiles: %w", err)
		}
		for _, n := range names {
			src, err := fs.ReadFile(fsys, n)
			if err != nil {
				return nil, fmt.Errorf("read mapping profile %s: %w", n, err)
			}
			c, err := compileProfile(src)
			if err != nil {
				return nil, fmt.Errorf("mapping profile %s: %w", n, err)
			}
			m.builtins[c.Name()] = builtin{source: string(src), compiled: c}
		}
	}
	m.set.Store(mapping.NewSet(m.builtinList()...))
	return m, nil
}

func compileProfile(src []byte) (*mapping.Compiled, error) {
	p, err := mapping.Parse(src)
	if err != nil {
		return nil, err
	}
	return mapping.Compile(p)
}

func (m *Mappings) builtinList() []*mapping.Compiled {
	names := make([]string, 0, len(m.builtins))
	for n := range m.builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*mapping.Compiled, 0, len(names))
	for _, n := range names {
		out = append(out, m.builtins[n].compiled)
	}
	return out
}

// Reload rebuilds the effective set from the store (at start, after a
// change here, and periodically for changes made on other replicas).
func (m *Mappings) Reload(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	stored, err := m.store.ListMappings(ctx)
	if err != nil {
		return fmt.Errorf("load mapping profiles: %w", err)
	}
	byName := map[string]*mapping.Compiled{}
	for n, b := range m.builtins {
		byName[n] = b.compiled
	}
	for _, sp := range stored {
		c, err := compileProfile([]byte(sp.Source))
		if err != nil { // stored profiles were valid when stored; a newer tollgate may disagree
			m.log.ErrorContext(ctx, "stored mapping profile no longer compiles; keeping the built-in", "name", sp.Name, "version", sp.Version, "error", err.Error())
			continue
		}
		byName[sp.Name] = c
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	list := make([]*mapping.Compiled, 0, len(names))
	for _, n := range names {
		list = append(list, byName[n])
	}
	m.set.Store(mapping.NewSet(list...))
	return nil
}

// Set returns the effective profiles.
func (m *Mappings) Set() *mapping.Set { return m.set.Load() }

// List returns every effective profile's newest version.
func (m *Mappings) List(ctx context.Context) ([]core.MappingProfile, error) {
	stored, err := m.store.ListMappings(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]core.MappingProfile, 0, len(stored)+len(m.builtins))
	seen := map[string]bool{}
	for _, p := range stored {
		seen[p.Name] = true
		out = append(out, p)
	}
	for n, b := range m.builtins {
		if !seen[n] {
			out = append(out, core.MappingProfile{Name: n, Version: 0, Source: b.source, UpdatedBy: "built-in"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Get returns the effective profile named name.
func (m *Mappings) Get(ctx context.Context, name string) (core.MappingProfile, error) {
	p, err := m.store.GetMapping(ctx, name)
	if err == nil && !p.Deleted {
		return p, nil
	}
	if err != nil && !core.IsKind(err, core.KindNotFound) {
		return p, err
	}
	if b, ok := m.builtins[name]; ok {
		return core.MappingProfile{Name: name, Version: 0, Source: b.source, UpdatedBy: "built-in"}, nil
	}
	return core.MappingProfile{}, core.NotFound("mapping profile", name)
}

// Versions returns every version of a profile, oldest first: a built-in
// profile's shipped source as version 0, then every stored version.
// KindNotFound when the name is neither built in nor stored.
func (m *Mappings) Versions(ctx context.Context, name string) ([]core.MappingProfile, error) {
	stored, err := m.store.MappingVersions(ctx, name)
	if err != nil && !core.IsKind(err, core.KindNotFound) {
		return nil, err
	}
	b, builtIn := m.builtins[name]
	if !builtIn {
		if err != nil {
			return nil, err
		}
		return stored, nil
	}
	out := make([]core.MappingProfile, 0, len(stored)+1)
	out = append(out, core.MappingProfile{Name: name, Version: 0, Source: b.source, UpdatedBy: "built-in"})
	return append(out, stored...), nil
}

// Put validates src and stores it as the next version of name. The
// profile's own name must match (or be absent: then it is set).
func (m *Mappings) Put(ctx context.Context, name string, src []byte, actor string) (core.MappingProfile, error) {
	p, err := mapping.Parse(src)
	if err != nil {
		return core.MappingProfile{}, err
	}
	if p.Name == "" {
		return core.MappingProfile{}, core.Invalid("name", "the profile must name itself (name: %s)", name)
	}
	if p.Name != name {
		return core.MappingProfile{}, core.Invalid("name", "the profile is named %q but was sent to %q", p.Name, name)
	}
	if err := m.Check(p); err != nil {
		return core.MappingProfile{}, err
	}
	v, err := m.store.PutMapping(ctx, name, string(src), actor)
	if err != nil {
		return core.MappingProfile{}, fmt.Errorf("store mapping profile %s: %w", name, err)
	}
	if err := m.Reload(ctx); err != nil {
		return core.MappingProfile{}, err
	}
	// The version this call stored, not the newest: another admin's put
	// may have followed it already.
	versions, err := m.store.MappingVersions(ctx, name)
	if err != nil {
		return core.MappingProfile{}, fmt.Errorf("read back mapping profile %s: %w", name, err)
	}
	for i := len(versions) - 1; i >= 0; i-- {
		if versions[i].Version == v {
			return versions[i], nil
		}
	}
	return core.MappingProfile{}, core.Errorf(core.KindInternal, "mapping profile %s: version %d was stored but cannot be read back", name, v)
}

// Delete removes the stored profile (a built-in of the same name applies
// again).
func (m *Mappings) Delete(ctx context.Context, name, actor string) error {
	if err := m.store.DeleteMapping(ctx, name, actor); err != nil {
		if core.IsKind(err, core.KindNotFound) {
			if _, ok := m.builtins[name]; ok {
				return core.Errorf(core.KindConflict, "%q is a built-in profile; override it with PUT instead of deleting it", name)
			}
		}
		return err
	}
	return m.Reload(ctx)
}

// Preview applies a profile to a sample payload: the named effective
// profile, or src when given (to try an edit before saving it).
func (m *Mappings) Preview(ctx context.Context, name string, src, payload []byte) (any, error) {
	var c *mapping.Compiled
	if len(src) > 0 {
		var err error
		if c, err = compileProfile(src); err != nil {
			return nil, err
		}
	} else {
		var ok bool
		if c, ok = m.Set().Get(name); !ok {
			return nil, core.NotFound("mapping profile", name)
		}
	}
	res := c.Apply(payload)
	return map[string]any{"profile": c.Name(), "kind": res.Kind, "ok": len(res.Errors) == 0,
		"record": res.Record, "fields": res.Fields, "errors": nonNil(res.Errors)}, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// forConnector returns the profiles a connector uses: the named ones, or
// the whole set (profiles select by connector type themselves).
func (m *Mappings) forConnector(names []string) (*mapping.Set, error) {
	set := m.Set()
	if len(names) == 0 {
		return set, nil
	}
	var (
		list    []*mapping.Compiled
		missing []string
	)
	for _, n := range names {
		c, ok := set.Get(n)
		if !ok {
			missing = append(missing, n)
			continue
		}
		list = append(list, c)
	}
	if len(missing) > 0 {
		return nil, errors.New("mapping profiles not found: " + strings.Join(missing, ", "))
	}
	return mapping.NewSet(list...), nil
}
