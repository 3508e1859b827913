package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/config/mappings"
	"github.com/tollgate-dev/tollgate/core"
	"github.com/tollgate-dev/tollgate/store"
)

// racingMappings stores another admin's version right after each put, as
// a concurrent PUT of the same profile does.
type racingMappings struct {
	*store.DB
	other string
}

func (r *racingMappings) PutMapping(ctx context.Context, name, source, actor string) (int, error) {
	v, err := r.DB.PutMapping(ctx, name, source, actor)
	if err != nil {
		return v, err
	}
	_, err = r.DB.PutMapping(ctx, name, r.other, "token:other-admin")
	return v, err
}

// A PUT answers with the version it stored, even when another has
// followed it before the answer is written.
func TestMappingPutAnswersItsOwnVersion(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "t.db"), store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	builtin, err := mappings.FS.ReadFile("generic-change.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mine := strings.Replace(string(builtin), "name: generic-change", "name: race-map", 1)
	other := strings.Replace(mine, "description:", "# the other admin's edit\ndescription:", 1)
	maps, err := NewMappings(&racingMappings{DB: db, other: other}, log, mappings.FS)
	if err != nil {
		t.Fatal(err)
	}
	got, err := maps.Put(ctx, "race-map", []byte(mine), "token:admin")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 1 || got.Source != mine || got.UpdatedBy != "token:admin" {
		t.Fatalf("answered version %d by %q (source is mine: %v), want version 1 as stored by this call", got.Version, got.UpdatedBy, got.Source == mine)
	}
	newest, err := maps.Get(ctx, "race-map")
	if err != nil || newest.Version != 2 {
		t.Fatalf("newest: version %d (%v), want the other admin's 2", newest.Version, err)
	}
}

// TestMappingPutRefusesAnUnknownConnectorType: a profile naming a connector
// type this build does not have (a typo) would match no event, and the
// events of the profile it replaced would be ignored from then on: it is
// refused, naming the field and the known types.
func TestMappingPutRefusesAnUnknownConnectorType(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, maps := openInboxStore(t, "sqlite:"+filepath.Join(t.TempDir(), "t.db"), core.SystemClock, log)
	maps.SetConnectorTypes([]string{"generic", "servicenow"})
	builtin, err := mappings.FS.ReadFile("generic-change.yaml")
	if err != nil {
		t.Fatal(err)
	}
	typo := strings.Replace(string(builtin), "connector_type: generic", "connector_type: gneric", 1)
	_, err = maps.Put(ctx, "generic-change", []byte(typo), "token:admin")
	var ce *core.Error
	if !errors.As(err, &ce) || ce.Kind != core.KindInvalid || ce.Field != "match.connector_type" || !strings.Contains(ce.Message, "known: generic, servicenow") {
		t.Fatalf("put of a profile for connector type gneric: %v, want refused naming match.connector_type", err)
	}
	if _, err := maps.Put(ctx, "generic-change", builtin, "token:admin"); err != nil {
		t.Fatalf("put of a known type: %v", err)
	}
}
