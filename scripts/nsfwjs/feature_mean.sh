#!/usr/bin/env bash
# Recipe of pipelines/builtin/vectors/nsfwjs_inception_v3_mean.json, the
# reference mean that the video pipeline's `center` op subtracts: the mean of
# nsfwjs@4.4.0 InceptionV3's raw pooled 2,048-d features (no normalisation)
# over the colour and grey photos Debian's python3-skimage ships, preprocessed
# exactly as the `image` pipeline does. Deterministic: the same weights and
# photos give the same vector.
#   scripts/nsfwjs/feature_mean.sh [build/rookery]   (after scripts/dev.sh build)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOKERY="${1:-build/rookery}"
SK=/usr/lib/python3/dist-packages/skimage/data
PHOTOS=(astronaut brick camera cell chelsea chessboard_RGB clock_motion coffee coins color grass gravel
        horse ihc logo microaneurysms moon motorcycle_left page phantom rocket text)
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/data/pipelines"
cat > "$tmp/data/pipelines/raw.json" <<'JSON'
{"name": "raw", "ops": [
  {"op": "decode_image"},
  {"op": "resize", "width": 299, "height": 299, "filter": "tf_bilinear", "align_corners": true},
  {"op": "to_tensor"},
  {"op": "model", "name": "nsfwjs_inception_v3"}]}
JSON
files=()
for p in "${PHOTOS[@]}"; do
  f="$SK/$p.png"; [ -f "$f" ] || f="$SK/$p.jpg"
  "$ROOKERY" embed --data "$tmp/data" --pipeline raw "$f" > "$tmp/$p.json"
  files+=("$tmp/$p.json")
done
/usr/bin/python3 - "${files[@]}" <<'PY' > pipelines/builtin/vectors/nsfwjs_inception_v3_mean.json
import json, os, sys
vs = [json.load(open(f))["embedding"] for f in sys.argv[1:]]
n, d = len(vs), len(vs[0])
mean = [sum(v[k] for v in vs) / n for k in range(d)]
print(json.dumps({
    "name": "nsfwjs_inception_v3_mean",
    "model": "nsfwjs_inception_v3",
    "recipe": "scripts/nsfwjs/feature_mean.sh: the mean of the raw pooled features over python3-skimage's photos",
    "photos": [os.path.basename(f)[:-5] for f in sys.argv[1:]],
    "values": [round(x, 7) for x in mean]}))
PY
echo "wrote pipelines/builtin/vectors/nsfwjs_inception_v3_mean.json (${#PHOTOS[@]} photos)"
