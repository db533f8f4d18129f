#!/usr/bin/env bash
# Installs what is missing, builds (warnings are errors), checks the changed C++ lines
# with clang-format and clang-tidy (scripts/lint.sh: against the merge base with main, or
# HEAD~1 in CI's fresh clone), and runs the whole test suite.
#   scripts/test.sh                 # everything (unit + integration)
#   scripts/test.sh -L unit         # extra arguments go to ctest
#   TANDEM_LINT=0 scripts/test.sh   # without the lint step
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${TANDEM_BUILD_DIR:-$root/build}
export TANDEM_BUILD_DIR=$build

"$root/scripts/setup.sh"
"$root/scripts/build.sh" -DTANDEM_WERROR=ON -DTANDEM_BUILD_TESTS=ON
if [[ "${TANDEM_LINT:-1}" != 0 ]]; then
  "$root/scripts/lint.sh"
fi
cd "$build"
ctest --output-on-failure --timeout 600 -j "${TANDEM_TEST_JOBS:-2}" "$@"
