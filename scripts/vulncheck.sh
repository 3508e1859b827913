#!/usr/bin/env bash
# govulncheck ./... with the toolchain the build uses (go.mod's `toolchain`
# line, scripts/lib/toolchain.sh) and govulncheck pinned as a tool in
# go.mod (`go tool govulncheck`). Known vulnerabilities reachable from the
# code, the standard library's included, fail the run.
#
# The database, in order:
#   1. VULNCHECK_DB: a URL govulncheck takes (https://…, file:///…) or a
#      local directory in the database's layout (index/db.json, ID/…);
#   2. https://vuln.go.dev, the Go vulnerability database;
#   3. where vuln.go.dev cannot be reached: the newest snapshot of the
#      database's source, golang.org/x/vulndb, from the Go module proxy
#      (its data/osv, indexed by its own cmd/indexdb and kept under
#      VULNCHECK_CACHE, default ~/.cache/tollgate/vulndb). The snapshot's
#      date is printed: it is as new as the proxy's newest version of the
#      module, usually days behind vuln.go.dev.
# When no database can be had at all the run says NOT RUN and passes, as
# there is nothing to check against; VULNCHECK_REQUIRED=1 fails it then.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/toolchain.sh

unreachable='fetching vulnerabilities|no such host|dial tcp|i/o timeout|connection refused|TLS handshake timeout'

scan() { # db
	out=$(go tool govulncheck -db "$1" ./... 2>&1)
	rc=$?
}

report() { # db
	echo "$out" | tail -40
	if [ $rc -eq 0 ]; then echo "govulncheck: no known vulnerability reachable ($(go env GOVERSION), database $1)"; exit 0; fi
	echo "govulncheck: FAILED (exit $rc, $(go env GOVERSION), database $1)"
	exit $rc
}

not_run() { # why
	echo "govulncheck: NOT RUN: $1; no vulnerability check was made (VULNCHECK_DB takes a local copy)"
	[ "${VULNCHECK_REQUIRED:-0}" = 1 ] && exit 1
	exit 0
}

if [ -n "${VULNCHECK_DB:-}" ]; then
	case "$VULNCHECK_DB" in
	*://*) db="$VULNCHECK_DB" ;;
	*)
		[ -f "$VULNCHECK_DB/index/db.json" ] || { echo "govulncheck: FAILED: VULNCHECK_DB=$VULNCHECK_DB has no index/db.json"; exit 2; }
		db="file://$(cd "$VULNCHECK_DB" && pwd)"
		;;
	esac
	scan "$db"
	report "$db"
fi

scan https://vuln.go.dev
if [ $rc -eq 0 ] || ! grep -qE "$unreachable" <<<"$out"; then report https://vuln.go.dev; fi
echo "govulncheck: https://vuln.go.dev is unreachable from this machine; using golang.org/x/vulndb from the module proxy"

# The module's newest version; its zip holds data/osv, the database's entries.
info=$(go mod download -json golang.org/x/vulndb@latest 2>&1) || not_run "neither vuln.go.dev nor golang.org/x/vulndb on the module proxy could be reached ($(tail -1 <<<"$info"))"
version=$(sed -n 's/^[[:space:]]*"Version": "\(.*\)",$/\1/p' <<<"$info")
src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")
[ -n "$version" ] && [ -d "$src/data/osv" ] || not_run "golang.org/x/vulndb@latest from the module proxy has no data/osv"
cache="${VULNCHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate/vulndb}"
dir="$cache/$version"
if [ ! -f "$dir/index/db.json" ]; then
	rm -rf "$dir.tmp" && mkdir -p "$cache" || not_run "cannot write $cache"
	go run "golang.org/x/vulndb/cmd/indexdb@$version" -vulns "$src/data/osv" -out "$dir.tmp" >"$cache/indexdb.log" 2>&1 ||
		not_run "indexing golang.org/x/vulndb@$version failed ($(tail -1 "$cache/indexdb.log"))"
	rm -rf "$dir" && mv "$dir.tmp" "$dir"
	# Older snapshots are of no further use.
	find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$version" -exec rm -rf {} +
fi
# A pseudo-version carries its commit's time: v0.0.0-YYYYMMDDhhmmss-commit.
stamp=$(sed -n 's/^v0\.0\.0-\([0-9]\{4\}\)\([0-9]\{2\}\)\([0-9]\{2\}\)\([0-9]\{2\}\)\([0-9]\{2\}\).*/\1-\2-\3 \4:\5 UTC/p' <<<"$version")
echo "govulncheck: database golang.org/x/vulndb@$version${stamp:+ (entries as of $stamp)}, $(find "$dir/ID" -name '*.json' | wc -l) entries"
scan "file://$dir"
if [ $rc -ne 0 ] && grep -qE "$unreachable" <<<"$out"; then not_run "govulncheck could not read the indexed snapshot ($(tail -1 <<<"$out"))"; fi
report "golang.org/x/vulndb@$version"
