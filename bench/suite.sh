#!/usr/bin/env bash
# //bench:suite: Spindle's benchmark suite (the README's first command).
#
# This first version runs the Google Benchmark binaries of the layers that
# have landed, each with 5 repetitions, and reports medians.  The full suite
# of ../shared/BENCH.md (peers, floors, CSV, charts) replaces it as the
# executor and reactor layers land.
set -euo pipefail
runfiles="${RUNFILES_DIR:-$0.runfiles}/spindle"
reps="${ITERATIONS:-5}"
[[ "$reps" =~ ^[1-9][0-9]*$ ]] || { echo "suite: ITERATIONS='$reps' must be a positive integer" >&2; exit 2; }
echo "Spindle benchmark suite"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, kernel $(uname -r)"
for bin in "$@"; do
  echo
  echo "== $bin (median of $reps)"
  "$runfiles/$bin" --benchmark_repetitions="$reps" \
    --benchmark_report_aggregates_only=true \
    ${BENCH_FILTER:+--benchmark_filter="$BENCH_FILTER"}
done
