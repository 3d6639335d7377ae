# Sourced by the benchmark scripts that drive one server by hand.

# The scratch of one run: D (a new dir under $ROOT, default /tmp, named after $1), PORT
# (a free port on 127.0.0.1), PIDS (processes to stop at exit, with $STOP_SIGNAL,
# default TERM) and DB (a PostgreSQL database to drop at exit, once set). D is removed
# at exit only when REMOVE_SCRATCH is set: the scripts leave profiles and logs there.
bench_scratch() {
  D=$(mktemp -d "${ROOT:-/tmp}/hookrun-$1.XXXX")
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  PIDS=()
  DB=
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${PIDS[@]}"; do kill -s "${STOP_SIGNAL:-TERM}" "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$DB" ] && psql -h 127.0.0.1 -U postgres -qc "drop database if exists $DB with (force)" || true
  [ -n "${REMOVE_SCRATCH:-}" ] && rm -rf "$D"
  return 0
}

# The server's database: HOOKRUN_DATA_DIR is D; with $1 = postgres, a new database
# named $2 (dropped at exit) is HOOKRUN_DATABASE_URL.
bench_database() {
  export HOOKRUN_DATA_DIR=$D
  if [ "$1" = postgres ]; then
    DB=$2
    psql -h 127.0.0.1 -U postgres -qc "create database $DB"
    export HOOKRUN_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB
  fi
}

# Starts the benchmark gateway (answering after $1 ms), `hookrun serve` on
# 127.0.0.1:$PORT (the database is whatever HOOKRUN_DATA_DIR / HOOKRUN_DATABASE_URL
# say), and creates a tenant and one agent with a payload schema.
#   Needs: BENCH, HOOKRUN, D (scratch dir, for the logs), PORT, PIDS (an array).
#   Sets:  SRV (the server's pid), KEY (the tenant's API key), ID and SECRET (the agent's).
serve_one_agent() {
  "$BENCH" gateway --listen 127.0.0.1:0 --delay-ms "$1" > "$D/gateway.out" & PIDS+=($!)
  for _ in $(seq 50); do grep -q listening "$D/gateway.out" && break; sleep 0.1; done
  export HOOKRUN_LISTEN=127.0.0.1:$PORT HOOKRUN_ADMIN_TOKEN=bench-admin \
    HOOKRUN_LLM_BASE_URL=http://$(sed -n 's/listening on //p' "$D/gateway.out") \
    HOOKRUN_MASTER_KEY=${HOOKRUN_MASTER_KEY:-BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=} \
    HOOKRUN_AGENT_QUEUE=100000000 HOOKRUN_MAX_IN_FLIGHT=100000000
  "$HOOKRUN" serve > "$D/server.log" 2>&1 & SRV=$!; PIDS+=($SRV)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.1; done
  KEY=$(curl -sf -H 'Authorization: Bearer bench-admin' -H 'content-type: application/json' \
    -d '{"tenant_id":"bench"}' "http://127.0.0.1:$PORT/api/tenants" | json_field api_key)
  local agent
  agent=$(curl -sf -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
    -d '{"name":"p","system_prompt":"x","llm_config":{"model":"m"},"payload_schema":{"type":"object","required":["ticket_id"]}}' \
    "http://127.0.0.1:$PORT/api/agents")
  ID=$(echo "$agent" | json_field agent_id); SECRET=$(echo "$agent" | json_field webhook_secret)
}

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
