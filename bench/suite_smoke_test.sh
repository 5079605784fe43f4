#!/usr/bin/env bash
# bench/suite_smoke_test.sh: runs //bench:suite with tiny sizes into a temp
# dir and checks the CSV's shape (not speed): the exact header, and at least
# one row for every variant of every benchmark that ran.  A variant the suite
# reports as skipped (e.g. io_uring unavailable in a sandbox, oneTBB under
# tsan) must be named in its "skipped:" list instead.
set -euo pipefail
suite="$TEST_SRCDIR/$TEST_WORKSPACE/bench/suite"
out="$TEST_TMPDIR/out"
mkdir -p "$out"
log="$TEST_TMPDIR/suite.log"

# Bad values are clear errors with exit code 2.
set +e
ITERATIONS=0 "$suite" --out "$out" >"$TEST_TMPDIR/bad.log" 2>&1
rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "ITERATIONS=0: want exit 2, got $rc"; cat "$TEST_TMPDIR/bad.log"; exit 1; }
grep -q "ITERATIONS='0'" "$TEST_TMPDIR/bad.log" || { echo "error does not name ITERATIONS"; exit 1; }
set +e
EXECUTOR=boost "$suite" --out "$out" >"$TEST_TMPDIR/bad.log" 2>&1
rc=$?
set -e
[[ $rc -eq 2 ]] || { echo "EXECUTOR=boost: want exit 2, got $rc"; exit 1; }

ITERATIONS=1 N_TASKS=100 YIELDS_PER_TASK=2 FAIRNESS_MS=20 HOG_MS=20 \
  FIB_N=10 TAIL_MS=30 NOP_OPS=320 SLURM_STEPS=4 "$suite" --out "$out" >"$log" 2>&1 || {
  echo "suite failed:"; cat "$log"; exit 1; }

csv="$out/benchmark_results.csv"
[[ -f "$csv" ]] || { echo "no CSV written"; cat "$log"; exit 1; }
header=$(head -n 1 "$csv")
[[ "$header" == "benchmark,variant,parameter,iteration,duration_ns" ]] || {
  echo "bad header: $header"; exit 1; }
# Every data row: 5 fields, numbers where numbers belong.
awk -F, 'NR > 1 && (NF != 5 || $3 !~ /^[0-9]+$/ || $4 !~ /^[0-9]+$/ ||
                    $5 !~ /^-?[0-9]+$/) { print "bad row " NR ": " $0; bad = 1 }
         END { exit bad }' "$csv"

expect=(
  1A_spawn/spindle 1A_spawn/asio 1A_spawn/tbb 1A_spawn/floor
  1B_yield/spindle 1B_yield/spindle_eevdf2 1B_yield/spindle_timed
  1B_yield/asio 1B_yield/floor
  1C_sleep/spindle 1C_sleep/spindle_epoll 1C_sleep/asio 1C_sleep/floor
  1C_sleep_actual_mean/spindle_epoll 1C_sleep_actual_p50/asio
  1C_sleep_actual_p99/spindle_epoll
  uring_nop/spindle uring_nop/floor
  launch/spindle launch/floor launch_ticks_p50/spindle
  launch/spindle_fiber launch_ticks_p50/spindle_fiber
  poll_profile/spindle poll_profile/asio poll_profile/floor
  fairness/spindle fairness_error_ppm/spindle
  hog/spindle_alone hog/spindle_tiers hog/spindle_notiers hog_p99/spindle_tiers
  tail_latency/spindle_thin_alone tail_latency/spindle_fifo
  tail_latency/spindle_eevdf tail_thin_start_p99/spindle_eevdf
  io_latency/spindle_alone io_latency/spindle_loaded
  io_latency_p50/spindle_alone io_latency_p99/spindle_loaded
  mt_fib/spindle mt_fib/tbb mt_fib/spindle_local mt_spawn/spindle mt_spawn/tbb
  mt_ramp/spindle mt_ramp/spindle_fanout1 mt_ramp/spindle_spin mt_ramp_half/spindle
  mt_ramp_all/spindle_spin
  skewed/spindle skewed/tbb skewed/floor_threads rebalance/spindle rebalance/spindle_spread
  hog_mt/spindle_alone hog_mt/spindle_tiers
  hog_mt_p99/spindle_notiers pingpong/spindle pingpong/floor_msg_ring pingpong/floor_eventfd
  dispatch/spindle dispatch/floor
  process_pool/spindle process_pool/floor
  process_pool_p50/spindle process_pool_p50/floor
  process_pool_p99/spindle process_pool_p99/floor
  channel_pingpong/spindle channel_pingpong/floor channel_pingpong/asio
  channel_throughput/spindle channel_throughput/floor
  fiber_switch/spindle fiber_switch/floor
  fiber_spawn/spindle_fiber fiber_spawn/spindle
  fiber_nop/spindle_fiber fiber_nop/spindle fiber_nop/floor
  slurm_steps/spindle slurm_steps/floor slurm_steps_p50/spindle
)
fail=0
for e in "${expect[@]}"; do
  b=${e%%/*}; v=${e#*/}
  if ! grep -q "^$b,$v," "$csv"; then
    # Allowed only when the suite says it skipped this variant.
    main=$b
    case $b in 1C_sleep_*) main=1C_sleep ;; launch_*) main=launch ;;
      fairness_*) main=fairness ;; mt_ramp_*) main=mt_ramp ;; hog_mt_*) main=hog_mt ;; hog_*) main=hog ;; tail_*) main=tail_latency ;;
      io_latency_*) main=io_latency ;; process_pool_*) main=process_pool ;;
      slurm_steps_*) main=slurm_steps ;; esac
    if grep -q "^  $main/$v/" "$log"; then
      echo "skipped (allowed): $(grep "^  $main/$v/" "$log" | head -n 1)"
    else
      echo "missing rows for $b/$v"; fail=1
    fi
  fi
done
# The table and the file locations are printed.
grep -q "^machine: " "$log" || { echo "no machine line"; fail=1; }
grep -Eq "^build: +(optimised|not optimised)" "$log" || { echo "no build line"; fail=1; }
grep -q "wrote .*benchmark_results.csv" "$log" || { echo "no CSV line"; fail=1; }
grep -Eq "^(wrote [0-9]+ charts|no charts: )" "$log" || { echo "no chart line"; fail=1; }
if [[ $fail -ne 0 ]]; then cat "$log"; exit 1; fi
echo "PASS: $(($(wc -l <"$csv") - 1)) rows"
