#!/usr/bin/env bash
# Cause a fault at an exact point of a run: start the command in a session of its own, wait until a line
# matching PATTERN appears in its output, freeze the whole run (SIGSTOP to its process group), run the
# fault command, let the run go on (SIGCONT) and wait for it to end. Freezing makes it deterministic: the
# fault is in place before the task announced by the matching line does anything.
#   on-line.sh <log file> <pattern (grep -E)> <fault command (sh -c)> <command...>
# The fault command finds the run's process group in $RUN_PGID (e.g. 'kill -INT -$RUN_PGID' is a Ctrl-C,
# delivered when the run goes on).
# Prints "fault at: <line> | fault rc=<rc> | run rc=<rc> | after=<s>" and exits 0 when the fault was
# caused and the run went on to its end; exits 1 when the pattern never appeared or the fault failed.
set -uo pipefail
log=$1; pattern=$2; fault=$3; shift 3
mkdir -p "$(dirname "$log")"
: > "$log"
setsid "$@" > "$log" 2>&1 &
pid=$!
start=$(date +%s)
until grep -Eq -- "$pattern" "$log"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "the run ended before a line matched: ${pattern}" >&2
    exit 1
  fi
  if (( $(date +%s) - start > 600 )); then
    echo "no line matched within 600 s: ${pattern}" >&2
    kill -TERM -- "-$pid" 2>/dev/null
    exit 1
  fi
  sleep 0.2
done
kill -STOP -- "-$pid"
line=$(grep -Em1 -- "$pattern" "$log")
RUN_PGID=$pid sh -c "$fault"
fault_rc=$?
after=$(( $(date +%s) - start ))
kill -CONT -- "-$pid"
wait "$pid"
rc=$?
echo "fault at: ${line} | fault rc=${fault_rc} | run rc=${rc} | after=${after}"
[ "$fault_rc" -eq 0 ]
