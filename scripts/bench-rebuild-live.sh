#!/usr/bin/env bash
# Webhooks while a running server rebuilds its read models. A database of EVENTS
# synthetic events is seeded once (kept for the next run), copied, and its read models
# marked as written by another version of the code; a server started on the copy
# rebuilds them in the background while a paced pass of signed webhooks (stalled
# gateway: only the accept path runs) measures the answers. A second pass follows once
# the rebuilds are done. Results are in BENCHMARKS.md (items 45, 46).
#
#   scripts/bench-rebuild-live.sh sqlite|postgres [RATE] [SECONDS]
#   RATE      webhooks/s for both passes (default 2000, about half the maximum here)
#   SECONDS   length of the pass during the rebuild (default 20; the second is 8 s)
#   EVENTS    events seeded (default 1000000); INTERLEAVE executions apart (default 1500)
#   HOOKRUN   the server binary (default target/release/hookrun), for A/B runs
#   SLOW_MS=N also list each 100 ms of a pass with answers slower than N ms
#
# Needs target/release/hookrun and the bench tool (scripts/bench.sh builds both).
# PostgreSQL: a server on 127.0.0.1 as user postgres; the seed database is kept as a
# template (hookrun_live_seed_*); drop it by hand when done.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=$1 RATE=${2:-2000} SECS=${3:-20}
EVENTS=${EVENTS:-1000000} INTERLEAVE=${INTERLEAVE:-1500}
BENCH=bench/target/release/hookrun-bench HOOKRUN=${HOOKRUN:-target/release/hookrun}
export HOOKRUN_MASTER_KEY=BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=
export HOOKRUN_LOG="info,sqlx=error"
SEED=hookrun_live_seed_${EVENTS}_${INTERLEAVE}
. scripts/one-agent.sh
STOP_SIGNAL=KILL REMOVE_SCRATCH=1
bench_scratch live
pg() { psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
OUTDATED="UPDATE projection_checkpoints SET version = version + 1000"

if [ "$BACKEND" = sqlite ]; then
  S=/tmp/$SEED
  if [ ! -f "$S/done" ]; then
    rm -rf "$S"; mkdir -p "$S"
    echo "seeding $EVENTS events in $S (once)"
    HOOKRUN_DATA_DIR=$S "$HOOKRUN" projections bench --events "$EVENTS" --projection all \
      --interleave "$INTERLEAVE" 2>/dev/null | grep rebuilt
    touch "$S/done"
  fi
  cp -a "$S/." "$D/"
  sqlite3 "$D/hookrun.db" "$OUTDATED"
  export HOOKRUN_DATA_DIR=$D
else
  if [ -z "$(pg -d postgres -c "select 1 from pg_database where datname = '$SEED'")" ]; then
    echo "seeding $EVENTS events in database $SEED (once)"
    pg -d postgres -c "create database $SEED"
    HOOKRUN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$SEED "$HOOKRUN" projections bench \
      --events "$EVENTS" --projection all --interleave "$INTERLEAVE" 2>/dev/null | grep rebuilt
  fi
  DB=hookrun_live_$$
  pg -d postgres -c "create database $DB template $SEED"
  pg -d "$DB" -c "$OUTDATED"
  export HOOKRUN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB HOOKRUN_DATA_DIR=$D
fi

serve_one_agent 60000
rebuilding() {
  curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/api/projections" |
    python3 -c "import json,sys; print(sum(p['rebuilding'] is not None for p in json.load(sys.stdin)['projections']))"
}
pass() {
  "$BENCH" --threads 1 load --addr "127.0.0.1:$PORT" --agent "$ID" --secret "$SECRET" -c 32 \
    --rate "$RATE" ${SLOW_MS:+--slow-ms "$SLOW_MS"} "$@"
}

echo "== $BACKEND, $RATE webhooks/s while $(rebuilding) read models rebuild ($EVENTS events)"
pass --seconds "$SECS"
echo "read models still rebuilding after the pass: $(rebuilding)"
for _ in $(seq 600); do [ "$(rebuilding)" = 0 ] && break; sleep 0.5; done
echo "== $BACKEND, $RATE webhooks/s after the rebuilds"
pass --seconds 8
# How long each rebuild took, from the server's log.
sed 's/\x1b\[[0-9;]*m//g' "$D/server.log" | python3 -c '
import re, sys
from datetime import datetime
start = {}
for line in sys.stdin:
    m = re.match(r"(\S+)Z .*?(version changed: rebuilding|read model rebuilt).*projection=\"(\w+)\"", line)
    if not m:
        continue
    t = datetime.fromisoformat(m[1])
    if m[2].startswith("version"):
        start[m[3]] = t
    elif m[3] in start:
        swap = re.search(r"swap_ms=(\d+)", line)
        held = f", swap held the live table {swap[1]} ms" if swap else ""
        print(f"rebuilt {m[3]} in {(t - start[m[3]]).total_seconds():.1f} s{held}")
'
