#!/usr/bin/env bash
# Every public header of every layer, compiled on its own the way a strict
# consumer would: -std=c++20 -Wall -Wextra -Wpedantic -Werror, with g++ and
# clang++.  Then the same header without C++20 (-std=c++17 and -std=c++11)
# must stop with one #error that names C++20 and nothing else.
#
# Public = a *.h directly in a layer folder, except *_testing.h; internal/
# headers are not public.  Run by .ci/run; usable by hand from anywhere:
#   tests/strict_headers.sh [compiler...]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

compilers=("$@")
(( ${#compilers[@]} )) || compilers=(g++ clang++)
strict=(-std=c++20 -Wall -Wextra -Wpedantic -Werror)
layers=(timing budget sched reactor steal dispatch executor)

# The C interface is C11 (and valid C++ of any standard): checked apart.
c_headers=(executor/spindle.h)
mapfile -t headers < <(for l in "${layers[@]}"; do
  [[ -d $l ]] && find "$l" -maxdepth 1 -name '*.h' ! -name '*_testing.h' \
    ! -path executor/spindle.h
done | sort)
(( ${#headers[@]} )) || { echo "no public headers found" >&2; exit 1; }

passed=0 failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

for cxx in "${compilers[@]}"; do
  command -v "$cxx" >/dev/null || { fail "$cxx not installed"; continue; }
  for h in "${headers[@]}"; do
    # Strict flags: must compile cleanly.
    if out=$(printf '#include "%s"\n' "$h" |
             "$cxx" "${strict[@]}" -I. -x c++ -fsyntax-only - 2>&1); then
      passed=$((passed + 1))
    else
      fail "$cxx ${strict[*]} $h"; echo "$out" | head -20
    fi
    # Without C++20: exactly one error, ours, then a stop.
    for std in c++17 c++11; do
      out=$(printf '#include "%s"\n' "$h" |
            "$cxx" -std=$std -I. -x c++ -fsyntax-only - 2>&1)
      first=$(grep -m1 -E 'error' <<<"$out")
      nerr=$(grep -cE '(^|: )(fatal )?error' <<<"$out")
      # Our #error, then the fatal include that stops the build: 2 lines.
      if [[ $first == *"Spindle requires C++20"* && $nerr -le 2 ]]; then
        passed=$((passed + 1))
      else
        fail "$cxx -std=$std $h: expected one #error naming C++20, got $nerr errors"
        echo "$out" | head -10
      fi
    done
  done
done

# C headers: strict C11 with gcc and clang, and C++ (11 and 20) with the
# C++ compilers, all without a warning.
for h in "${c_headers[@]}"; do
  for cc in gcc clang; do
    command -v "$cc" >/dev/null || { fail "$cc not installed"; continue; }
    if out=$(printf '#include "%s"\n' "$h" |
             "$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror -I. -x c \
               -fsyntax-only - 2>&1); then
      passed=$((passed + 1))
    else
      fail "$cc -std=c11 $h"; echo "$out" | head -20
    fi
  done
  for cxx in "${compilers[@]}"; do
    for std in c++11 c++20; do
      if out=$(printf '#include "%s"\n' "$h" |
               "$cxx" -std=$std -Wall -Wextra -Wpedantic -Werror -I. -x c++ \
                 -fsyntax-only - 2>&1); then
        passed=$((passed + 1))
      else
        fail "$cxx -std=$std $h"; echo "$out" | head -20
      fi
    done
  done
done

echo "strict_headers: ${#headers[@]} public headers and ${#c_headers[@]} C header, ${compilers[*]}"
echo "strict_headers: ${passed} checks ok, ${failed} failing"
(( failed == 0 ))
