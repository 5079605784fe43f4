#!/usr/bin/env bash
# bench/scaling_test.sh: bench/scaling.sh with tiny sizes: a table row per
# worker count this machine has CPUs for, each variant's 1-worker speed-up
# 1.00x, a count past the CPUs skipped with a note, bad input exit 2.
set -euo pipefail
suite="$TEST_SRCDIR/$TEST_WORKSPACE/bench/suite"
script="$TEST_SRCDIR/$TEST_WORKSPACE/bench/scaling.sh"
log="$TEST_TMPDIR/scaling.log"
table="$TEST_TMPDIR/table.md"

WORKER_COUNTS="1 2 4096" ITERATIONS=1 FIB_N=10 N_TASKS=1000 \
  OUT="$TEST_TMPDIR/out" "$script" "$suite" >"$table" 2>"$log" || {
  echo "scaling.sh failed:"; cat "$log" "$table"; exit 1; }
grep -q '^| workers | mt_fib spindle | mt_fib tbb | mt_spawn spindle' "$table" || {
  echo "no table header:"; cat "$table"; exit 1; }
grep -q '| skewed tbb | skewed floor_threads |$' "$table" || {
  echo "no skewed floor column:"; cat "$table"; exit 1; }
# spindle's 1-worker cells are their own base (oneTBB's may be "-": none
# under tsan).
grep -Eq '^\| 1 \| [0-9.]+ ms \(1\.00x\) \|' "$table" || {
  echo "no 1-worker row:"; cat "$table"; exit 1; }
if (($(nproc) >= 2)); then
  grep -Eq '^\| 2 \| [0-9.]+ ms \([0-9.]+x\) \|' "$table" || {
    echo "no 2-worker row:"; cat "$table"; exit 1; }
fi
# The ramp's table: a row per worker count, every cell a time.
grep -q '^| workers | mt_ramp spindle: wall (half, all started) | mt_ramp spindle_fanout1: ' "$table" || {
  echo "no ramp table header:"; cat "$table"; exit 1; }
grep -Eq '^\| 1 \|( [0-9.]+ ms \([0-9]+ us, [0-9]+ us\) \|){3}$' "$table" || {
  echo "no 1-worker ramp row:"; cat "$table"; exit 1; }
# The test's suite is a test build (not -c opt): the table says so.
if ! grep -q "^build: *optimised" "$TEST_TMPDIR/out/w1/suite.log"; then
  grep -q "built without optimisation" "$log" || {
    echo "no warning of an unoptimised suite:"; cat "$log"; exit 1; }
fi
grep -q "skipped 4096 workers" "$log" || { echo "no skip note:"; cat "$log"; exit 1; }
if grep -q '^| 4096 |' "$table"; then echo "4096 not skipped"; exit 1; fi

for bad in "1 x" "0"; do
  set +e
  WORKER_COUNTS="$bad" "$script" "$suite" >/dev/null 2>"$log"
  rc=$?
  set -e
  [[ $rc -eq 2 ]] || { echo "WORKER_COUNTS='$bad': want exit 2, got $rc"; exit 1; }
  grep -q "WORKER_COUNTS has" "$log" || { echo "error does not name WORKER_COUNTS"; cat "$log"; exit 1; }
done
set +e
"$script" "$TEST_TMPDIR/no-such-suite" >/dev/null 2>"$log"
rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "missing suite: want exit 2, got $rc"; exit 1; }
echo "scaling_test: ok"
