#!/usr/bin/env bash
# Installs what Rookery needs from Debian 12's packages. Idempotent: only
# missing packages are installed, and apt-get update runs only when needed.
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
  libarchive-dev        # dataset archives (tar, zip)
  libspdlog-dev         # logging (access log, events)
  libcli11-dev          # command-line parsing
  catch2                # tests
  libcurl4-openssl-dev  # HTTP client in integration tests
  # real data sets that Debian ships (training and its tests)
  dataset-fashion-mnist # Fashion-MNIST IDX files under /usr/share/datasets/fashion-mnist
  fortunes              # categorised text corpus under /usr/share/games/fortunes
  # test and benchmark tools
  curl wrk
  ffmpeg                # makes the test videos (OpenCV's FFmpeg backend decodes them)
  python3-torch python3-torchvision python3-skimage python3-pil
  python3-fastapi python3-uvicorn
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
