#!/usr/bin/env bash
# MODULE.bazel and //third_party stay in step: every external library that a
# wrapper in third_party/BUILD.bazel names (`module = "@repo//..."`) has a
# `bazel_dep(name = "repo", ...)` in MODULE.bazel, every wrapper names one,
# and MODULE.bazel declares no module that nothing uses.  bzlmod itself
# cannot run here (Bazel 4.2.3, offline); this is the part checkable offline.
set -euo pipefail
build=${1:-third_party/BUILD.bazel}
module=${2:-MODULE.bazel}
fail=0
err() { echo "module_deps_test: $*" >&2; fail=1; }

# Modules needed by something other than a wrapper: BUILD files load rules_cc.
always=(rules_cc)

wrappers=$(grep -c '^external_library(' "$build" || true)
named=$(grep -cE '^    module = "@[A-Za-z0-9_.-]+//' "$build" || true)
[[ $wrappers -gt 0 ]] || err "no external_library() in $build"
[[ $wrappers -eq $named ]] ||
  err "$wrappers wrappers but $named module labels in $build: every wrapper names its module"
if grep -qE '^(cc_library|cc_import)\(' "$build"; then
  err "$build declares a plain cc_library: wrap external libraries with external_library()"
fi

mapfile -t used < <(sed -nE 's/^    module = "@([A-Za-z0-9_.-]+)\/\/.*/\1/p' "$build" | sort -u)
mapfile -t declared < <(sed -nE 's/^bazel_dep\(name = "([A-Za-z0-9_.-]+)".*/\1/p' "$module" | sort -u)

grep -qE '^module\(' "$module" || err "$module has no module() declaration"
grep -qE '^    name = "spindle",' "$module" || err "$module does not declare the module spindle"
grep -qE '^    version = "[0-9]+\.[0-9]+\.[0-9]+",' "$module" || err "$module has no semver version"

for r in "${used[@]}" "${always[@]}"; do
  printf '%s\n' "${declared[@]}" | grep -qxF "$r" ||
    err "third_party uses @$r but $module has no bazel_dep(name = \"$r\", ...)"
done
for d in "${declared[@]}"; do
  printf '%s\n' "${used[@]}" "${always[@]}" | grep -qxF "$d" ||
    err "$module declares bazel_dep $d, which nothing in third_party uses"
done

[[ $fail -eq 0 ]] || exit 1
echo "module_deps_test: ${#used[@]} modules wrapped by $wrappers targets, all declared: ${used[*]}"
