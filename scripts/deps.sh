#!/usr/bin/env bash
# deps.sh [STEP...]: make sure every package the named steps need is installed
# and every command they run is on PATH, before the step starts. The steps, their
# packages and commands are in scripts/deps.list (default step: run). As root it
# installs what is missing with apt-get; otherwise it prints the exact command
# to run and fails. Each command that is still missing afterwards is named with
# its package, and deps.sh fails.
#   scripts/deps.sh run | test | check | smoke | build ...
set -euo pipefail
cd "$(dirname "$0")/.."
manifest=scripts/deps.list
[ $# -gt 0 ] || set -- run

# ---- read the manifest: STEP PACKAGE COMMAND... ----------------------------------
rows=()
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%%#*}
  [ -n "${line//[[:space:]]/}" ] && rows+=("$line")
done <"$manifest"

declare -A step_done=() pkg_cmds=()
pkgs=()  # packages of the chosen steps, in manifest order, each once
needs=() # "STEP PACKAGE COMMAND" for every command a chosen step runs
add_step() { # add_step STEP: its packages and commands, and those of its step:NAME lines
  local want=$1 row step pkg cmds c found=0
  [ -n "${step_done[$want]:-}" ] && return 0
  step_done[$want]=1
  for row in "${rows[@]}"; do
    read -r step pkg cmds <<<"$row"
    [ "$step" = "$want" ] || continue
    found=1
    case $pkg in
      step:*) add_step "${pkg#step:}"; continue ;;
    esac
    if [ -z "${pkg_cmds[$pkg]+set}" ]; then pkgs+=("$pkg"); pkg_cmds[$pkg]=""; fi
    for c in $cmds; do
      [ "$c" = - ] && continue
      pkg_cmds[$pkg]+=" $c"
      needs+=("$want $pkg $c")
    done
  done
  if [ $found = 0 ]; then
    echo "deps: $manifest has no step '$want'" >&2
    exit 2
  fi
}
for s in "$@"; do add_step "$s"; done

# ---- install what is missing ----------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# A package is present when it is installed, or when it has commands and every
# one of them is on PATH already (e.g. a Python or kubectl from elsewhere):
# installing it over those could only conflict.
present() {
  local p=$1 c
  installed "$p" && return 0
  [ -n "${pkg_cmds[$p]}" ] || return 1
  for c in ${pkg_cmds[$p]}; do command -v "$c" >/dev/null || return 1; done
}
missing=()
for p in "${pkgs[@]}"; do
  [[ $p == @* ]] && continue # not from apt: checked below
  present "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: steps '$*' need packages that are missing. Run:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq
  timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- every command each step runs is there -----------------------------------------------
failed=0
node_ok=1
for n in "${needs[@]}"; do
  read -r step pkg c <<<"$n"
  command -v "$c" >/dev/null && continue
  failed=1
  if [ "$pkg" = @node20 ]; then
    node_ok=0
    echo "deps: step $step runs '$c': Node.js >= 20 with npm is needed" >&2
    echo "  (Debian 12's own nodejs is 18; install Node.js 20 from your usual source)" >&2
  else
    echo "deps: step $step runs '$c' (package $pkg), which is not on PATH ($PATH)" >&2
  fi
done
if [ -n "${pkg_cmds[@node20]+set}" ] && [ $node_ok = 1 ]; then
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    echo "deps: Node.js $(node --version) found; NestJS 12 and deploy/validate need >= 20" >&2
    failed=1 node_ok=0
  fi
fi
[ $failed = 0 ] || exit 1

# The interoperability tests run a pinned NestJS from tests/interop.
if [ -n "${step_done[interop]:-}" ]; then
  if [ ! -d tests/interop/node_modules ] ||
     [ tests/interop/package-lock.json -nt tests/interop/node_modules/.package-lock.json ]; then
    (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
