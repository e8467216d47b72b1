# Shell helpers shared by bench/embed_bench.sh and bench/pretrained_bench.sh. NOT a test.
#
# Source it after setting BENCH (the script's name, used in messages):
#   BENCH=embed_bench; . "$(dirname "$0")/lib.sh"
# It sets nothing up by itself; call, in this order:
#   bench_settings      read and check the common environment knobs (see below)
#   bench_need_tools    wrk, curl, timeout, getconf, Debian's python3 with MODULES
#   bench_tmp NAME      make $TMP, install the cleanup/exit traps
# and then use the helpers: start_rookery, rookery_signup/rookery_login,
# start_peer, run_bare, warm_up, measure, metrics_report, wait_quiet, ...
#
# Common knobs (all optional):
#   DURATION=20  WARMUP=3  CONNECTIONS=8  WRK_THREADS=2  TORCH_THREADS=2  BARE_SECONDS=8
#   IMAGE=chelsea.png  BUILD_DIR=build  SHARED_BENCH=../shared/bench  OUT_DIR=/tmp  WAIT_QUIET=0
# Everything started here listens on 127.0.0.1, is bounded by `timeout` and is
# stopped by the EXIT trap (also on Ctrl-C); $TMP is removed.

die() { echo "${BENCH:-bench}: $*" >&2; exit 1; }
warn() { echo "${BENCH:-bench}: WARNING: $*" >&2; }
log() { echo "== $*" >&2; }

PY=/usr/bin/python3 # Debian's python, the one with torch; not a pyenv one

bench_settings() {
  REPO="$(cd "$(dirname "$0")/.." && pwd)"
  SHARED="${SHARED_BENCH:-$REPO/../shared/bench}"
  BUILD="${BUILD_DIR:-$REPO/build}"
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
  local v
  for v in CONNECTIONS WRK_THREADS THREADS BARE_SECONDS WAIT_QUIET; do
    [[ "${!v}" =~ ^[0-9]+$ ]] && { ((${!v} > 0)) || [[ $v == WAIT_QUIET ]]; } || die "$v must be a positive integer (got '${!v}')"
  done
}

# bench_need_tools "python modules" "apt packages": the tools every bench needs.
bench_need_tools() {
  local modules="$1" packages="$2" tool
  for tool in wrk curl timeout getconf; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (apt-get install wrk curl coreutils)"
  done
  [[ -x "$PY" ]] || die "$PY not found (Debian's python3 with python3-torch is needed)"
  "$PY" -c "import ${modules// /, }" 2>/dev/null || die "$PY lacks one of: $modules (apt-get install $packages)"
  [[ -f "$SHARED/post_file.lua" ]] || die "missing $SHARED/post_file.lua (the wrk script; set SHARED_BENCH)"
  [[ -f "$IMAGE" ]] || die "missing source image $IMAGE (python3-skimage, or set IMAGE)"
  [[ -x "$BUILD/rookery" ]] || die "missing $BUILD/rookery: build it first (scripts/dev.sh build), or set BUILD_DIR"
  mkdir -p "$OUT_DIR" || die "cannot create OUT_DIR $OUT_DIR"
}

# --- CPU sets -------------------------------------------------------------------
# Command prefixes (e.g. taskset -c 0-5): servers and bare_forward run under
# PIN_SERVER, wrk under PIN_CLIENT. Empty: everything shares every CPU.
PIN_SERVER=()
PIN_CLIENT=()

# --- temp dir, child processes, cleanup ----------------------------------------
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
bench_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  [[ -n "${TMP:-}" ]] && rm -rf "$TMP"
  return 0
}
bench_tmp() { # name: $TMP = /tmp/rookery-NAME.XXXXXX, removed on exit
  TMP="$(mktemp -d "/tmp/rookery-$1.XXXXXX")"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

# --- CPU accounting --------------------------------------------------------------
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
fmt() { awk -v x="$1" 'BEGIN { if (x == "" || x == "-" || x == "n/a") print "-"; else printf "%.1f", x }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# verdict ratio target op (">=" or "<")
verdict() { awk -v r="$1" -v t="$2" -v op="$3" 'BEGIN {
  if (r == "n/a") { print "n/a"; exit }
  ok = (op == ">=") ? (r + 0 >= t + 0) : (r + 0 < t + 0); print ok ? "met" : "MISSED" }'; }

# How busy the machine is without us: others' builds or tests running at the
# same time make every number meaningless.
busy_pct_3s() {
  local a b; a="$(sys_busy_s)"; sleep 3; b="$(sys_busy_s)"
  awk -v a="$a" -v b="$b" -v n="$(nproc)" 'BEGIN { printf "%.0f", (b - a) / (3 * n) * 100 }'
}
wait_quiet() { # phase: wait up to WAIT_QUIET s for < 10% CPU (no-op when WAIT_QUIET=0)
  ((WAIT_QUIET == 0)) && return 0
  local end=$((SECONDS + WAIT_QUIET)) p
  while :; do
    p="$(busy_pct_3s)"
    ((p < 10)) && return 0
    if ((SECONDS >= end)); then
      warn "still ${p}% busy after waiting ${WAIT_QUIET}s before $1"
      return 0
    fi
    echo "${BENCH:-bench}: the machine is ${p}% busy; waiting for it to be idle before $1 ..." >&2
  done
}

# --- inputs --------------------------------------------------------------------------
# make_jpeg src dst: RGB JPEG at quality 90; prints WxH
make_jpeg() {
  "$PY" - "$1" "$2" <<'EOF'
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
im.save(sys.argv[2], "JPEG", quality=90)
print(f"{im.width}x{im.height}")
EOF
}

# --- (a) bare LibTorch -------------------------------------------------------------
kv() { # file label key -> value of key= on the line starting with label
  awk -v l="$2" -v k="$3" '$1 == l { for (i = 2; i <= NF; i++) { split($i, p, "="); if (p[1] == k) print p[2] } }' "$1"
}
# run_bare name data model image: bare_forward --data data --model model; sets
# BARE_RPS BARE_P50 BARE_P99 B8_RPS B8_P50 B8_P99 PRE_P50 BARE_OTHER BARE_INPUT
# (e.g. 3x299x299, from bare_forward's header line); output in $TMP/name.bare.txt
run_bare() {
  local name="$1" data="$2" model="$3" image="$4" busy0 kids0 t0 out="$TMP/$1.bare.txt"
  log "($name a) bare LibTorch: bare_forward --model $model, ${BARE_SECONDS}s batch 1 + ${BARE_SECONDS}s batch 8, $THREADS threads"
  busy0="$(sys_busy_s)"; kids0="$(children_cpu_s)"; t0="$(date +%s.%N)"
  timeout $((5 * BARE_SECONDS + 180)) "${PIN_SERVER[@]}" "$BUILD/bare_forward" --data "$data" --model "$model" --image "$image" \
    --threads "$THREADS" --seconds "$BARE_SECONDS" 2>&1 | tee "$out" >&2 ||
    die "bare_forward failed for $model (see above)"
  BARE_OTHER="$(other_pct "$busy0" "$(sys_busy_s)" 0 0 "$kids0" "$(children_cpu_s)" "$t0" "$(date +%s.%N)")"
  BARE_RPS="$(kv "$out" bare images_per_s)"
  BARE_P50="$(kv "$out" bare p50_ms)"
  BARE_P99="$(kv "$out" bare p99_ms)"
  B8_RPS="$(kv "$out" bare_b8 images_per_s)"
  B8_P50="$(kv "$out" bare_b8 p50_ms)"
  B8_P99="$(kv "$out" bare_b8 p99_ms)"
  PRE_P50="$(kv "$out" preprocess p50_ms)"
  BOPT_RPS="$(kv "$out" bare_opt images_per_s)"
  BOPT_P50="$(kv "$out" bare_opt p50_ms)"
  BOPT_P99="$(kv "$out" bare_opt p99_ms)"
  BOPT8_RPS="$(kv "$out" bare_opt_b8 images_per_s)"
  BOPT8_P50="$(kv "$out" bare_opt_b8 p50_ms)"
  BOPT8_P99="$(kv "$out" bare_opt_b8 p99_ms)"
  BARE_INPUT="$(sed -n 's/^# bare_forward:.*, input \([0-9]*x[0-9]*x[0-9]*\),.*/\1/p' "$out" | head -1)"
  [[ -n "$BARE_RPS" && -n "$B8_RPS" ]] || die "cannot parse bare_forward output for $model"
}

# --- servers -------------------------------------------------------------------------
# start_rookery name data [VAR=value ...]: build/rookery serve on 127.0.0.1, a free
# port, rate limits lifted, ROOKERY_TORCH_THREADS=$THREADS; extra settings as
# environment assignments. Sets RK_PID and RK (the base URL). Log: $TMP/name.rookery.log
start_rookery() {
  local name="$1" data="$2" i port="" logf="$TMP/$1.rookery.log"
  shift 2
  log "($name) start rookery serve"
  : >"$logf" # exists before the server opens it: the loop below reads it at once
  env ROOKERY_TORCH_THREADS="$THREADS" ROOKERY_LOG_LEVEL=warn ROOKERY_KEY_RATE_PER_S=1000000 \
    ROOKERY_KEY_BURST=1000000 ROOKERY_PASSWORD_HASH_COST=min "$@" \
    "${PIN_SERVER[@]}" "$BUILD/rookery" serve --host 127.0.0.1 --port 0 --data "$data" >"$logf" 2>&1 &
  RK_PID=$!
  PIDS+=("$RK_PID")
  for ((i = 0; i < 600; i++)); do
    port="$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$logf" 2>/dev/null | head -1)" || port=""
    [[ -n "$port" ]] && break
    kill -0 "$RK_PID" 2>/dev/null || { cat "$logf" >&2; die "rookery exited during start"; }
    sleep 0.1
  done
  [[ -n "$port" ]] || { cat "$logf" >&2; die "rookery did not start in 60 s"; }
  RK="http://127.0.0.1:$port"
}
# stop_rookery name: SIGTERM (drains), prints the first warnings/errors of its log
stop_rookery() {
  log "($1) stopping rookery"
  stop_pid "$RK_PID"
  grep -E '"level" *: *"(warn|error)"|\[(warn|warning|error)\]' "$TMP/$1.rookery.log" | head -5 >&2 || true
}
rookery_signup() { # user password: POST /v1/users, 201 expected
  local code cred="{\"username\":\"$1\",\"password\":\"$2\"}"
  code="$(curl -s -o "$TMP/signup.json" -w '%{http_code}' --max-time 30 -XPOST -H 'Content-Type: application/json' \
    -d "$cred" "$RK/v1/users")" || code=000
  [[ "$code" == 201 ]] || die "sign-up answered $code: $(cat "$TMP/signup.json" 2>/dev/null)"
}
rookery_login() { # user password: sets TOKEN
  local cred="{\"username\":\"$1\",\"password\":\"$2\"}"
  curl -sf --max-time 30 -XPOST -H 'Content-Type: application/json' -d "$cred" "$RK/v1/auth/login" >"$TMP/login.json" ||
    die "login failed"
  TOKEN="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$TMP/login.json")" ||
    die "no token in the login answer: $(cat "$TMP/login.json")"
}

# start_peer name cmd...: a Python peer listening on $PP_PORT (the caller picks it with
# free_port and passes it in cmd); waits until it answers HTTP (up to 120 s: the torch
# import can be slow). Sets PP_PID and PP (the base URL). Log: $TMP/name.peer.log
start_peer() {
  local name="$1" i code up="" logf="$TMP/$1.peer.log"
  shift
  log "($name) start the Python peer on 127.0.0.1:$PP_PORT: $(basename "$2") ${*:3}"
  "${PIN_SERVER[@]}" "$@" >"$logf" 2>&1 &
  PP_PID=$!
  PIDS+=("$PP_PID")
  PP="http://127.0.0.1:$PP_PORT"
  for ((i = 0; i < 1200; i++)); do
    kill -0 "$PP_PID" 2>/dev/null || { cat "$logf" >&2; die "the Python peer exited during start"; }
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$PP/docs" 2>/dev/null)" || code=000
    [[ "$code" != 000 ]] && { up=1; break; }
    sleep 0.1
  done
  [[ -n "$up" ]] || { cat "$logf" >&2; die "the Python peer did not listen in 120 s"; }
}

# post_embed url body out [auth]: one POST of the file `body`; 200 expected, answer in out
post_embed() {
  local url="$1" body="$2" out="$3" auth="${4:-}" code
  code="$(curl -s -o "$out" -w '%{http_code}' --max-time 120 \
    ${auth:+-H "Authorization: $auth"} -H 'Content-Type: application/octet-stream' \
    --data-binary "@$body" "$url")" || code=000
  [[ "$code" == 200 ]] || die "POST $url answered $code: $(head -c 300 "$out" 2>/dev/null)"
}

# --- wrk driver ------------------------------------------------------------------------
# warm_up name url dim [auth]: 3 checked requests (200 and a dim-d embedding; the
# last answer stays in $TMP/name.warm.json), then WARMUP seconds of the same wrk
# load, not measured, then one more request, which returns only once the
# requests wrk left in flight when it stopped are done (servers go on with them):
# the measured run starts on an idle server. Posts $JPG.
warm_up() {
  local name="$1" url="$2" dim="$3" auth="${4:-}" i
  log "($name) warm-up: 3 requests + ${WARM}s of wrk"
  for ((i = 0; i < 3; i++)); do
    post_embed "$url" "$JPG" "$TMP/$name.warm.json" "$auth"
  done
  "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert len(d["embedding"]) == int(sys.argv[2]), d.get("dim")' \
    "$TMP/$name.warm.json" "$dim" || die "$name: the answer has no $dim-d embedding"
  if ((WARM > 0)); then
    if [[ -n "$auth" ]]; then export AUTH="$auth"; else unset AUTH; fi
    BODY_FILE="$JPG" timeout $((WARM + 30)) "${PIN_CLIENT[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARM}s" \
      --timeout 30s -s "$SHARED/post_file.lua" "$url" >"$TMP/$name.warmup.txt" 2>&1 ||
      { cat "$TMP/$name.warmup.txt" >&2; die "$name: wrk warm-up failed"; }
    unset AUTH
    post_embed "$url" "$JPG" "$TMP/$name.drain.json" "$auth"
  fi
}

# measure name url pid [auth]: the measured wrk run; sets the globals RPS OK_RPS
# P50 P99 NON2XX SOCKERR REQS, CPU_MS (CPU ms of process pid per request),
# BUSY_MS (CPU ms of the whole machine per request: server + wrk + the rest) and
# OTHER_PCT. wrk's output stays in $TMP/name.wrk.txt.
measure() {
  local name="$1" url="$2" pid="$3" auth="${4:-}" out="$TMP/$1.wrk.txt"
  local cpu0 busy0 cpu1 busy1 kids0 kids1 t0 t1
  cpu0="$(proc_cpu_s "$pid")"; busy0="$(sys_busy_s)"; kids0="$(children_cpu_s)"; t0="$(date +%s.%N)"
  log "($name) wrk -t$WRK_THREADS -c$CONNECTIONS -d${DUR}s --latency $url"
  if [[ -n "$auth" ]]; then export AUTH="$auth"; else unset AUTH; fi
  BODY_FILE="$JPG" timeout $((DUR + 60)) "${PIN_CLIENT[@]}" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DUR}s" --timeout 30s \
    --latency -s "$SHARED/post_file.lua" "$url" >"$out" 2>&1 ||
    { cat "$out" >&2; die "$name: wrk failed"; }
  unset AUTH
  cpu1="$(proc_cpu_s "$pid")"; busy1="$(sys_busy_s)"; kids1="$(children_cpu_s)"; t1="$(date +%s.%N)"
  OTHER_PCT="$(other_pct "$busy0" "$busy1" "$cpu0" "$cpu1" "$kids0" "$kids1" "$t0" "$t1")"
  cat "$out" >&2
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

# metrics_report before after model: what Rookery's /metrics say about a measured
# run (after - before): batch sizes, queue wait, forward time, server-side latency
# of the embed routes. Prints indented lines.
metrics_report() {
  "$PY" - "$1" "$2" "$3" <<'EOF' || echo "  (could not read /metrics)"
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
model = sys.argv[3]
d = {k: v - before.get(k, 0.0) for k, v in after.items()}

def get(name):
    return d.get(f'{name}{{model="{model}"}}', 0.0)

lines = []
items = get("rookery_model_batch_size_count")
if items <= 0:
    print(f"  (no rookery_model_* samples for {model} in /metrics during the run)")
    sys.exit(0)
mean_batch = get("rookery_model_batch_size_sum") / items
queue_ms = get("rookery_model_queue_seconds_sum") / items * 1000
compute_ms = get("rookery_model_compute_seconds_sum") / items * 1000
lines.append(f"  items embedded {items:.0f}; mean batch size {mean_batch:.2f} (per item: the size of the batch each image rode in; max_batch 8)")
# batch-size distribution from the cumulative buckets
pat = re.compile(r'rookery_model_batch_size_bucket\{model="' + re.escape(model) + r'",le="([^"]+)"\}')
buckets = sorted(
    ((float(m.group(1)) if m.group(1) != "+Inf" else float("inf"), v)
     for k, v in d.items() for m in [pat.match(k)] if m),
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
    m = re.match(r'rookery_http_request_duration_seconds_count\{(.*route="([^"]*embed)".*)\}', k)
    if m and v > 0:
        s = d.get(k.replace("_count{", "_sum{"), 0.0)
        http_ms = s / v * 1000
        lines.append(f"  server-side {m.group(2)} latency: mean {http_ms:.1f} ms over {v:.0f} requests")
        lines.append(f"  unaccounted by queue + forward: {http_ms - queue_ms - compute_ms:.1f} ms per request (decode, HTTP,"
                     f" and waiting in the replica's mailbox for the batch in progress: the queue metric starts"
                     f" only when the replica takes the message)")
print("\n".join(lines))
EOF
}
