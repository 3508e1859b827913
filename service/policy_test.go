package service

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/core"
)

// memPolicies stores policy versions as given, as a newer build's save
// reaches an older replica's database.
type memPolicies struct{ versions []string }

func (m *memPolicies) PutPolicy(_ context.Context, source, _ string) (int, error) {
	m.versions = append(m.versions, source)
	return len(m.versions), nil
}

func (m *memPolicies) CurrentPolicy(context.Context) (core.PolicyVersion, error) {
	if len(m.versions) == 0 {
		return core.PolicyVersion{}, core.NotFound("policy", "current")
	}
	return core.PolicyVersion{Version: len(m.versions), Source: m.versions[len(m.versions)-1]}, nil
}

// TestPoliciesUnfitWhileTheNewestIsUnreadable: a replica that cannot read
// the newest stored policy (a newer build saved a field it does not know)
// keeps no verdict of the older one: it is unfit to judge until a version
// it can read is stored.
func TestPoliciesUnfitWhileTheNewestIsUnreadable(t *testing.T) {
	ctx := context.Background()
	st := &memPolicies{}
	p := NewPolicies(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := p.Load(ctx, nil); err != nil || p.Unfit() != nil {
		t.Fatalf("load: %v, unfit %v", err, p.Unfit())
	}
	src, err := config.MarshalPolicy(core.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	st.versions = append(st.versions, string(src)+"\nfield_of_a_newer_build: true\n")
	if err := p.Reload(ctx); err == nil {
		t.Fatal("an unreadable version was put in force")
	}
	if err := p.Unfit(); !core.IsKind(err, core.KindUnavailable) || !strings.Contains(err.Error(), "cannot read the newest policy") {
		t.Fatalf("unfit = %v, want unavailable while the newest version cannot be read", err)
	}
	if p.Current().Version() != 1 {
		t.Fatalf("in force: version %d", p.Current().Version())
	}
	st.versions = append(st.versions, string(src))
	if err := p.Reload(ctx); err != nil || p.Unfit() != nil || p.Current().Version() != 3 {
		t.Fatalf("a readable version stored again: %v, unfit %v, version %d", err, p.Unfit(), p.Current().Version())
	}
}

// TestPoliciesPutClearsUnreadable: a replica that flagged the newest
// stored version unreadable stores a readable one itself: it judges again
// at once, not after a restart (the notification that follows finds that
// version in force already).
func TestPoliciesPutClearsUnreadable(t *testing.T) {
	ctx := context.Background()
	st := &memPolicies{}
	p := NewPolicies(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := p.Load(ctx, nil); err != nil {
		t.Fatal(err)
	}
	src, err := config.MarshalPolicy(core.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	st.versions = append(st.versions, string(src)+"\nfield_of_a_newer_build: true\n")
	_ = p.Reload(ctx)
	if p.Unfit() == nil {
		t.Fatal("not unfit with the newest version unreadable")
	}
	if _, err := p.Put(ctx, src, "token:admin"); err != nil {
		t.Fatal(err)
	}
	if err := p.Unfit(); err != nil {
		t.Fatalf("after storing a readable version here: %v", err)
	}
	if err := p.Reload(ctx); err != nil || p.Unfit() != nil {
		t.Fatalf("the notification's reload: %v, unfit %v", err, p.Unfit())
	}
}

// TestPoliciesSecondDocument: PUT refuses a policy of two YAML documents
// (the second was stored and never enforced); a version stored that way
// before still loads, its first document in force, as it always was.
func TestPoliciesSecondDocument(t *testing.T) {
	ctx := context.Background()
	st := &memPolicies{}
	p := NewPolicies(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := p.Load(ctx, nil); err != nil {
		t.Fatal(err)
	}
	two := "environments:\n  production:\n    preset: strict\n---\nenvironments:\n  production:\n    preset: open\n"
	if _, err := p.Put(ctx, []byte(two), "admin"); !core.IsKind(err, core.KindInvalid) || !strings.Contains(err.Error(), "more than one YAML document") {
		t.Fatalf("put two documents: %v, want refused", err)
	}
	if len(st.versions) != 1 {
		t.Fatalf("%d versions stored, want the seed only", len(st.versions))
	}
	st.versions = append(st.versions, two) // stored by an earlier version
	if err := p.Reload(ctx); err != nil || p.Unfit() != nil || p.Current().Version() != 2 {
		t.Fatalf("reload a stored two-document version: %v, unfit %v", err, p.Unfit())
	}
	if got := p.Current().Policy().Environments["production"].Preset; got != core.PresetStrict {
		t.Errorf("in force: preset %q, want the first document's strict", got)
	}
}
