#!/usr/bin/env bash
# run.sh: install what is missing, build (release), and run the whole stack in
# the foreground: every daemon logs JSON lines to this terminal. Ctrl-C stops
# them all gracefully. Data lives in $DATA_DIR (default ./var/data).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh run
build=${BUILD_DIR:-build}
scripts/build.sh "$build" RelWithDebInfo
exec scripts/stack.sh "$build"
