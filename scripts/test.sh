#!/usr/bin/env bash
# Runs every test of tollgate against real PostgreSQL and SQLite.
#
# PostgreSQL comes from, in order:
#   1. TOLLGATE_TEST_DATABASE_URL (a URL allowed to CREATE DATABASE);
#   2. a server answering on 127.0.0.1:5432 as user postgres (trust auth);
#   3. a throwaway server started here (forced with TOLLGATE_TEST_PG=throwaway) (initdb + pg_ctl in a temp dir, on a
#      free port, stopped on exit), installing Debian's postgresql package
#      first when initdb is missing and we are root.
# Under CI=true, no PostgreSQL is a failure, never a skip. Chromium (for the
# web UI's browser tests) is installed the same way when missing.
# Extra arguments go to `go test` (e.g. scripts/test.sh -run Gate ./app/).
# Runs with -race where cgo and a C compiler are available
# (TOLLGATE_TEST_RACE=0 turns it off).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/toolchain.sh
. scripts/lib/ports.sh

log() { printf 'test.sh: %s\n' "$*" >&2; }

pg_answers() { # url
	if command -v psql >/dev/null 2>&1; then
		psql "$1" -Atqc 'select 1' >/dev/null 2>&1
	else
		go run ./internal/testpg/pgprobe "$1" >/dev/null 2>&1
	fi
}

PG_STOP=()
PG_TMP=
stop_throwaway() {
	if [ ${#PG_STOP[@]} -gt 0 ]; then
		"${PG_STOP[@]}" >/dev/null 2>&1 || true
		rm -rf "$PG_TMP"
	fi
}

find_initdb() {
	command -v initdb 2>/dev/null && return 0
	ls -1 /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1
}

start_throwaway() {
	local initdb bindir tmp port runas=()
	initdb=$(find_initdb || true)
	if [ -z "$initdb" ]; then
		if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
			log "initdb not found: installing Debian's postgresql package"
			DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
			initdb=$(find_initdb || true)
		fi
		[ -n "$initdb" ] || { log "no initdb and cannot install PostgreSQL"; return 1; }
	fi
	bindir=$(dirname "$(readlink -f "$initdb")")
	tmp=$(mktemp -d /tmp/tollgate-pg.XXXXXX)
	if [ "$(id -u)" = 0 ]; then # initdb refuses to run as root
		id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
		chown postgres "$tmp"
		runas=(runuser -u postgres --)
	fi
	port=$(free_port) || { log "no free port for a throwaway PostgreSQL"; return 1; }
	log "starting a throwaway PostgreSQL ($bindir) in $tmp on port $port"
	"${runas[@]}" "$bindir/initdb" -D "$tmp/data" -A trust -U postgres --no-sync -E UTF8 >"$tmp/initdb.log" 2>&1 \
		|| { cat "$tmp/initdb.log" >&2; return 1; }
	"${runas[@]}" "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 60 \
		-o "-p $port -k $tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >&2 \
		|| { cat "$tmp/server.log" >&2; return 1; }
	PG_STOP=("${runas[@]}" "$bindir/pg_ctl" -D "$tmp/data" -m immediate stop)
	PG_TMP=$tmp
	trap stop_throwaway EXIT
	export TOLLGATE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
}

if [ "${TOLLGATE_TEST_PG:-}" = throwaway ]; then # force step 3 (to test it)
	start_throwaway || { log "FAIL: could not start a throwaway PostgreSQL"; exit 1; }
elif [ -n "${TOLLGATE_TEST_DATABASE_URL:-}" ]; then
	pg_answers "$TOLLGATE_TEST_DATABASE_URL" || { log "TOLLGATE_TEST_DATABASE_URL does not answer"; exit 1; }
elif pg_answers "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"; then
	export TOLLGATE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	log "using PostgreSQL on 127.0.0.1:5432"
elif ! start_throwaway; then
	if [ "${CI:-}" = true ]; then
		log "FAIL: no PostgreSQL could be found or started, and CI=true"
		exit 1
	fi
	log "WARNING: no PostgreSQL; PostgreSQL tests will be skipped"
fi

# The web UI's browser tests drive Debian's chromium package: installed here
# when missing and we are root with apt-get (as PostgreSQL above). Without
# it they are skipped, or fail under CI=true.
if [ -z "${TOLLGATE_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		log "chromium not found: installing Debian's chromium package (UI browser tests)"
		{ DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2; } || log "WARNING: could not install chromium"
	else
		log "WARNING: no chromium; the UI browser tests will be skipped (they fail under CI=true)"
	fi
fi

if [ $# -eq 0 ]; then set -- ./...; fi
# The race detector needs cgo and a C compiler; use it when there is one.
race=()
if [ "$(go env CGO_ENABLED)" = 1 ] && command -v "$(go env CC)" >/dev/null 2>&1 && [ "${TOLLGATE_TEST_RACE:-1}" = 1 ]; then
	race=(-race)
fi
go test "${race[@]}" -count=1 -timeout 20m "$@"
