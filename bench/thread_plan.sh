#!/usr/bin/env bash
# Thread-plan benchmark (issue 12, item 3). NOT a test: never run by CTest.
#
# One Rookery server after another on the same ResNet-18 pipeline and JPEG as
# bench/embed_bench.sh, each with another thread plan, under the same wrk load;
# prints img/s and p50/p99 per plan so that the defaults (common/config.cpp
# plan_threads) can be chosen from numbers measured side by side in one run.
#
# A plan is RxT[:dN][:passive|:active][:eager]:
#   R replicas of the model, T LibTorch intra-op threads each, N decoder actors
#   (default: the server's own choice), OMP_WAIT_POLICY for GNU OpenMP (libgomp
#   reads it when it loads, so it is set in the server's environment), and
#   :eager for inference=eager. "auto" is the server's own plan.
#
# Usage: bench/thread_plan.sh
#        PLANS="auto 1x2 2x1 1x2:passive" DURATION=15 bench/thread_plan.sh
# Environment: PLANS (default below), DURATION (15), WARMUP (3), CONNECTIONS (8),
#   WRK_THREADS (2), IMAGE, BUILD_DIR, SHARED_BENCH, OUT_DIR (/tmp), WAIT_QUIET (0).
set -euo pipefail

BENCH=thread_plan
. "$(dirname "$0")/lib.sh"
DURATION="${DURATION:-15}"
bench_settings
PLANS="${PLANS:-auto 1x1 1x2 1x2:passive 1x2:active 2x1 2x1:d1 2x2 2x1:eager 1x2:eager}"
bench_need_tools "torch torchvision PIL" "python3-torch python3-torchvision python3-pil"
bench_tmp thread-plan

JPG="$TMP/image.jpg"
IMG_INFO="$(make_jpeg "$IMAGE" "$JPG")"
W="$TMP/w.pth"
"$PY" -c "import torch,torchvision; torch.manual_seed(0); torch.save(torchvision.models.resnet18().state_dict(), '$W')"
DATA="$TMP/data"
"$BUILD/rookery" models import --arch resnet18 --name resnet18 --weights "$W" --data "$DATA" >"$TMP/import.log" 2>&1 ||
  { cat "$TMP/import.log" >&2; die "rookery models import failed"; }

ROWS=()
for plan in $PLANS; do
  envs=(ROOKERY_PIPELINES='{"resnet18": "resnet18"}')
  IFS=: read -r -a parts <<<"$plan"
  if [[ "${parts[0]}" == auto ]]; then
    envs+=(ROOKERY_REPLICAS=0 ROOKERY_TORCH_THREADS=0 ROOKERY_DECODERS=0)
  else
    [[ "${parts[0]}" =~ ^([0-9]+)x([0-9]+)$ ]] || die "bad plan '$plan' (RxT[:dN][:passive|:active][:eager])"
    envs+=(ROOKERY_REPLICAS="${BASH_REMATCH[1]}" ROOKERY_TORCH_THREADS="${BASH_REMATCH[2]}" ROOKERY_DECODERS=0)
  fi
  for p in "${parts[@]:1}"; do
    case "$p" in
      d[0-9]*) envs+=(ROOKERY_DECODERS="${p#d}") ;;
      passive) envs+=(OMP_WAIT_POLICY=PASSIVE) ;;
      active) envs+=(OMP_WAIT_POLICY=ACTIVE) ;;
      eager) envs+=(ROOKERY_INFERENCE=eager) ;;
      *) die "bad plan part '$p' in '$plan'" ;;
    esac
  done
  name="plan_${plan//[:x]/_}"
  wait_quiet "($plan)"
  THREADS=0 start_rookery "$name" "$DATA" "${envs[@]}"
  rookery_signup bench "bench password 123"
  rookery_login bench "bench password 123"
  url="$RK/v1/pipelines/resnet18/embed"
  warm_up "$name" "$url" 512 "Bearer $TOKEN"
  measure "$name" "$url" "$RK_PID" "Bearer $TOKEN"
  line="$(sed -n 's/.*thread plan: //p' "$TMP/$name.rookery.log" | head -1)"
  stop_rookery "$name"
  ROWS+=("$(printf '%-22s %8s %8s %8s %7s %9s %6s   %s' "$plan" "$(fmt "$OK_RPS")" "$(fmt "$P50")" "$(fmt "$P99")" \
    "$((NON2XX + SOCKERR))" "$CPU_MS" "$OTHER_PCT" "$line")")
done

SUMMARY="$OUT_DIR/rookery-thread-plan-$(date +%Y%m%d-%H%M%S).txt"
{
  echo "Rookery thread plans, $(date -Is)"
  echo "machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); client (wrk) and server share them"
  echo "model: ResNet-18 (seeded random init), POST /v1/pipelines/resnet18/embed, one JPEG ${IMG_INFO} px"
  echo "load: wrk -t$WRK_THREADS -c$CONNECTIONS -d${DUR}s (+${WARM}s warm-up), one plan after another"
  echo
  printf '%-22s %8s %8s %8s %7s %9s %6s   %s\n' "plan" "img/s" "p50 ms" "p99 ms" "errors" "srv CPU" "other" "what the server reported"
  printf '%-22s %8s %8s %8s %7s %9s %6s\n' "" "" "" "" "" "ms/img" "CPU %"
  printf '%s\n' "${ROWS[@]}"
} >"$SUMMARY"
echo
cat "$SUMMARY"
echo "summary: $SUMMARY"
