#!/usr/bin/env bash
# Image-embedding benchmark on the real pretrained weights (issue 9, item 7). NOT a test:
# never run by CTest.
#
# For each of nsfwjs@4.4.0's InceptionV3 and MobileNetV2 (the converted built-in
# weights, build/builtin-models/nsfwjs_*), one after the other in one run:
#   (a) bare LibTorch: build/bare_forward, Rookery's embedding_model in a plain
#       sequential loop at batch 1 (and batch 8 for reference), on the model's own
#       preprocessing of the picture;
#   (b) Rookery: build/rookery serve, POST /v1/embed (InceptionV3: the default
#       `image` pipeline) or POST /v1/pipelines/mobilenet/embed (MobileNetV2: a
#       pipeline an admin adds at run time), driven by wrk;
#   (c) the Python peer: bench/peer_keras.py (FastAPI + uvicorn, Keras-flavoured
#       PyTorch modules loading the same model.pth strictly), POST /embed, the same wrk;
# then prints one table with the ratios rookery/bare, rookery/python and the p99 ratio.
# Before any timing it checks that the peer serves the same model: the peer's
# embedding of the source picture (and of the JPEG) against Rookery's answer,
# cosine >= PARITY_MIN.
#
# Usage: bench/pretrained_bench.sh        (see bench/README.md)
# Environment (all optional; the common ones as in bench/embed_bench.sh):
#   DURATION=20 WARMUP=3 CONNECTIONS=8 WRK_THREADS=2 TORCH_THREADS=2 BARE_SECONDS=8
#   IMAGE=chelsea.png BUILD_DIR=build SHARED_BENCH=../shared/bench OUT_DIR=/tmp WAIT_QUIET=0
#   MODELS="inception_v3 mobilenet_v2"   which models, in this order
#   BUILTIN_MODELS=<dir>   where nsfwjs_*/<version>/ are (default: rookery's builtin_models setting)
#   PARITY_MIN=0.9999      cosine the parity check needs
#   PARITY=strict          strict: stop when parity fails; warn: report it and go on
#   SKIP_BARE=0            1: leave out (a) (e.g. bare_forward not rebuilt yet)
set -euo pipefail

BENCH=pretrained_bench
. "$(dirname "$0")/lib.sh" # die, log, stop_pid, run_bare, start_rookery, warm_up, measure, ...
bench_settings
MODELS="${MODELS:-inception_v3 mobilenet_v2}"
PARITY_MIN="${PARITY_MIN:-0.9999}"
PARITY="${PARITY:-strict}"
SKIP_BARE="${SKIP_BARE:-0}"
PEER="$REPO/bench/peer_keras.py"
[[ "$PARITY" == strict || "$PARITY" == warn ]] || die "PARITY is strict or warn (got '$PARITY')"
[[ "$SKIP_BARE" == 0 || "$SKIP_BARE" == 1 ]] || die "SKIP_BARE is 0 or 1 (got '$SKIP_BARE')"
[[ "$PARITY_MIN" =~ ^(0(\.[0-9]+)?|1(\.0*)?)$ ]] || die "PARITY_MIN is a number in [0, 1] (got '$PARITY_MIN')"
read -r -a MODEL_LIST <<<"$MODELS"
((${#MODEL_LIST[@]} > 0)) || die "MODELS is empty"
declare -A PIPE=([inception_v3]=image [mobilenet_v2]=mobilenet) # Rookery pipeline per model
for m in "${MODEL_LIST[@]}"; do
  [[ -n "${PIPE[$m]:-}" ]] || die "unknown model '$m' in MODELS (inception_v3, mobilenet_v2)"
done

# --- tools and inputs -------------------------------------------------------
bench_need_tools "torch fastapi uvicorn PIL numpy" \
  "python3-torch python3-fastapi python3-uvicorn python3-pil python3-numpy"
[[ -f "$PEER" ]] || die "missing $PEER"
if [[ "$SKIP_BARE" == 0 && ! -x "$BUILD/bare_forward" ]]; then
  die "missing $BUILD/bare_forward: build it (cmake --build $BUILD --target bare_forward), or SKIP_BARE=1"
fi
if [[ -z "${BUILTIN_MODELS:-}" ]]; then
  BUILTIN_MODELS="$("$BUILD/rookery" serve --print-config 2>/dev/null |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["builtin_models"])')" ||
    die "cannot read the builtin_models setting from $BUILD/rookery serve --print-config; set BUILTIN_MODELS"
fi
bench_tmp pretrained-bench

# --- 1. prepare: JPEG, models, data dir ---------------------------------------
log "prepare: JPEG, the built-in models from $BUILTIN_MODELS, data dir in $TMP"
JPG="$TMP/image.jpg"
IMG_INFO="$(make_jpeg "$IMAGE" "$JPG")"
IMG_BYTES="$(stat -c %s "$JPG")"
# One data directory for all three systems: its models/ links to the built-in
# model directories (a data directory's own model wins over a built-in one of the
# same name), so bare_forward, the server and the peer read the same files even
# when BUILTIN_MODELS is not the directory compiled into the binaries.
DATA="$TMP/data"
mkdir -p "$DATA/models"
declare -A WEIGHTS SIZE DIM ARCH VERSION
for m in "${MODEL_LIST[@]}"; do
  name="nsfwjs_$m"
  dir="$BUILTIN_MODELS/$name"
  [[ -d "$dir" ]] || die "no built-in model $name in $BUILTIN_MODELS (scripts/setup.sh converts nsfwjs's weights)"
  ver="$(find "$dir" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9]+' -printf '%f\n' | sort -n | tail -1)"
  [[ -n "$ver" && -f "$dir/$ver/config.json" && -f "$dir/$ver/model.pth" ]] || die "no version with config.json and model.pth in $dir"
  read -r a s d < <("$PY" -c '
import json, sys
c = json.load(open(sys.argv[1]))
p = c.get("preprocess", {})
assert p.get("resize_mode") == "tf_bilinear" and p.get("align_corners") is True and not p.get("crop"), p
assert p.get("mean", [0] * 3) == [0, 0, 0] and p.get("std", [1] * 3) == [1, 1, 1], p
print(c["arch"], p["resize"], c["dim"])' "$dir/$ver/config.json") ||
    die "$dir/$ver/config.json is not nsfwjs's preprocessing (tf_bilinear, align_corners, no crop, RGB/255): the peer would not match"
  [[ "$a" == "keras_$m" ]] || die "$name's arch is '$a', not keras_$m"
  ARCH[$m]="$a" SIZE[$m]="$s" DIM[$m]="$d" VERSION[$m]="$ver" WEIGHTS[$m]="$dir/$ver/model.pth"
  ln -s "$(cd "$dir" && pwd)" "$DATA/models/$name"
done
ADMIN_ENV=(ROOKERY_ADMIN_USER=bench "ROOKERY_ADMIN_PASSWORD=bench password 123" ROOKERY_ALLOW_UNTRAINED=false)
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"

# ensure_pipeline m: the Rookery pipeline serving nsfwjs_m (the built-in `image` one
# for InceptionV3; MobileNetV2's is added once through the admin API and then
# stored in $DATA); checks it serves the model's real weights. Sets RK_URL.
ensure_pipeline() {
  local m="$1" pipe="${PIPE[$1]}" code body
  code="$(curl -s -o "$TMP/pipeline.json" -w '%{http_code}' --max-time 30 -H "Authorization: Bearer $TOKEN" \
    "$RK/v1/pipelines/$pipe")" || code=000
  if [[ "$code" == 404 && "$pipe" != image ]]; then
    log "add pipeline $pipe: decode, TF bilinear ${SIZE[$m]}x${SIZE[$m]} (align_corners), RGB/255, nsfwjs_$m, L2"
    body="{\"name\": \"$pipe\", \"ops\": [{\"op\": \"decode_image\"},
      {\"op\": \"resize\", \"width\": ${SIZE[$m]}, \"height\": ${SIZE[$m]}, \"filter\": \"tf_bilinear\", \"align_corners\": true},
      {\"op\": \"to_tensor\"}, {\"op\": \"model\", \"name\": \"nsfwjs_$m\"}, {\"op\": \"l2_normalize\"}]}"
    code="$(curl -s -o "$TMP/pipeline.json" -w '%{http_code}' --max-time 600 -XPOST -H "Authorization: Bearer $TOKEN" \
      -H 'Content-Type: application/json' -d "$body" "$RK/v1/pipelines")" || code=000
    [[ "$code" == 201 ]] || die "POST /v1/pipelines ($pipe) answered $code: $(head -c 500 "$TMP/pipeline.json")"
  fi
  [[ "$code" == 200 || "$code" == 201 ]] || die "GET /v1/pipelines/$pipe answered $code: $(head -c 500 "$TMP/pipeline.json")"
  "$PY" -c '
import json, sys
p = json.load(open(sys.argv[1]))
assert p["model"] == sys.argv[2] and p["pretrained"] and p["dim"] == int(sys.argv[3]), p
assert p.get("weights", "").startswith("nsfwjs@"), p.get("weights")' "$TMP/pipeline.json" "nsfwjs_$m" "${DIM[$m]}" ||
    die "pipeline $pipe does not serve nsfwjs_$m's weights: $(head -c 800 "$TMP/pipeline.json")"
  if [[ "$pipe" == image ]]; then RK_URL="$RK/v1/embed"; else RK_URL="$RK/v1/pipelines/$pipe/embed"; fi
}

# same_answer a b what: two embedding answers of the same thing must agree (cosine >= 0.999999)
same_answer() {
  "$PY" - "$1" "$2" <<'EOF' || die "$3"
import json, sys
import numpy as np
a, b = (np.asarray(json.load(open(p))["embedding"], dtype=np.float64) for p in sys.argv[1:3])
c = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
sys.exit(0 if a.shape == b.shape and c >= 0.999999 else 1)
EOF
}

# --- 2. parity: the peer serves the same model as Rookery ----------------------------
# Rookery's answers (the measured servers' warm-up answers are compared with these
# again in (b)) and the peer's, computed by peer_keras.py's own code (the answers of
# the served peer are compared with these again in (c)), for the source picture and
# for the JPEG every request below posts.
log "parity: Rookery's and the peer's embeddings of $(basename "$IMAGE") and the JPEG"
start_rookery parity "$DATA" "${ADMIN_ENV[@]}"
rookery_login bench "bench password 123"
for m in "${MODEL_LIST[@]}"; do
  ensure_pipeline "$m"
  post_embed "$RK_URL" "$IMAGE" "$TMP/$m.rk.src.json" "Bearer $TOKEN"
  post_embed "$RK_URL" "$JPG" "$TMP/$m.rk.jpg.json" "Bearer $TOKEN"
done
stop_rookery parity
declare -A PAR_SRC PAR_JPG PAR_OK PAR_NOTE
PARITY_FAILED=0
for m in "${MODEL_LIST[@]}"; do
  timeout 600 "$PY" "$PEER" --model "$m" --weights "${WEIGHTS[$m]}" --threads "$THREADS" --embed "$IMAGE" "$JPG" \
    >"$TMP/$m.py.jsonl" 2>"$TMP/$m.py.err" || { cat "$TMP/$m.py.err" >&2; die "peer_keras.py --embed failed for $m"; }
  head -1 "$TMP/$m.py.jsonl" >"$TMP/$m.py.src.json"
  sed -n 2p "$TMP/$m.py.jsonl" >"$TMP/$m.py.jpg.json"
  read -r "PAR_SRC[$m]" "PAR_JPG[$m]" "PAR_OK[$m]" note < <("$PY" - "$PARITY_MIN" "$TMP/$m.rk.src.json" \
    "$TMP/$m.py.src.json" "$TMP/$m.rk.jpg.json" "$TMP/$m.py.jpg.json" <<'EOF'
import json, sys
import numpy as np

def vec(path, key="embedding"):
    return np.asarray(json.load(open(path))[key], dtype=np.float64)

def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) if a.shape == b.shape else float("nan")

need = float(sys.argv[1])
c = [cos(vec(sys.argv[2]), vec(sys.argv[3])), cos(vec(sys.argv[4]), vec(sys.argv[5]))]
ok = all(x >= need for x in c)
note = "-"
if not ok:
    # Known failure mode: the answer is softmax(features), L2-normalised (a model whose
    # config.json says "output": "softmax" applying it to its features too).
    f = vec(sys.argv[3], "features")
    s = np.exp(f - f.max())
    if cos(vec(sys.argv[2]), s / s.sum()) >= need:
        note = "rookery_answers_l2(softmax(features))"
print(f"{c[0]:.6f} {c[1]:.6f} {'ok' if ok else 'FAILED'} {note}")
EOF
  ) || die "cannot compare the parity answers for $m"
  PAR_NOTE[$m]="$note"
  echo "parity $m: cosine $(basename "$IMAGE") ${PAR_SRC[$m]}, JPEG ${PAR_JPG[$m]} (need >= $PARITY_MIN): ${PAR_OK[$m]}" \
    "$([[ "$note" != - ]] && echo "; $note")" >&2
  [[ "${PAR_OK[$m]}" == ok ]] || PARITY_FAILED=1
done
if ((PARITY_FAILED)); then
  msg="Rookery's answer and the peer's differ for the same model (cosines above)"
  if [[ " ${PAR_NOTE[*]} " == *softmax* ]]; then
    msg+="; Rookery's embeddings are L2(softmax(features)): models/embedding_model.cpp applies the"
    msg+=" \"output\": \"softmax\" of config.json to features() too (run(): 'else if (softmax_output)' needs '!features')"
  fi
  [[ "$PARITY" == warn ]] || die "parity FAILED: $msg. PARITY=warn measures anyway."
  warn "parity FAILED: $msg. Measuring anyway (PARITY=warn): the timings hold, the answers differ."
fi

wait_quiet "(a)"
BUSY_PCT="$(busy_pct_3s)"
((BUSY_PCT <= 15)) || warn "the machine is ${BUSY_PCT}% busy before the benchmark starts; results will be skewed"

# --- 3. per model: (a) bare, (b) Rookery, (c) the Python peer --------------------------
declare -A R
for m in "${MODEL_LIST[@]}"; do
  # (a)
  if [[ "$SKIP_BARE" == 0 ]]; then
    wait_quiet "($m a)"
    run_bare "$m" "$DATA" "nsfwjs_$m" "$JPG"
    want="3x${SIZE[$m]}x${SIZE[$m]}"
    [[ "$BARE_INPUT" == "$want" ]] ||
      die "bare_forward fed $m a ${BARE_INPUT:-?} input, not the model's $want: rebuild bare_forward (it applies the model's own preprocessing since this bench was added), or SKIP_BARE=1"
    R[$m.bare_rps]="$BARE_RPS" R[$m.bare_p50]="$BARE_P50" R[$m.bare_p99]="$BARE_P99" R[$m.bare_other]="$BARE_OTHER"
    R[$m.b8_rps]="$B8_RPS" R[$m.b8_p50]="$B8_P50" R[$m.b8_p99]="$B8_P99" R[$m.pre_p50]="$PRE_P50"
  fi

  # (b)
  wait_quiet "($m b)"
  start_rookery "$m" "$DATA" "${ADMIN_ENV[@]}"
  rookery_login bench "bench password 123"
  ensure_pipeline "$m"
  R[$m.rk_route]="${RK_URL#"$RK"}"
  warm_up "$m.rookery" "$RK_URL" "${DIM[$m]}" "Bearer $TOKEN"
  same_answer "$TMP/$m.rookery.warm.json" "$TMP/$m.rk.jpg.json" \
    "$m: the measured Rookery answers otherwise than the one the parity check saw"
  curl -sf --max-time 10 "$RK/metrics" >"$TMP/$m.metrics.before" || die "GET /metrics failed"
  measure "$m.rookery" "$RK_URL" "$RK_PID" "Bearer $TOKEN"
  R[$m.rk_rps]="$OK_RPS" R[$m.rk_p50]="$P50" R[$m.rk_p99]="$P99" R[$m.rk_non2xx]="$NON2XX"
  R[$m.rk_sockerr]="$SOCKERR" R[$m.rk_reqs]="$REQS" R[$m.rk_cpu]="$CPU_MS" R[$m.rk_busy]="$BUSY_MS" R[$m.rk_other]="$OTHER_PCT"
  curl -sf --max-time 10 "$RK/metrics" >"$TMP/$m.metrics.after" || die "GET /metrics failed"
  R[$m.metrics]="$(metrics_report "$TMP/$m.metrics.before" "$TMP/$m.metrics.after" "nsfwjs_$m")"
  stop_rookery "$m"

  # (c)
  wait_quiet "($m c)"
  PP_PORT="$(free_port)"
  start_peer "$m" "$PY" "$PEER" --model "$m" --weights "${WEIGHTS[$m]}" --threads "$THREADS" --port "$PP_PORT"
  warm_up "$m.python" "$PP/embed" "${DIM[$m]}"
  same_answer "$TMP/$m.python.warm.json" "$TMP/$m.py.jpg.json" \
    "$m: the served peer answers otherwise than peer_keras.py --embed did in the parity check"
  measure "$m.python" "$PP/embed" "$PP_PID"
  R[$m.py_rps]="$OK_RPS" R[$m.py_p50]="$P50" R[$m.py_p99]="$P99" R[$m.py_non2xx]="$NON2XX"
  R[$m.py_sockerr]="$SOCKERR" R[$m.py_reqs]="$REQS" R[$m.py_cpu]="$CPU_MS" R[$m.py_busy]="$BUSY_MS" R[$m.py_other]="$OTHER_PCT"
  log "($m c) stopping the Python peer"
  stop_pid "$PP_PID"
done

# --- 4. summary ---------------------------------------------------------------
g() { echo "${R[$1]:-}"; } # a result, "" when not measured
STAMP="$(date +%Y%m%d-%H%M%S)"
SUMMARY="$OUT_DIR/rookery-pretrained-bench-$STAMP.txt"
SKEWED=0
{
  echo "Rookery pretrained-model embedding benchmark, $(date -Is)"
  echo "machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), load average before: $LOAD_BEFORE, CPU busy before start: ${BUSY_PCT}%"
  echo "models: nsfwjs@4.4.0's Keras networks as converted for Rookery, from $BUILTIN_MODELS; the same model.pth for (a), (b), (c):"
  for m in "${MODEL_LIST[@]}"; do
    echo "  $m: nsfwjs_$m version ${VERSION[$m]} (${ARCH[$m]}), input ${SIZE[$m]}x${SIZE[$m]} (TF bilinear, align_corners, RGB/255), ${DIM[$m]}-d pooled features, L2-normalised"
  done
  echo "threads: $THREADS intra-op threads for all three"
  echo "input: one JPEG ${IMG_INFO} px, ${IMG_BYTES} bytes ($(basename "$IMAGE") re-encoded, quality 90)"
  echo "load: wrk -t$WRK_THREADS -c$CONNECTIONS -d${DUR}s (+${WARM}s warm-up), never two systems at once; bare: ${BARE_SECONDS}s sequential loops"
  echo "binaries: $BUILD/rookery ($(date -r "$BUILD/rookery" '+%F %T'))$([[ "$SKIP_BARE" == 0 ]] && echo ", $BUILD/bare_forward ($(date -r "$BUILD/bare_forward" '+%F %T'))")"
  echo
  echo "parity: cosine of Rookery's answer with the peer's (same model.pth, peer_keras.py), need >= $PARITY_MIN"
  for m in "${MODEL_LIST[@]}"; do
    printf '  %-13s %s %s, JPEG %s: %s%s\n' "$m" "$(basename "$IMAGE")" "${PAR_SRC[$m]}" "${PAR_JPG[$m]}" "${PAR_OK[$m]}" \
      "$([[ "${PAR_NOTE[$m]}" != - ]] && echo " (${PAR_NOTE[$m]})")"
  done
  echo
  row() { printf '%-13s %-46s %8s %8s %8s %7s %10s %10s %7s\n' "$@"; }
  row "model" "system" "img/s" "p50 ms" "p99 ms" "errors" "srv CPU ms" "all CPU ms" "other"
  row "" "" "" "" "" "" "per image" "per image" "CPU %"
  for m in "${MODEL_LIST[@]}"; do
    if [[ "$SKIP_BARE" == 0 ]]; then
      row "$m" "(a) bare LibTorch, batch 1" "$(fmt "$(g $m.bare_rps)")" "$(fmt "$(g $m.bare_p50)")" "$(fmt "$(g $m.bare_p99)")" "-" "-" "-" "$(g $m.bare_other)"
      row "" "    bare LibTorch, batch 8 (ref.)" "$(fmt "$(g $m.b8_rps)")" "$(fmt "$(g $m.b8_p50)")" "$(fmt "$(g $m.b8_p99)")" "-" "-" "-" "(same)"
    else
      row "$m" "(a) bare LibTorch (SKIP_BARE=1)" "-" "-" "-" "-" "-" "-" "-"
    fi
    row "" "(b) Rookery POST $(g $m.rk_route)" "$(fmt "$(g $m.rk_rps)")" "$(fmt "$(g $m.rk_p50)")" "$(fmt "$(g $m.rk_p99)")" \
      "$(($(g $m.rk_non2xx) + $(g $m.rk_sockerr)))" "$(g $m.rk_cpu)" "$(g $m.rk_busy)" "$(g $m.rk_other)"
    row "" "(c) Python peer POST /embed" "$(fmt "$(g $m.py_rps)")" "$(fmt "$(g $m.py_p50)")" "$(fmt "$(g $m.py_p99)")" \
      "$(($(g $m.py_non2xx) + $(g $m.py_sockerr)))" "$(g $m.py_cpu)" "$(g $m.py_busy)" "$(g $m.py_other)"
  done
  echo "  (bare p50/p99 are per forward call: one image at batch 1, eight at batch 8; img/s of (b)/(c) counts 2xx answers only;"
  echo "   errors = non-2xx + socket errors/timeouts (wrk --timeout 30s); CPU ms per image: srv = the server process,"
  echo "   all = the whole machine incl. wrk; other CPU % = share of all CPUs used by processes not started by this script)"
  if [[ "$SKIP_BARE" == 0 ]]; then
    for m in "${MODEL_LIST[@]}"; do
      echo "   decode + preprocess of this JPEG alone for $m, Rookery's pipeline, one thread: p50 $(g $m.pre_p50) ms"
    done
  fi
  echo
  printf '%-36s' "ratio"
  for m in "${MODEL_LIST[@]}"; do printf ' %14s' "$m"; done
  printf '   %s\n' "target (issue 2's, for reference)"
  ratio_row() { # label target op key_a key_b
    local m r label="$1" target="$2" op="$3"
    printf '%-36s' "$label"
    for m in "${MODEL_LIST[@]}"; do
      r="$(ratio "$(g $m.$4)" "$(g $m.$5)")"
      if [[ "$target" == - || "$r" == n/a ]]; then printf ' %14s' "$r$([[ $r != n/a ]] && echo x)"
      else printf ' %14s' "${r}x $(verdict "$r" "$target" "$op")"; fi
    done
    [[ "$target" == - ]] && printf '   -\n' || printf '   %s %sx\n' "$op" "$target"
  }
  ratio_row "rookery / bare batch 1 (throughput)" 0.95 ">=" rk_rps bare_rps
  ratio_row "rookery / python (throughput)" 1.5 ">=" rk_rps py_rps
  ratio_row "p99 rookery / p99 python" 1.0 "<" rk_p99 py_p99
  ratio_row "rookery / bare batch 8 (reference)" - - rk_rps b8_rps
  echo
  for m in "${MODEL_LIST[@]}"; do
    echo "Rookery's /metrics over the measured $m run:"
    echo "$(g $m.metrics)"
  done
  for m in "${MODEL_LIST[@]}"; do
    if ((BUSY_PCT > 15 || ${R[$m.bare_other]:-0} > 10 || $(g $m.rk_other) > 10 || $(g $m.py_other) > 10)); then
      SKEWED=1
    fi
    if [[ "$(g $m.rk_reqs)" == 0 || "$(g $m.py_reqs)" == 0 ]]; then
      echo
      echo "WARNING: $m: a wrk run completed no request (rookery $(g $m.rk_reqs), python $(g $m.py_reqs)); raise DURATION."
    fi
    if [[ "$(g $m.rk_non2xx)$(g $m.rk_sockerr)$(g $m.py_non2xx)$(g $m.py_sockerr)" != 0000 ]]; then
      echo
      echo "WARNING: $m: non-2xx answers or socket errors above; throughputs count 2xx only."
    fi
  done
  if ((SKEWED)); then
    echo
    echo "WARNING: other processes used the CPUs (${BUSY_PCT}% before the start; see the 'other CPU %' column);"
    echo "         the numbers are skewed. Run again on a quiet machine (WAIT_QUIET=120 waits for one)."
  fi
  if ((PARITY_FAILED)); then
    echo
    echo "WARNING: parity FAILED (above): Rookery's answers are not the peer's; the timings compare the same"
    echo "         networks on the same input all the same."
  fi
  echo
  echo "caveat: client (wrk) and server share the same $(nproc) CPUs; bare (a) has them to itself."
} >"$SUMMARY"
{
  for m in "${MODEL_LIST[@]}"; do
    echo
    [[ "$SKIP_BARE" == 0 ]] && { echo "---- raw: $m bare_forward"; cat "$TMP/$m.bare.txt"; }
    echo "---- raw: $m wrk rookery"; cat "$TMP/$m.rookery.wrk.txt"
    echo "---- raw: $m wrk python"; cat "$TMP/$m.python.wrk.txt"
    echo "---- raw: $m rookery /metrics after the run"; cat "$TMP/$m.metrics.after"
  done
} >"$SUMMARY.raw"
echo
echo "================================================================================"
cat "$SUMMARY"
echo "================================================================================"
echo "summary: $SUMMARY (raw outputs: $SUMMARY.raw)"
