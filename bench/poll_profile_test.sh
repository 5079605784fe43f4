#!/usr/bin/env bash
# bench/poll_profile_test.sh: poll_profile's workloads run once (the child
# mode that PROFILE=callgrind runs under valgrind), and bad WORKLOAD values
# are clear errors with exit code 2.  No valgrind needed.
set -euo pipefail
pp="$TEST_SRCDIR/$TEST_WORKSPACE/bench/poll_profile"
log="$TEST_TMPDIR/pp.log"

# One run of each workload; the channel one fails (exit 1) if a message is
# lost or duplicated, the spawn ones if a task did not run.
for w in yield channel spawn fiber_spawn; do
  SPINDLE_POLL_PROFILE_CHILD=1 WORKLOAD=$w N_TASKS=10 YIELDS_PER_TASK=50 \
    "$pp" >"$log" 2>&1 || { echo "WORKLOAD=$w failed:"; cat "$log"; exit 1; }
done

expect_2() {  # expect_2 <what the message must say> env...
  local want=$1; shift
  set +e
  env "$@" PROFILE=callgrind "$pp" --out "$TEST_TMPDIR" >"$log" 2>&1
  local rc=$?
  set -e
  [[ $rc -eq 2 ]] || { echo "$*: want exit 2, got $rc"; cat "$log"; exit 1; }
  grep -q "$want" "$log" || { echo "$*: message lacks '$want'"; cat "$log"; exit 1; }
}
expect_2 "WORKLOAD='chan'" WORKLOAD=chan
expect_2 "EXECUTOR='asio'" WORKLOAD=channel EXECUTOR=asio
echo "poll_profile_test: ok"
