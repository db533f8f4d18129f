#!/usr/bin/env bash
# Checks the C++ lines a change touches: clang-format (.clang-format), clang-tidy
# (.clang-tidy, with build/compile_commands.json), `#pragma once` in headers and full-path
# project includes. Fails on any violation; lines the change does not touch are left
# alone, so old code is fixed when it is next edited.
#   scripts/lint.sh           # against the merge base with origin/main (or main), else HEAD~1
#   scripts/lint.sh BASE      # against BASE (a commit)
# The base: TANDEM_LINT_BASE or BASE if given; else the merge base of HEAD with origin/main
# or main; when that is HEAD itself (on main, or in CI's fresh clone) HEAD~1. Uncommitted
# changes count. TANDEM_LINT_TIDY=0 skips clang-tidy (it parses LibTorch: ~20 s a file).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${TANDEM_BUILD_DIR:-$root/build}
cd "$root"

if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "lint: not a git work tree; nothing to compare" >&2
  exit 0
fi
base=${1:-${TANDEM_LINT_BASE:-}}
if [[ -z "$base" ]]; then
  for ref in origin/main main; do
    if git rev-parse -q --verify "$ref^{commit}" >/dev/null; then
      base=$(git merge-base HEAD "$ref" || true)
      [[ -n "$base" ]] && break
    fi
  done
  if [[ -z "$base" || "$(git rev-parse "$base")" == "$(git rev-parse HEAD)" ]]; then
    if git rev-parse -q --verify 'HEAD~1^{commit}' >/dev/null; then base=HEAD~1; else base=; fi
  fi
fi
if [[ -z "$base" ]]; then
  echo "lint: no commit to compare with (a single-commit history); nothing to check"
  exit 0
fi

mapfile -t files < <(git diff --name-only --diff-filter=d "$base" -- '*.cpp' '*.h' | grep -v '^tests/fuzz/corpus/' || true)
if ((${#files[@]} == 0)); then
  echo "lint: no C++ file changed since $(git rev-parse --short "$base")"
  exit 0
fi
echo "lint: ${#files[@]} C++ file(s) changed since $(git rev-parse --short "$base")"

# The changed line ranges of a file as "first:last" (new side of the diff).
ranges() {
  git diff -U0 --no-color "$base" -- "$1" | sed -n 's/^@@ -[0-9,]* +\([0-9]*\)\(,\([0-9]*\)\)\{0,1\} @@.*/\1 \3/p' |
    while read -r first count; do
      count=${count:-1}
      ((count > 0)) && echo "$first:$((first + count - 1))"
    done
}

failed=0
tidy_filter="["
for f in "${files[@]}"; do
  mapfile -t rs < <(ranges "$f")
  ((${#rs[@]} == 0)) && continue
  # clang-format, on the changed lines only.
  args=()
  for r in "${rs[@]}"; do args+=("--lines=$r"); done
  if ! clang-format --dry-run -Werror "${args[@]}" "$f"; then
    echo "lint: $f: run clang-format ${args[*]} -i $f" >&2
    failed=1
  fi
  # Style rules clang-tidy has no check for.
  if [[ "$f" == *.h ]] && ! grep -qx '#pragma once' "$f"; then
    echo "lint: $f: a header needs #pragma once" >&2
    failed=1
  fi
  for r in "${rs[@]}"; do
    if sed -n "${r%:*},${r#*:}p" "$f" | grep -nE '^\s*#\s*include\s+"[^/"]+"' >/dev/null; then
      echo "lint: $f:${r%:*}: project includes name the full path (#include \"runtime/x/y.h\")" >&2
      failed=1
    fi
  done
  lines=""
  for r in "${rs[@]}"; do lines+="[${r%:*},${r#*:}],"; done
  tidy_filter+="{\"name\":\"$f\",\"lines\":[${lines%,}]},"
done
tidy_filter="${tidy_filter%,}]"

if [[ "${TANDEM_LINT_TIDY:-1}" != 0 ]]; then
  if [[ ! -f "$build/compile_commands.json" ]]; then
    echo "lint: $build/compile_commands.json missing: configure first (scripts/build.sh)" >&2
    exit 1
  fi
  # clang cannot read GCC's precompiled headers: a copy of the compilation database
  # without them (the sources include what they use; TANDEM_USE_PCH=OFF builds them so).
  db=$(mktemp -d)
  trap 'rm -rf "$db"' EXIT
  python3 - "$build/compile_commands.json" "$db/compile_commands.json" <<'PY'
import json, re, sys
entries = json.load(open(sys.argv[1]))
for e in entries:
    if "command" in e:
        e["command"] = re.sub(r"\s-include\s+\S*cmake_pch\.hxx", "", e["command"]).replace(" -Winvalid-pch", "")
    if "arguments" in e:
        args, out, skip = e["arguments"], [], False
        for i, a in enumerate(args):
            if skip:
                skip = False
                continue
            if a == "-include" and i + 1 < len(args) and args[i + 1].endswith("cmake_pch.hxx"):
                skip = True
                continue
            if a != "-Winvalid-pch":
                out.append(a)
        e["arguments"] = out
json.dump(entries, open(sys.argv[2], "w"))
PY
  # Translation units: the changed .cpp files that are built; changed headers are checked
  # through them and through the changed files' own headers (.h of a .cpp).
  mapfile -t known < <(python3 -c 'import json,sys; [print(e["file"]) for e in json.load(open(sys.argv[1]))]' \
    "$db/compile_commands.json")
  units=()
  for f in "${files[@]}"; do
    candidate=$f
    [[ "$f" == *.h ]] && candidate=${f%.h}.cpp
    for k in "${known[@]}"; do
      if [[ "$k" == "$root/$candidate" ]]; then units+=("$k"); break; fi
    done
  done
  mapfile -t units < <(printf '%s\n' "${units[@]}" | sort -u | sed '/^$/d')
  echo "lint: clang-tidy on ${#units[@]} translation unit(s)"
  for u in "${units[@]}"; do
    report=$(clang-tidy -p "$db" --quiet --line-filter="$tidy_filter" --extra-arg=-Wno-unknown-warning-option \
      "$u" 2>&1 || true)
    if grep -qE ': (warning|error): ' <<<"$report"; then
      grep -v -E '^[0-9]+ (warnings?|errors?)( and [0-9]+ errors?)? generated|^Error while processing' <<<"$report" >&2
      echo "lint: clang-tidy found problems in the changed lines of $u or its headers" >&2
      failed=1
    fi
  done
fi

if ((failed)); then
  echo "lint: FAILED" >&2
  exit 1
fi
echo "lint: ok"
