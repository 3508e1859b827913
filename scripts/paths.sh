#!/usr/bin/env bash
# Speed of every path, each against its baseline, in one run: `make
# load-all` (or `make load-smoke`: tiny store, seconds). Method and the
# current figures: docs/benchmarks.md.
#
#   gate check      open loop (fixed arrival rate, latency from the intended
#                   send time) at PATHS_GATE_RATE of mixed allow/wait/deny
#                   checks, plus a closed loop for the capacity; the same
#                   two against scripts/baseline (echo + one durable INSERT
#                   of a decision-sized row on a pool of the same size)
#   webhook ingest  signed ServiceNow, Jira and GitHub deliveries with
#                   duplicates and out-of-order versions, open loop at
#                   PATHS_HOOK_RATE (again with a checkpoint 3 s in) and a
#                   closed loop for the capacity, then the path alone on a
#                   receiver with inbox.normalize: false;
#                   pgbench inserting the same row into a copy of
#                   inbox_events is its baseline
#   normalizer      seconds from the end of the ingest load until
#                   tollgate_inbox_pending_events is 0 again
#   approval        app BenchmarkWebhookToAnswer and BenchmarkWebhookToCallback
#                   (webhook → waiting check answered; webhook → GitHub's
#                   protection-rule callback received), PostgreSQL and SQLite
#   audit verify    `tollgate audit verify` over the chain the gate and
#                   ingest phases wrote (PostgreSQL, and SQLite's gate copy)
#   memory          tollgate's peak resident size in each phase (VmRSS
#                   sampled every 0.25 s) at the GOGC/GOMEMLIMIT in the
#                   environment (unset: serve's defaults)
#   SQLite          the ingest and normalizer rows again on an embedded store
#   reconcile       scripts/reconcilebench over a store seeded with
#                   `-profile reconcile` at the same scale, against the
#                   hand-written query scripts/reconcile-bench.sql; and on
#                   SQLite at a tenth of the scale (a copy of such a store)
#
# Knobs: PATHS_SCALE (full: 1M deployments, 200k changes, 50k incidents;
# small: a tenth; tiny: for the smoke run), PATHS_DURATION (per phase,
# default 10s), PATHS_GATE_RATE (default 3750: 75% of 5,000/s),
# PATHS_HOOK_RATE (default 1000: half of 2,000/s), PATHS_CONCURRENCY
# (closed loops, default 32), PATHS_ALT_ENV (e.g. "GOMEMLIMIT=120MiB": the
# open loops again on a tollgate with that environment), PATHS_APPROVALS (samples, default 30; 0
# skips), PATHS_SQLITE (1: default), PATHS_SQLITE_GATE (1: default; the gate on a SQLite copy of the store), PATHS_RECONCILE (1: default), PATHS_PERF (1: closed loops of the gate
# and of ingest again under a perf profile of the whole machine), PATHS_PPROF (1: the same two
# loops again under Go's CPU profile of tollgate, fetched from its debug_addr: LABEL.cpu.pprof
# and its top functions in LABEL.pprof.txt), PATHS_OUT (a directory to keep
# the summary, the profiles, each open loop's p50/p99/max per 250 ms (LABEL.series)
# and the servers' logs without their access lines), PATHS_FLUSH_DIR (where the disk's flush
# latency is probed during each phase, default the run's temporary directory: put it on the
# database's disk), TOLLGATE_LOAD_PG (admin URL).
# Traffic goes to 127.0.0.1 only; every phase is bounded by its duration
# and the run stops by itself, dropping its database (also on ^C or TERM,
# at once: the work runs in a process group the signal is passed to).
# Needs: go, psql, pgbench, curl, jq.
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$0")/.."
# The work runs in a process group of its own that this process waits
# for: bash holds a trapped signal until its foreground command ends (a
# seed or a reconcile takes minutes), so a TERM or ^C here is passed to
# the whole group at once; the group's own trap still drops its databases.
if [ -z "${PATHS_GROUP:-}" ] && command -v setsid >/dev/null 2>&1; then
	PATHS_GROUP=1 setsid bash "$self" "$@" &
	group=$!
	trap 'kill -TERM -- "-$group" 2>/dev/null || true' INT TERM
	status=0
	while kill -0 "$group" 2>/dev/null; do
		wait "$group" && status=0 || status=$? # a trapped signal ends wait early: wait again for the cleanup
	done
	exit "$status"
fi
. scripts/lib/toolchain.sh
. scripts/lib/ports.sh
[ -z "${PATHS_OUT:-}" ] || { mkdir -p "$PATHS_OUT" && PATHS_OUT=$(cd "$PATHS_OUT" && pwd); }

PG_ADMIN=${TOLLGATE_LOAD_PG:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
SCALE=${PATHS_SCALE:-full}
DURATION=${PATHS_DURATION:-10s}
GATE_RATE=${PATHS_GATE_RATE:-3750}
HOOK_RATE=${PATHS_HOOK_RATE:-1000}
CONC=${PATHS_CONCURRENCY:-32}
APPROVALS=${PATHS_APPROVALS:-30}
SQLITE=${PATHS_SQLITE:-1}
WARMUP=2s
case "$SCALE" in
full) SEED_FLAGS=() ;;
small) SEED_FLAGS=(-changes 20000 -incidents 5000 -releases 10000 -deployments 100000) ;;
tiny) SEED_FLAGS=(-changes 1000 -incidents 200 -releases 500 -deployments 5000 -services 50 -teams 10); WARMUP=0.5s ;;
*) echo "paths.sh: PATHS_SCALE must be full, small or tiny" >&2; exit 2 ;;
esac

log() { printf 'paths.sh: %s\n' "$*" >&2; }
for tool in go psql pgbench curl jq; do
	command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
done

TMP=$(mktemp -d /tmp/tollgate-paths.XXXXXX)
# The flush probe's file goes here: on the database's disk for its figure
# to be the commits' (on this box /tmp and PostgreSQL's data share one).
FLUSH_DIR=${PATHS_FLUSH_DIR:-$TMP}
DBNAME="tollgate_paths_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
PIDS=()
DB_CREATED=
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "${RDB_CREATED:-}" ]; then
		psql "$PG_ADMIN" -qAtc "DROP DATABASE IF EXISTS $RDB WITH (FORCE)" >/dev/null 2>&1 || log "could not drop database $RDB"
	fi
	if [ -n "${RDB2_CREATED:-}" ]; then
		psql "$PG_ADMIN" -qAtc "DROP DATABASE IF EXISTS $RDB2 WITH (FORCE)" >/dev/null 2>&1 || log "could not drop database $RDB2"
	fi
	if [ -n "$DB_CREATED" ]; then
		psql "$PG_ADMIN" -qAtc "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" >/dev/null 2>&1 || log "could not drop database $DBNAME"
	fi
	if [ -n "${PATHS_OUT:-}" ]; then # the servers' own lines, for a row to be looked into
		for f in "$TMP"/server-*.log; do
			[ -e "$f" ] && { grep -v '"msg":"http request"' "$f" >"$PATHS_OUT/$(basename "$f")" || true; }
		done
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

DB_URL=$(printf '%s' "$PG_ADMIN" | sed -E "s#^(postgres(ql)?://[^/]*)/[^?]*#\1/$DBNAME#")
case "$DB_URL" in *\?*) ;; *) DB_URL="$DB_URL?sslmode=disable" ;; esac
secs() { awk -v d="$1" 'BEGIN{sub(/s$/, "", d); print d + 0}'; }

log "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), scale $SCALE, $DURATION per phase"
log "building tollgate, seed, loadgen, baseline"
go build -o "$TMP/tollgate" ./cmd/tollgate
go build -o "$TMP/seed" ./scripts/seed
go build -o "$TMP/loadgen" ./scripts/loadgen
go build -o "$TMP/baseline" ./scripts/baseline
go build -o "$TMP/flushprobe" ./scripts/flushprobe

psql "$PG_ADMIN" -qAtc "CREATE DATABASE $DBNAME" >/dev/null
DB_CREATED=1
"$TMP/seed" -db "$DB_URL" "${SEED_FLAGS[@]}"
psql "$DB_URL" -qAtc "CHECKPOINT" >/dev/null 2>&1 || log "could not CHECKPOINT: the seed's writes may be flushed during the runs"


SECRET="paths-hook-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
ADMIN_TOKEN="paths-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# verdicts_refresh is off: on a store just seeded with SQL, the first
# refresh judges every deployment (the reconcile phase measures that work),
# which is not the gate's or ingest's path; in steady state a refresh reads
# the records since the last one, a second of PostgreSQL every 5 minutes.
# release_metrics_refresh is off too: its first run, a minute after start,
# reads 30 days of the 1M deployments (~1.6 s of PostgreSQL, hourly after
# that) and would land amid whichever phase runs then.
cat >"$TMP/tollgate.yaml" <<EOF
log_level: info
verdicts_refresh: 0s
release_metrics_refresh: 0s
connectors:
  - {name: servicenow, type: servicenow, webhook_secret: "$SECRET"}
  - {name: jira, type: jira, webhook_secret: "$SECRET"}
  - {name: github, type: github, webhook_secret: "$SECRET"}
EOF

# The store-only receiver's configuration: the same, normalizing nothing.
{ cat "$TMP/tollgate.yaml"; printf 'inbox:\n  normalize: false\n'; } >"$TMP/tollgate-store-only.yaml"

SERVER_PID= BASE= CI_TOKEN=
start_tollgate() { # database URL, log file, then VAR=value… for its environment (TOLLGATE_CONFIG=… replaces the configuration)
	local port db=$1 logf=$2
	shift 2
	port=$(free_port)
	BASE="http://127.0.0.1:$port"
	DEBUG_ADDR="127.0.0.1:$(free_port)" # Go's profiler (debug_addr), for PATHS_PPROF
	env TOLLGATE_CONFIG="$TMP/tollgate.yaml" "$@" TOLLGATE_ADDR="127.0.0.1:$port" TOLLGATE_DEBUG_ADDR="$DEBUG_ADDR" \
		TOLLGATE_DATABASE_URL="$db" TOLLGATE_ADMIN_TOKEN="$ADMIN_TOKEN" "$TMP/tollgate" serve >"$logf" 2>&1 &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	for _ in $(seq 150); do
		curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break
		kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 30 "$logf" >&2; log "tollgate exited"; exit 1; }
		sleep 0.2
	done
	curl -fsS "$BASE/readyz" >/dev/null || { tail -n 30 "$logf" >&2; log "tollgate not ready"; exit 1; }
	CI_TOKEN=$(curl -fsS -X POST "$BASE/api/v1/tokens" -H "Authorization: Bearer $ADMIN_TOKEN" \
		-H 'Content-Type: application/json' -d '{"name":"paths","role":"ci"}' | jq -r .token)
}
stop_tollgate() {
	kill "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
}

# The summary: one line per measurement, printed at the end.
SUMMARY="$TMP/summary"
: >"$SUMMARY"
row() { printf '%s\n' "$*" >>"$SUMMARY"; }

# audit_verify LABEL DATABASE-URL: the auditor's path, `tollgate audit
# verify` (offline, every row's link and hash, every decision held to its
# entry) over the chain the phases before wrote, timed, with its peak RSS.
audit_verify() {
	local out t0 t1 n rss timer=()
	[ -x /usr/bin/time ] && timer=(/usr/bin/time -f 'RSS %M')
	t0=$(date +%s.%N)
	out=$("${timer[@]}" env TOLLGATE_CONFIG="$TMP/tollgate.yaml" TOLLGATE_DATABASE_URL="$2" "$TMP/tollgate" audit verify 2>&1) || { row "$1: FAILED: $out"; return; }
	t1=$(date +%s.%N)
	rss=$(sed -nE 's/^RSS ([0-9]+)$/\1/p' <<<"$out")
	n=$(sed -nE 's/.*intact: ([0-9]+) rows.*/\1/p' <<<"$out")
	row "$1: $(awk -v n="${n:-0}" -v a="$t0" -v b="$t1" -v r="${rss:-0}" 'BEGIN{d = b - a; printf "%d rows intact in %.2f s = %.0f rows/s; peak RSS %.0f MB", n, d, (d > 0 ? n / d : 0), r / 1024}')"
}

# rss_watch PID FILE: the highest VmRSS (kB) seen, every 0.25 s, until killed.
rss_watch() {
	local max=0 r
	while kill -0 "$1" 2>/dev/null; do
		r=$(awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
		# Replaced whole (a reader must never see the file truncated).
		[ "${r:-0}" -gt "$max" ] && max=$r && echo "$max" >"$2.new" && mv "$2.new" "$2"
		sleep 0.25
	done
}

# cpu_ticks: the machine's CPU ticks so far, all and stolen (/proc/stat;
# guest time is already in user). On a VM, stolen time is CPU the host
# gave to other guests: it slows a run without showing in its load
# average, so each row gives its share.
cpu_ticks() { awk '/^cpu /{t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $9; exit}' /proc/stat; }
steal_since() { # TOTAL STEAL from cpu_ticks at the start: the stolen share since, in %
	local t s
	read -r t s < <(cpu_ticks)
	awk -v t="$((t - $1))" -v s="$((s - $2))" 'BEGIN{printf "%.0f", (t > 0 ? 100 * s / t : 0)}'
}

# drive LABEL URL loadgen-flags…: one loadgen run; the RESULT line lands in
# $TMP/LABEL.json, tollgate's peak RSS over the run in $TMP/LABEL.rss.
# With CHECKPOINT_DB set (the PostgreSQL phases), the run starts from a
# checkpoint: otherwise the WAL of the phases before (hundreds of MB)
# makes PostgreSQL start one amid it, and the full-page images written
# after a checkpoint starts slow every commit for seconds — a cost of
# the phases' order, not of the path measured. The same path while a
# checkpoint runs is measured apart (docs/benchmarks.md).
drive() {
	local label=$1 url=$2 w
	shift 2
	if [ -n "${CHECKPOINT_DB:-}" ]; then
		psql "$CHECKPOINT_DB" -qAtc "CHECKPOINT" >/dev/null 2>&1 || log "could not CHECKPOINT before $label"
		case "$label" in *-amid-checkpoint) # another checkpoint 3 s into the measured part
			(sleep "$(awk -v w="$(secs "$WARMUP")" 'BEGIN{print w + 3}')" && psql "$CHECKPOINT_DB" -qAtc "CHECKPOINT" >/dev/null 2>&1) &
			;;
		esac
	fi
	echo 0 >"$TMP/$label.rss"
	if [ -n "$SERVER_PID" ]; then
		rss_watch "$SERVER_PID" "$TMP/$label.rss" &
		w=$!
	fi
	local prof=
	case "$label" in *-profile) command -v perf >/dev/null && prof=1 ;; esac
	if [ -n "$prof" ]; then # the whole machine's profile over the measured part
		(sleep "$(secs "$WARMUP")" && exec perf record -q -F 199 -a -g -o "$TMP/$label.perf" -- sleep "$(secs "$DURATION")") >/dev/null 2>&1 &
		prof=$!
	fi
	local pprof=
	case "$label" in *-pprof) # tollgate's own CPU profile over the measured part, from its debug_addr
		(sleep "$(secs "$WARMUP")" && exec curl -fsS -o "$TMP/$label.cpu.pprof" \
			"http://$DEBUG_ADDR/debug/pprof/profile?seconds=$(secs "$DURATION" | awk '{printf "%d", ($1 < 1 ? 1 : $1)}')") >/dev/null 2>&1 &
		pprof=$!
		;;
	esac
	# The disk's flush latency over the measured part (scripts/flushprobe):
	# a stalled flush stalls every durable commit, the baseline's as well.
	(sleep "$(secs "$WARMUP")" && exec "$TMP/flushprobe" -dir "$FLUSH_DIR" -d "$DURATION") >"$TMP/$label.flush" 2>&1 &
	local fp=$!
	local t0 s0
	read -r t0 s0 < <(cpu_ticks)
	if [ -n "${PATHS_OUT:-}" ] && [[ " $* " == *" -rate "* ]]; then
		# An open loop's p50/p99/max per 250 ms of send time: when a
		# figure is off, this says when in the run.
		"$TMP/loadgen" -url "$url" -d "$DURATION" -warmup "$WARMUP" -label "$label" -timeout 10s -series 250ms "$@" \
			2> >(tee "$PATHS_OUT/$label.series" >&2) | tee "$TMP/$label.out"
	else
		"$TMP/loadgen" -url "$url" -d "$DURATION" -warmup "$WARMUP" -label "$label" -timeout 10s "$@" | tee "$TMP/$label.out"
	fi
	local steal flush
	steal=$(steal_since "$t0" "$s0")
	wait "$fp" 2>/dev/null || true
	flush=$(sed -nE 's/.* max ([0-9.]+) ms.*/\1/p' "$TMP/$label.flush")
	[ -z "${PATHS_OUT:-}" ] || cp "$TMP/$label.flush" "$PATHS_OUT/"
	[ -z "${w:-}" ] || { kill "$w" 2>/dev/null; wait "$w" 2>/dev/null || true; }
	if [ -n "$prof" ]; then
		wait "$prof" 2>/dev/null || true
		{
			echo "== $label: CPU samples by process"
			perf report -i "$TMP/$label.perf" --sort comm --stdio -g none 2>/dev/null | grep -v '^#' | grep . | head -8 || true
			for comm in tollgate postgres; do
				echo "== $label: $comm, top functions (self)"
				perf report -i "$TMP/$label.perf" --comm "$comm" --no-children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep . | head -15 || true
			done
		} >"$TMP/$label.profile"
		[ -z "${PATHS_OUT:-}" ] || cp "$TMP/$label.profile" "$PATHS_OUT/"
	fi
	if [ -n "$pprof" ]; then
		wait "$pprof" 2>/dev/null || true
		if [ -s "$TMP/$label.cpu.pprof" ]; then
			{
				echo "== $label: tollgate's CPU profile, top functions (cumulative)"
				go tool pprof -top -cum -nodecount=30 "$TMP/tollgate" "$TMP/$label.cpu.pprof" 2>/dev/null || true
				echo "== $label: top functions (self)"
				go tool pprof -top -nodecount=20 "$TMP/tollgate" "$TMP/$label.cpu.pprof" 2>/dev/null || true
			} >"$TMP/$label.pprof.txt"
			[ -z "${PATHS_OUT:-}" ] || cp "$TMP/$label.cpu.pprof" "$TMP/$label.pprof.txt" "$PATHS_OUT/"
		else
			log "no CPU profile from $DEBUG_ADDR for $label"
		fi
	fi
	sed -n 's/^RESULT //p' "$TMP/$label.out" >"$TMP/$label.json"
	jq -r --arg l "$label" --arg la "$(cut -d' ' -f1 /proc/loadavg)" --arg rss "$(($(cat "$TMP/$label.rss" 2>/dev/null || echo 0) / 1024))" --arg st "$steal" --arg fl "${flush:-?}" \
		'"\($l)\t\(.checks_per_second|floor)/s\tp50 \(.p50_ms) ms\tp99 \(.p99_ms) ms\tmax \(.max_ms) ms\terrors \(.errors)\tmissed \(.missed // 0)\tRSS \($rss) MB\tload \($la)\tsteal \($st)%\tflush max \($fl) ms"' \
		"$TMP/$label.json" >>"$SUMMARY"
}
rate_of() { jq -r '.checks_per_second' "$TMP/$1.json"; }

# pending_zero: seconds until the normalizer has no pending event (max 60).
pending_zero() {
	local t0 n
	t0=$(date +%s.%N)
	for _ in $(seq 600); do
		n=$(curl -fsS "$BASE/metrics" 2>/dev/null | awk '/^tollgate_inbox_pending_events /{print $2+0}')
		[ "${n:-1}" = 0 ] && { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}'; return; }
		sleep 0.1
	done
	echo ">60"
}

# ---- PostgreSQL -------------------------------------------------------------
CHECKPOINT_DB=$DB_URL
log "starting scripts/baseline and tollgate (PostgreSQL)"
BPORT=$(free_port)
"$TMP/baseline" -addr "127.0.0.1:$BPORT" -db "$DB_URL" >"$TMP/baseline.log" 2>&1 &
PIDS+=("$!")
start_tollgate "$DB_URL" "$TMP/server-pg.log"
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$BPORT/" && break; sleep 0.1; done

row "== gate check (PostgreSQL, scale $SCALE)"
drive gate-open "$BASE" -token "$CI_TOKEN" -db "$DB_URL" -rate "$GATE_RATE" -c 64
drive baseline-open "http://127.0.0.1:$BPORT" -token x -db "$DB_URL" -rate "$GATE_RATE" -c 64
drive gate-closed "$BASE" -token "$CI_TOKEN" -db "$DB_URL" -c "$CONC"
drive baseline-closed "http://127.0.0.1:$BPORT" -token x -db "$DB_URL" -c "$CONC"
row "gate capacity / baseline capacity: $(awk -v a="$(rate_of gate-closed)" -v b="$(rate_of baseline-closed)" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}') (target ≥ 0.75)"

row "== webhook ingest (PostgreSQL)"
drive hook-open "$BASE" -target webhook -secret "$SECRET" -rate "$HOOK_RATE" -c 64
row "normalizer: pending back to 0 $(pending_zero) s after the ingest load stopped (target ≤ 5 s)"
drive hook-open-amid-checkpoint "$BASE" -target webhook -secret "$SECRET" -rate "$HOOK_RATE" -c 64
pending_zero >/dev/null
drive hook-closed "$BASE" -target webhook -secret "$SECRET" -c "$CONC"
row "normalizer: pending back to 0 $(pending_zero) s after the closed loop stopped"
psql "$DB_URL" -qAtc "CHECKPOINT" >/dev/null 2>&1 || true
SCRIPT=$("$TMP/baseline" -db "$DB_URL" -pgbench-setup scripts/loadgen/testdata/sn_chg_rest.get_change.response.json,scripts/loadgen/testdata/webhook.jira_issue_updated.status-resolved.cloud.json,scripts/loadgen/testdata/deployment_status.created.json)
mv "$SCRIPT" "$TMP/pgbench.sql"
read -r T0 S0 < <(cpu_ticks)
pgbench -n -M prepared -c "$CONC" -j 2 -T "$(secs "$DURATION" | awk '{printf "%d", ($1 < 1 ? 1 : $1)}')" -f "$TMP/pgbench.sql" "$DB_URL" >"$TMP/pgbench.out" 2>&1 || { cat "$TMP/pgbench.out" >&2; exit 1; }
PGB=$(awk '/^tps = /{printf "%d", $3}' "$TMP/pgbench.out")
PGB_LAT=$(awk '/^latency average/{print $4}' "$TMP/pgbench.out")
row "pgbench baseline: $PGB inserts/s at $CONC clients (average latency $PGB_LAT ms, steal $(steal_since "$T0" "$S0")%); ingest capacity / pgbench: $(awk -v a="$(rate_of hook-closed)" -v b="$PGB" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}') (target ≥ 0.6)"
if [ "${PATHS_PERF:-0}" = 1 ]; then # profiled apart: perf's own cost would depress the figures above
	drive gate-profile "$BASE" -token "$CI_TOKEN" -db "$DB_URL" -c "$CONC"
	drive hook-profile "$BASE" -target webhook -secret "$SECRET" -c "$CONC"
fi
if [ "${PATHS_PPROF:-0}" = 1 ]; then # the same, profiled by Go's profiler inside tollgate
	drive gate-pprof "$BASE" -token "$CI_TOKEN" -db "$DB_URL" -c "$CONC"
	drive hook-pprof "$BASE" -target webhook -secret "$SECRET" -c "$CONC"
fi
row "tollgate peak resident memory (VmHWM), PostgreSQL phases: $(awk '/^VmHWM/{printf "%.0f MB", $2/1024}' "/proc/$SERVER_PID/status") (GOGC=${GOGC:-unset, serve sets 1000} GOMEMLIMIT=${GOMEMLIMIT:-unset, serve sets 120MiB})"

row "inbox after the ingest runs: $(psql "$DB_URL" -qAtc "SELECT string_agg(status || ' ' || n, ', ') FROM (SELECT status, count(*) n FROM inbox_events GROUP BY 1 ORDER BY 1) s")"
stop_tollgate

# The ingest path alone (verify, durable insert, 202), as pgbench's row:
# a receiver with inbox.normalize: false, the normalizers being other
# replicas (none runs here, so the deliveries stay pending).
start_tollgate "$DB_URL" "$TMP/server-pg-store-only.log" TOLLGATE_CONFIG="$TMP/tollgate-store-only.yaml"
row "== webhook ingest alone (PostgreSQL, a receiver with inbox.normalize: false)"
drive hook-alone-closed "$BASE" -target webhook -secret "$SECRET" -c "$CONC"
row "ingest alone capacity / pgbench: $(awk -v a="$(rate_of hook-alone-closed)" -v b="$PGB" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}') (target ≥ 0.6)"
stop_tollgate
row "== audit verify (PostgreSQL, the chain the phases above wrote)"
audit_verify "audit verify" "$DB_URL"
# What it left pending would be normalized amid the later phases.
psql "$DB_URL" -qAtc "DELETE FROM inbox_events WHERE status = 'pending'" >/dev/null

# The memory settings to compare: the same open-loop phases again on a
# tollgate started with PATHS_ALT_ENV (e.g. "GOMEMLIMIT=120MiB").
if [ -n "${PATHS_ALT_ENV:-}" ]; then
	read -r -a ALT <<<"$PATHS_ALT_ENV"
	start_tollgate "$DB_URL" "$TMP/server-pg-alt.log" "${ALT[@]}"
	row "== the same open loops with $PATHS_ALT_ENV"
	drive alt-gate-open "$BASE" -token "$CI_TOKEN" -db "$DB_URL" -rate "$GATE_RATE" -c 64
	drive alt-hook-open "$BASE" -target webhook -secret "$SECRET" -rate "$HOOK_RATE" -c 64
	row "tollgate peak resident memory (VmHWM) with $PATHS_ALT_ENV: $(awk '/^VmHWM/{printf "%.0f MB", $2/1024}' "/proc/$SERVER_PID/status")"
	stop_tollgate
fi

# ---- SQLite -----------------------------------------------------------------
CHECKPOINT_DB=
if [ "$SQLITE" = 1 ]; then
	log "tollgate on SQLite"
	start_tollgate "sqlite:$TMP/paths.db" "$TMP/server-sqlite.log"
	row "== webhook ingest (SQLite, empty store)"
	drive sqlite-hook-open "$BASE" -target webhook -secret "$SECRET" -rate "$HOOK_RATE" -c 64
	row "normalizer (SQLite): pending back to 0 $(pending_zero) s after the ingest load stopped"
	drive sqlite-hook-closed "$BASE" -target webhook -secret "$SECRET" -c "$CONC"
	row "tollgate peak resident memory (VmHWM), SQLite: $(awk '/^VmHWM/{printf "%.0f MB", $2/1024}' "/proc/$SERVER_PID/status")"
	stop_tollgate
	# The gate on SQLite: the seeded PostgreSQL store (as the phases above
	# left it) copied into a SQLite file; the request bodies still sample
	# their keys from PostgreSQL, which holds the same rows.
	if [ "${PATHS_SQLITE_GATE:-1}" = 1 ]; then
		log "copying the seeded store into SQLite for the gate phases"
		go build -o "$TMP/reconcilebench" ./scripts/reconcilebench
		"$TMP/reconcilebench" -db "$DB_URL" -copy-to-sqlite "$TMP/paths-gate.db" >"$TMP/copy.out" 2>&1 || { cat "$TMP/copy.out" >&2; exit 1; }
		start_tollgate "sqlite:$TMP/paths-gate.db" "$TMP/server-sqlite-gate.log"
		row "== gate check (SQLite, the same store copied)"
		drive sqlite-gate-open "$BASE" -token "$CI_TOKEN" -db "$DB_URL" -rate "$GATE_RATE" -c 64
		drive sqlite-gate-closed "$BASE" -token "$CI_TOKEN" -db "$DB_URL" -c "$CONC"
		row "tollgate peak resident memory (VmHWM), SQLite gate: $(awk '/^VmHWM/{printf "%.0f MB", $2/1024}' "/proc/$SERVER_PID/status")"
		stop_tollgate
		audit_verify "audit verify (SQLite)" "sqlite:$TMP/paths-gate.db"
	fi
fi

# ---- reconcile ------------------------------------------------------------------
# scripts/reconcilebench (service.Reconciler.Run, the code behind POST
# /api/v1/reports/reconciliation) over a store seeded with `scripts/seed
# -profile reconcile` at this scale, against a comparable workload as one
# hand-written query (scripts/reconcile-bench.sql; not the reconciler's
# exact question: see its header). PATHS_RECONCILE=0 skips.
if [ "${PATHS_RECONCILE:-1}" = 1 ]; then
	RDB="${DBNAME}_recon"
	RDB_URL=$(printf '%s' "$DB_URL" | sed -E "s#/$DBNAME([?]|$)#/$RDB\1#")
	case "$SCALE" in
	full) RSEED=() ;;
	small) RSEED=(-changes 20000 -incidents 5000 -releases 10000 -deployments 100000) ;;
	tiny) RSEED=(-changes 1000 -incidents 200 -releases 500 -deployments 5000 -services 50 -teams 10) ;;
	esac
	[ "$SCALE" = tiny ] || RSEED+=(-teams 50)
	log "reconcile: seeding $RDB (-profile reconcile)"
	psql "$PG_ADMIN" -qAtc "CREATE DATABASE $RDB" >/dev/null
	RDB_CREATED=1
	go build -o "$TMP/reconcilebench" ./scripts/reconcilebench
	"$TMP/seed" -db "$RDB_URL" -profile reconcile -unauthorized 0.02 "${RSEED[@]}" 2>&1 | grep -E 'unauthorized|done' >&2 || true
	psql "$RDB_URL" -qAtc "CHECKPOINT" >/dev/null 2>&1 || true
	# Three processes (each its own peak RSS): every deployment judged
	# afresh (no stored verdicts: the figure a report had before verdicts
	# were kept, and a -afresh report's now); the first report on the store,
	# judging every deployment and storing its verdict; then three reports
	# reusing them — the steady state, timed against the hand-written query.
	if timeout 900 "$TMP/reconcilebench" -db "$RDB_URL" -afresh -runs 1 >"$TMP/reconcile-afresh.out" 2>&1 &&
		timeout 900 "$TMP/reconcilebench" -db "$RDB_URL" -clear -runs 1 >"$TMP/reconcile-first.out" 2>&1 &&
		timeout 600 "$TMP/reconcilebench" -db "$RDB_URL" -runs 3 >"$TMP/reconcile.out" 2>&1; then
		RSECS=$(sed -nE 's/.* in ([0-9.]+)s .*/\1/p' "$TMP/reconcile.out" | sort -n | sed -n 2p)
		SQLMS=$(timeout 600 psql "$RDB_URL" -f scripts/reconcile-bench.sql 2>&1 | sed -nE 's/^Time: ([0-9.]+) ms.*/\1/p' | tail -n 1)
		row "== reconcile ($SCALE)"
		row "judging afresh: $(tail -n 1 "$TMP/reconcile-afresh.out")"
		row "first report (judges all, stores verdicts): $(tail -n 1 "$TMP/reconcile-first.out")"
		while read -r l; do row "reusing stored verdicts: $l"; done <"$TMP/reconcile.out"
		row "load $(cut -d' ' -f1 /proc/loadavg); hand-written SQL: $(awk -v m="${SQLMS:-0}" 'BEGIN{printf "%.2f", m / 1000}') s; reconciler (median of the reusing runs) / SQL: $(awk -v a="${RSECS:-0}" -v m="${SQLMS:-0}" 'BEGIN{printf "%.2f", (m > 0 ? a * 1000 / m : 0)}') (targets: ≤ 2 s for 1M, ≤ 1.2×)"
	else
		row "reconcile: FAILED ($(tail -n 3 "$TMP/reconcile-afresh.out" "$TMP/reconcile-first.out" "$TMP/reconcile.out" 2>/dev/null | tr '\n' ' '))"
	fi
	# SQLite beside it, at a tenth of the scale (100k deployments for
	# full): a store seeded the same way on PostgreSQL, copied into SQLite.
	if [ "$SQLITE" = 1 ]; then
		RDB2="${DBNAME}_recon_sqlite"
		RDB2_URL=$(printf '%s' "$DB_URL" | sed -E "s#/$DBNAME([?]|$)#/$RDB2\1#")
		case "$SCALE" in
		full) RSEED2=(-changes 20000 -incidents 5000 -releases 10000 -deployments 100000 -teams 50) ;;
		*) RSEED2=(-changes 1000 -incidents 200 -releases 500 -deployments 5000 -services 50 -teams 10) ;;
		esac
		psql "$PG_ADMIN" -qAtc "CREATE DATABASE $RDB2" >/dev/null
		RDB2_CREATED=1
		"$TMP/seed" -db "$RDB2_URL" -profile reconcile -unauthorized 0.02 "${RSEED2[@]}" 2>&1 | grep -E 'unauthorized' >&2 || true
		rm -f "$TMP/recon.db"
		if "$TMP/reconcilebench" -db "$RDB2_URL" -copy-to-sqlite "$TMP/recon.db" >"$TMP/recon-copy.out" 2>&1 &&
			timeout 600 "$TMP/reconcilebench" -db "sqlite:$TMP/recon.db" -afresh -runs 1 >"$TMP/reconcile-sqlite-afresh.out" 2>&1 &&
			timeout 600 "$TMP/reconcilebench" -db "sqlite:$TMP/recon.db" -clear -runs 1 >"$TMP/reconcile-sqlite-first.out" 2>&1 &&
			timeout 600 "$TMP/reconcilebench" -db "sqlite:$TMP/recon.db" -runs 3 >"$TMP/reconcile-sqlite.out" 2>&1; then
			N2=$(sed -nE 's/.*-deployments ([0-9]+).*/\1/p' <<<"${RSEED2[*]}")
			row "SQLite ($N2 deployments), judging afresh: $(tail -n 1 "$TMP/reconcile-sqlite-afresh.out")"
			row "SQLite ($N2 deployments), first report: $(tail -n 1 "$TMP/reconcile-sqlite-first.out")"
			while read -r l; do row "SQLite ($N2 deployments), reusing stored verdicts: $l"; done <"$TMP/reconcile-sqlite.out"
			row "load $(cut -d' ' -f1 /proc/loadavg)"
		else
			row "reconcile (SQLite): FAILED ($(tail -n 3 "$TMP/reconcile-sqlite.out" "$TMP/recon-copy.out" 2>/dev/null | tr '\n' ' '))"
		fi
	fi
fi

# ---- approval webhook → waiting check answered --------------------------------
if [ "$APPROVALS" -gt 0 ]; then
	log "approval → answer, $APPROVALS samples per store (app BenchmarkWebhookToAnswer, BenchmarkWebhookToCallback)"
	TOLLGATE_TEST_RACE=0 timeout 300 ./scripts/test.sh ./app -run '^$' -bench 'WebhookTo(Answer|Callback)' -benchtime "${APPROVALS}x" 2>&1 |
		tee "$TMP/approval.out" | grep -E '^Benchmark' || true
	awk '/^BenchmarkWebhookTo/{for (i = 3; i < NF; i++) { if ($(i+1) == "p50-ms") p50 = $i; if ($(i+1) == "p99-ms") p99 = $i }
		printf "approval → answer %s: p50 %s ms, p99 %s ms (target p99 < 1000 ms)\n", $1, p50, p99}' "$TMP/approval.out" >>"$SUMMARY"
fi

for f in server-pg server-pg-alt server-sqlite server-sqlite-gate; do
	[ -f "$TMP/$f.log" ] || continue
	e=$(grep -c '"level":"ERROR"' "$TMP/$f.log" || true)
	row "$f log: $e errors"
	[ "$e" = 0 ] || grep -m 3 '"level":"ERROR"' "$TMP/$f.log" >&2
done
echo
echo "=== paths.sh summary: $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$SUMMARY"
[ -z "${PATHS_OUT:-}" ] || cp "$SUMMARY" "$PATHS_OUT/summary.txt"
