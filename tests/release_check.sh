#!/usr/bin/env bash
# Each layer's release files agree (docs/releases.md): VERSION is one semver
# line; CHANGELOG.md's version headings are "## X.Y.Z - YYYY-MM-DD" (released)
# or "## X.Y.Z (unreleased)", plus at most one "## Unreleased"; the newest
# version heading is VERSION; the layer's kVersion constant, where its public
# header has one, equals VERSION; MODULE.bazel's version is executor's.
# Run by .ci/run.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fail=0
err() { echo "release_check: $*"; fail=1; }
semver='[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?'
for layer in timing budget sched reactor steal dispatch executor bench; do
  v=$(cat "$layer/VERSION" 2>/dev/null) || { err "$layer/VERSION missing"; continue; }
  [[ $(wc -l <"$layer/VERSION") -le 1 && $v =~ ^${semver}$ ]] ||
    err "$layer/VERSION is '$v', not one semver line"
  log=$layer/CHANGELOG.md
  [[ -f $log ]] || { err "$log missing"; continue; }
  while IFS= read -r h; do
    [[ $h =~ ^"## "(${semver})" - "[0-9]{4}-[0-9]{2}-[0-9]{2}$ ||
       $h =~ ^"## "(${semver})" (unreleased)"$ || $h == "## Unreleased" ]] ||
      err "$log: heading '$h' is not '## X.Y.Z - YYYY-MM-DD', '## X.Y.Z (unreleased)' or '## Unreleased'"
  done < <(grep '^## ' "$log")
  [[ $(grep -c '^## Unreleased$' "$log") -le 1 ]] || err "$log: more than one '## Unreleased'"
  newest=$(grep -m1 -oE "^## ${semver}" "$log" | cut -c4-)
  [[ $newest == "$v" ]] || err "$log: newest version is '$newest', VERSION says '$v'"
  k=$(grep -ho 'kVersion = "[^"]*"' "$layer"/*.h 2>/dev/null | head -n 1 | cut -d'"' -f2)
  [[ -z $k || $k == "$v" ]] || err "$layer: kVersion is '$k', VERSION says '$v'"
done
# The Bazel module's version is the facade's (CMake reads executor/VERSION).
m=$(sed -nE 's/^    version = "([^"]*)",$/\1/p' MODULE.bazel | head -n 1)
[[ $m == "$(cat executor/VERSION)" ]] ||
  err "MODULE.bazel's version is '$m', executor/VERSION says '$(cat executor/VERSION)'"
[[ $fail -eq 0 ]] && echo "release_check: every layer's VERSION, CHANGELOG.md and kVersion agree"
exit $fail
