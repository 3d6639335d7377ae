#!/usr/bin/env bash
# Reproduces the evidence in BENCHMARKS.md "Bottlenecks": one hookrun server, one agent
# with a payload schema, a stalled gateway (only the accept path runs; DELAY_MS=0 runs
# the whole pipeline), and a timed webhook pass from the bench load generator, with
# optional probes.
#
#   scripts/bench-profile.sh sqlite|postgres SECONDS CONNECTIONS
#   PERF=1    perf record -g of the server during the pass (report in the data dir)
#   STRACE=1  count fsync calls of the server during the pass (wall time per call)
#   WRITES=1  bytes the server writes during the pass, per file (strace of pwrite64)
#   TMPFS=1   SQLite data dir on /dev/shm (fsync costs nothing: isolates its share)
#   SCHED=1   per server thread: CPU time and time spent runnable but waiting for a core
#             (/proc/PID/task/*/schedstat), in total and per webhook
#   PGLOCKS=1 sample pg_locks / wait events of the server's backends during the pass
#   SLOW_MS=N list each 100 ms of the pass with answers slower than N ms
#   RATE=N    pace the pass at N webhooks/s in total (latency from the scheduled send time)
#   DELAY_MS=N  the gateway answers after N ms (default 60000: it stalls). With 0, pace
#             the pass below what the agent runs (HOOKRUN_AGENT_CONCURRENCY is passed on)
#   HOOKRUN=path  the server binary (default target/release/hookrun), for A/B runs
#
# Always printed: the server's CPU, the bytes it wrote to disk (SQLite's WAL and
# checkpoints) and, on PostgreSQL, the WAL it generated: per webhook these move far
# less between runs than the rates do.
#
# Needs scripts/bench.sh to have built target/release/hookrun and the bench tool.
# Listens on 127.0.0.1 only; the pass is bounded by SECONDS (at most 60).
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=$1 SECS=$2 CONNS=$3
BENCH=bench/target/release/hookrun-bench HOOKRUN=${HOOKRUN:-target/release/hookrun}
ROOT=/tmp; [ -n "${TMPFS:-}" ] && ROOT=/dev/shm REMOVE_SCRATCH=1
. scripts/one-agent.sh
bench_scratch profile
bench_database "$BACKEND" "hookrun_profile_$$"
serve_one_agent "${DELAY_MS:-60000}"

[ -n "${PERF:-}" ] && { perf record -F 499 -g -p "$SRV" -o "$D/perf.data" -- sleep "$SECS" > /dev/null 2>&1 & PIDS+=($!); }
[ -n "${STRACE:-}" ] && { strace -f -c -w -e trace=fsync,fdatasync -p "$SRV" -o "$D/strace.txt" 2> /dev/null & ST=$!; }
[ -n "${WRITES:-}" ] && { strace -f -y -e trace=pwrite64 -e signal=none -p "$SRV" -o "$D/writes.txt" 2> /dev/null & WT=$!; }
[ -n "${PGLOCKS:-}" ] && { (sleep 1; for _ in 1 2 3; do psql -h 127.0.0.1 -U postgres -Atc \
  "select coalesce(wait_event_type,'-')||':'||coalesce(wait_event,'-'), count(*) from pg_stat_activity where datname = '$DB' and state <> 'idle' group by 1 order by 2 desc" | tr '\n' ' '; echo; sleep 0.5; done) & }
sched() { for t in /proc/"$SRV"/task/*; do echo "${t##*/} $(tr ' ' _ < "$t/comm") $(cat "$t/schedstat")"; done; }
[ -n "${SCHED:-}" ] && sched > "$D/sched0.txt"
read -r U0 S0 < <(awk '{print $14, $15}' "/proc/$SRV/stat"); T0=$(date +%s.%N)
W0=$(awk '/^write_bytes/ {print $2}' "/proc/$SRV/io")
[ -n "$DB" ] && L0=$(psql -h 127.0.0.1 -U postgres -Atc 'select pg_current_wal_lsn()')
"$BENCH" --threads 1 load --addr "127.0.0.1:$PORT" --agent "$ID" --secret "$SECRET" -c "$CONNS" --seconds "$SECS" ${RATE:+--rate "$RATE"} ${SLOW_MS:+--slow-ms "$SLOW_MS"} | tee "$D/load.out"
[ -n "${SCHED:-}" ] && sched > "$D/sched1.txt"
T1=$(date +%s.%N); read -r U1 S1 < <(awk '{print $14, $15}' "/proc/$SRV/stat")
W1=$(awk '/^write_bytes/ {print $2}' "/proc/$SRV/io")
python3 -c "print('server CPU: %.0f%% of one core' % ((($U1-$U0)+($S1-$S0))/($T1-$T0)))"  # clock ticks: 100/s
# Bytes the server's writes sent to the disk (SQLite: WAL and checkpoints; PostgreSQL's
# own writes are another process's).
echo "server wrote $(( (W1 - W0) / 1024 )) KiB to disk during the pass"
[ -n "$DB" ] && psql -h 127.0.0.1 -U postgres -Atc \
  "select 'PostgreSQL wrote ' || (pg_wal_lsn_diff(pg_current_wal_lsn(), '$L0') / 1024)::bigint || ' KiB of WAL during the pass (all databases)'"
[ -n "${STRACE:-}" ] && { kill -INT "$ST"; wait "$ST" || true; cat "$D/strace.txt"; }
if [ -n "${WRITES:-}" ]; then
  kill -INT "$WT"; wait "$WT" || true
  python3 - "$D/writes.txt" <<'PY'
import collections, re, sys
calls, total = collections.Counter(), collections.Counter()
for line in open(sys.argv[1]):
    m = re.search(r'pwrite64\(\d+<([^>]*)>.*\) = (\d+)$', line)
    if m:
        calls[m[1]] += 1
        total[m[1]] += int(m[2])
for path, n in total.most_common():
    print(f"pwrite {path.rsplit('/', 1)[-1]}: {calls[path]} calls, {n // 1024} KiB")
PY
fi
if [ -n "${SCHED:-}" ]; then
  # schedstat: ns on a core, ns runnable and waiting, times scheduled; one row per
  # thread (name/tid), a thread that started during the pass counted from zero.
  python3 - "$D/sched0.txt" "$D/sched1.txt" "$(grep -o 'answers: 202×[0-9]*' "$D/load.out" | grep -o '[0-9]*$')" <<'PY'
import sys
def load(path):
    rows = {}
    for line in open(path):
        tid, name, *v = line.split()
        rows[f"{name}/{tid}"] = [int(x) for x in v]
    return rows
before, after = load(sys.argv[1]), load(sys.argv[2])
n = int(sys.argv[3] or 1)
by = {k: [a - b for a, b in zip(v, before.get(k, [0, 0, 0]))] for k, v in after.items()}
print(f"{'thread':<24}{'cpu ms':>9}{'wait ms':>9}{'switches':>10}{'wait us/webhook':>17}")
for name, (cpu, wait, runs) in sorted(by.items(), key=lambda kv: -kv[1][1]):
    if cpu or wait:
        print(f"{name:<24}{cpu / 1e6:>9.0f}{wait / 1e6:>9.0f}{runs:>10}{wait / 1e3 / n:>17.1f}")
PY
fi
if [ -n "${PERF:-}" ]; then
  sleep 1
  perf report -i "$D/perf.data" --no-children --sort comm,dso --stdio 2> /dev/null | grep -E '^ +[0-9]' | head -12
  perf report -i "$D/perf.data" --children --sort sym --stdio -g none 2> /dev/null | grep -E '^ +[0-9]' | head -30
fi
echo "data dir: $D"
