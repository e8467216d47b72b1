#!/usr/bin/env bash
# Training quality and speed report (issue 4, item 7). Not a test: it trains
# for real on the full data sets and takes a while (about 20 minutes on 2
# cores with the defaults; QUICK=1 for a few-minute smoke run).
#
#   bench/train_bench.sh                     all parts
#   PARTS="speed cnn" bench/train_bench.sh   some of: speed cnn resnet vae gan lm
#
# Parts:
#   speed   small_cnn epoch time on Fashion-MNIST: `rookery train` against the
#           same model, augmentation and loop in python3-torch (bench/train_speed.py),
#           same threads, alternated SPEED_REPS times in this run; ratio C++ / Python.
#   cnn     small_cnn, CNN_EPOCHS epochs, one-cycle LR: test accuracy per epoch.
#   resnet  torchvision's ResNet-18 (from scratch, 1 input channel), RESNET_EPOCHS.
#   vae     convolutional VAE: held-out reconstruction error per epoch.
#   gan     DCGAN; 1,000 samples judged by the small_cnn of part cnn: mean class
#           confidence, class balance (entropy / log 10) and an Inception-score-
#           style exp(E[KL(p(y|x) || p(y))]).
#   lm      byte-level LSTM language model on fortunes: held-out perplexity per epoch.
#
# Settings: THREADS (2), BUILD_DIR (build), OUT_DIR (/tmp/rookery-train-bench-<time>),
# CNN_EPOCHS (12), CNN_WIDTH (1.0), RESNET_EPOCHS (4), VAE_EPOCHS (10), GAN_EPOCHS (10),
# LM_EPOCHS (3), SPEED_REPS (2), SPEED_LIMIT (12800 images), QUICK (0).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
BUILD_DIR="${BUILD_DIR:-build}"
OUT="${OUT_DIR:-/tmp/rookery-train-bench-$(date +%Y%m%d-%H%M%S)}"
PARTS="${PARTS:-speed cnn resnet vae gan lm}"
QUICK="${QUICK:-0}"
CNN_EPOCHS="${CNN_EPOCHS:-12}"
RESNET_EPOCHS="${RESNET_EPOCHS:-4}"
VAE_EPOCHS="${VAE_EPOCHS:-10}"
GAN_EPOCHS="${GAN_EPOCHS:-10}"
LM_EPOCHS="${LM_EPOCHS:-3}"
SPEED_REPS="${SPEED_REPS:-2}"
SPEED_LIMIT="${SPEED_LIMIT:-12800}" # images timed per speed run (0: the whole epoch)
CNN_WIDTH="${CNN_WIDTH:-1.0}"       # small_cnn width multiplier for the cnn part
LIMIT=0
if [ "$QUICK" = 1 ]; then
  CNN_EPOCHS=1 RESNET_EPOCHS=1 VAE_EPOCHS=1 GAN_EPOCHS=1 LM_EPOCHS=1 SPEED_REPS=1 LIMIT=4096
fi
mkdir -p "$OUT"
ROOKERY="$BUILD_DIR/rookery"
[ -x "$ROOKERY" ] || { echo "build first: scripts/dev.sh build" >&2; exit 2; }
REPORT="$OUT/report.txt"
: > "$REPORT"
say() { echo "$*" | tee -a "$REPORT"; }
has() { [[ " $PARTS " == *" $1 "* ]]; }
if has gan && [ ! -x "$BUILD_DIR/gan_judge" ]; then
  cmake --build "$BUILD_DIR" --target gan_judge -j"$(nproc)" >/dev/null
fi

# Runs a job spec with `rookery train` into $OUT/$1 (a fresh directory).
train() {
  local name="$1" spec="$2"
  rm -rf "$OUT/$name"
  echo "$spec" > "$OUT/$name.json"
  "$ROOKERY" train "$OUT/$name.json" --out "$OUT/$name" --data "$OUT/data" \
    --threads "$THREADS" --quiet > "$OUT/$name.result.json"
}

# Per-epoch values of a validation metric from a job's metrics.jsonl.
val_series() {
  /usr/bin/python3 - "$OUT/$1/metrics.jsonl" "$2" <<'EOF'
import json, sys
pts = [json.loads(l) for l in open(sys.argv[1])]
print(" ".join(f"{p['values'][sys.argv[2]]:.4f}" for p in pts if p["phase"] == "val"))
EOF
}

# Seconds of training (validation excluded) in epoch 1 of a job.
epoch1_seconds() {
  /usr/bin/python3 - "$OUT/$1/metrics.jsonl" <<'EOF'
import json, sys
pts = [json.loads(l) for l in open(sys.argv[1])]
print(max(p["time_s"] for p in pts if p["phase"] == "train" and p["epoch"] == 1))
EOF
}

say "Rookery training benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, THREADS=$THREADS"
say "output: $OUT"
limit_json=""
[ "$LIMIT" != 0 ] && limit_json=", \"limit_train\": $LIMIT"

if has speed; then
  say ""
  say "== speed: small_cnn, one epoch of the first $SPEED_LIMIT Fashion-MNIST images (0: all 60,000), batch 64, $THREADS threads"
  cpp=() py=()
  for rep in $(seq "$SPEED_REPS"); do
    train speed "{\"trainer\": \"classifier\", \"dataset\": \"fashion-mnist\", \"model\": \"small_cnn\",
                  \"hyper\": {\"epochs\": 1, \"batch_size\": 64, \"lr\": 0.003, \"limit_test\": 500,
                              \"limit_train\": $SPEED_LIMIT}}"
    cpp+=("$(epoch1_seconds speed)")
    py+=("$(/usr/bin/python3 bench/train_speed.py "$THREADS" 1 64 0.003 "$SPEED_LIMIT" | /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["seconds"])')")
    say "  rep $rep: C++ ${cpp[-1]} s, python3-torch ${py[-1]} s"
  done
  /usr/bin/python3 - "${cpp[*]}" "${py[*]}" <<'EOF' | tee -a "$REPORT"
import sys
c = sorted(map(float, sys.argv[1].split())); p = sorted(map(float, sys.argv[2].split()))
print(f"  best of each: C++ {c[0]:.1f} s, Python {p[0]:.1f} s, ratio C++/Python {c[0]/p[0]:.2f}x (aim <= 0.90x)")
EOF
fi

if has cnn || has gan; then
  say ""
  say "== cnn: small_cnn (width x$CNN_WIDTH), $CNN_EPOCHS epochs, one-cycle LR, flips + padded crops"
  train cnn "{\"trainer\": \"classifier\", \"dataset\": \"fashion-mnist\",
              \"model\": {\"arch\": \"small_cnn\", \"options\": {\"width_mult\": $CNN_WIDTH}},
              \"hyper\": {\"epochs\": $CNN_EPOCHS, \"batch_size\": 64, \"lr\": 0.003,
                          \"schedule\": \"onecycle\", \"weight_decay\": 0.0001 $limit_json}}"
  say "  test accuracy per epoch: $(val_series cnn val_acc)"
  say "  final test accuracy: $(val_series cnn val_acc | awk '{print $NF}') (target >= 0.92; published 2-conv baseline 0.916)"
fi

if has resnet; then
  say ""
  say "== resnet: torchvision ResNet-18 from scratch on 28x28x1, $RESNET_EPOCHS epochs, one-cycle LR"
  train resnet "{\"trainer\": \"classifier\", \"dataset\": \"fashion-mnist\", \"model\": \"resnet18\",
                 \"hyper\": {\"epochs\": $RESNET_EPOCHS, \"batch_size\": 128, \"lr\": 0.002,
                             \"schedule\": \"onecycle\", \"weight_decay\": 0.0001 $limit_json}}"
  say "  test accuracy per epoch: $(val_series resnet val_acc)"
  say "  final test accuracy: $(val_series resnet val_acc | awk '{print $NF}') (target >= 0.94; published 0.949)"
fi

if has vae; then
  say ""
  say "== vae: convolutional VAE (latent 32, beta 1), $VAE_EPOCHS epochs"
  train vae "{\"trainer\": \"autoencoder\", \"dataset\": \"fashion-mnist\",
              \"hyper\": {\"epochs\": $VAE_EPOCHS, \"batch_size\": 128, \"lr\": 0.001,
                          \"variant\": \"vae\", \"latent_dim\": 32, \"beta\": 1.0 $limit_json}}"
  say "  held-out reconstruction MSE per pixel, per epoch: $(val_series vae val_recon)"
  say "  held-out KL per epoch: $(val_series vae val_kl)"
fi

if has gan; then
  say ""
  say "== gan: DCGAN, $GAN_EPOCHS epochs; 1,000 samples judged by the cnn part's classifier"
  train gan "{\"trainer\": \"gan\", \"dataset\": \"fashion-mnist\",
              \"hyper\": {\"epochs\": $GAN_EPOCHS, \"batch_size\": 128, \"mode\": \"dcgan\" $limit_json}}"
  "$BUILD_DIR/gan_judge" --gan-spec "$OUT/gan.json" --gan-dir "$OUT/gan" \
    --classifier-dir "$OUT/cnn" --samples 1000 --threads "$THREADS" | tee -a "$REPORT"
fi

if has lm; then
  say ""
  say "== lm: byte-level LSTM (2 x 256) language model on fortunes, bptt 64, $LM_EPOCHS epochs"
  train lm "{\"trainer\": \"rnn\", \"dataset\": \"fortunes\",
             \"hyper\": {\"task\": \"lm\", \"epochs\": $LM_EPOCHS, \"batch_size\": 64, \"lr\": 0.002,
                         \"hidden\": 256, \"layers\": 2, \"bptt\": 64 $limit_json}}"
  say "  held-out perplexity per epoch (bytes; uniform = 256): $(val_series lm val_ppl)"
  last=$(ls "$OUT/lm/artifacts"/sample_epoch*.txt | sort -V | tail -1)
  say "  sample ($(basename "$last")):"
  head -c 300 "$last" | sed 's/^/    /' | tee -a "$REPORT"
  echo | tee -a "$REPORT"
fi
say ""
say "report: $REPORT"
