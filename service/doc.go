// Package service holds tollgate's use cases: the gate check with its
// long-poll, deployment reports, API tokens, the policy in force, the inbox
// and its normalizer, and the mapping profiles. Each service takes the
// small store interface it needs; the HTTP layer and the CLI call services,
// never the store's write paths directly.
package service
