#!/usr/bin/env bash
# deploy/check.sh: offline checks of everything under deploy/ (no container
# engine, no cluster, no registry but Debian's and npm's). Run from anywhere:
#   deploy/check.sh
# 1. docker-compose config -q, and yamllint on deploy/;
# 2. kubectl kustomize deploy/k8s renders; every object (and the optional
#    Ingress) validates against the Kubernetes JSON schemas and has no unknown
#    field (deploy/validate); the broken manifests in deploy/validate/testdata
#    ARE rejected, each for its stated reason;
# 3. environment variables and ports agree across the sources, compose and
#    Kubernetes (deploy/validate/consistency.mjs), and deliberately broken
#    copies are caught;
# 4. the Dockerfile builds with the same scripts as `make run` (scripts/run.sh).
# Installs what is missing (scripts/deps.sh check: docker-compose, yamllint,
# kubernetes-client; Node.js >= 20 must be there already) and npm ci's
# deploy/validate. Exits non-zero, naming each failed check, when anything fails.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=()

step() { echo "== $*"; }
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*" >&2; failed+=("$*"); }

# ---- tools ----------------------------------------------------------------------
# scripts/deps.list, step check: docker-compose, yamllint, kubectl, Node.js >= 20.
scripts/deps.sh check || { echo "check: a package or command is missing (above)" >&2; exit 1; }
v=deploy/validate
if [ ! -d $v/node_modules ] || [ $v/package-lock.json -nt $v/node_modules/.package-lock.json ]; then
  (cd $v && npm ci --no-audit --no-fund --loglevel=error) || { echo "check: npm ci failed" >&2; exit 1; }
fi

# ---- 1. compose and YAML -----------------------------------------------------------
step "docker-compose config"
if docker-compose -f deploy/docker-compose.yml config -q; then ok "docker-compose config -q"
else bad "docker-compose -f deploy/docker-compose.yml config -q"; fi

step "yamllint"
if yamllint --strict -c deploy/.yamllint deploy; then ok "yamllint deploy/"
else bad "yamllint -c deploy/.yamllint deploy"; fi

# ---- 2. Kubernetes -------------------------------------------------------------------
step "kustomize ($(kubectl version --client 2>/dev/null | head -n 1))"
rendered=$tmp/rendered.yaml
if kubectl kustomize deploy/k8s >"$rendered" && [ -s "$rendered" ]; then
  ok "kubectl kustomize deploy/k8s: $(grep -c '^kind:' "$rendered") objects"
else
  bad "kubectl kustomize deploy/k8s"
fi

step "schemas and field names"
if node $v/validate.mjs "$rendered" deploy/k8s/optional/*.yaml; then ok "every object is valid"
else bad "Kubernetes objects invalid (deploy/validate/validate.mjs)"; fi
if node $v/validate.mjs --expect-invalid $v/testdata/*.yaml; then
  ok "the broken manifests in $v/testdata are rejected"
else
  bad "the validator accepted a broken manifest in $v/testdata (or for the wrong reason)"
fi

# ---- 3. environment variables and ports ---------------------------------------------
step "consistency"
if node $v/consistency.mjs "$rendered"; then ok "env and ports consistent"
else bad "env/ports inconsistent (deploy/validate/consistency.mjs)"; fi

# expect_caught WHAT FILE(k8s|compose) SED_EXPR EXPECTED [NOT_EXPECTED]: a broken
# copy must fail, saying EXPECTED (and not NOT_EXPECTED).
expect_caught() {
  local what=$1 which=$2 expr=$3 expected=$4 not_expected=${5:-} out
  mkdir -p "$tmp/mut"
  cp deploy/docker-compose.yml deploy/compose.env "$tmp/mut/"
  cp "$rendered" "$tmp/mut/rendered.yaml"
  if [ "$which" = k8s ]; then sed -i "$expr" "$tmp/mut/rendered.yaml"
  else sed -i "$expr" "$tmp/mut/docker-compose.yml"; fi
  if out=$(node $v/consistency.mjs "$tmp/mut/rendered.yaml" "$tmp/mut/docker-compose.yml" 2>&1); then
    bad "consistency check missed: $what"
  elif ! grep -qF -- "$expected" <<<"$out"; then
    bad "consistency check caught '$what' for another reason: $out"
  elif [ -n "$not_expected" ] && grep -qF -- "$not_expected" <<<"$out"; then
    bad "consistency check caught '$what' but also said '$not_expected': $out"
  else
    ok "caught: $what"
  fi
}
expect_caught "a setting missing from the ConfigMap" k8s '/^  LOG_LEVEL: info$/d' \
  "user-service lacks LOG_LEVEL"
expect_caught "a Service on the wrong port" k8s 's/port: 3003$/port: 3033/' \
  "Service/payment: must expose 3003"
expect_caught "order may not reach payment" k8s \
  '/name: payment-from-gateway-and-order/,/^---/{/app.kubernetes.io\/name: order/s/order/orderx/}' \
  "no rule allows order->payment"
expect_caught "a compose port that differs from the daemons' default" compose \
  's/USER_SERVICE_PORT: "3001"/USER_SERVICE_PORT: "3011"/' "USER_SERVICE_PORT=3011"
expect_caught "a compose setting missing" compose '/^  RPC_TIMEOUT_MS:/d' "gateway lacks RPC_TIMEOUT_MS"
# a service's own setting is expected of that service only
expect_caught "a service's own setting missing" k8s '/^  INVENTORY_SWEEP_INTERVAL_MS:/d' \
  "inventory-service lacks INVENTORY_SWEEP_INTERVAL_MS" "gateway lacks INVENTORY_SWEEP_INTERVAL_MS"
expect_caught "a setting that no daemon reads" compose 's/^  LOG_LEVEL: info$/&\n  LOG_LEVLE: debug/' \
  "LOG_LEVLE is set, but no daemon reads it"
expect_caught "the Redis password given to a daemon that has no Redis" compose \
  '/command: \["inventory-service"\]/a\    env_file: compose.env' \
  "inventory-service gets REDIS_PASSWORD from the secret but never reads it"

# ---- 4. one build recipe ---------------------------------------------------------------
step "Dockerfile builds with the scripts of make run"
df=deploy/Dockerfile
recipe_ok=1
if ! grep -A1 -E '^run:' Makefile | grep -q 'scripts/run.sh'; then
  echo "Makefile: 'make run' does not call scripts/run.sh" >&2; recipe_ok=0
fi
for script in 'scripts/deps.sh run' 'scripts/build.sh '; do
  grep -q "^scripts/${script#scripts/}" scripts/run.sh ||
    { echo "scripts/run.sh does not call $script" >&2; recipe_ok=0; }
  grep -qE "^RUN .*${script}" $df ||
    { echo "$df does not RUN $script" >&2; recipe_ok=0; }
done
# the same build type, and no second cmake recipe outside scripts/build.sh
type_run=$(sed -n 's/^scripts\/build\.sh [^ ]* \([A-Za-z]*\).*/\1/p' scripts/run.sh)
type_df=$(sed -n 's/^RUN scripts\/build\.sh [^ ]* \([A-Za-z]*\).*/\1/p' $df)
if [ -z "$type_run" ] || [ "$type_run" != "$type_df" ]; then
  echo "build type differs: run.sh '$type_run', Dockerfile '$type_df'" >&2; recipe_ok=0
fi
if grep -nE 'cmake +(-S|--build)' $df scripts/run.sh; then
  echo "a cmake configure/build outside scripts/build.sh (above)" >&2; recipe_ok=0
fi
if [ $recipe_ok = 1 ]; then ok "Dockerfile and scripts/run.sh share deps.sh run + build.sh ($type_df)"
else bad "the Dockerfile's build differs from scripts/run.sh"; fi

step "shell syntax"
if bash -n deploy/check.sh deploy/compose-smoke.sh scripts/build.sh && sh -n deploy/healthcheck.sh; then
  ok "bash -n / sh -n"
else
  bad "shell syntax"
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "deploy/check.sh: ${#failed[@]} check(s) FAILED:" >&2
  printf '  - %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "deploy/check.sh: all checks passed"
