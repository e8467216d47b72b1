#!/usr/bin/env bash
# Embedding throughput benchmark (issue 2, item 10). NOT a test: never run by CTest.
#
# One run measures, one after the other on this machine (issue 2, item 10; issue 12, item 4):
#   (a)  bare LibTorch: build/bare_forward, Rookery's embedding_model in a plain
#        sequential batch-1 loop (and batch 8 for reference), eager;
#   (a') the same on the inference-optimised path (embedding_model::prepare);
#   (b)  Rookery: build/rookery serve with its own thread plan and the optimised
#        path, POST /v1/pipelines/resnet18/embed driven by wrk;
#   (b') the same server with inference=eager;
#   (d)  the default `image` pipeline (the real pretrained InceptionV3), when installed;
#   (c)  the Python peer: ../shared/bench/peer_fastapi.py (FastAPI + torchvision),
#        POST /embed driven by the same wrk command;
# all on the same ResNet-18 weights (seeded random init) and the same JPEG, then
# prints a summary table with the ratios rookery/bare and rookery/python. With 4
# or more CPUs, wrk runs on a CPU set of its own (taskset), the rest on the others.
# PLAN="R T" fixes Rookery's replicas and intra-op threads (default "0 0": its own plan).
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

BENCH=embed_bench
. "$(dirname "$0")/lib.sh" # die, log, stop_pid, run_bare, start_rookery, warm_up, measure, ...
bench_settings

# --- tools and inputs -------------------------------------------------------
bench_need_tools "torch torchvision fastapi uvicorn PIL" \
  "python3-torch python3-torchvision python3-fastapi python3-uvicorn python3-pil"
[[ -f "$SHARED/peer_fastapi.py" ]] || die "missing $SHARED/peer_fastapi.py (the reference Python peer; set SHARED_BENCH)"
if [[ ! -x "$BUILD/bare_forward" ]]; then
  echo "embed_bench: building bare_forward ..." >&2
  cmake --build "$BUILD" --target bare_forward -j2 >&2 || die "cannot build bare_forward"
fi
bench_tmp embed-bench

# --- 1. prepare: JPEG, weights, data dir ------------------------------------
log "prepare: JPEG, seeded ResNet-18 weights, data dir in $TMP"
JPG="$TMP/image.jpg"
IMG_INFO="$(make_jpeg "$IMAGE" "$JPG")"
IMG_BYTES="$(stat -c %s "$JPG")"
W="$TMP/w.pth"
"$PY" -c "import torch,torchvision; torch.manual_seed(0); torch.save(torchvision.models.resnet18().state_dict(), '$W')"
DATA="$TMP/data"
"$BUILD/rookery" models import --arch resnet18 --name resnet18 --weights "$W" --data "$DATA" >"$TMP/import.log" 2>&1 ||
  { cat "$TMP/import.log" >&2; die "rookery models import failed"; }
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
wait_quiet "(a)"
BUSY_PCT="$(busy_pct_3s)"
((BUSY_PCT <= 15)) || warn "the machine is ${BUSY_PCT}% busy before the benchmark starts; results will be skewed"

CLIENT_CPUS="" SERVER_CPUS=""
if (($(nproc) >= 4)); then # the client on a CPU set of its own (a quarter of the CPUs)
  n="$(nproc)"; c=$((n / 4))
  SERVER_CPUS="0-$((n - c - 1))" CLIENT_CPUS="$((n - c))-$((n - 1))"
  PIN_SERVER=(taskset -c "$SERVER_CPUS") PIN_CLIENT=(taskset -c "$CLIENT_CPUS")
fi

# --- 2. (a) bare LibTorch ----------------------------------------------------
run_bare resnet18 "$DATA" resnet18 "$JPG"

# --- 3. (b) Rookery, its own thread plan, optimised; (b') the same, eager --------
# The default `image` pipeline serves the built-in InceptionV3 (bench/pretrained_bench.sh
# measures that one); this bench's ResNet-18 gets a pipeline of its own (the
# `pipelines` setting: the model's preprocessing, ImageNet's here, then the model).
# The server plans its threads itself (replicas, torch_threads, decoders = 0:
# common/config.cpp plan_threads); PLAN="replicas torch_threads" overrides it.
read -r PLAN_R PLAN_T <<<"${PLAN:-0 0}"
rookery_run() { # name [VAR=value ...]: one measured Rookery run; sets RK_* for that name
  local name="$1"
  shift
  wait_quiet "($name)"
  start_rookery "$name" "$DATA" ROOKERY_PIPELINES='{"resnet18": "resnet18"}' ROOKERY_TORCH_THREADS="$PLAN_T" \
    ROOKERY_REPLICAS="$PLAN_R" ROOKERY_DECODERS=0 "$@"
  rookery_signup bench "bench password 123"
  rookery_login bench "bench password 123"
  RK_URL="$RK/v1/pipelines/resnet18/embed"
  curl -sf --max-time 10 -H "Authorization: Bearer $TOKEN" "$RK/v1/pipelines/resnet18" >"$TMP/$name.pipeline.json" ||
    die "GET /v1/pipelines/resnet18 failed"
  "$PY" -c 'import json,sys; p=json.load(open(sys.argv[1])); assert p["model"] == "resnet18" and p["pretrained"], p' \
    "$TMP/$name.pipeline.json" || die "the resnet18 pipeline does not serve the imported weights: $(cat "$TMP/$name.pipeline.json")"
  warm_up "$name" "$RK_URL" 512 "Bearer $TOKEN"
  curl -sf --max-time 10 "$RK/metrics" >"$TMP/$name.metrics.before" || die "GET /metrics failed"
  measure "$name" "$RK_URL" "$RK_PID" "Bearer $TOKEN"
  curl -sf --max-time 10 "$RK/metrics" >"$TMP/$name.metrics.after" || die "GET /metrics failed"
  METRICS_REPORT="$(metrics_report "$TMP/$name.metrics.before" "$TMP/$name.metrics.after" resnet18)"
  INFERENCE="$("$PY" -c 'import json,sys; i=json.load(open(sys.argv[1])).get("inference") or {}; e=i.get("embed",{}); print(i.get("mode","?"), "passes:", " ".join(e.get("passes",[])) or "-", "prepare_ms:", round(e.get("prepare_ms",0)), e.get("reason",""))' "$TMP/$name.pipeline.json")"
  curl -sf --max-time 10 "$RK/metrics" >"$TMP/$name.metrics" 2>/dev/null || true
  stop_rookery "$name"
}
rookery_run rookery
RK_RPS="$RPS" RK_OK_RPS="$OK_RPS" RK_P50="$P50" RK_P99="$P99" RK_NON2XX="$NON2XX" RK_SOCKERR="$SOCKERR"
RK_REQS="$REQS" RK_CPU="$CPU_MS" RK_BUSY="$BUSY_MS" RK_OTHER="$OTHER_PCT" RK_INFERENCE="$INFERENCE"
RK_METRICS_REPORT="$METRICS_REPORT"
cp "$TMP/rookery.metrics" "$TMP/rookery.metrics.keep" 2>/dev/null || true
PLAN_LINE="$(sed -n 's/.*thread plan: //p' "$TMP/rookery.rookery.log" | head -1)"
rookery_run rookery_eager ROOKERY_INFERENCE=eager
RE_OK_RPS="$OK_RPS" RE_P50="$P50" RE_P99="$P99" RE_NON2XX="$NON2XX" RE_SOCKERR="$SOCKERR"
RE_CPU="$CPU_MS" RE_BUSY="$BUSY_MS" RE_OTHER="$OTHER_PCT" RE_INFERENCE="$INFERENCE"

# --- 3b. (d) the default `image` pipeline: the real pretrained InceptionV3 ----------
# (nsfwjs@4.4.0's weights as scripts/setup.sh converted them; 299 x 299, 2,048-d.
# bench/pretrained_bench.sh compares it with its own Python peer.)
BUILTIN_MODELS="${BUILTIN_MODELS:-$("$BUILD/rookery" serve --print-config 2>/dev/null |
  "$PY" -c 'import json,sys; print(json.load(sys.stdin)["builtin_models"])' 2>/dev/null || true)}"
PT_OK_RPS="" PT_P50="" PT_P99="" PT_NON2XX=0 PT_SOCKERR=0 PT_CPU="-" PT_BUSY="-" PT_OTHER="-" PT_INFERENCE="not run"
if [[ -d "$BUILTIN_MODELS/nsfwjs_inception_v3" ]]; then
  wait_quiet "(d)"
  start_rookery pretrained "$TMP/pt-data" ROOKERY_BUILTIN_MODELS="$BUILTIN_MODELS" ROOKERY_TORCH_THREADS="$PLAN_T" \
    ROOKERY_REPLICAS="$PLAN_R" ROOKERY_DECODERS=0
  rookery_signup bench "bench password 123"
  rookery_login bench "bench password 123"
  warm_up pretrained "$RK/v1/embed" 2048 "Bearer $TOKEN"
  measure pretrained "$RK/v1/embed" "$RK_PID" "Bearer $TOKEN"
  PT_OK_RPS="$OK_RPS" PT_P50="$P50" PT_P99="$P99" PT_NON2XX="$NON2XX" PT_SOCKERR="$SOCKERR"
  PT_CPU="$CPU_MS" PT_BUSY="$BUSY_MS" PT_OTHER="$OTHER_PCT"
  curl -sf --max-time 10 -H "Authorization: Bearer $TOKEN" "$RK/v1/pipelines/image" >"$TMP/pt.pipeline.json" || true
  PT_INFERENCE="$("$PY" -c 'import json,sys; i=json.load(open(sys.argv[1])).get("inference") or {}; e=i.get("embed",{}); print(i.get("mode","?"), "passes:", " ".join(e.get("passes",[])) or "-", "prepare_ms:", round(e.get("prepare_ms",0)), e.get("reason",""))' "$TMP/pt.pipeline.json" 2>/dev/null || echo "?")"
  stop_rookery pretrained
else
  warn "no built-in nsfwjs_inception_v3 in '$BUILTIN_MODELS' (scripts/setup.sh converts it): row (d) skipped"
fi

# --- 4. (c) the Python peer ---------------------------------------------------
wait_quiet "(c)"
PP_PORT="$(free_port)"
start_peer python "$PY" "$SHARED/peer_fastapi.py" --port "$PP_PORT" --weights "$W" --threads "$THREADS"
warm_up python "$PP/embed" 512
measure python "$PP/embed" "$PP_PID"
PY_RPS="$RPS" PY_OK_RPS="$OK_RPS" PY_P50="$P50" PY_P99="$P99" PY_NON2XX="$NON2XX" PY_SOCKERR="$SOCKERR"
PY_REQS="$REQS" PY_CPU="$CPU_MS" PY_BUSY="$BUSY_MS" PY_OTHER="$OTHER_PCT"
log "(c) stopping the Python peer"
stop_pid "$PP_PID"

# --- 5. summary ---------------------------------------------------------------
R_BARE="$(ratio "$RK_OK_RPS" "$BARE_RPS")"
R_OPT_BARE="$(ratio "$BOPT_RPS" "$BARE_RPS")"
R_EAGER="$(ratio "$RK_OK_RPS" "$RE_OK_RPS")"
R_B8="$(ratio "$RK_OK_RPS" "$B8_RPS")"
R_PY="$(ratio "$RK_OK_RPS" "$PY_OK_RPS")"
R_P99="$(ratio "$RK_P99" "$PY_P99")"
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
  row "(a') bare optimised, batch 1" "$(fmt "$BOPT_RPS")" "$(fmt "$BOPT_P50")" "$(fmt "$BOPT_P99")" "-" "-" "-" "(same)"
  row "     bare optimised, batch 8" "$(fmt "$BOPT8_RPS")" "$(fmt "$BOPT8_P50")" "$(fmt "$BOPT8_P99")" "-" "-" "-" "(same)"
  row "(b) Rookery POST .../embed" "$(fmt "$RK_OK_RPS")" "$(fmt "$RK_P50")" "$(fmt "$RK_P99")" "$((RK_NON2XX + RK_SOCKERR))" "$RK_CPU" "$RK_BUSY" "$RK_OTHER"
  row "(b') Rookery, inference=eager" "$(fmt "$RE_OK_RPS")" "$(fmt "$RE_P50")" "$(fmt "$RE_P99")" "$((RE_NON2XX + RE_SOCKERR))" "$RE_CPU" "$RE_BUSY" "$RE_OTHER"
  row "(d) Rookery default image (Incep.)" "$(fmt "$PT_OK_RPS")" "$(fmt "$PT_P50")" "$(fmt "$PT_P99")" "$((PT_NON2XX + PT_SOCKERR))" "$PT_CPU" "$PT_BUSY" "$PT_OTHER"
  row "(c) Python peer POST /embed" "$(fmt "$PY_OK_RPS")" "$(fmt "$PY_P50")" "$(fmt "$PY_P99")" "$((PY_NON2XX + PY_SOCKERR))" "$PY_CPU" "$PY_BUSY" "$PY_OTHER"
  echo "  (bare p50/p99 are per forward call: one image at batch 1, eight at batch 8; img/s of (b)/(c) counts 2xx answers only;"
  echo "   decode+preprocess of this JPEG alone, Rookery's pipeline, one thread: p50 ${PRE_P50} ms;"
  echo "   errors = non-2xx + socket errors/timeouts (rookery ${RK_NON2XX}+${RK_SOCKERR}, python ${PY_NON2XX}+${PY_SOCKERR}; wrk --timeout 30s);
   CPU ms per image: srv = the server process, all = the whole machine incl. wrk;
   other CPU % = share of all CPUs used by processes not started by this script during that phase)"
  echo
  printf '%-36s %9s   %-14s %s\n' "ratio" "measured" "target" "verdict"
  printf '%-36s %8sx   %-14s %s\n' "rookery / bare eager batch 1" "$R_BARE" ">= 1.0x" "$(verdict "$R_BARE" 1.0 '>=')"
  printf '%-36s %8sx   %-14s %s\n' "rookery / python (throughput)" "$R_PY" ">= 1.5x" "$(verdict "$R_PY" 1.5 '>=')"
  printf '%-36s %8sx   %-14s %s\n' "p99 rookery / p99 python" "$R_P99" "< 1.0x" "$(verdict "$R_P99" 1.0 '<')"
  printf '%-36s %8sx   %-14s %s\n' "rookery / bare batch 8 (reference)" "$R_B8" "-" "-"
  printf '%-36s %8sx   %-14s %s\n' "bare optimised / bare eager, batch 1" "$R_OPT_BARE" "-" "-"
  printf '%-36s %8sx   %-14s %s\n' "rookery optimised / rookery eager" "$R_EAGER" "-" "-"
  echo
  echo "Rookery's thread plan: ${PLAN_LINE:-?} (PLAN='${PLAN:-0 0}'; 0 0 = the server's own)"
  echo "(b)  inference: $RK_INFERENCE"
  echo "(b') inference: $RE_INFERENCE"
  echo "(d)  inference: $PT_INFERENCE (InceptionV3 299x299: not comparable with the ResNet-18 rows)"
  echo "client CPUs: ${CLIENT_CPUS:-shared with the server (fewer than 4 CPUs)}${SERVER_CPUS:+, server CPUs $SERVER_CPUS}"
  echo "int8: not measured (no \"precision\": \"int8\" path yet; see bench/README.md)"
  echo
  echo "Rookery's /metrics over the measured run:"
  echo "$RK_METRICS_REPORT"
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
  echo "---- raw: bare_forward"; cat "$TMP/resnet18.bare.txt"
  echo "---- raw: wrk rookery"; cat "$TMP/rookery.wrk.txt"
  echo "---- raw: wrk python"; cat "$TMP/python.wrk.txt"
  echo "---- raw: wrk rookery eager"; cat "$TMP/rookery_eager.wrk.txt"
  echo "---- raw: rookery /metrics after the run"; cat "$TMP/rookery.metrics.keep"
} >"$SUMMARY.raw"
echo
echo "================================================================================"
cat "$SUMMARY"
echo "================================================================================"
echo "summary: $SUMMARY (raw outputs: $SUMMARY.raw)"
