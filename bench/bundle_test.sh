#!/usr/bin/env bash
# bench/bundle_test.sh: bench/bundle.sh copies the suite and every library
# it loads, the loader resolves each one inside the bundle, the bundled
# suite runs bench/scaling.sh's rows, and bad input exits 2.
set -euo pipefail
suite="$TEST_SRCDIR/$TEST_WORKSPACE/bench/suite"
script="$TEST_SRCDIR/$TEST_WORKSPACE/bench/bundle.sh"
scaling="$TEST_SRCDIR/$TEST_WORKSPACE/bench/scaling.sh"
dir="$TEST_TMPDIR/bundle"
log="$TEST_TMPDIR/bundle.log"

"$script" "$dir" "$suite" 2>"$log" || { echo "bundle.sh failed:"; cat "$log"; exit 1; }
[[ -x "$dir/suite" ]] || { echo "no wrapper at $dir/suite"; ls -R "$dir"; exit 1; }
loader=$(cd "$dir/lib" && ls ld-linux*)
# Every library the bundled suite loads resolves inside the bundle (the
# kernel's vDSO has no file).
listing=$("$dir/lib/$loader" --inhibit-cache --library-path "$dir/lib" \
  --list "$dir/lib/suite")
outside=$(grep -v -e "linux-vdso" -e "$dir/lib/" <<<"$listing" || true)
[[ -z "$outside" ]] || { echo "loaded from outside the bundle:"; echo "$outside"; exit 1; }
grep -q "libabsl_status" <<<"$listing" || { echo "no Abseil in:"; echo "$listing"; exit 1; }

# The bundled suite runs the scaling rows (moved away from the build, so
# nothing beside it is found by a relative path).
moved="$TEST_TMPDIR/elsewhere"
mv "$dir" "$moved"
WORKER_COUNTS="1" ITERATIONS=1 FIB_N=10 N_TASKS=1000 OUT="$TEST_TMPDIR/out" \
  "$scaling" "$moved/suite" >"$TEST_TMPDIR/table.md" 2>"$log" || {
  echo "scaling.sh on the bundle failed:"; cat "$log"; exit 1; }
grep -Eq '^\| 1 \| [0-9.]+ ms \(1\.00x\) \|' "$TEST_TMPDIR/table.md" || {
  echo "no 1-worker row:"; cat "$TEST_TMPDIR/table.md"; exit 1; }

expect_2() {
  set +e
  "$script" "$@" >/dev/null 2>"$log"
  local rc=$?
  set -e
  [[ $rc -eq 2 ]] || { echo "bundle.sh $*: want exit 2, got $rc"; cat "$log"; exit 1; }
  grep -q "$want" "$log" || { echo "bundle.sh $*: no '$want' in:"; cat "$log"; exit 1; }
}
want="usage" expect_2
want="is not empty" expect_2 "$moved" "$suite"
want="no program at" expect_2 "$TEST_TMPDIR/new" "$TEST_TMPDIR/no-such-suite"
echo "bundle_test: ok"
