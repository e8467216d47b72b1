#!/usr/bin/env bash
# Rebuilds the built-in text model (the `text` pipeline's AWD-LSTM language
# model) from nothing but Debian's wordnet-base, by the recipe in
# scripts/text-lm/spec.json, and installs it in models/builtin/text-lm/ (which
# CMake copies into the built-in model directory). docs/text-lm.md has the
# numbers of the committed run. A crash resumes where it stopped: run it again.
#
#   scripts/train_text_lm.sh [job-dir]     (default build/text-lm-job)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
JOB="${1:-$ROOT/build/text-lm-job}"
BIN="$ROOT/build/rookery"
[ -x "$BIN" ] || { echo "build first: scripts/dev.sh build" >&2; exit 1; }
DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT
start=$(date +%s)
"$BIN" train "$ROOT/scripts/text-lm/spec.json" --out "$JOB" --threads "$(nproc)" --data "$DATA" --quiet \
  | tee "$JOB.result.json"
dst="$ROOT/models/builtin/text-lm"
mkdir -p "$dst"
cp "$JOB/model/text_model.json" "$JOB/model/tokenizer.bpe" "$JOB/model/model.pt" "$dst/"
jq --arg s "$(( $(date +%s) - start ))" '{outcome, epochs, steps, metrics, perplexity, tokenizer, seconds: ($s | tonumber)}' \
  "$JOB.result.json" > "$dst/provenance.json"
echo "installed into $dst:"
ls -l "$dst"
