#!/usr/bin/env bash
# Embedding throughput benchmark (issue 2, item 10). NOT a test: never run by CTest.
#
# One run measures, one after the other on this machine:
#   (a) bare LibTorch: build/bare_forward, Rookery's embedding_model in a plain
#       sequential batch-1 loop (and batch 8 for reference);
#   (b) Rookery: build/rookery serve, POST /v1/embed driven by wrk;
#   (c) the Python peer: ../shared/bench/peer_fastapi.py (FastAPI + torchvision),
#       POST /embed driven by the same wrk command;
# all on the same ResNet-18 weights (seeded random init) and the same JPEG, then
# prints a summary table with the ratios rookery/bare and rookery/python.
#
# Usage: bench/embed_bench.sh            (see bench/README.md)
# Environment (all optional):
#   DURATION=20       seconds of each wrk run (b and c), "20" or "20s"
#   CONNECTIONS=8     wrk connections;  WRK_THREADS=2  wrk threads
#   TORCH_THREADS=2   intra-op threads for all three (ROOKERY_TORCH_THREADS, --threads)
#   BARE_SECONDS=8    seconds of each bare measurement (batch 1, batch 8)
#   WARMUP=3          seconds of wrk warm-up before each measured wrk run
#   IMAGE=path.png    source picture (default skimage's chelsea.png), converted to JPEG
#   BUILD_DIR=build   where rookery and bare_forward are
#   SHARED_BENCH=../shared/bench   where peer_fastapi.py and post_file.lua are
#   OUT_DIR=/tmp      where the summary file is written
#   WAIT_QUIET=0      before each of a, b, c wait up to this many seconds for the
#                     machine to be idle (< 10% CPU over 3 s); 0: do not wait
set -euo pipefail

die() { echo "embed_bench: $*" >&2; exit 1; }

REPO="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED_BENCH:-$REPO/../shared/bench}"
BUILD="${BUILD_DIR:-$REPO/build}"
PY=/usr/bin/python3 # Debian's python, the one with torch; not a pyenv one
DURATION="${DURATION:-20}"
CONNECTIONS="${CONNECTIONS:-8}"
WRK_THREADS="${WRK_THREADS:-2}"
THREADS="${TORCH_THREADS:-2}"
BARE_SECONDS="${BARE_SECONDS:-8}"
WARMUP="${WARMUP:-3}"
IMAGE="${IMAGE:-/usr/lib/python3/dist-packages/skimage/data/chelsea.png}"
OUT_DIR="${OUT_DIR:-/tmp}"
WAIT_QUIET="${WAIT_QUIET:-0}"

[[ "$DURATION" =~ ^([0-9]+)s?$ ]] || die "DURATION must be whole seconds, e.g. 20 or 20s (got '$DURATION')"
DUR="${BASH_REMATCH[1]}"
[[ "$WARMUP" =~ ^([0-9]+)s?$ ]] || die "WARMUP must be whole seconds (got '$WARMUP')"
WARM="${BASH_REMATCH[1]}"
((DUR > 0 && DUR <= 600)) || die "DURATION must be 1..600 seconds"
for v in CONNECTIONS WRK_THREADS THREADS BARE_SECONDS WAIT_QUIET; do
  [[ "${!v}" =~ ^[0-9]+$ ]] && { ((${!v} > 0)) || [[ $v == WAIT_QUIET ]]; } || die "$v must be a positive integer (got '${!v}')"
done

# --- tools and inputs -------------------------------------------------------
for tool in wrk curl timeout getconf; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (apt-get install wrk curl coreutils)"
done
[[ -x "$PY" ]] || die "$PY not found (Debian's python3 with python3-torch is needed)"
"$PY" -c 'import torch, torchvision, fastapi, uvicorn, PIL' 2>/dev/null ||
  die "$PY lacks torch/torchvision/fastapi/uvicorn/PIL (apt-get install python3-torch python3-torchvision python3-fastapi python3-uvicorn python3-pil)"
[[ -f "$SHARED/peer_fastapi.py" ]] || die "missing $SHARED/peer_fastapi.py (the reference Python peer; set SHARED_BENCH)"
[[ -f "$SHARED/post_file.lua" ]] || die "missing $SHARED/post_file.lua (the wrk script; set SHARED_BENCH)"
[[ -f "$IMAGE" ]] || die "missing source image $IMAGE (python3-skimage, or set IMAGE)"
[[ -x "$BUILD/rookery" ]] || die "missing $BUILD/rookery: build it first (scripts/dev.sh build)"
if [[ ! -x "$BUILD/bare_forward" ]]; then
  echo "embed_bench: building bare_forward ..." >&2
  cmake --build "$BUILD" --target bare_forward -j2 >&2 || die "cannot build bare_forward"
fi
mkdir -p "$OUT_DIR" || die "cannot create OUT_DIR $OUT_DIR"

TMP="$(mktemp -d /tmp/rookery-embed-bench.XXXXXX)"
PIDS=()
stop_pid() { # pid: SIGTERM, up to 10 s, then SIGKILL
  local pid="$1" i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*" >&2; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
clk_tck="$(getconf CLK_TCK)"
proc_cpu_s() { # CPU seconds (user+sys) used so far by a process
  awk -v t="$clk_tck" '{ sub(/^.*\) /, ""); printf "%.3f", ($12 + $13) / t }' "/proc/$1/stat"
}
children_cpu_s() { # CPU seconds of this shell's reaped children (wrk, bare_forward, curl, ...)
  awk -v t="$clk_tck" '{ sub(/^.*\) /, ""); printf "%.3f", ($14 + $15) / t }' "/proc/$$/stat"
}
sys_busy_s() { # non-idle CPU seconds of the whole machine so far
  awk -v t="$clk_tck" '/^cpu /{ printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / t }' /proc/stat
}
# other_pct busy0 busy1 own0 own1 kids0 kids1 t0 t1: % of all CPUs used by processes
# that are not ours (the server, wrk, bare_forward) over an interval
other_pct() {
  awk -v b0="$1" -v b1="$2" -v o0="$3" -v o1="$4" -v k0="$5" -v k1="$6" -v t0="$7" -v t1="$8" -v n="$(nproc)" \
    'BEGIN { x = ((b1 - b0) - (o1 - o0) - (k1 - k0)) / ((t1 - t0) * n) * 100; if (x < 0) x = 0; printf "%.0f", x }'
}
fmt() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# --- 1. prepare: JPEG, weights, data dir ------------------------------------
log "prepare: JPEG, seeded ResNet-18 weights, data dir in $TMP"
JPG="$TMP/image.jpg"
IMG_INFO="$("$PY" - "$IMAGE" "$JPG" <<'EOF'
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
im.save(sys.argv[2], "JPEG", quality=90)
print(f"{im.width}x{im.height}")
EOF
)"
IMG_BYTES="$(stat -c %s "$JPG")"
W="$TMP/w.pth"
"$PY" -c "import torch,torchvision; torch.manual_seed(0); torch.save(torchvision.models.resnet18().state_dict(), '$W')"
DATA="$TMP/data"
"$BUILD/rookery" models import --arch resnet18 --name resnet18 --weights "$W" --data "$DATA" >"$TMP/import.log" 2>&1 ||
  { cat "$TMP/import.log" >&2; die "rookery models import failed"; }
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
# How busy the machine is without us: others' builds or tests running at the
# same time make every number below meaningless.
busy_pct_3s() {
  local a b; a="$(sys_busy_s)"; sleep 3; b="$(sys_busy_s)"
  awk -v a="$a" -v b="$b" -v n="$(nproc)" 'BEGIN { printf "%.0f", (b - a) / (3 * n) * 100 }'
}
wait_quiet() { # phase
  local end=$((SECONDS + WAIT_QUIET)) p
  while :; do
    p="$(busy_pct_3s)"
    ((p < 10)) && return 0
    if ((SECONDS >= end)); then
      ((WAIT_QUIET == 0)) || echo "embed_bench: WARNING: still ${p}% busy after waiting ${WAIT_QUIET}s before $1" >&2
      return 0
    fi
    echo "embed_bench: the machine is ${p}% busy; waiting for it to be idle before $1 ..." >&2
  done
}
((WAIT_QUIET == 0)) || wait_quiet "(a)"
BUSY_PCT="$(busy_pct_3s)"
((BUSY_PCT <= 15)) || echo "embed_bench: WARNING: the machine is ${BUSY_PCT}% busy before the benchmark starts; results will be skewed" >&2

# --- 2. (a) bare LibTorch ----------------------------------------------------
log "(a) bare LibTorch: bare_forward, ${BARE_SECONDS}s batch 1 + ${BARE_SECONDS}s batch 8, $THREADS threads"
busy0="$(sys_busy_s)"; kids0="$(children_cpu_s)"; t0="$(date +%s.%N)"
timeout $((3 * BARE_SECONDS + 120)) "$BUILD/bare_forward" --data "$DATA" --model resnet18 --image "$JPG" \
  --threads "$THREADS" --seconds "$BARE_SECONDS" | tee "$TMP/bare.txt" >&2 ||
  die "bare_forward failed"
BARE_OTHER="$(other_pct "$busy0" "$(sys_busy_s)" 0 0 "$kids0" "$(children_cpu_s)" "$t0" "$(date +%s.%N)")"
kv() { # file label key -> value of key= on the line starting with label
  awk -v l="$2" -v k="$3" '$1 == l { for (i = 2; i <= NF; i++) { split($i, p, "="); if (p[1] == k) print p[2] } }' "$1"
}
BARE_RPS="$(kv "$TMP/bare.txt" bare images_per_s)"
BARE_P50="$(kv "$TMP/bare.txt" bare p50_ms)"
BARE_P99="$(kv "$TMP/bare.txt" bare p99_ms)"
B8_RPS="$(kv "$TMP/bare.txt" bare_b8 images_per_s)"
B8_P50="$(kv "$TMP/bare.txt" bare_b8 p50_ms)"
B8_P99="$(kv "$TMP/bare.txt" bare_b8 p99_ms)"
PRE_P50="$(kv "$TMP/bare.txt" preprocess p50_ms)"
[[ -n "$BARE_RPS" && -n "$B8_RPS" ]] || die "cannot parse bare_forward output"

# --- wrk driver ---------------------------------------------------------------
# warm_up name url [auth]: 3 checked requests (200 and a 512-d embedding), then
# WARMUP seconds of the same wrk load, not measured.
warm_up() {
  local name="$1" url="$2" auth="${3:-}" i code
  log "($name) warm-up: 3 requests + ${WARM}s of wrk"
  for ((i = 0; i < 3; i++)); do
    code="$(curl -s -o "$TMP/$name.warm.json" -w '%{http_code}' --max-time 60 \
      ${auth:+-H "Authorization: $auth"} -H 'Content-Type: application/octet-stream' \
      --data-binary "@$JPG" "$url")" || code=000
    [[ "$code" == 200 ]] || die "$name: warm-up POST $url answered $code: $(head -c 300 "$TMP/$name.warm.json" 2>/dev/null)"
  done
  "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["embedding"]) == 512, d.get("dim")' \
    "$TMP/$name.warm.json" || die "$name: the answer has no 512-d embedding"
  if ((WARM > 0)); then
    if [[ -n "$auth" ]]; then export AUTH="$auth"; else unset AUTH; fi
    BODY_FILE="$JPG" timeout $((WARM + 30)) wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARM}s" \
      --timeout 30s -s "$SHARED/post_file.lua" "$url" >"$TMP/$name.warmup.txt" 2>&1 ||
      { cat "$TMP/$name.warmup.txt" >&2; die "$name: wrk warm-up failed"; }
  fi
}

# measure name url pid [auth]: the measured wrk run; sets the globals RPS OK_RPS
# P50 P99 NON2XX SOCKERR REQS, CPU_MS (CPU ms of process pid per request) and
# BUSY_MS (CPU ms of the whole machine per request: server + wrk + the rest).
measure() {
  local name="$1" url="$2" pid="$3" auth="${4:-}" out
  local cpu0 busy0 cpu1 busy1 kids0 kids1 t0 t1
  cpu0="$(proc_cpu_s "$pid")"; busy0="$(sys_busy_s)"; kids0="$(children_cpu_s)"; t0="$(date +%s.%N)"
  log "($name) wrk -t$WRK_THREADS -c$CONNECTIONS -d${DUR}s --latency $url"
  if [[ -n "$auth" ]]; then export AUTH="$auth"; else unset AUTH; fi
  BODY_FILE="$JPG" timeout $((DUR + 60)) wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DUR}s" --timeout 30s \
    --latency -s "$SHARED/post_file.lua" "$url" >"$TMP/$name.wrk.txt" 2>&1 ||
    { cat "$TMP/$name.wrk.txt" >&2; die "$name: wrk failed"; }
  unset AUTH
  cpu1="$(proc_cpu_s "$pid")"; busy1="$(sys_busy_s)"; kids1="$(children_cpu_s)"; t1="$(date +%s.%N)"
  OTHER_PCT="$(other_pct "$busy0" "$busy1" "$cpu0" "$cpu1" "$kids0" "$kids1" "$t0" "$t1")"
  cat "$TMP/$name.wrk.txt" >&2
  out="$TMP/$name.wrk.txt"
  RPS="$(awk '/^Requests\/sec:/ { print $2 }' "$out")"
  REQS="$(awk '/requests in/ { print $1 }' "$out")"
  NON2XX="$(grep -o 'non2xx=[0-9]*' "$out" | cut -d= -f2)"
  P50="$(grep -o 'p50_ms=[0-9.]*' "$out" | cut -d= -f2)"
  P99="$(grep -o 'p99_ms=[0-9.]*' "$out" | cut -d= -f2)"
  SOCKERR="$(awk '/Socket errors:/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i; print s + 0 }' "$out")"
  SOCKERR="${SOCKERR:-0}"
  [[ -n "$RPS" && -n "$REQS" && -n "$P50" && -n "$P99" && -n "$NON2XX" ]] || die "$name: cannot parse wrk output"
  OK_RPS="$(awk -v r="$RPS" -v n="$REQS" -v b="$NON2XX" 'BEGIN { printf "%.2f", (n > 0 ? r * (n - b) / n : 0) }')"
  CPU_MS="$(awk -v a="$cpu0" -v b="$cpu1" -v n="$REQS" 'BEGIN { printf "%.1f", (n > 0 ? (b - a) * 1000 / n : 0) }')"
  BUSY_MS="$(awk -v a="$busy0" -v b="$busy1" -v n="$REQS" 'BEGIN { printf "%.1f", (n > 0 ? (b - a) * 1000 / n : 0) }')"
}

# --- 3. (b) Rookery -----------------------------------------------------------
((WAIT_QUIET == 0)) || wait_quiet "(b)"
log "(b) Rookery: start build/rookery serve"
ROOKERY_TORCH_THREADS="$THREADS" ROOKERY_LOG_LEVEL=warn ROOKERY_KEY_RATE_PER_S=1000000 \
  ROOKERY_KEY_BURST=1000000 ROOKERY_PASSWORD_HASH_COST=min \
  "$BUILD/rookery" serve --host 127.0.0.1 --port 0 --data "$DATA" >"$TMP/rookery.log" 2>&1 &
RK_PID=$!
PIDS+=("$RK_PID")
RK_PORT=""
for ((i = 0; i < 600; i++)); do
  RK_PORT="$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$TMP/rookery.log" | head -1)"
  [[ -n "$RK_PORT" ]] && break
  kill -0 "$RK_PID" 2>/dev/null || { cat "$TMP/rookery.log" >&2; die "rookery exited during start"; }
  sleep 0.1
done
[[ -n "$RK_PORT" ]] || { cat "$TMP/rookery.log" >&2; die "rookery did not start in 60 s"; }
RK="http://127.0.0.1:$RK_PORT"
CRED='{"username":"bench","password":"bench password 123"}'
code="$(curl -s -o "$TMP/signup.json" -w '%{http_code}' --max-time 30 -XPOST -H 'Content-Type: application/json' -d "$CRED" "$RK/v1/users")" || code=000
[[ "$code" == 201 ]] || die "sign-up answered $code: $(cat "$TMP/signup.json" 2>/dev/null)"
curl -sf --max-time 30 -XPOST -H 'Content-Type: application/json' -d "$CRED" "$RK/v1/auth/login" >"$TMP/login.json" ||
  die "login failed"
TOKEN="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$TMP/login.json")" ||
  die "no token in the login answer: $(cat "$TMP/login.json")"
curl -sf --max-time 10 -H "Authorization: Bearer $TOKEN" "$RK/v1/pipelines/image" >"$TMP/pipeline.json" || die "GET /v1/pipelines/image failed"
grep -q '"pretrained": *true' "$TMP/pipeline.json" ||
  die "the image pipeline does not serve the imported weights: $(cat "$TMP/pipeline.json")"


warm_up rookery "$RK/v1/embed" "Bearer $TOKEN"
curl -sf --max-time 10 "$RK/metrics" >"$TMP/metrics.before" || die "GET /metrics failed"
measure rookery "$RK/v1/embed" "$RK_PID" "Bearer $TOKEN"
RK_RPS="$RPS" RK_OK_RPS="$OK_RPS" RK_P50="$P50" RK_P99="$P99" RK_NON2XX="$NON2XX" RK_SOCKERR="$SOCKERR"
RK_REQS="$REQS" RK_CPU="$CPU_MS" RK_BUSY="$BUSY_MS" RK_OTHER="$OTHER_PCT"
curl -sf --max-time 10 "$RK/metrics" >"$TMP/metrics.after" || die "GET /metrics failed"
# What the server's own metrics say about the measured run (after - before).
METRICS_REPORT="$("$PY" - "$TMP/metrics.before" "$TMP/metrics.after" <<'EOF'
import re, sys

def read(path):
    out = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.rstrip("\n").rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out

before, after = read(sys.argv[1]), read(sys.argv[2])
d = {k: v - before.get(k, 0.0) for k, v in after.items()}

def get(name, model="resnet18"):
    return d.get(f'{name}{{model="{model}"}}', 0.0)

lines = []
items = get("rookery_model_batch_size_count")
if items <= 0:
    print("  (no rookery_model_* samples in /metrics during the run)")
    sys.exit(0)
mean_batch = get("rookery_model_batch_size_sum") / items
queue_ms = get("rookery_model_queue_seconds_sum") / items * 1000
compute_ms = get("rookery_model_compute_seconds_sum") / items * 1000
lines.append(f"  items embedded {items:.0f}; mean batch size {mean_batch:.2f} (per item: the size of the batch each image rode in; max_batch 8)")
# batch-size distribution from the cumulative buckets
buckets = sorted(
    ((float(m.group(1)) if m.group(1) != "+Inf" else float("inf"), v)
     for k, v in d.items()
     for m in [re.match(r'rookery_model_batch_size_bucket\{model="resnet18",le="([^"]+)"\}', k)] if m),
    key=lambda t: t[0])
prev_le, prev_cum, parts = 0, 0.0, []
for le, cum in buckets:
    n = cum - prev_cum
    if n > 0:
        lo = int(prev_le) + 1
        label = (f"{lo}" if le == lo else f"{lo}-{int(le)}") if le != float("inf") else f">{int(prev_le)}"
        parts.append(f"{label}: {n / items * 100:.0f}%")
    prev_le, prev_cum = le, cum
lines.append("  batch sizes (share of items): " + ", ".join(parts))
lines.append(f"  mean per item: queue wait {queue_ms:.1f} ms, forward of its batch {compute_ms:.1f} ms"
             f" (= {compute_ms / mean_batch:.1f} ms per image at the mean batch size)")
for k, v in d.items():
    m = re.match(r'rookery_http_request_duration_seconds_count\{(.*route="/v1/embed".*)\}', k)
    if m and v > 0:
        s = d.get(k.replace("_count{", "_sum{"), 0.0)
        http_ms = s / v * 1000
        lines.append(f"  server-side /v1/embed latency: mean {http_ms:.1f} ms over {v:.0f} requests")
        lines.append(f"  unaccounted by queue + forward: {http_ms - queue_ms - compute_ms:.1f} ms per request (decode, HTTP,"
                     f" and waiting in the replica's mailbox for the batch in progress: the queue metric starts"
                     f" only when the replica takes the message)")
print("\n".join(lines))
EOF
)" || METRICS_REPORT="  (could not read /metrics)"
cp "$TMP/metrics.after" "$TMP/rookery.metrics" 2>/dev/null || true
log "(b) stopping rookery"
stop_pid "$RK_PID"
grep -E '"level" *: *"(warn|error)"|\[(warn|warning|error)\]' "$TMP/rookery.log" | head -5 >&2 || true

# --- 4. (c) the Python peer ---------------------------------------------------
((WAIT_QUIET == 0)) || wait_quiet "(c)"
PP_PORT="$(free_port)"
log "(c) Python peer: peer_fastapi.py on 127.0.0.1:$PP_PORT, --threads $THREADS"
"$PY" "$SHARED/peer_fastapi.py" --port "$PP_PORT" --weights "$W" --threads "$THREADS" >"$TMP/peer.log" 2>&1 &
PP_PID=$!
PIDS+=("$PP_PID")
PP="http://127.0.0.1:$PP_PORT"
up=""
for ((i = 0; i < 1200; i++)); do # torch import can be slow: up to 120 s
  kill -0 "$PP_PID" 2>/dev/null || { cat "$TMP/peer.log" >&2; die "the Python peer exited during start"; }
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$PP/docs" 2>/dev/null)" || code=000
  [[ "$code" != 000 ]] && { up=1; break; }
  sleep 0.1
done
[[ -n "$up" ]] || { cat "$TMP/peer.log" >&2; die "the Python peer did not listen in 120 s"; }
warm_up python "$PP/embed"
measure python "$PP/embed" "$PP_PID"
PY_RPS="$RPS" PY_OK_RPS="$OK_RPS" PY_P50="$P50" PY_P99="$P99" PY_NON2XX="$NON2XX" PY_SOCKERR="$SOCKERR"
PY_REQS="$REQS" PY_CPU="$CPU_MS" PY_BUSY="$BUSY_MS" PY_OTHER="$OTHER_PCT"
log "(c) stopping the Python peer"
stop_pid "$PP_PID"

# --- 5. summary ---------------------------------------------------------------
R_BARE="$(ratio "$RK_OK_RPS" "$BARE_RPS")"
R_B8="$(ratio "$RK_OK_RPS" "$B8_RPS")"
R_PY="$(ratio "$RK_OK_RPS" "$PY_OK_RPS")"
R_P99="$(ratio "$RK_P99" "$PY_P99")"
verdict() { awk -v r="$1" -v t="$2" -v op="$3" 'BEGIN {
  if (r == "n/a") { print "n/a"; exit }
  ok = (op == ">=") ? (r + 0 >= t + 0) : (r + 0 < t + 0); print ok ? "met" : "MISSED" }'; }
STAMP="$(date +%Y%m%d-%H%M%S)"
SUMMARY="$OUT_DIR/rookery-embed-bench-$STAMP.txt"
{
  echo "Rookery embedding benchmark, $(date -Is)"
  echo "machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), load average before: $LOAD_BEFORE, CPU busy before start: ${BUSY_PCT}%"
  echo "model: ResNet-18, torch.manual_seed(0) random init, same state_dict for all; $THREADS intra-op threads"
  echo "input: one JPEG ${IMG_INFO} px, ${IMG_BYTES} bytes ($(basename "$IMAGE") re-encoded, quality 90)"
  echo "load: wrk -t$WRK_THREADS -c$CONNECTIONS -d${DUR}s (+${WARM}s warm-up), (b) then (c), never together; bare: ${BARE_SECONDS}s sequential loops"
  echo "rookery binary: $BUILD/rookery ($(date -r "$BUILD/rookery" '+%F %T'))"
  echo
  row() { printf '%-33s %8s %8s %8s %8s %10s %10s %7s\n' "$@"; }
  row "system" "img/s" "p50 ms" "p99 ms" "errors" "srv CPU ms" "all CPU ms" "other"
  row "" "" "" "" "" "per image" "per image" "CPU %"
  row "(a) bare LibTorch, batch 1" "$(fmt "$BARE_RPS")" "$(fmt "$BARE_P50")" "$(fmt "$BARE_P99")" "-" "-" "-" "$BARE_OTHER"
  row "    bare LibTorch, batch 8 (ref.)" "$(fmt "$B8_RPS")" "$(fmt "$B8_P50")" "$(fmt "$B8_P99")" "-" "-" "-" "(same)"
  row "(b) Rookery POST /v1/embed" "$(fmt "$RK_OK_RPS")" "$(fmt "$RK_P50")" "$(fmt "$RK_P99")" "$((RK_NON2XX + RK_SOCKERR))" "$RK_CPU" "$RK_BUSY" "$RK_OTHER"
  row "(c) Python peer POST /embed" "$(fmt "$PY_OK_RPS")" "$(fmt "$PY_P50")" "$(fmt "$PY_P99")" "$((PY_NON2XX + PY_SOCKERR))" "$PY_CPU" "$PY_BUSY" "$PY_OTHER"
  echo "  (bare p50/p99 are per forward call: one image at batch 1, eight at batch 8; img/s of (b)/(c) counts 2xx answers only;"
  echo "   decode+preprocess of this JPEG alone, Rookery's pipeline, one thread: p50 ${PRE_P50} ms;"
  echo "   errors = non-2xx + socket errors/timeouts (rookery ${RK_NON2XX}+${RK_SOCKERR}, python ${PY_NON2XX}+${PY_SOCKERR}; wrk --timeout 30s);
   CPU ms per image: srv = the server process, all = the whole machine incl. wrk;
   other CPU % = share of all CPUs used by processes not started by this script during that phase)"
  echo
  printf '%-36s %9s   %-14s %s\n' "ratio" "measured" "target" "verdict"
  printf '%-36s %8sx   %-14s %s\n' "rookery / bare batch 1 (throughput)" "$R_BARE" ">= 0.95x" "$(verdict "$R_BARE" 0.95 '>=')"
  printf '%-36s %8sx   %-14s %s\n' "rookery / python (throughput)" "$R_PY" ">= 1.5x" "$(verdict "$R_PY" 1.5 '>=')"
  printf '%-36s %8sx   %-14s %s\n' "p99 rookery / p99 python" "$R_P99" "< 1.0x" "$(verdict "$R_P99" 1.0 '<')"
  printf '%-36s %8sx   %-14s %s\n' "rookery / bare batch 8 (reference)" "$R_B8" "-" "-"
  echo
  echo "Rookery's /metrics over the measured run:"
  echo "$METRICS_REPORT"
  if ((BUSY_PCT > 15 || BARE_OTHER > 10 || RK_OTHER > 10 || PY_OTHER > 10)); then
    echo
    echo "WARNING: other processes used the CPUs (${BUSY_PCT}% before the start; ${BARE_OTHER}/${RK_OTHER}/${PY_OTHER}% during a/b/c);"
    echo "         the numbers are skewed. Run again on a quiet machine (WAIT_QUIET=120 waits for one)."
  fi
  if [[ "$RK_REQS" == 0 || "$PY_REQS" == 0 ]]; then
    echo
    echo "WARNING: a wrk run completed no request (rookery $RK_REQS, python $PY_REQS); raise DURATION."
  fi
  if [[ "$RK_NON2XX" != 0 || "$PY_NON2XX" != 0 || "$RK_SOCKERR" != 0 || "$PY_SOCKERR" != 0 ]]; then
    echo
    echo "WARNING: non-2xx answers or socket errors above; throughputs count 2xx only."
  fi
  echo
  echo "caveat: client (wrk) and server share the same $(nproc) CPUs; bare (a) has them to itself."
} >"$SUMMARY"
{
  echo
  echo "---- raw: bare_forward"; cat "$TMP/bare.txt"
  echo "---- raw: wrk rookery"; cat "$TMP/rookery.wrk.txt"
  echo "---- raw: wrk python"; cat "$TMP/python.wrk.txt"
  echo "---- raw: rookery /metrics after the run"; cat "$TMP/rookery.metrics"
} >"$SUMMARY.raw"
echo
echo "================================================================================"
cat "$SUMMARY"
echo "================================================================================"
echo "summary: $SUMMARY (raw outputs: $SUMMARY.raw)"
