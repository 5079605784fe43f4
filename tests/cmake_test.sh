#!/usr/bin/env bash
# The CMake build, as a user meets it: configure Spindle with Debian's cmake,
# build it (-j2), install it into a temporary prefix, then build
# tests/cmake_consumer against the installed package with
# find_package(Spindle CONFIG) and run it; then build the same program with
# pkg-config alone (spindle-executor.pc) and run that too.  Run by .ci/run;
# by hand: tests/cmake_test.sh [workdir]  (kept when given, removed otherwise).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ $# -ge 1 ]]; then
  work=$1; mkdir -p "$work"
else
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fi
jobs=${CMAKE_TEST_JOBS:-2}
step() { echo "=== cmake_test: $*"; }

step "configure Spindle"
cmake -S "$root" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DSPINDLE_WERROR=ON -DCMAKE_INSTALL_PREFIX="$work/unused" >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; exit 1; }
step "build Spindle (-j$jobs)"
cmake --build "$work/build" -j "$jobs"
step "install into $work/prefix"
cmake --install "$work/build" --prefix "$work/prefix" >"$work/install.log"

# Every layer is installed, as a CMake target and a pkg-config file.
for layer in timing budget sched reactor steal dispatch executor; do
  grep -q "add_library(Spindle::$layer " "$work"/prefix/lib*/cmake/Spindle/SpindleTargets.cmake ||
    { echo "Spindle::$layer missing from the installed package"; exit 1; }
  ls "$work"/prefix/lib*/pkgconfig/spindle-$layer.pc >/dev/null
done
# No test, benchmark or testing helper leaks into the install.
if find "$work/prefix" -name '*_test*' -o -name '*_benchmark*' -o -name '*_testing*' | grep .; then
  echo "test files installed"; exit 1
fi

step "consumer: find_package(Spindle CONFIG)"
cmake -S "$root/tests/cmake_consumer" -B "$work/consumer" \
  -DSPINDLE_VERSION_WANTED="$(cut -d. -f1,2 "$root/executor/VERSION")" \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >"$work/consumer.log" 2>&1 ||
  { cat "$work/consumer.log"; exit 1; }
cmake --build "$work/consumer" -j "$jobs"
"$work/consumer/consumer"
"$work/consumer/clock_only"

step "consumer: pkg-config spindle-executor"
pcdir=$(dirname "$(ls "$work"/prefix/lib*/pkgconfig/spindle-executor.pc)")
export PKG_CONFIG_PATH="$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
pkg-config --exists --print-errors spindle-executor
# shellcheck disable=SC2046  # pkg-config's output is meant to be split.
g++ -Wall -Wextra -Wpedantic -Werror -o "$work/pc_consumer" \
  "$root/tests/cmake_consumer/main.cc" $(pkg-config --cflags --libs spindle-executor)
"$work/pc_consumer"

step "PASSED"
