#!/usr/bin/env bash
# build.sh [BUILD_DIR [BUILD_TYPE [TESTS]]]: configure and build the suite.
# The one build recipe shared by `make run` (scripts/run.sh) and the container
# image (deploy/Dockerfile). Defaults: build, RelWithDebInfo, TESTS=OFF (ON also
# builds the unit tests, which need libcmocka-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
type=${2:-RelWithDebInfo}
tests=${3:-OFF}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE="$type" -DNESTC_TESTS="$tests" >/dev/null
cmake --build "$build" -j"$(nproc)"
