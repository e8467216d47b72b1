#!/usr/bin/env bash
# Time-series quality report (issue 10, item 8). Not a test: it trains for
# real (about 15 minutes on 2 cores with the defaults; QUICK=1 for a short
# smoke run). Every number is measured in this run with `rookery train`.
#
#   bench/timeseries_bench.sh                      all parts
#   PARTS="sc fc" bench/timeseries_bench.sh        some of: sc ucr fc
#
# Parts:
#   sc   synthetic control (300 train / 300 test): held-out accuracy of
#        InceptionTime (nf 32, depth 6, residual), a 2-layer LSTM and
#        MiniRocket (9,996 features + logistic head). The literature reports
#        >= 0.99 for strong methods on this set.
#   ucr  a UCR-format .tsv built from real statsmodels series by
#        bench/make_ucr_statsmodels.py (which series is a 48-point window
#        from?), uploaded through the importer: the same three models.
#   fc   sunspots, 11-year horizon from 22-year windows: MASE of a GRU and of
#        InceptionTime against the seasonal-naive forecast on the same
#        held-out windows.
# Settings: THREADS (2), BUILD_DIR (build), OUT_DIR, QUICK (0).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
BUILD_DIR="${BUILD_DIR:-build}"
OUT="${OUT_DIR:-/tmp/rookery-ts-bench-$(date +%Y%m%d-%H%M%S)}"
PARTS="${PARTS:-sc ucr fc}"
QUICK="${QUICK:-0}"
E_INC=30; E_LSTM=60; E_ROCKET=60; E_FC=60
if [ "$QUICK" = 1 ]; then E_INC=3; E_LSTM=3; E_ROCKET=5; E_FC=3; fi
BIN="$BUILD_DIR/rookery"
mkdir -p "$OUT"
DATA="$OUT/data"
mkdir -p "$DATA"

run() { # name spec-json -> prints the result JSON's metrics
  local name="$1" spec="$2"
  echo "$spec" > "$OUT/$name.json"
  local t0=$SECONDS
  "$BIN" train "$OUT/$name.json" --out "$OUT/$name" --threads "$THREADS" --quiet --data "$DATA" \
    > "$OUT/$name.result.json"
  echo "$name: $((SECONDS - t0)) s"
}
metric() { jq -r "$2" "$OUT/$1.result.json"; }

models() { # dataset -> trains the three classifiers on it
  local ds="$1" prefix="$2"
  run "$prefix-inception" '{"trainer":"timeseries","dataset":"'"$ds"'","model":{"arch":"inception_time","options":{"nf":32,"depth":6}},
    "hyper":{"epochs":'$E_INC',"batch_size":32,"lr":0.003,"schedule":"onecycle"}}'
  run "$prefix-lstm" '{"trainer":"timeseries","dataset":"'"$ds"'","model":{"arch":"lstm","options":{"hidden":64,"layers":2}},
    "hyper":{"epochs":'$E_LSTM',"batch_size":32,"lr":0.005,"schedule":"onecycle"}}'
  run "$prefix-minirocket" '{"trainer":"timeseries","dataset":"'"$ds"'","model":{"arch":"minirocket","options":{"features":9996}},
    "hyper":{"epochs":'$E_ROCKET',"batch_size":32,"lr":0.003,"weight_decay":0.01,"optimizer":"adamw"}}'
  printf "%-22s %10s %10s %10s\n" "$ds val_acc" inception lstm minirocket
  printf "%-22s %10.4f %10.4f %10.4f\n" "" "$(metric "$prefix-inception" .metrics.val_acc)" \
    "$(metric "$prefix-lstm" .metrics.val_acc)" "$(metric "$prefix-minirocket" .metrics.val_acc)"
}

for part in $PARTS; do
  case "$part" in
    sc) models synthetic-control sc ;;
    ucr)
      /usr/bin/python3 bench/make_ucr_statsmodels.py "$OUT/statsmodels48.tsv"
      # The importer POST /v1/datasets runs (sniffs the UCR format, holds out
      # each class's last 20% of windows).
      "$BIN" datasets import "$OUT/statsmodels48.tsv" --name statsmodels48 --data "$DATA"
      models statsmodels48 ucr ;;
    fc)
      run fc-gru '{"trainer":"timeseries","dataset":"sunspots","task":{"input":{"length":22},"target":{"block":"continuous","horizon":11}},
        "model":{"arch":"gru","options":{"hidden":64,"layers":1}},"hyper":{"epochs":'$E_FC',"batch_size":16,"lr":0.005,"schedule":"onecycle"}}'
      run fc-inception '{"trainer":"timeseries","dataset":"sunspots","task":{"input":{"length":22},"target":{"block":"continuous","horizon":11}},
        "model":{"arch":"inception_time","options":{"nf":16,"depth":3,"kernel":16}},"hyper":{"epochs":'$E_FC',"batch_size":16,"lr":0.003,"schedule":"onecycle"}}'
      printf "%-28s %10s %10s %14s\n" "sunspots h=11 MASE" gru inception seasonal_naive
      printf "%-28s %10.4f %10.4f %14.4f\n" "" "$(metric fc-gru .forecast.mase)" \
        "$(metric fc-inception .forecast.mase)" "$(metric fc-gru .forecast.mase_seasonal_naive)" ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
echo "runs in $OUT"
