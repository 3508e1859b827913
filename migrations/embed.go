// Package migrations holds tollgate's SQL migrations, embedded into the
// binary: one folder per dialect (postgres/, sqlite/), numbered files in
// goose format (-- +goose Up / -- +goose Down). The two folders describe the
// same schema; a store contract test suite runs against both. Which of
// them an older build can still run against is declared here (additive),
// and sets the schema's floor (OldestReader) that every build checks.
package migrations

import (
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// FS returns the migrations of one dialect ("postgres" or "sqlite").
func FS(dialect string) (fs.FS, error) {
	return fs.Sub(files, dialect)
}

// additive lists the migrations that an older tollgate — one built before
// them, which does not know them — can still run against: they only add
// what it never reads or writes (a table, a nullable column, an index).
// A migration left out of it raises the schema's floor (OldestReader), so
// that every build older than it refuses the schema once it is applied.
// When in doubt, leave it out: a replica refusing to run is found at once,
// one writing rows the schema no longer means is not.
var additive = map[int64]bool{
	28: true, // schema_floor itself: older builds never read it
	29: true, // replicas: older builds neither read nor write it
	30: true, // an index on settled inbox events: nothing to read or write
	31: true, // indexes on pending PIRs: nothing to read or write
	37: true, // pending_gates.repository: older builds write '' (uncounted by the cap) and never read it
	38: true, // an index on the listed pending gates: nothing to read or write
	39: true, // an index on releases' environment: nothing to read or write
}

// FloorSince is the migration that created the schema_floor table; a
// schema older than it has no floor.
const FloorSince = 28

// ReplicasSince is the migration that created the replicas table.
const ReplicasSince = 29

// Versions returns the migrations' versions, in order (both dialects have
// the same ones). They are read once: readiness asks at every probe.
func Versions() ([]int64, error) {
	vs, err := versions()
	return slices.Clone(vs), err
}

var versions = sync.OnceValues(readVersions)

func readVersions() ([]int64, error) {
	entries, err := fs.ReadDir(files, "postgres")
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, e := range entries {
		name := e.Name()
		i := strings.IndexByte(name, '_')
		if i <= 0 || !strings.HasSuffix(name, ".sql") {
			continue
		}
		v, err := strconv.ParseInt(name[:i], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("migration %s: version: %w", name, err)
		}
		out = append(out, v)
	}
	slices.Sort(out)
	return out, nil
}

// OldestReader returns the schema's floor that this build's migrations
// set: the newest migration an older build could not run against (every
// migration up to FloorSince counts as one, for builds before it do not
// read the floor anyway). A build that knows at least this migration may
// run against the schema; an older one refuses it.
func OldestReader() (int64, error) {
	vs, err := Versions()
	if err != nil {
		return 0, err
	}
	var floor int64
	for _, v := range vs {
		if !additive[v] {
			floor = v
		}
	}
	return floor, nil
}
