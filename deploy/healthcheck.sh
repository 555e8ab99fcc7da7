#!/bin/sh
# nestc-healthcheck: the image's HEALTHCHECK. One image runs any daemon, so
# find which one this container runs and use that daemon's own --health probe
# (an RPC `health` for the services, GET /health for the gateway).
set -u
for cmdline in /proc/1/cmdline /proc/[0-9]*/cmdline; do
  exe=$(tr '\0' '\n' <"$cmdline" 2>/dev/null | head -n 1) || continue
  case "${exe##*/}" in
    gateway | user-service | order-service | payment-service | notification-service | \
      inventory-service)
      exec "${exe##*/}" --health ;;
  esac
done
echo "nestc-healthcheck: no nestc daemon runs in this container" >&2
exit 1
