#!/usr/bin/env bash
# Chaos run: real hookrun processes killed with SIGKILL mid-flight (one node on SQLite
# restarted; two nodes on one PostgreSQL database, one killed). Prints, per run:
# accepted, terminal, lost, duplicated completed calls, double claims, calls repeated
# after the crash, and the longest 202-to-terminal time. Needs PostgreSQL (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test integration chaos:: -- --nocapture --test-threads 1 2>&1 | grep -E '^chaos:|^test |test result'
