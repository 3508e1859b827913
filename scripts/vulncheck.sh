#!/usr/bin/env bash
# govulncheck ./... against the Go vulnerability database (vuln.go.dev),
# installing govulncheck from the Go module proxy when it is missing.
# Known vulnerabilities reachable from the code fail. A database that
# cannot be reached is reported loudly and does not fail the run (there
# is nothing to check against): set VULNCHECK_REQUIRED=1 to fail then too.
#
# VULNCHECK_DB checks against another copy of the database instead: a
# URL govulncheck takes (https://…, file:///…) or a local directory in
# the database's layout (index/db.json, index/modules.json, ID/GO-….json),
# for a machine that cannot reach vuln.go.dev. golang.org/x/vulndb's
# cmd/indexdb makes one from the repository's data/osv:
#   go run ./cmd/indexdb -vulns data/osv -out /path/to/db   (in a vulndb checkout)
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$(command -v govulncheck || true)
if [ -z "$bin" ]; then
  bin="$(go env GOPATH)/bin/govulncheck"
  if [ ! -x "$bin" ]; then
    echo "govulncheck: installing golang.org/x/vuln/cmd/govulncheck@latest"
    go install golang.org/x/vuln/cmd/govulncheck@latest || { echo "govulncheck: NOT RUN: could not install it from the module proxy"; exit "${VULNCHECK_REQUIRED:-0}"; }
  fi
fi
db="https://vuln.go.dev"
if [ -n "${VULNCHECK_DB:-}" ]; then
  case "$VULNCHECK_DB" in
    *://*) db="$VULNCHECK_DB" ;;
    *) [ -f "$VULNCHECK_DB/index/db.json" ] || { echo "govulncheck: FAILED: VULNCHECK_DB=$VULNCHECK_DB has no index/db.json"; exit 2; }
       db="file://$(cd "$VULNCHECK_DB" && pwd)" ;;
  esac
  echo "govulncheck: database $db"
fi
out=$("$bin" -db "$db" ./... 2>&1); rc=$?
echo "$out" | tail -40
if [ $rc -eq 0 ]; then echo "govulncheck: no known vulnerability reachable"; exit 0; fi
if grep -qE 'fetching vulnerabilities|no such host|dial tcp|i/o timeout|connection refused' <<<"$out"; then
  echo "govulncheck: NOT RUN: the vulnerability database ($db) is unreachable from this machine; no vulnerability check was made (VULNCHECK_DB takes a local copy)"
  [ "${VULNCHECK_REQUIRED:-0}" = 1 ] && exit 1
  exit 0
fi
echo "govulncheck: FAILED (exit $rc)"
exit $rc
