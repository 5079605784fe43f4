#!/usr/bin/env bash
# Runs the executor's examples: fair_share for a short while (it must print
# each queue's share and the hog's climb), fiber_lines (its counts),
# pool_batch and process_tasks
# (every command's result), and echo_server serving a client.
set -euo pipefail
dir="${TEST_SRCDIR}/spindle/executor"

out=$("$dir/fair_share" 0.3)
echo "$out"
grep -q "queue 3 (share 5)" <<<"$out" || { echo "FAIL: no share lines"; exit 1; }
grep -q "tier monitor -> warn" <<<"$out" || { echo "FAIL: the hog did not climb"; exit 1; }
grep -q "warn -> yield" <<<"$out" || { echo "FAIL: the hog did not reach yield"; exit 1; }

out=$("$dir/fiber_lines")
echo "$out"
grep -Eq "^lines 4, words 12, reads [0-9]+$" <<<"$out" || { echo "FAIL: fiber_lines"; exit 1; }

out=$("$dir/pool_batch")
echo "$out"
grep -Eq "^echo deploy-fix +exit 0, stdout 'deploy-fix'" <<<"$out" || { echo "FAIL: pool_batch deploy-fix"; exit 1; }
grep -Eq "^echo build; echo warn >&2 +exit 0, stdout 'build', stderr 5 bytes" <<<"$out" || { echo "FAIL: pool_batch build"; exit 1; }
grep -Eq "^exit 3 +exit 3" <<<"$out" || { echo "FAIL: pool_batch exit 3"; exit 1; }
grep -Eq "^sleep 5 +timed out, signal 15" <<<"$out" || { echo "FAIL: pool_batch timeout"; exit 1; }
grep -q "^pending after shutdown: 0" <<<"$out" || { echo "FAIL: pool_batch pending"; exit 1; }

out=$("$dir/process_tasks")
echo "$out"
grep -Eq "^echo lint; exit 2 +exit 2, stdout 'lint'" <<<"$out" || { echo "FAIL: process_tasks exit 2"; exit 1; }
grep -Eq "^echo compile; sleep 0.2 +exit 0, stdout 'compile'" <<<"$out" || { echo "FAIL: process_tasks compile"; exit 1; }
grep -Eq "^sleep 5 +timed out, signal 15" <<<"$out" || { echo "FAIL: process_tasks timeout"; exit 1; }
grep -Eq "^/nonexistent/tool +not started: .*ENOENT" <<<"$out" || { echo "FAIL: process_tasks start error"; exit 1; }

# start_server LOG [ENV...]: starts echo_server, sets $pid and $port.
start_server() {
  local log=$1; shift
  # The log exists before the server starts: the background redirection
  # opens it only when the subshell runs, and the poll below must not race
  # that (a missing file made sed fail and, under set -e, ended the test).
  : >"$log"
  env "$@" "$dir/echo_server" --port 0 --seconds 60 ${server_args:-} >"$log" 2>&1 &
  pid=$!
  port=""
  for _ in $(seq 1 200); do
    port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$log")
    [[ -n "$port" ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  [[ -n "$port" ]] || { cat "$log"; echo "FAIL: server did not start"; exit 1; }
}

# stop_server LOG: SIGINT, then the server must stop by itself, quickly.
stop_server() {
  local log=$1
  kill -INT "$pid"
  local rc=0
  timeout 20 tail --pid="$pid" -f /dev/null || { echo "FAIL: no exit on SIGINT"; exit 1; }
  wait "$pid" || rc=$?
  [[ $rc -eq 0 ]] || { cat "$log"; echo "FAIL: exit $rc"; exit 1; }
  grep -q "connections" "$log" || { cat "$log"; echo "FAIL: no summary"; exit 1; }
}
trap 'kill $pid 2>/dev/null || true' EXIT

log="${TEST_TMPDIR}/echo.log"
start_server "$log"
# A client in plain bash: /dev/tcp, 50 lines, each echoed back.
exec 3<>"/dev/tcp/127.0.0.1/$port"
reply=ok
for i in $(seq 1 50); do
  printf 'hello spindle %d\n' "$i" >&3
  IFS= read -r -t 5 line <&3 || { reply="no reply to line $i"; break; }
  [[ "$line" == "hello spindle $i" ]] || { reply="mismatch: '$line'"; break; }
done
exec 3<&-
[[ "$reply" == ok ]] || { echo "FAIL: echo reply: $reply"; exit 1; }
stop_server "$log"
cat "$log"
grep -Eq "bytes echoed, 0 closed idle" "$log" || { echo "FAIL: summary"; exit 1; }
# 50 lines of "hello spindle N\n": every connection's bytes reach the total
# (its report goes through a channel when it ends).
want=$(for i in $(seq 1 50); do printf 'hello spindle %d\n' "$i"; done | wc -c)
grep -q "1 connections, $want bytes echoed" "$log" ||
  { echo "FAIL: want '1 connections, $want bytes echoed'"; exit 1; }

# A silent client is closed by the idle timeout (a bounded read).
log="${TEST_TMPDIR}/echo_idle.log"
server_args="--idle-timeout 0.3" start_server "$log"
exec 3<>"/dev/tcp/127.0.0.1/$port"
rc=0
IFS= read -r -t 20 line <&3 || rc=$?
exec 3<&-
# read: 1 at end of file (the server closed it), > 128 on its own timeout.
[[ $rc -eq 1 ]] || { cat "$log"; echo "FAIL: idle client not closed (read rc $rc)"; exit 1; }
stop_server "$log"
grep -q "1 closed idle" "$log" || { cat "$log"; echo "FAIL: no idle close counted"; exit 1; }
echo "PASS: idle timeout"

# 2000 idle connections plus active clients, on both backends (io_uring
# stopped answering at ~600 idle connections).  Skipped where the hard
# descriptor limit is too low.
if (( $(ulimit -Hn) >= 4200 )); then
  for backend in io_uring epoll; do
    log="${TEST_TMPDIR}/echo_$backend.log"
    start_server "$log" SPINDLE_REACTOR=$backend
    if grep -q "epoll reactor" "$log" && [[ $backend == io_uring ]]; then
      echo "io_uring unavailable here: that run used epoll"
    fi
    "$dir/echo_check" --port "$port" --idle 2000 --active 8 --rounds 50 ||
      { cat "$log"; echo "FAIL: $backend with 2000 idle connections"; exit 1; }
    stop_server "$log"
    echo "PASS: $backend: 2000 idle + 8 active connections"
  done
else
  echo "SKIP: 2000 idle connections: hard descriptor limit $(ulimit -Hn) < 4200"
fi

# The same server on a Runtime of 2 workers: connections are stealable
# tasks, each doing its I/O on the ring of the worker that runs it.
for backend in io_uring epoll; do
  log="${TEST_TMPDIR}/echo_workers_$backend.log"
  server_args="--workers 2" start_server "$log" SPINDLE_REACTOR=$backend
  grep -q "2 workers" "$log" || { cat "$log"; echo "FAIL: not on 2 workers"; exit 1; }
  "$dir/echo_check" --port "$port" --idle 200 --active 8 --rounds 50 ||
    { cat "$log"; echo "FAIL: $backend on 2 workers"; exit 1; }
  stop_server "$log"
  grep -q "connections started per worker" "$log" || { cat "$log"; echo "FAIL: no per-worker line"; exit 1; }
  cat "$log"
  echo "PASS: $backend: 2 workers, 200 idle + 8 active connections"
done

# A transient accept error (EMFILE under a low descriptor limit) must not
# end the accept loop: after the flood is gone, a new client is served.
log="${TEST_TMPDIR}/echo_emfile.log"
: >"$log"
( ulimit -n 24; exec "$dir/echo_server" --port 0 --seconds 60 ) >"$log" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 200); do
  port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$log")
  [[ -n "$port" ]] && break
  sleep 0.05
done
[[ -n "$port" ]] || { cat "$log"; echo "FAIL: server did not start"; exit 1; }
"$dir/echo_check" --port "$port" --idle 40 --active 0 --hold-ms 300 ||
  { cat "$log"; echo "FAIL: flood"; exit 1; }
"$dir/echo_check" --port "$port" --idle 0 --active 1 --rounds 5 ||
  { cat "$log"; echo "FAIL: not served after EMFILE"; exit 1; }
grep -q "Too many open files; retrying" "$log" ||
  { cat "$log"; echo "FAIL: the flood did not reach EMFILE"; exit 1; }
stop_server "$log"
echo "PASS"
