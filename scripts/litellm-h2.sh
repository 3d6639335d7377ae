#!/usr/bin/env bash
# A second real LiteLLM proxy for the tests, served by Granian (the Rust ASGI server
# LiteLLM ships with) instead of uvicorn: it speaks HTTP/2 by prior knowledge on
# http://, which hookrun uses with HOOKRUN_LLM_HTTP=2. Uses the install and the config
# of ../shared/peers/litellm/start.sh, which must have run first.
#
#   scripts/litellm-h2.sh start   # on 127.0.0.1:${LITELLM_H2_PORT:-4001}, waits until ready
#   scripts/litellm-h2.sh stop
set -euo pipefail
DIR="${LITELLM_PEER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/litellm-peer}"
PORT="${LITELLM_H2_PORT:-4001}"
PIDFILE="$DIR/proxy-h2.pid"
LOG="$DIR/proxy-h2.log"

stop() {
  if [ -f "$PIDFILE" ]; then
    # setsid made the proxy a process group leader: its workers go with it.
    kill -- "-$(cat "$PIDFILE")" 2>/dev/null || true
    rm -f "$PIDFILE"
  fi
}

case "${1:-}" in
  start)
    [ -x "$DIR/venv/bin/litellm" ] || { echo "no LiteLLM in $DIR: run the peer's start.sh first" >&2; exit 1; }
    stop
    # The same offline-safe environment as the peer's own start.sh.
    export LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_MODE=PRODUCTION
    unset DATABASE_URL DIRECT_URL
    cd "$DIR"
    setsid "$DIR/venv/bin/litellm" --config "$DIR/config.yaml" --host 127.0.0.1 --port "$PORT" \
      --num_workers 1 --run_granian > "$LOG" 2>&1 < /dev/null &
    echo $! > "$PIDFILE"
    for _ in $(seq 1 120); do
      if curl -fsS --http2-prior-knowledge "http://127.0.0.1:$PORT/health/liveliness" > /dev/null 2>&1; then
        echo "LiteLLM over HTTP/2 ready on http://127.0.0.1:$PORT (log $LOG)"
        exit 0
      fi
      if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        echo "LiteLLM (Granian) exited during startup; tail of $LOG:" >&2
        tail -30 "$LOG" >&2
        rm -f "$PIDFILE"
        exit 1
      fi
      sleep 0.5
    done
    echo "LiteLLM (Granian) not ready after 60 s; see $LOG" >&2
    stop
    exit 1
    ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
