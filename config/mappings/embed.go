// Package mappings holds tollgate's default mapping profiles, one YAML file
// per profile, embedded so the binary ships them. Load them with
// mapping.LoadDir(mappings.FS).
package mappings

import "embed"

// FS holds the default profiles (*.yaml at its root).
//
//go:embed *.yaml
var FS embed.FS
