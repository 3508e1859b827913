// Package service holds tollgate's use cases: the gate check with its
// long-poll, deployment reports, post-implementation review sign-off, API
// tokens, the policy in force, the inbox and its normalizer, the
// mapping profiles, and what is asked of and told to the ITSMs through
// their APIs (itsm.go, writeback.go: pollers, the gate's read-back, change
// creation, work notes). Each service declares the small store interface it
// needs (the store implements them all; app asserts it); the HTTP layer and
// the CLI call services, never the store's write paths directly.
package service
