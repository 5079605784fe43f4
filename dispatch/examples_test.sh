#!/usr/bin/env bash
# Runs dispatch's example: every command reports, in priority order of
# dispatch, and the sleeping one is killed by its timeout.
set -euo pipefail
out=$("${TEST_SRCDIR}/spindle/dispatch/shell_batch")
echo "$out"
fail() { echo "FAIL: $*"; exit 1; }
grep -q "^all done$" <<<"$out" || fail "no 'all done'"
grep -Eq "^#[01] high +echo deploy-fix +exit 0, stdout 'deploy-fix'" <<<"$out" || fail "deploy-fix"
grep -Eq "^#[01] high +uname -s +exit 0" <<<"$out" || fail "uname"
grep -Eq "^#[234] normal +echo build; echo warn >&2 +exit 0, stdout 'build', 5 bytes of stderr" <<<"$out" || fail "build"
grep -Eq "^#[234] normal +exit 3 +exit 3" <<<"$out" || fail "exit 3"
grep -Eq "^#[234] normal +/nonexistent/tool +exit 127" <<<"$out" || fail "missing tool (the shell reports 127)"
grep -Eq "^#[56] low +sleep 5 +timed out \(signal 15\)" <<<"$out" || fail "timeout"
grep -Eq "^#[56] low +echo cleanup +exit 0" <<<"$out" || fail "cleanup"
