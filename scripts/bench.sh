#!/usr/bin/env bash
# Benchmarks: builds hookrun and the bench tool (bench/, its own package) in release
# mode, then runs every scenario on SQLite and PostgreSQL, prints the tables and the
# targets, and writes BENCHMARKS.md (figures only; the analysis in it is kept).
#
#   scripts/bench.sh              # full: medians of 3 runs (~20 min on 2 cores)
#   scripts/bench.sh --quick      # 1 run, small counts, writes no file (~80 s)
#   scripts/bench.sh --smoke      # CI: debug builds, --quick accept and pipeline only;
#                                 # checks the suite still works (exit 1 if a scenario
#                                 # cannot run), says nothing about speed
#   scripts/bench.sh --runs 5 --scenarios accept,pipeline --backends sqlite
#
# Everything it starts listens on 127.0.0.1 and is stopped at the end; every pass is
# bounded in requests and time. PostgreSQL is expected on 127.0.0.1:5432 as user
# postgres (override with BENCH_PG_URL, a maintenance database URL); each server gets
# a fresh database, dropped afterwards. Other options: see
# `bench/target/release/hookrun-bench suite --help`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Fan-in holds 10,000 connections to the gateway open at once.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PROFILE=release
if [ "${1:-}" = "--smoke" ]; then
  shift
  PROFILE=debug
  set -- --quick --scenarios accept,pipeline "$@"
fi
if [ "$PROFILE" = debug ]; then
  # The server binary `cargo test` builds (target/debug/hookrun, with the features the
  # tests' dependencies add): after the tests, as in CI, it is already there, where
  # `cargo build` would compile hookrun and part of its dependencies once more.
  cargo test --quiet --no-run
  cargo build --quiet --manifest-path bench/Cargo.toml
else
  cargo build --release --quiet --bin hookrun
  cargo build --release --quiet --manifest-path bench/Cargo.toml
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "bench: PostgreSQL is not answering on 127.0.0.1:5432" >&2
fi

exec bench/target/$PROFILE/hookrun-bench suite \
  --hookrun target/$PROFILE/hookrun \
  --pg-url "${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}" \
  --commit "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src migrations Cargo.toml Cargo.lock || echo '+dirty')" \
  --command-line "scripts/bench.sh${*:+ $*}" \
  "$@"
