#!/usr/bin/env bash
# `make test`: the whole test suite, in two pytest processes side by side.
#
# The small benchmark and the small fault run (tests marked `suite`) each run a whole
# program in a subprocess, and spend most of their minutes waiting on timers: outages,
# long polls, paced producers, stacks starting and stopping. Run beside the rest, they
# take no longer and `make test` takes about half as long. They log no AWS calls, so the
# IAM check that runs after all the others (in the first process) still sees every call
# of its own session. The second process's report is printed at the end.
set -uo pipefail
bin=${BIN:-.venv/bin}
mkdir -p var
log=var/test-suites.log

# Its own process group, so that an interrupted run stops the suites' children too.
setsid "$bin/pytest" -m suite >"$log" 2>&1 &
suites=$!
trap 'kill -TERM -- -"$suites" 2>/dev/null' EXIT

"$bin/pytest" -m "not suite"
rest=$?
wait "$suites"
suites_status=$?
trap - EXIT

echo
echo "=== beside them: the small benchmark and fault run (pytest -m suite) ==="
cat "$log"
if ((rest != 0)); then exit "$rest"; fi
exit "$suites_status"
