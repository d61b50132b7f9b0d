#!/bin/sh
# Passes only when PROGRAM exits nonzero AND its output matches REGEX (an
# extended regular expression): a planted bug must be reported.
#   expect_report.sh REGEX PROGRAM [ARGS...]
set -u
regex=$1
shift
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if [ "$rc" -eq 77 ] && printf '%s\n' "$out" | grep -q '^skipped: '; then
    exit 77 # the tool is missing (run_valgrind.sh said why)
fi
if [ "$rc" -eq 0 ]; then
    echo "FAIL: $* exited with 0: the planted bug was not reported"
    exit 1
fi
if ! printf '%s\n' "$out" | grep -Eq "$regex"; then
    echo "FAIL: $* exited with $rc but printed no '$regex'"
    exit 1
fi
echo "canary: reported as expected (exit $rc)"
