#!/usr/bin/env bash
# Rookery's quick start.
#   scripts/dev.sh serve [rookery serve flags]   install, build, start the server
#   scripts/dev.sh test  [ctest flags]           install, build, run the test suite
#   scripts/dev.sh build                         install and build only
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-serve}"; shift || true

scripts/setup.sh
jobs="$(nproc)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"

case "$cmd" in
  serve) exec build/rookery serve "$@" ;;
  test)  cd build && exec ctest --output-on-failure -LE full -j "$jobs" "$@" ;;
  build) ;;
  *) echo "usage: scripts/dev.sh serve|test|build" >&2; exit 2 ;;
esac
