#!/usr/bin/env bash
# Crash test: builds tollgate, runs it on PostgreSQL under webhook and
# gate-check load, kill -9s it N times at random moments (default 20; the
# suite does 3), and checks that every delivery answered 202 is stored once
# and normalized, every answered gate decision is in the audit chain, and
# `tollgate audit verify` passes (cmd/tollgate/crash_test.go).
#   scripts/crash.sh [KILLS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/toolchain.sh
TOLLGATE_CRASH_KILLS="${1:-20}" TOLLGATE_TEST_RACE=0 exec ./scripts/test.sh ./cmd/tollgate -run '^TestCrashKill9$' -v
