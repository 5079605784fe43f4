#!/usr/bin/env bash
# A user's Bazel (WORKSPACE) project, tests/consumer_bazel, depends on this
# checkout through local_repository and runs its tests: the README's recipe,
# checked.  It is a workspace of its own (listed in .bazelignore, so the main
# workspace's //... never sees it), with its own Bazel server, which is shut
# down at the end.  Run by .ci/run.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root/tests/consumer_bazel" || exit 1
# --symlink_prefix=/: no bazel-* links inside the main checkout.
"$root/bazelw" test --color=no --curses=no --noshow_progress \
  --symlink_prefix=/ --jobs="${BAZEL_CONSUMER_JOBS:-2}" //...
rc=$?
"$root/bazelw" shutdown >/dev/null 2>&1 || true
exit $rc
