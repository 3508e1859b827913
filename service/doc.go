// Package service holds tollgate's use cases: the gate check with its
// long-poll, deployment reports, post-implementation review sign-off, API
// tokens, the policy in force, the inbox and its normalizer, and the
// mapping profiles. Each service declares the small store interface it
// needs (the store implements them all; app asserts it); the HTTP layer and
// the CLI call services, never the store's write paths directly.
package service
