#!/usr/bin/env bash
# Instructions the server executes per accepted webhook, counted by callgrind: a figure
# that does not move with the machine's speed, unlike the rates (BENCHMARKS.md, item 50).
# One hookrun server under valgrind, one agent with a payload schema, a stalled gateway
# (only the accept path runs), a few warm-up webhooks, then a pass of SECONDS at as many
# webhooks as the server answers (it runs ~30x slower under valgrind, so group commits
# fill as they do at full speed natively); counting covers that pass only.
#
#   scripts/bench-instructions.sh sqlite|postgres [SECONDS=10] [CONNECTIONS=64]
#   RATE=N        pace the pass at N webhooks/s instead (small batches)
#   HOOKRUN=path  the server binary (default target/release/hookrun), for A/B runs
#   OUT=path      keep the callgrind profile there (default: in the scratch dir)
#
# Prints the count per webhook and the functions with the most instructions, inclusive
# (`callgrind_annotate --inclusive=yes OUT` shows the rest). SHA-256 is overcounted:
# valgrind hides the CPU's SHA instructions, so the hashes run in software here.
# Needs valgrind and scripts/bench.sh's builds.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=$1 SECS=${2:-10} CONNS=${3:-64}
BENCH=bench/target/release/hookrun-bench
REAL=$(realpath "${HOOKRUN:-target/release/hookrun}")
. scripts/one-agent.sh
bench_scratch instructions
OUT=${OUT:-$D/callgrind.out}

# valgrind in front of the server; counting starts switched off.
cat > "$D/hookrun" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$OUT "$REAL" "\$@"
EOF
chmod +x "$D/hookrun"
HOOKRUN=$D/hookrun

bench_database "$BACKEND" "hookrun_instructions_$$"
serve_one_agent 60000

load() { "$BENCH" --threads 1 load --addr "127.0.0.1:$PORT" --agent "$ID" --secret "$SECRET" "$@"; }
# Warm up: the agent's actor, its compiled schema and the caches exist before counting.
load -c 2 --seconds 3 --rate 20 > /dev/null
callgrind_control -i on "$SRV" > /dev/null 2>&1
load -c "$CONNS" --seconds "$SECS" ${RATE:+--rate "$RATE"} | tee "$D/load.out"
# The last answers may leave work behind (read models, audit rows): let it finish
# before counting stops, as it belongs to the webhooks counted.
for _ in $(seq 50); do
  BEFORE=$(awk '{print $14 + $15}' "/proc/$SRV/stat"); sleep 0.2
  [ "$(awk '{print $14 + $15}' "/proc/$SRV/stat")" -le "$((BEFORE + 2))" ] && break
done
callgrind_control -d "$SRV" > /dev/null 2>&1
for _ in $(seq 50); do [ -s "$OUT.1" ] && break; sleep 0.2; done
ACCEPTED=$(sed -n 's/.*202×\([0-9]*\).*/\1/p' "$D/load.out")
TOTAL=$(callgrind_annotate "$OUT.1" 2> /dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$BACKEND: $TOTAL instructions for $ACCEPTED accepted webhooks: $((TOTAL / ACCEPTED)) per webhook"
echo "profile: $OUT.1"
callgrind_annotate --inclusive=yes "$OUT.1" 2> /dev/null | grep 'hookrun::' | grep -v '=>' | head -25 |
  sed 's|/[^ ]*/src/||; s| \[[^]]*\]$||' | cut -c1-160
