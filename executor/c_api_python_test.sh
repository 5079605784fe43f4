#!/bin/bash
# Runs c_api_python_test.py on libspindle.so, then checks that the library
# exports only the C interface: every symbol it defines for others is a
# spindle_* function of version SPINDLE_2 (or a C++ library template that
# the toolchain binds to libstdc++'s own version).
set -euo pipefail
lib="$1"
dir="$(dirname "$0")"
py=/usr/bin/python3
[[ -x "$py" ]] || py=python3
# Under --config=asan / tsan / ubsan the library needs its sanitizer's
# runtime, which cannot be dlopen'ed into an uninstrumented interpreter
# (static TLS): it is preloaded.  Python's own allocations at exit are not
# leaks of the library's.
preload=$(ldd "$lib" | awk '/lib(a|t|ub)san\.so/ { print $3 }' | paste -sd: -)
if [[ -n "$preload" ]]; then
  export LD_PRELOAD="$preload"
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
"$py" "$dir/c_api_python_test.py" "$lib"
unset LD_PRELOAD

exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TWDBRV]$/ { print $3 }')
bad=$(grep -v -E '^(spindle_|SPINDLE_2$|_ZN?K?St|_ZNSt)' <<<"$exported" || true)
if [[ -n "$bad" ]]; then
  echo "FAILED: libspindle.so exports symbols beyond the C interface:"
  echo "$bad" | head -20
  exit 1
fi
n=$(grep -c '^spindle_' <<<"$exported")
[[ "$n" -ge 30 ]] || { echo "FAILED: only $n spindle_* symbols exported"; exit 1; }
unversioned=$(readelf --dyn-syms -W "$lib" | awk '$8 ~ /^spindle_/ && $8 !~ /@SPINDLE_2$/' || true)
if [[ -n "$unversioned" ]]; then
  echo "FAILED: spindle_* symbols without the SPINDLE_2 version:"
  echo "$unversioned"
  exit 1
fi
echo "c_api_python_test: $n spindle_* symbols exported, nothing else"
