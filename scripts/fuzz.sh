#!/usr/bin/env bash
# Runs every fuzz target for a fixed budget of executions each.
#   scripts/fuzz.sh            # make fuzz: the full budget (FUZZ_EXECS, default 200000)
#   FUZZ_EXECS=300 scripts/fuzz.sh   # CI: a brief pass over every target
# Execution counts, not -fuzztime durations: Go 1.26's fuzz coordinator can
# report a spurious "context deadline exceeded" when a duration runs out
# (golang/go#75804). A crash leaves its input under testdata/fuzz/ of the
# package, where the next plain `go test` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/toolchain.sh
execs="${FUZZ_EXECS:-200000}"
# package  target   (every webhook parser, the mapping engine, the policy
# parser, the gate request decoder, the report filters, the JUnit, SARIF
# and DSSE readers, the audit record encoder)
targets="
./connectors/github FuzzClassify
./connectors/github FuzzParseProtectionRule
./connectors/gitlab FuzzClassify
./connectors/gitlab FuzzParseBlockedDeployment
./connectors/jira FuzzClassify
./connectors/servicenow FuzzClassify
./connectors/servicenow FuzzEnrich
./connectors/jenkins FuzzClassify
./connectors/generic FuzzClassify
./connectors/internal/hook FuzzRead
./mapping FuzzApply
./mapping FuzzExtractText
./internal/jsonenc FuzzMarshal
./internal/jsonscan FuzzValid
./mapping FuzzObjectGet
./mapping FuzzScanRecord
./core FuzzCompilePolicy
./core FuzzCompactData
./config FuzzParsePolicy
./api FuzzGateRequestDecode
./api FuzzGateRequestFastDecode
./api FuzzReportRequestDecode
./evidence FuzzJUnit
./evidence FuzzSARIF
./evidence FuzzDSSE
./store FuzzMustJSON
./store/sqldb FuzzParseList
./service FuzzShapeMatchesPatterns
"
# Every Fuzz function in the tree must be listed above, with its package.
missing=$(grep -rHoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' . | sed -E 's#^\./(.*)/[^/]+_test\.go:func (.*)#./\1 \2#' | sort -u | while read -r line; do
  grep -qxF "$line" <<<"$targets" || echo "$line"; done)
if [ -n "$missing" ]; then echo "fuzz.sh: targets not listed: $missing" >&2; exit 1; fi
start=$SECONDS
# Each package's fuzz-instrumented test binary is built once (two builds
# at a time) and run once per target: a `go test -fuzz` per target would
# link the package's binary again for each, most of a brief pass's time.
# Each target runs in its package's folder (its testdata/fuzz corpus, and
# where a crash's input is written) with go test's own corpus cache.
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
awk 'NF { print $1 }' <<<"$targets" | sort -u |
	xargs -P "$(nproc)" -I{} sh -c 'go test -c -fuzz . -o "$1/$(printf %s "$2" | tr / _).test" "$2"' _ "$bin" {}
cache=$(go env GOCACHE)/fuzz
module=$(go list -m)
while read -r pkg fn; do
  [ -n "$pkg" ] || continue
  echo "== $pkg $fn ($execs execs)"
  (cd "$pkg" && "$bin/$(printf %s "$pkg" | tr / _).test" -test.run '^$' -test.fuzz "^$fn\$" -test.fuzztime "${execs}x" \
    -test.fuzzcachedir "$cache/$module/${pkg#./}") >"$bin/log" 2>&1 || { cat "$bin/log"; exit 1; }
done <<<"$targets"
echo "fuzz: every target passed $execs executions in $((SECONDS - start)) s"
