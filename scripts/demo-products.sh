#!/usr/bin/env bash
# demo-products.sh [GATEWAY_URL]: create the README's demo products (p1
# Keyboard, p2 Mouse, p3 Monitor) through the gateway, default
# http://127.0.0.1:$GATEWAY_PORT. A 409 means an earlier run created one
# already: fine. Anything else is named on stderr and the exit status is 1.
# `make run` (scripts/stack.sh) runs it once the gateway is up.
set -euo pipefail
url=${1:-http://127.0.0.1:${GATEWAY_PORT:-3000}}
products=(
  '{"id":"p1","name":"Keyboard","price":1999,"stock":10}'
  '{"id":"p2","name":"Mouse","price":500,"stock":25}'
  '{"id":"p3","name":"Monitor","price":19999,"stock":5}'
)
failed=0
for p in "${products[@]}"; do
  id=${p#*'"id":"'}
  id=${id%%'"'*}
  # --max-time above the gateway's own deadline (RPC_TIMEOUT_MS, 5 s): its
  # 503/504 is the better message.
  if ! out=$(curl -sS --max-time 15 -w '\n%{http_code}' -H 'content-type: application/json' \
                  -d "$p" "$url/products" 2>&1); then
    echo "demo-products: ERROR: POST $url/products ($id): ${out%%$'\n'*}" >&2
    failed=1
    continue
  fi
  code=${out##*$'\n'}
  case $code in
    201) echo "demo-products: created $id" >&2 ;;
    409) echo "demo-products: $id exists already (an earlier run)" >&2 ;;
    *) echo "demo-products: ERROR: POST $url/products ($id): HTTP $code ${out%$'\n'*}" >&2
       failed=1 ;;
  esac
done
exit "$failed"
