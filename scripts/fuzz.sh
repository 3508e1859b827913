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
while read -r pkg fn; do
  [ -n "$pkg" ] || continue
  echo "== $pkg $fn ($execs execs)"
  go test -run '^$' -fuzz "^$fn\$" -fuzztime "${execs}x" "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; rm -f /tmp/fuzz.$$.log; exit 1; }
done <<<"$targets"
rm -f /tmp/fuzz.$$.log
echo "fuzz: every target passed $execs executions in $((SECONDS - start)) s"
