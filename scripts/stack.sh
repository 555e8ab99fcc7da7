#!/usr/bin/env bash
# stack.sh BUILD_DIR: start every daemon of the suite from BUILD_DIR, in
# dependency order, each waiting until the previous one listens; stop them all
# (SIGTERM, newest first) when one dies or on Ctrl-C.
set -euo pipefail
build=${1:?usage: stack.sh BUILD_DIR}
export DATA_DIR=${DATA_DIR:-$PWD/var/data}
mkdir -p "$DATA_DIR"
pids=()

stop_all() {
  trap - INT TERM EXIT
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all INT TERM EXIT

# wait_port HOST PORT: until something accepts connections there (20 s).
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "stack: nothing listens on $1:$2 after 20 s" >&2
  return 1
}

start() { # start NAME PORT BINARY
  "$3" & pids+=($!)
  wait_port 127.0.0.1 "$2"
  echo "stack: $1 is up on port $2" >&2
}

start user "${USER_SERVICE_PORT:=3001}" "$build/services/user/user-service"
start gateway "${GATEWAY_PORT:=3000}" "$build/gateway/gateway"
echo "stack: ready: curl -s localhost:$GATEWAY_PORT/health" >&2
wait -n "${pids[@]}" || true
echo "stack: a daemon exited; stopping the others" >&2
