#!/usr/bin/env bash
# stack.sh BUILD_DIR: start every daemon of the suite from BUILD_DIR, in
# dependency order, each waiting until the previous one listens; stop them all
# (SIGTERM, newest first) when one dies or on Ctrl-C. Once the gateway is up
# it creates the demo products (scripts/demo-products.sh).
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

start() { # start NAME PORT COMMAND [ARGS...]
  local name=$1 port=$2
  shift 2
  "$@" & pids+=($!)
  wait_port 127.0.0.1 "$port"
  echo "stack: $name is up on port $port" >&2
}

# Redis carries the events. Reuse one that already listens there (e.g. the
# distribution's service); otherwise run a private one: pub/sub stores
# nothing, so it needs no persistence.
: "${REDIS_PORT:=6379}"
export REDIS_HOST=${REDIS_HOST:-127.0.0.1} REDIS_PORT
if (exec 3<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT") 2>/dev/null; then
  echo "stack: using the redis already listening on $REDIS_HOST:$REDIS_PORT" >&2
else
  redis_args=(--port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning)
  [ -n "${REDIS_PASSWORD:-}" ] && redis_args+=(--requirepass "$REDIS_PASSWORD")
  start redis "$REDIS_PORT" redis-server "${redis_args[@]}"
fi

start user "${USER_SERVICE_PORT:=3001}" "$build/services/user/user-service"
start inventory "${INVENTORY_SERVICE_PORT:=3005}" "$build/services/inventory/inventory-service"
start payment "${PAYMENT_SERVICE_PORT:=3003}" "$build/services/payment/payment-service"
start notification "${NOTIFICATION_SERVICE_PORT:=3004}" \
  "$build/services/notification/notification-service"
start order "${ORDER_SERVICE_PORT:=3002}" "$build/services/order/order-service"
start gateway "${GATEWAY_PORT:=3000}" "$build/gateway/gateway"
# The README's walkthroughs use these products. They persist in $DATA_DIR, so
# a later run finds them there (409, fine); any other answer stops the stack.
if ! "$(dirname "$0")/demo-products.sh" "http://127.0.0.1:$GATEWAY_PORT"; then
  echo "stack: ERROR: could not create the demo products (see above); stopping" >&2
  exit 1
fi
echo "stack: ready: curl -s localhost:$GATEWAY_PORT/health" >&2
wait -n "${pids[@]}" || true
echo "stack: a daemon exited; stopping the others" >&2
