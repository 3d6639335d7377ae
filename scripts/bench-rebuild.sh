#!/usr/bin/env bash
# Rebuild benchmark: seeds EVENTS synthetic events (default 1,000,000) straight into the
# events table of a fresh scratch database, rebuilds a projection, and prints events/s
# on PostgreSQL and SQLite, and their ratio. Results go in docs/rebuild-benchmark.md.
#
#   scripts/bench-rebuild.sh [EVENTS] [PROJECTION] [INTERLEAVE]
#
# INTERLEAVE (default 0) spreads each execution's events that many executions apart, as
# a busy service stores them; 0 stores them back to back.
#
# PostgreSQL: HOOKRUN_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres)
# names a server where a scratch database can be created (and is dropped afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-1000000}
PROJECTION=${2:-agent_test_executions}
INTERLEAVE=${3:-0}
ADMIN_URL=${HOOKRUN_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BASE_URL=${ADMIN_URL%/*}
DB=hookrun_bench_$$

cargo build --release --quiet
BIN=target/release/hookrun
export HOOKRUN_LOG="warn,sqlx=error"

SQLITE_DIR=$(mktemp -d)
PG_LOG=$(mktemp)
SQLITE_LOG=$(mktemp)
cleanup() {
  rm -rf "$SQLITE_DIR" "$PG_LOG" "$SQLITE_LOG"
  psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "== PostgreSQL ($EVENTS events, $PROJECTION, interleave $INTERLEAVE)"
psql "$ADMIN_URL" -qc "CREATE DATABASE $DB"
HOOKRUN_DATABASE_URL="$BASE_URL/$DB" HOOKRUN_MASTER_KEY=$(head -c 32 /dev/urandom | base64) \
  "$BIN" projections bench --events "$EVENTS" --projection "$PROJECTION" --interleave "$INTERLEAVE" | tee "$PG_LOG"

echo "== SQLite ($EVENTS events, $PROJECTION, interleave $INTERLEAVE)"
HOOKRUN_DATA_DIR="$SQLITE_DIR" \
  "$BIN" projections bench --events "$EVENTS" --projection "$PROJECTION" --interleave "$INTERLEAVE" | tee "$SQLITE_LOG"

rate() { grep ' rebuilt ' "$1" | head -1 | sed -E 's/.*= ([0-9]+) events\/s.*/\1/'; }
PG_RATE=$(rate "$PG_LOG")
SQLITE_RATE=$(rate "$SQLITE_LOG")
echo "== summary"
echo "postgres: $PG_RATE events/s   sqlite: $SQLITE_RATE events/s   postgres/sqlite: $(awk "BEGIN { printf \"%.2f\", $PG_RATE / $SQLITE_RATE }")"
echo "target (postgres >= 50000 events/s): $(awk "BEGIN { print ($PG_RATE >= 50000) ? \"met\" : \"NOT met\" }")"
