// Package core is tollgate's domain: the canonical release model (changes,
// incidents, releases, deployments, post-implementation reviews, gate
// decisions, findings), the policy engine that turns facts and a time into a
// gate decision, and the audit chain's hashing rules.
//
// core does no I/O. It declares the interfaces it needs from the outside
// (stores, a clock) and everything else is a pure function of its inputs, so
// the same facts and the same instant always give the same decision.
// It imports the standard library only (plus tiny pure libraries).
//
// The policy is a table of rules (rules.go): one small function per reason
// code, in GateRules order, each with a doc comment saying when it fires,
// reading one evaluation context (the canonical request, the facts as of a
// moment, the compiled environment policy, the moment). Evaluate runs the
// table at a moment — the gate's now, or a deployment's start for the
// reconciler — and NextChange asks the same rules when their verdict can
// next change by time alone.
package core
