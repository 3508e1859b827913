#!/usr/bin/env bash
# Runs a command and reports the CPU time (user + system) PostgreSQL's
# backends spent on one database meanwhile: the backends whose process
# title names the database, and the parallel workers they start. Beside a
# client's own CPU time (scripts/reconcilebench prints it) it shows where
# a run's work went, which wall time on a shared machine does not.
#
#   scripts/pgcpu.sh DBNAME COMMAND…
#   scripts/pgcpu.sh tollgate_recon psql "$DB" -f scripts/reconcile-bench.sql
#
# The backends must run on this machine (/proc). A backend is sampled every
# 0.1 s, so one that starts and ends between samples is missed; the
# reconciler's pool and psql keep theirs for the whole run.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DBNAME COMMAND…" >&2; exit 2; }
db=$1
shift
tck=$(getconf CLK_TCK)
declare -A first last
started=0

sample() {
	local pid args leaders=" "
	while read -r pid args; do
		case "$args" in
		"postgres: "*" $db "*) leaders+="$pid " ;;
		esac
	done < <(ps -eo pid=,args=)
	while read -r pid args; do
		case "$args" in
		"postgres: "*" $db "* | *"parallel worker for PID "*) ;;
		*) continue ;;
		esac
		if [[ "$args" == *"parallel worker for PID "* ]]; then
			[[ "$leaders" == *" ${args##* } "* ]] || continue
		fi
		local stat
		stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
		stat=${stat##*) }
		read -r -a f <<<"$stat"
		local t=$((f[11] + f[12])) # utime + stime, after the pid and comm fields
		# A backend first seen after the command started began with it.
		[ -n "${first[$pid]:-}" ] || first[$pid]=$([ "$started" = 1 ] && echo 0 || echo "$t")
		last[$pid]=$t
	done < <(ps -eo pid=,args=)
}

sample
started=1
start=$(date +%s.%N)
"$@" &
cmd=$!
while kill -0 "$cmd" 2>/dev/null; do
	sample
	sleep 0.1
done
rc=0
wait "$cmd" || rc=$?
sample
end=$(date +%s.%N)
ticks=0
for pid in "${!last[@]}"; do
	ticks=$((ticks + last[$pid] - first[$pid]))
done
awk -v t="$ticks" -v hz="$tck" -v s="$start" -v e="$end" -v n="${#last[@]}" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" \
	'BEGIN { printf "pgcpu: PostgreSQL CPU %.2fs over %d backends in %.2fs wall (load average %s)\n", t / hz, n, e - s, l }' >&2
exit "$rc"
