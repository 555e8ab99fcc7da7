#!/usr/bin/env bash
# deploy/compose-smoke.sh: build the image and run deploy/docker-compose.yml for
# real, then the README's curl walkthrough against the published gateway, then
# take everything down again (also on failure or timeout). Run as root from
# anywhere:  deploy/compose-smoke.sh
#
# It drives Debian's podman through Debian's docker-compose 1.29 (podman's
# Docker-compatible API socket). The workarounds below exist ONLY because this
# build machine reaches no container registry and runs no systemd; a user runs
# `docker compose up` as usual:
#  - base images: debian:12 and debian:12-slim are made with debootstrap from
#    the Debian mirror, and redis:7.2-bookworm is a stand-in built from Debian's
#    redis-server, each only when missing and tagged with the names that
#    deploy/Dockerfile and docker-compose.yml use (they are kept as a cache);
#  - podman's own settings (a private CONTAINERS_CONF): runc (crun rejects this
#    sandbox's hybrid cgroups), netavark (service-name DNS), finite rlimits;
#  - podman schedules healthchecks with systemd timers: without systemd a loop
#    here runs `podman healthcheck run` so that depends_on: service_healthy
#    can become true.
# Environment: GATEWAY_PUBLISHED_PORT (default 3000, or a free port when 3000 is
# taken), SMOKE_TIMEOUT_S (whole run, default 840), SMOKE_USERS_ONLY=1 (stop
# after the users walkthrough), KEEP_IMAGE=1 (keep the built image).
set -euo pipefail
cd "$(dirname "$0")/.."

# The whole run is bounded: re-run this script under timeout(1).
if [ -z "${NESTC_SMOKE_BOUNDED:-}" ]; then
  export NESTC_SMOKE_BOUNDED=1
  exec timeout --kill-after=60 "${SMOKE_TIMEOUT_S:-840}" "$0" "$@"
fi

log() { echo "smoke: $(date +%T) $*" >&2; }
die() { log "FAILED: $*"; exit 1; }
started=$(date +%s)

# ---- packages and commands ------------------------------------------------------
# scripts/deps.list, step smoke: installs what is missing (iptables included:
# netavark runs it) and fails, naming the command and its package, when a
# command this script or podman runs is not there.
log "checking packages and commands (scripts/deps.sh smoke)"
scripts/deps.sh smoke || die "scripts/deps.sh smoke: a package or command is missing (above)"
[ "$(id -u)" = 0 ] || die "podman here runs as root: run as root"

# ---- private podman settings and state --------------------------------------------------
id=$$-$(date +%s)
project=nestcsmoke$$
work=$(mktemp -d /tmp/nestc-smoke.XXXXXX)
export CONTAINERS_CONF=$work/containers.conf
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[network]
network_backend = "netavark"
[engine]
runtime = "runc"
EOF
image=localhost/nestc:smoke-$id
compose=(docker-compose -p "$project" -f deploy/docker-compose.yml)
service_pid="" ticker_pid="" up_started=0 ok=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ "$up_started" = 1 ]; then
    if [ "$ok" != 1 ]; then
      log "state and logs of the stack:"
      timeout 30 "${compose[@]}" ps >&2
      timeout 60 "${compose[@]}" logs --no-color --tail=80 >&2
    fi
    log "taking the stack down"
    timeout 120 "${compose[@]}" down -v --remove-orphans -t 15 >/dev/null 2>&1
    # whatever compose could not remove (e.g. after a timeout)
    for c in $(podman ps -aq --filter "label=com.docker.compose.project=$project"); do
      timeout 60 podman rm -f -t 5 "$c" >/dev/null 2>&1
    done
    for v in $(podman volume ls -q --filter "label=com.docker.compose.project=$project"); do
      podman volume rm -f "$v" >/dev/null 2>&1
    done
    for n in $(podman network ls -q --filter "label=com.docker.compose.project=$project"); do
      podman network rm -f "$n" >/dev/null 2>&1
    done
  fi
  [ -n "$ticker_pid" ] && kill "$ticker_pid" 2>/dev/null && wait "$ticker_pid" 2>/dev/null
  if [ -n "$service_pid" ]; then
    kill "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
  fi
  if [ "${KEEP_IMAGE:-0}" != 1 ]; then
    podman rmi -f "$image" >/dev/null 2>&1
  fi
  rm -rf "$work"
  log "done in $(($(date +%s) - started)) s, exit status $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- base images (only because no registry is reachable here) -------------------------------
rootfs_image() { # NAME...: debootstrap bookworm once, import it under each NAME
  local dir=$work/rootfs
  log "making ${*} with debootstrap (no registry reachable)"
  timeout 600 debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap"; }
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -c . | podman import -q --change 'CMD ["bash"]' \
    --change 'LABEL nestc.stand-in=debootstrap' - "$1" >/dev/null
  local n
  for n in "${@:2}"; do podman tag "$1" "$n"; done
  rm -rf "$dir"
}
want=()
for n in docker.io/library/debian:12 docker.io/library/debian:12-slim; do
  podman image exists "$n" || want+=("$n")
done
[ ${#want[@]} -eq 0 ] || rootfs_image "${want[@]}"
redis_image=docker.io/library/redis:7.2-bookworm
if ! podman image exists "$redis_image"; then
  log "making a stand-in $redis_image from Debian's redis-server"
  mkdir -p "$work/redis"
  cat >"$work/redis/Containerfile" <<'EOF'
FROM docker.io/library/debian:12-slim
RUN apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      redis-server >/dev/null && \
    rm -rf /var/lib/apt/lists/* && install -d -o redis -g redis /data
LABEL nestc.stand-in="Debian redis-server, for deploy/compose-smoke.sh"
WORKDIR /data
EXPOSE 6379
CMD ["redis-server"]
EOF
  timeout 300 podman build -q --pull=never -t "$redis_image" "$work/redis" >/dev/null ||
    die "building the redis stand-in"
fi

# ---- the image ------------------------------------------------------------------------
log "building $image from deploy/Dockerfile"
if ! timeout 900 podman build --format docker --pull=never -f deploy/Dockerfile -t "$image" . \
     >"$work/build.log" 2>&1; then
  tail -40 "$work/build.log" >&2
  die "podman build -f deploy/Dockerfile"
fi
log "built $image ($(($(date +%s) - started)) s so far)"

# ---- the Docker API for docker-compose ----------------------------------------------------
sock=$work/podman.sock
podman system service --time=0 "unix://$sock" >"$work/service.log" 2>&1 &
service_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || die "podman system service did not create $sock"
export DOCKER_HOST=unix://$sock COMPOSE_HTTP_TIMEOUT=120
export NESTC_IMAGE=$image

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -z "${GATEWAY_PUBLISHED_PORT:-}" ]; then
  GATEWAY_PUBLISHED_PORT=3000
  if ! port_free 3000; then
    GATEWAY_PUBLISHED_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  fi
fi
export GATEWAY_PUBLISHED_PORT
base=http://127.0.0.1:$GATEWAY_PUBLISHED_PORT

# podman runs healthchecks from systemd timers; no systemd here, so run them.
(
  while :; do
    for c in $(podman ps -q --filter "label=com.docker.compose.project=$project" 2>/dev/null); do
      timeout 10 podman healthcheck run "$c" >/dev/null 2>&1 || true
    done
    sleep 2
  done
) &
ticker_pid=$!

log "docker-compose up (project $project, gateway on port $GATEWAY_PUBLISHED_PORT)"
up_started=1
timeout 300 "${compose[@]}" up -d --no-build || die "docker-compose up"

# ---- the walkthrough ------------------------------------------------------------------------
# req METHOD PATH [JSON]: sets $status and $body
req() {
  local args=(-s -o "$work/body" -w '%{http_code}' --max-time 15 -X "$1" "$base$2")
  [ $# -ge 3 ] && args+=(-H 'content-type: application/json' -d "$3")
  status=$(curl "${args[@]}") || status=000
  body=$(cat "$work/body" 2>/dev/null || true)
  log "$1 $2 -> $status $body"
}
# expect STATUS[|STATUS] PYTHON_EXPR_ON_j: the last reply has this status and the
# expression holds
expect() {
  [[ "|$1|" == *"|$status|"* ]] || die "expected HTTP $1, got $status: $body"
  if [ -n "${2:-}" ]; then
    python3 -c 'import json,sys; j=json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2]) else 1)' \
      "$body" "$2" || die "reply does not satisfy $2: $body"
  fi
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$body" "$1"; }
# until_ok SECONDS METHOD PATH STATUS [EXPR]: poll until the reply matches
until_ok() {
  local deadline=$(($(date +%s) + $1)) st=$4 ex=${5:-True}
  while :; do
    req "$2" "$3"
    if [ "$status" = "$st" ] && python3 -c 'import json,sys; j=json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2]) else 1)' "$body" "$ex" 2>/dev/null; then
      return 0
    fi
    [ "$(date +%s)" -lt "$deadline" ] || die "$2 $3 did not give $st ($ex) within $1 s"
    sleep 1
  done
}

until_ok 60 GET /health 200 'j.get("status") == "ok"'
until_ok 60 GET /ready 200

log "walkthrough: users"
req POST /users '{"email":"ada@example.com","name":"Ada"}'
expect 201 'j["email"] == "ada@example.com" and j["name"] == "Ada" and j["id"]'
user=$(field id)
req GET "/users/$user"
expect 200 "j['id'] == '$user'"
req GET '/users?page=1&limit=10'
expect 200 "j['total'] == 1 and j['users'][0]['id'] == '$user'"
req GET /users/user_doesnotexist
expect 404

if [ "${SMOKE_USERS_ONLY:-0}" = 1 ]; then
  log "SMOKE_USERS_ONLY=1: skipping orders, payments and notifications"
else
  log "walkthrough: products, orders (the saga), payments, notifications"
  req POST /products '{"id":"p1","name":"Keyboard","price":1999,"stock":10}'
  expect 201 'j["stock"] == 10 and j["reserved"] == 0'
  req POST /products '{"id":"p2","name":"Mouse","price":500,"stock":25}'
  expect 201
  # No client price: the catalogue prices the order.
  req POST /orders "{\"userId\":\"$user\",\"items\":[{\"productId\":\"p1\",\"quantity\":2}],\"paymentMethod\":\"tok_visa\"}"
  [ "$status" != 404 ] || die "POST /orders is 404: the gateway has no order routes (yet?)"
  expect 201 'j["status"] == "confirmed" and j["totalAmount"] == 3998 and j["paymentId"]'
  order=$(field id)
  payment=$(field paymentId)
  req GET /products/p1
  expect 200 'j["stock"] == 8 and j["reserved"] == 0'
  req GET "/orders/$order/saga"
  expect 200 'j["state"] == "done" and [h["state"] for h in j["history"]][-1] == "done"'
  req POST /orders "{\"userId\":\"$user\",\"items\":[{\"productId\":\"p1\",\"quantity\":99}],\"paymentMethod\":\"tok_visa\"}"
  expect 409 'j["code"] == "OUT_OF_STOCK"'
  req POST /orders "{\"userId\":\"$user\",\"items\":[{\"productId\":\"p1\",\"quantity\":1}],\"paymentMethod\":\"tok_chargeDeclined\"}"
  expect 201 'j["status"] == "cancelled" and j["cancelReason"] == "card_declined"'
  req GET /products/p1
  expect 200 'j["stock"] == 8 and j["reserved"] == 0'
  req GET "/users/$user/orders"
  expect 200 "j['total'] == 3"
  req GET "/orders/$order"
  expect 200 'j["status"] == "confirmed" and j["totalAmount"] == 3998'
  req GET "/payments/$payment"
  expect 200 "j['id'] == '$payment'"
  # events travel through Redis: the notifications arrive shortly after
  until_ok 30 GET "/users/$user/notifications" 200 'j["total"] >= 2'
  req PATCH "/orders/$order" '{"status":"shipped"}'
  expect 200 'j["status"] == "shipped"'
  req POST "/orders/$order/refund"
  expect 409
  req POST /orders "{\"userId\":\"$user\",\"items\":[{\"productId\":\"p2\",\"quantity\":1,\"price\":500}],\"paymentMethod\":\"tok_visa\"}"
  expect 201 'j["status"] == "confirmed"'
  order2=$(field id)
  req POST "/orders/$order2/refund"
  expect '200|201' 'j["status"] == "cancelled"'
  until_ok 30 GET "/orders/$order2" 200 'j["status"] == "cancelled"'
fi

log "deployment: non-root, read-only root filesystem, data kept in the volume across a restart"
uctr=$("${compose[@]}" ps -q user)
[ "$(podman exec "$uctr" id -u)" = 10001 ] || die "user-service does not run as uid 10001"
if podman exec "$uctr" sh -c ': >/probe' 2>/dev/null; then die "the root filesystem is writable"; fi
podman exec "$uctr" test -s /data/user.db || die "no /data/user.db in the user container"
timeout 60 "${compose[@]}" restart user >/dev/null 2>&1 || die "docker-compose restart user"
until_ok 60 GET "/users/$user" 200 "j['id'] == '$user'"
until_ok 60 GET /ready 200

log "graceful stop: every daemon exits 0 on SIGTERM"
timeout 120 "${compose[@]}" stop >/dev/null 2>&1 || die "docker-compose stop"
for svc in user order payment notification inventory gateway; do
  c=$("${compose[@]}" ps -q "$svc")
  code=$(podman inspect "$c" --format '{{.State.ExitCode}}')
  [ "$code" = 0 ] || die "$svc exited $code on SIGTERM"
done
ok=1
log "PASSED: image, compose stack and walkthrough"
