#!/usr/bin/env bash
# Soak (issue 8, item 6). NOT a test: never run by CTest.
#
# Starts build/rookery on a loopback port with a fresh data directory, drives
# SOAK_SECONDS (default 600) of mixed traffic at SOAK_CONNECTIONS (default 32)
# with wrk and bench/soak.lua (embeddings of a real photo, logins, training-job
# submissions each followed by its cancel, list calls, and hostile requests
# that must get their intended 4xx), samples the server's RSS and thread count
# every SAMPLE_EVERY (default 15) seconds, and prints:
#   - per request kind: answers as intended / unexpected (anything but the
#     intended status, socket errors and timeouts included);
#   - p50/p99 latency over all requests;
#   - RSS over time, and the growth from the end of warm-up (the first
#     WARMUP_SAMPLES samples, default 4) to the end, which must stay flat.
# Password hashing runs at the "min" cost so logins measure the server, not
# Argon2id; the per-key rate limit is raised so 32 connections on one key are
# not throttled (both are said in the summary).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD_DIR:-$REPO/build}"
SECONDS_TOTAL="${SOAK_SECONDS:-600}"
CONNS="${SOAK_CONNECTIONS:-32}"
EVERY="${SAMPLE_EVERY:-15}"
WARMUP_SAMPLES="${WARMUP_SAMPLES:-4}"
PHOTO="${SOAK_PHOTO:-/usr/lib/python3/dist-packages/skimage/data/chelsea.png}"
command -v wrk >/dev/null || { echo "soak: wrk not found (apt-get install wrk)" >&2; exit 1; }
[[ -x "$BUILD/rookery" ]] || { echo "soak: $BUILD/rookery not built (scripts/dev.sh build)" >&2; exit 1; }

DATA="$(mktemp -d /tmp/rookery-soak.XXXXXX)"
LOG="$DATA/server.log"
cleanup() { [[ -n "${PID:-}" ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT

ROOKERY_PASSWORD_HASH_COST=min ROOKERY_KEY_RATE_PER_S=100000 ROOKERY_KEY_BURST=100000 \
ROOKERY_LOG_LEVEL=warn ROOKERY_MAX_JOBS_PER_USER=100000 \
  "$BUILD/rookery" serve --port 0 --data "$DATA" >"$LOG" 2>&1 &
PID=$!
for _ in $(seq 100); do
  PORT="$(sed -n 's|.*listening on http://[0-9.]*:\([0-9]*\).*|\1|p' "$LOG" | head -1)"
  [[ -n "$PORT" ]] && break
  sleep 0.2
done
[[ -n "${PORT:-}" ]] || { echo "soak: the server did not start:"; cat "$LOG"; exit 1; }
URL="http://127.0.0.1:$PORT"
curl -fsS -XPOST "$URL/v1/users" -d '{"username":"soak","password":"soak password 1"}' >/dev/null
TOKEN="$(curl -fsS -XPOST "$URL/v1/auth/login" -d '{"username":"soak","password":"soak password 1"}' |
         python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }
threads() { awk '/Threads/ {print $2}' "/proc/$PID/status"; }
SAMPLES="$DATA/rss.tsv"
( t=0; while kill -0 "$PID" 2>/dev/null && ((t <= SECONDS_TOTAL)); do
    printf '%d\t%s\t%s\n' "$t" "$(rss_kib)" "$(threads)" >>"$SAMPLES"; sleep "$EVERY"; t=$((t + EVERY)); done ) &
SAMPLER=$!

echo "soak: ${SECONDS_TOTAL}s at c=$CONNS against $URL (pid $PID)"
SOAK_TOKEN="$TOKEN" SOAK_PHOTO="$PHOTO" \
  wrk -t"$CONNS" -c"$CONNS" -d"${SECONDS_TOTAL}s" --timeout 30s -s "$REPO/bench/soak.lua" "$URL" \
  | tee "$DATA/wrk.txt"
kill "$SAMPLER" 2>/dev/null || true
printf '%d\t%s\t%s\n' "$SECONDS_TOTAL" "$(rss_kib)" "$(threads)" >>"$SAMPLES"

echo
echo "RSS over time (KiB) and threads:"
echo -e "t_s\trss_kib\tthreads"
cat "$SAMPLES"
python3 - "$SAMPLES" "$WARMUP_SAMPLES" <<'PY'
import sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l.strip()]
rss = [int(r[1]) for r in rows if r[1].isdigit()]
w = min(int(sys.argv[2]), len(rss) - 1)
if len(rss) >= 2:
    after = rss[w:]
    print(f"rss after warm-up: first {after[0]} KiB, last {after[-1]} KiB, max {max(after)} KiB, "
          f"growth {(after[-1] - after[0]) / 1024:.1f} MiB ({100 * (after[-1] - after[0]) / after[0]:.1f}%)")
PY
kill -0 "$PID" && echo "server: alive at the end" || echo "server: DIED"
grep -c "dropped without an answer" "$LOG" | sed 's/^/answers written by the safety net: /'
echo "settings: password_hash_cost=min, key_rate_per_s raised; wrk -t$CONNS -c$CONNS"
