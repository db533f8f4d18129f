#!/usr/bin/env bash
# Installs every Debian package Tandem needs (build, run, test). Idempotent: packages
# already present are not reinstalled and apt is not touched when nothing is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config git clang-format clang-tidy
  libtorch-dev libzmq3-dev cppzmq-dev libcereal-dev libtbb-dev libyaml-cpp-dev
  prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  zlib1g-dev libzstd-dev liblz4-dev
  dataset-fashion-mnist
  prometheus python3 python3-matplotlib iproute2 curl
)
# Extra packages for optional parts can be requested: TANDEM_EXTRA_PACKAGES="clang prometheus"
if [[ -n "${TANDEM_EXTRA_PACKAGES:-}" ]]; then
  read -r -a extra <<<"${TANDEM_EXTRA_PACKAGES}"
  packages+=("${extra[@]}")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
