#!/usr/bin/env bash
# Text quality report (issue 10, items 5 and 8). Not a test: it trains for
# real (about 40 minutes on 2 cores with the defaults; QUICK=1 for a short
# smoke run). Every number is measured in this run, side by side:
#
#   clf   fortunes' 43 categories, on the trainer's own split (13,754 train /
#         1,463 test): accuracy of
#           ulmfit   the built-in `text-lm` fine-tuned on fortunes (LM_EPOCHS),
#                    then the classifier with gradual unfreezing and
#                    discriminative LRs (EPOCHS),
#           scratch  the same classifier, same epochs, from random weights and
#                    a tokenizer trained on fortunes,
#           tfidf    TF-IDF (words and bigrams) + logistic regression
#                    (scikit-learn, bench/text_baselines.py),
#         with the held-out perplexity of the LM on fortunes' test texts
#         before and after fine-tuning.
#   recall  the `text` pipeline on WordNet gloss -> lemma retrieval: 1,000
#         held-out synsets (never in the LM's training split), each gloss
#         embedded and ranked against the 1,000 lemmas; recall@1 and @10,
#         beside TF-IDF of words and of character 3-5-grams.
#
#   bench/text_bench.sh                   both parts
#   PARTS=recall bench/text_bench.sh      one of: clf recall
# Settings: THREADS (2), BUILD_DIR (build), OUT_DIR, QUICK (0), EPOCHS (4), LM_EPOCHS (1),
# TRAIN_LIMIT (0: all 13,754 training fortunes; the test split is always whole).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
BUILD_DIR="${BUILD_DIR:-build}"
OUT="${OUT_DIR:-/tmp/rookery-text-bench-$(date +%Y%m%d-%H%M%S)}"
PARTS="${PARTS:-clf recall}"
QUICK="${QUICK:-0}"
EPOCHS="${EPOCHS:-4}"
LM_EPOCHS="${LM_EPOCHS:-1}"
TRAIN_LIMIT="${TRAIN_LIMIT:-0}" # > 0: train on that many fortunes (the test split stays whole)
if [ "$QUICK" = 1 ]; then EPOCHS=2; LM_EPOCHS=1; TRAIN_LIMIT=1500; fi
LIMIT=""
[ "$TRAIN_LIMIT" -gt 0 ] && LIMIT=',"limit_train":'"$TRAIN_LIMIT"
BIN="$BUILD_DIR/rookery"
PY=/usr/bin/python3
mkdir -p "$OUT"
DATA="$OUT/data"
mkdir -p "$DATA/text-models"

run() { # name spec-json: rookery train, result in $OUT/name.result.json
  local name="$1" spec="$2"
  echo "$spec" > "$OUT/$name.json"
  local t0=$SECONDS
  "$BIN" train "$OUT/$name.json" --out "$OUT/$name" --threads "$THREADS" --quiet --data "$DATA" \
    > "$OUT/$name.result.json"
  echo "$name: $((SECONDS - t0)) s" >&2
}
metric() { jq -r "$2" "$OUT/$1.result.json"; }

clf() {
  # Perplexity of the built-in LM on fortunes before fine-tuning: one step at
  # a learning rate of 1e-12 changes nothing, then the validation pass.
  run lm-before '{"trainer":"text","dataset":"fortunes","task":{"target":{"block":"lm"}},
    "model":{"arch":"awd_lstm","pretrained":"text-lm"},"hyper":{"epochs":1,"max_steps":1,"lr":1e-12,"batch_size":64'"$LIMIT"'}}'
  run lm-finetune '{"trainer":"text","dataset":"fortunes","task":{"target":{"block":"lm"}},
    "model":{"arch":"awd_lstm","pretrained":"text-lm"},
    "hyper":{"epochs":'"$LM_EPOCHS"',"batch_size":64,"bptt":70,"lr":0.003,"schedule":"onecycle","optimizer":"adamw","weight_decay":0.01'"$LIMIT"'}}'
  rm -rf "$DATA/text-models/fortunes-lm"
  cp -r "$OUT/lm-finetune/model" "$DATA/text-models/fortunes-lm"
  local clf_hyper='"epochs":'"$EPOCHS"',"batch_size":64,"lr":0.01,"schedule":"onecycle","optimizer":"adamw","weight_decay":0.01'"$LIMIT"
  run ulmfit '{"trainer":"text","dataset":"fortunes","task":{"input":{"block":"text","max_len":256}},
    "model":{"arch":"awd_lstm","pretrained":"fortunes-lm"},"hyper":{'"$clf_hyper"'}}'
  run scratch '{"trainer":"text","dataset":"fortunes","task":{"input":{"block":"text","max_len":256,"vocab":4000}},
    "model":{"arch":"awd_lstm","options":{"emb":128,"hidden":256,"layers":2}},"hyper":{'"$clf_hyper"'}}'
  local t0=$SECONDS
  "$PY" bench/text_baselines.py fortunes /usr/share/games/fortunes "$TRAIN_LIMIT" > "$OUT/tfidf.result.json"
  echo "tfidf: $((SECONDS - t0)) s" >&2
  echo
  echo "fortunes categories (43 classes, the trainer's test split; training texts: ${TRAIN_LIMIT/#0/all})"
  printf "  %-34s %8s\n" "classifier" "val_acc"
  printf "  %-34s %8.4f\n" "ULMFiT (text-lm -> fortunes LM)" "$(metric ulmfit .metrics.val_acc)"
  printf "  %-34s %8.4f\n" "same classifier from scratch" "$(metric scratch .metrics.val_acc)"
  printf "  %-34s %8.4f\n" "TF-IDF + logistic regression" "$(jq -r .tfidf_logreg_acc "$OUT/tfidf.result.json")"
  printf "  %-34s %8.4f\n" "majority class" "$(jq -r .majority_acc "$OUT/tfidf.result.json")"
  echo "fortunes test perplexity of the LM"
  printf "  %-34s %8.1f\n" "text-lm as shipped" "$(metric lm-before .metrics.val_perplexity)"
  printf "  %-34s %8.1f\n" "fine-tuned on fortunes ($LM_EPOCHS epoch)" "$(metric lm-finetune .metrics.val_perplexity)"
}

recall() {
  "$PY" bench/text_baselines.py wordnet-queries /usr/share/wordnet 1000 > "$OUT/queries.jsonl"
  local logf="$OUT/serve.log"
  : > "$logf"
  ROOKERY_TORCH_THREADS="$THREADS" ROOKERY_LOG_LEVEL=warn ROOKERY_KEY_RATE_PER_S=1000000 ROOKERY_KEY_BURST=1000000 \
    ROOKERY_PASSWORD_HASH_COST=min "$BIN" serve --host 127.0.0.1 --port 0 --data "$OUT/serve-data" > "$logf" 2>&1 &
  local pid=$! port=""
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 600); do
    port="$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$logf" | head -1)"
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$logf" >&2; echo "rookery did not start" >&2; exit 1; }
  local rk="http://127.0.0.1:$port"
  curl -sf -XPOST "$rk/v1/users" -d '{"username":"bench","password":"bench password 1"}' > /dev/null
  local token
  token="$(curl -sf -XPOST "$rk/v1/auth/login" -d '{"username":"bench","password":"bench password 1"}' | jq -r .token)"
  embed_all() { # jq field -> JSON array of embeddings, in order
    jq -c "[.$1]" "$OUT/queries.jsonl" | jq -sc 'add | _nwise(64) | {texts: .}' | while read -r batch; do
      curl -sf -XPOST "$rk/v1/embed?pipeline=text" -H "Authorization: Bearer $token" -d "$batch" | jq -c '[.items[].embedding]'
    done | jq -sc 'add'
  }
  local t0=$SECONDS
  embed_all gloss > "$OUT/gloss_emb.json"
  embed_all lemma > "$OUT/lemma_emb.json"
  echo "embedded 2,000 texts: $((SECONDS - t0)) s" >&2
  kill $pid 2>/dev/null || true
  "$PY" bench/text_baselines.py recall "$OUT/queries.jsonl" "$OUT/gloss_emb.json" "$OUT/lemma_emb.json" \
    > "$OUT/recall.result.json"
  echo
  echo "WordNet gloss -> lemma retrieval, $(jq -r .candidates "$OUT/recall.result.json") candidates (chance@10 $(jq -r .chance_at_10 "$OUT/recall.result.json"))"
  printf "  %-34s %10s %10s\n" "vectors" "recall@1" "recall@10"
  for k in text_pipeline tfidf_words tfidf_char_3_5; do
    printf "  %-34s %10.4f %10.4f\n" "$k" "$(jq -r ".$k.recall_at_1" "$OUT/recall.result.json")" \
      "$(jq -r ".$k.recall_at_10" "$OUT/recall.result.json")"
  done
}

for part in $PARTS; do
  case "$part" in
    clf) clf ;;
    recall) recall ;;
    *) echo "unknown part '$part' (clf recall)" >&2; exit 2 ;;
  esac
done
echo "(results and specs in $OUT)"
