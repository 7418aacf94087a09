#!/usr/bin/env bash
# Runs the whole suite under Bazel and ends with one line, `N passed, N failed`, counted from Bazel's
# per-target results. Exits non-zero on any failure, including a build or loading error that keeps tests
# from running at all (that is never reported as "0 failed").
#
#   tools/run_tests.sh [extra bazel test arguments]
set -uo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

bazel test //... --keep_going --color=no --curses=no "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# The server would otherwise stay up for hours.
bazel shutdown

# One summary line per test target: `//tests:x_test   (cached) PASSED in 1.2s`, `... FAILED in 2.0s`,
# `... TIMEOUT in 120.0s`, `... NO STATUS`, `... FAILED TO BUILD`, `... FLAKY, failed in 1 out of 2 ...`.
# Only PASSED counts as passed; a flaky pass is a failure to look at.
summary='^//[^ ]+ +(\(cached\) )?'
passed=$(grep -cE "${summary}PASSED" "$log")
failed=$(grep -cE "${summary}(FAILED|FLAKY|TIMEOUT|NO STATUS|INCOMPLETE|REMOTE FAILURE|TOOL HALTED|SKIPPED)" "$log")

# Bazel's exit codes: 0 all passed, 3 some test failed, 4 no test targets, anything else a build,
# loading or tool error. A failed build of a library, or a BUILD file that does not load, lists no test
# as failed, so count it as one failure.
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "bazel test exited with status $rc (build or loading error, or no tests ran); see the log above"
  failed=1
fi

echo "$passed passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
