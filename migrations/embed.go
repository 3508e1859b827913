// Package migrations holds tollgate's SQL migrations, embedded into the
// binary: one folder per dialect (postgres/, sqlite/), numbered files in
// goose format (-- +goose Up / -- +goose Down). The two folders describe the
// same schema; a store contract test suite runs against both.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// FS returns the migrations of one dialect ("postgres" or "sqlite").
func FS(dialect string) (fs.FS, error) {
	return fs.Sub(files, dialect)
}
