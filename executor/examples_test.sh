#!/usr/bin/env bash
# Runs the executor's examples: fair_share for a short while (it must print
# each queue's share and the hog's climb), and echo_server serving a client.
set -euo pipefail
dir="${TEST_SRCDIR}/spindle/executor"

out=$("$dir/fair_share" 0.3)
echo "$out"
grep -q "queue 3 (share 5)" <<<"$out" || { echo "FAIL: no share lines"; exit 1; }
grep -q "tier monitor -> warn" <<<"$out" || { echo "FAIL: the hog did not climb"; exit 1; }
grep -q "warn -> yield" <<<"$out" || { echo "FAIL: the hog did not reach yield"; exit 1; }

log="${TEST_TMPDIR}/echo.log"
"$dir/echo_server" --port 0 --seconds 10 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$log")
  [[ -n "$port" ]] && break
  sleep 0.05
done
[[ -n "$port" ]] || { cat "$log"; echo "FAIL: server did not start"; exit 1; }
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
kill -INT $pid
wait $pid || true
grep -q "connections" "$log" || { cat "$log"; echo "FAIL: no summary"; exit 1; }
cat "$log"
echo "PASS"
