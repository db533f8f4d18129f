#!/usr/bin/env bash
# Configures and builds Tandem into ${TANDEM_BUILD_DIR:-build}. Extra arguments go to
# cmake's configure step (e.g. -DTANDEM_SANITIZE=address).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${TANDEM_BUILD_DIR:-$root/build}
jobs=${TANDEM_JOBS:-2}
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE="${TANDEM_BUILD_TYPE:-Release}" "$@"
elif (($# > 0)); then
  cmake -S "$root" -B "$build" "$@"
fi
cmake --build "$build" -j "$jobs"
