#!/usr/bin/env bash
# run.sh: release build, then bench.py against it. Bounded in time
# (BENCH_SECONDS per endpoint, default 5) and on loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh run
command -v wrk >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; }
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DNESTC_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)"
NESTC_BUILD_DIR=$PWD/build-bench exec python3 bench/bench.py
