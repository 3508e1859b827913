#!/usr/bin/env bash
# HTTP load run of the gate: POST /api/v1/gate/check against a real
# `tollgate serve` on PostgreSQL holding the issue's data set (1M
# deployments, 200k changes, 50k incidents). Method and figures:
# docs/benchmarks.md. Run with `make load`.
#
# 1. creates a fresh database on the PostgreSQL server (TOLLGATE_LOAD_PG,
#    default postgres://postgres@127.0.0.1:5432/postgres, needs CREATE
#    DATABASE) and seeds it (scripts/seed; SEED_ARGS passes sizes);
# 2. builds and starts tollgate on 127.0.0.1 with a bootstrap admin token,
#    and creates a ci token through the API;
# 3. drives the gate with scripts/loadgen: closed loop at each concurrency
#    of LOAD_CONCURRENCY (default "32 64") for LOAD_DURATION (default 20s),
#    then open loop at LOAD_RATE (default 300/s, well below what this 2-core box sustains) for the latency when not
#    saturated; prints each result and the CPU each process used;
# 4. stops the server and drops the database (also on failure or ^C).
#
# LOAD_DB_URL reuses an already seeded database instead (steps 1 and 4's
# drop are skipped): for comparing variants back to back on one data set.
#
# Everything runs on this machine: the load generator competes with the
# server and PostgreSQL for the same cores (its own CPU use is reported).
# Needs: go, psql, curl, jq.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/toolchain.sh
. scripts/lib/ports.sh

PG_ADMIN=${TOLLGATE_LOAD_PG:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
DURATION=${LOAD_DURATION:-20s}
CONCURRENCY=${LOAD_CONCURRENCY:-32 64}
RATE=${LOAD_RATE:-300}
LOG_LEVEL=${LOAD_LOG_LEVEL:-info}
read -r -a SEED_FLAGS <<<"${SEED_ARGS:-}"

log() { printf 'load.sh: %s\n' "$*" >&2; }
for tool in go psql curl jq; do
	command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
done

TMP=$(mktemp -d /tmp/tollgate-load.XXXXXX)
DBNAME="tollgate_load_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
SERVER_PID=
DB_CREATED=
cleanup() {
	if [ -n "$SERVER_PID" ]; then
		kill "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	if [ -n "$DB_CREATED" ]; then
		psql "$PG_ADMIN" -qAtc "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" >/dev/null 2>&1 || log "could not drop database $DBNAME"
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The database URL of the new database: the admin URL with another path.
DB_URL=$(printf '%s' "$PG_ADMIN" | sed -E "s#^(postgres(ql)?://[^/]*)/[^?]*#\1/$DBNAME#")
case "$DB_URL" in *\?*) ;; *) DB_URL="$DB_URL?sslmode=disable" ;; esac
[ -z "${LOAD_DB_URL:-}" ] || DB_URL=$LOAD_DB_URL

log "building tollgate, seed and loadgen"
go build -o "$TMP/tollgate" ./cmd/tollgate
go build -o "$TMP/seed" ./scripts/seed
go build -o "$TMP/loadgen" ./scripts/loadgen

if [ -z "${LOAD_DB_URL:-}" ]; then
	log "creating database $DBNAME"
	psql "$PG_ADMIN" -qAtc "CREATE DATABASE $DBNAME" >/dev/null
	DB_CREATED=1
	"$TMP/seed" -db "$DB_URL" "${SEED_FLAGS[@]}"
else
	log "using the seeded database LOAD_DB_URL"
fi
psql "$DB_URL" -qAtc "SELECT 'seeded: ' || (SELECT count(*) FROM deployments) || ' deployments, ' || (SELECT count(*) FROM changes) || ' changes, '
	|| (SELECT count(*) FROM change_versions) || ' change versions, ' || (SELECT count(*) FROM incidents) || ' incidents ('
	|| (SELECT count(*) FROM incidents WHERE active) || ' active), ' || (SELECT count(*) FROM releases) || ' releases, '
	|| (SELECT count(*) FROM pirs) || ' PIRs (' || (SELECT count(*) FROM pirs WHERE status = 'pending') || ' pending); '
	|| pg_size_pretty(pg_database_size(current_database()))" >&2
# Flush what seeding (or copying) the database left dirty now, not in a
# checkpoint during the runs: its sync phase stalls commits for hundreds
# of milliseconds, which would be the seed's cost, not the gate's.
psql "$DB_URL" -qAtc "CHECKPOINT" >/dev/null 2>&1 ||
	log "could not CHECKPOINT (needs superuser or pg_checkpoint): the seed's writes may be flushed during the runs"

PORT=$(free_port)
BASE="http://127.0.0.1:$PORT"
ADMIN_TOKEN="load-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf 'log_level: %s\nconnectors: []\n' "$LOG_LEVEL" >"$TMP/tollgate.yaml"
log "starting tollgate on $BASE (log level $LOG_LEVEL, log in $TMP/server.log)"
TOLLGATE_CONFIG="$TMP/tollgate.yaml" TOLLGATE_ADDR="127.0.0.1:$PORT" TOLLGATE_DATABASE_URL="$DB_URL" \
	TOLLGATE_ADMIN_TOKEN="$ADMIN_TOKEN" "$TMP/tollgate" serve >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
	curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
	kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 30 "$TMP/server.log" >&2; log "tollgate exited"; exit 1; }
	sleep 0.2
done
curl -fsS "$BASE/readyz" >/dev/null || { tail -n 30 "$TMP/server.log" >&2; log "tollgate not ready"; exit 1; }

CI_TOKEN=$(curl -fsS -X POST "$BASE/api/v1/tokens" -H "Authorization: Bearer $ADMIN_TOKEN" \
	-H 'Content-Type: application/json' -d '{"name":"loadgen","role":"ci"}' | jq -r .token)
[ -n "$CI_TOKEN" ] && [ "$CI_TOKEN" != null ] || { log "could not create a ci token"; exit 1; }

# CPU accounting from /proc: clock ticks of one process, and of the machine.
HZ=$(getconf CLK_TCK)
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
pg_ticks() { # every postgres process (server, backends, walwriter …)
	local t=0 p
	for p in $(pgrep -x postgres 2>/dev/null || true); do
		t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) ))
	done
	echo "$t"
}

# The group commit's counters from /metrics: groups, appends, busy seconds.
group_counters() {
	curl -fsS "$BASE/metrics" 2>/dev/null | awk '
		/^tollgate_audit_groups_total /{g=$2} /^tollgate_audit_group_appends_total /{a=$2}
		/^tollgate_audit_group_busy_seconds_total /{b=$2} END {print g+0, a+0, b+0}'
}

load_run() { # label, then loadgen flags
	local label=$1 s0 b0 p0 s1 b1 p1 secs g0 g1
	shift
	s0=$(proc_ticks "$SERVER_PID"); b0=$(busy_ticks); p0=$(pg_ticks); g0=$(group_counters)
	"$TMP/loadgen" -url "$BASE" -token "$CI_TOKEN" -db "$DB_URL" -d "$DURATION" -label "$label" ${LOAD_CLIENT:+-client "$LOAD_CLIENT"} "$@" | tee "$TMP/run.out"
	s1=$(proc_ticks "$SERVER_PID"); b1=$(busy_ticks); p1=$(pg_ticks); g1=$(group_counters)
	secs=$(awk -v d="$DURATION" 'BEGIN{sub(/s$/, "", d); print d + 3}') # + warm-up
	# CPU per check (cores over the measured rate): steadier than the
	# rate itself on a VM whose speed varies, for comparing builds.
	rate=$(sed -n 's/^RESULT //p' "$TMP/run.out" | jq -r '.checks_per_second // 0' | tail -n 1)
	awk -v s=$((s1 - s0)) -v b=$((b1 - b0)) -v p=$((p1 - p0)) -v hz="$HZ" -v t="$secs" -v r="${rate:-0}" 'BEGIN {
		printf "  CPU over the run (incl. warm-up and sampling): tollgate %.2f cores, PostgreSQL %.2f cores, machine busy %.2f of %d cores\n",
			s/hz/t, p/hz/t, b/hz/t, '"$(nproc)"'
		if (r > 0) printf "  CPU per check: tollgate %.0f µs, PostgreSQL %.0f µs\n", s/hz/t/r*1e6, p/hz/t/r*1e6 }'
	# Batching achieved and how busy the group-commit worker was.
	echo "$g0 $g1" | awk -v t="$secs" '{ g = $4 - $1; a = $5 - $2; b = $6 - $3
		if (g > 0) printf "  group commit: %.0f groups/s, %.1f appends per group, %.2f ms per group, worker busy %.0f%%\n",
			g/t, a/g, b/g*1e3, b/t*100 }'
}

for c in $CONCURRENCY; do
	load_run "closed-c$c" -c "$c"
done
load_run "open-${RATE}rps" -c 64 -rate "$RATE"

log "tollgate's peak resident memory: $(awk '/^VmHWM/{printf "%.0f MB", $2/1024}' "/proc/$SERVER_PID/status")"
errors=$(grep -c '"level":"ERROR"' "$TMP/server.log" || true)
log "server log: $(wc -l <"$TMP/server.log") lines, $errors errors"
[ "$errors" = 0 ] || grep -m 5 '"level":"ERROR"' "$TMP/server.log" >&2
