#!/usr/bin/env bash
# deps.sh [run|test]: make sure every package the build (and, for "test", the
# test suite) needs is installed. As root it installs what is missing with
# apt-get; otherwise it prints the exact command to run and fails.
set -euo pipefail
mode=${1:-run}
cd "$(dirname "$0")/.."

pkgs=(build-essential cmake pkg-config libuv1-dev libjansson-dev libhiredis-dev
      libmicrohttpd-dev libsqlite3-dev libcurl4-openssl-dev redis-server)
if [ "$mode" = test ]; then
  pkgs+=(libcmocka-dev python3 curl)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "deps: missing packages. Run:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# The interoperability tests run a pinned NestJS (npm, Node.js >= 20).
if [ "$mode" = test ]; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "deps: Node.js >= 20 with npm is needed for the NestJS interop tests" >&2
    echo "  (Debian 12's own nodejs is 18; install Node.js 20 from your usual source)" >&2
    exit 1
  fi
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    echo "deps: Node.js $(node --version) found; NestJS 12 needs >= 20" >&2
    exit 1
  fi
  if [ ! -d tests/interop/node_modules ] ||
     [ tests/interop/package-lock.json -nt tests/interop/node_modules/.package-lock.json ]; then
    (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
