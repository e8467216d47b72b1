#!/usr/bin/env bash
# Eager forward latency per zoo model, C++ (build/zoo_bench) against
# python3-torchvision, same threads, run one after the other in one go.
#   bench/zoo_bench.sh            one variant per family
#   ALL=1 bench/zoo_bench.sh      every non-heavy variant
# THREADS (default 2). Prints a table with the C++/PyTorch time ratio (< 1: C++ faster).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
BUILD_DIR="${BUILD_DIR:-build}"
cmake --build "$BUILD_DIR" --target zoo_bench -j"$(nproc)" >/dev/null
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$BUILD_DIR/zoo_bench" "$THREADS" ${ALL:+all} > "$out/cpp.txt"
specs=$(awk '{print $1":"$2}' "$out/cpp.txt")
/usr/bin/python3 bench/zoo_bench.py "$THREADS" $specs > "$out/py.txt"
printf '%-22s %5s %10s %10s %7s %10s %10s %7s\n' model size "C++ b1" "torch b1" ratio "C++ b8" "torch b8" ratio
# join: name, C++ size b1 b8, torch size b1 b8
join <(sort "$out/cpp.txt") <(sort "$out/py.txt") | sort |
  awk '{printf "%-22s %5d %8.1fms %8.1fms %6.2fx %8.1fms %8.1fms %6.2fx\n",
        $1, $2, $3, $6, $3/$6, $4, $7, $4/$7;
        if ($3/$6 > w1) w1 = $3/$6; if ($4/$7 > w8) w8 = $4/$7}
       END {printf "worst ratio: batch 1 %.2fx, batch 8 %.2fx (aim: no family slower than PyTorch, <= 1.00x)\n", w1, w8}'
