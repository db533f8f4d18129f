#!/usr/bin/env bash
# Installs what is missing, builds (warnings are errors), and runs the whole test suite.
#   scripts/test.sh                 # everything (unit + integration)
#   scripts/test.sh -L unit         # extra arguments go to ctest
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${TANDEM_BUILD_DIR:-$root/build}
export TANDEM_BUILD_DIR=$build

"$root/scripts/setup.sh"
"$root/scripts/build.sh" -DTANDEM_WERROR=ON -DTANDEM_BUILD_TESTS=ON
cd "$build"
ctest --output-on-failure --timeout 600 -j "${TANDEM_TEST_JOBS:-2}" "$@"
