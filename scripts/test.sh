#!/usr/bin/env bash
# test.sh: install what is missing, build everything with -Werror under
# AddressSanitizer + UndefinedBehaviorSanitizer, and run every test (unit,
# integration against the real daemons and redis-server, NestJS interop), then
# the deployment checks and the container walkthrough.
set -euo pipefail
cd "$(dirname "$0")/.."
# Every package and command of every step this run reaches (scripts/deps.list),
# checked up front: a missing one fails here, not after the tests.
if [ $# -gt 0 ]; then
  scripts/deps.sh test
elif [ "${NESTC_SKIP_COMPOSE_SMOKE:-0}" = 1 ]; then
  scripts/deps.sh test check
else
  scripts/deps.sh test check smoke
fi
build=${BUILD_DIR:-build-asan}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DNESTC_SANITIZE=ON -DNESTC_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@"
# A subset run (ctest arguments given) stops here; the full run also checks
# the deployment files and runs the walkthrough against the container stack.
[ $# -gt 0 ] && exit 0
deploy/check.sh
if [ "${NESTC_SKIP_COMPOSE_SMOKE:-0}" != 1 ]; then
  deploy/compose-smoke.sh
fi
