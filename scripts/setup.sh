#!/usr/bin/env bash
# Installs what Rookery needs from Debian 12's packages, then the built-in
# image weights (README "Built-in weights"). Idempotent: only missing packages
# are installed, apt-get update runs only when needed, and the npm packages and
# the weight conversion are skipped when they are already there.
#
# Built-in weights: the npm packages pinned in scripts/nsfwjs/package-lock.json
# (nsfwjs 4.4.0, MIT, which bundles Keras InceptionV3 and MobileNetV2 weights,
# and the pure-JS @tensorflow/tfjs 4.22.0 -- no tfjs-node native add-on) go to
# scripts/nsfwjs/node_modules (git-ignored); scripts/nsfwjs/export_weights.mjs
# and convert_weights.py turn them into PyTorch state_dicts in
# $ROOKERY_BUILTIN_MODELS_DIR (default <repo>/build/builtin-models, which
# CMake's ROOKERY_BUILTIN_MODELS_DIR must match). ROOKERY_NO_BUILTIN_MODELS=1
# skips this part.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ccache pkg-config git
  # runtime libraries
  libcaf-dev            # CAF 0.17: actors, network transparency
  librestinio-dev       # RESTinio 0.6: HTTP server
  libasio-dev           # standalone asio, which RESTinio needs but does not pull in
  libtorch-dev          # LibTorch 1.13
  libopenblas0-openmp   # fast BLAS for LibTorch's CPU matrix products
  libopencv-dev         # OpenCV 4.6: image decoding and resizing
  libmagic-dev          # libmagic: MIME sniffing from bytes
  nlohmann-json3-dev    # JSON
  libsodium-dev         # Argon2id password hashing, random tokens, BLAKE2b
  libsqlite3-dev        # the embedded store
  libpq-dev             # libpq: the PostgreSQL store (several gateways)
  libarchive-dev        # dataset archives (tar, zip)
  libspdlog-dev         # logging (access log, events)
  libcli11-dev          # command-line parsing
  catch2                # tests
  libcurl4-openssl-dev  # HTTP client in integration tests
  # real data sets that Debian ships (training and its tests)
  dataset-fashion-mnist # Fashion-MNIST IDX files under /usr/share/datasets/fashion-mnist
  fortunes              # categorised text corpus under /usr/share/games/fortunes
  python3-statsmodels   # real time series as CSV (sunspots, co2, nile, elnino, macrodata, ...)
  wordnet-base          # WordNet 3.0: English glosses (the text LM's pre-training corpus, the recall bench)
  # test and benchmark tools
  postgresql            # the server the tests start a throw-away cluster of (tests/tools/pg_fixture.sh)
  python3-kubernetes python3-yaml # deploy/check_manifests.py: the manifests against the Kubernetes API schemas
  curl wrk
  jq                    # JSON on the command line: the README's and tutorials' curl sessions
  ffmpeg                # makes the test videos (OpenCV's FFmpeg backend decodes them)
  # the built-in weights' conversion and the parity test: node and npm, unless
  # already there (NodeSource's nodejs bundles npm), are added below
  python3-torch python3-torchvision python3-skimage python3-pil
  python3-sklearn       # the TF-IDF + logistic-regression baseline of bench/text_bench.sh
  python3-fastapi python3-uvicorn
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${ROOKERY_NO_BUILTIN_MODELS:-0}" != 1 ] && ! { command -v node && command -v npm; } >/dev/null; then
  missing+=(nodejs npm) # Debian's Node.js 18 and npm
fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  # Debian's postgresql would create and start a system-wide cluster on port
  # 5432; Rookery's tests start their own, so none is created (unless the
  # machine's administrator configured otherwise before).
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    $SUDO mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- built-in weights ----------------------------------------------------------
[ "${ROOKERY_NO_BUILTIN_MODELS:-0}" = 1 ] && exit 0
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NSFWJS_DIR="$ROOT/scripts/nsfwjs"
[ -f "$NSFWJS_DIR/package-lock.json" ] || exit 0 # only setup.sh was copied (deploy/Dockerfile's first stage)
BUILTIN="${ROOKERY_BUILTIN_MODELS_DIR:-$ROOT/build/builtin-models}"

# 1. npm packages, exactly as locked (npm ci), unless the installed ones already match.
installed_version() { # package -> version installed under node_modules, or nothing
  node -e 'try { process.stdout.write(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).version) } catch (e) {}' \
    "$NSFWJS_DIR/node_modules/$1/package.json"
}
if [ "$(installed_version nsfwjs)" != 4.4.0 ] || [ "$(installed_version @tensorflow/tfjs)" != 4.22.0 ]; then
  echo "setup: installing nsfwjs@4.4.0 and @tensorflow/tfjs@4.22.0 into $NSFWJS_DIR/node_modules"
  (cd "$NSFWJS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi

# 2. Conversion, once per machine: redone when the packages or the converter change.
stamp="nsfwjs@4.4.0 $(cat "$NSFWJS_DIR"/package-lock.json "$NSFWJS_DIR"/*.mjs "$NSFWJS_DIR"/convert_weights.py | sha256sum | cut -c1-16)"
if [ "$(cat "$BUILTIN/.nsfwjs-stamp" 2>/dev/null)" != "$stamp" ] \
   || [ ! -f "$BUILTIN/nsfwjs_inception_v3/1/config.json" ] || [ ! -f "$BUILTIN/nsfwjs_mobilenet_v2/1/config.json" ]; then
  echo "setup: converting nsfwjs's InceptionV3 and MobileNetV2 weights into $BUILTIN"
  mkdir -p "$BUILTIN"
  export_dir="$(mktemp -d)"
  trap 'rm -rf "$export_dir"' EXIT
  for m in inception_v3 mobilenet_v2; do
    (cd "$NSFWJS_DIR" && node export_weights.mjs "$m" "$export_dir" 2>&1 | grep -v -e '^=*$' -e 'tfjs-node' -e '^Hi, looks like' || true)
    [ -f "$export_dir/$m.bin" ] || { echo "setup: exporting $m from nsfwjs failed" >&2; exit 1; }
  done
  /usr/bin/python3 "$NSFWJS_DIR/convert_weights.py" "$export_dir" "$BUILTIN" inception_v3 mobilenet_v2
  echo "$stamp" > "$BUILTIN/.nsfwjs-stamp"
fi

# 3. Faces: @vladmandic/face-api 1.7.15 (MIT), pinned in third_party/face-api/
# package(-lock).json, installed into its ignored node_modules/ (pure-JS
# @tensorflow/tfjs: no native add-on); scripts/faces/convert.js dequantizes its
# TF.js weights into $BUILTIN/faces/ (it rewrites nothing that is up to date).
FACES_NPM="$ROOT/third_party/face-api"
if [ -f "$FACES_NPM/package-lock.json" ]; then
  if [ ! -f "$FACES_NPM/node_modules/.package-lock.json" ] \
     || [ "$FACES_NPM/package-lock.json" -nt "$FACES_NPM/node_modules/.package-lock.json" ]; then
    echo "setup: installing @vladmandic/face-api into $FACES_NPM/node_modules"
    (cd "$FACES_NPM" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  fi
  FACES_VERSION="$(node -p "require('$FACES_NPM/node_modules/@vladmandic/face-api/package.json').version")"
  node "$ROOT/scripts/faces/convert.js" "$FACES_NPM/node_modules/@vladmandic/face-api/model" \
       "$BUILTIN/faces" "$FACES_VERSION"
fi
