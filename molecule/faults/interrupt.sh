#!/usr/bin/env bash
# Ctrl-C on the control machine mid-run: start `ansible-playbook ... site.yml` in a session of its own,
# wait until a task has changed something, then send SIGINT to its whole process group (what a
# terminal sends on Ctrl-C) and wait for it to exit.
#   interrupt.sh <log file> <ansible-playbook command...>
# Prints "interrupted rc=<rc> after=<s>" and exits 0 when the run was interrupted after a change;
# exits 1 when the run ended (or changed nothing) before the signal could be sent.
set -uo pipefail
log=$1; shift
mkdir -p "$(dirname "$log")"
: > "$log"
setsid "$@" > "$log" 2>&1 &
pid=$!
start=$(date +%s)
until grep -q '^changed: \[' "$log"; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "the run ended before any task changed something" >&2
    exit 1
  fi
  if (( $(date +%s) - start > 300 )); then
    echo "no task changed anything within 300 s" >&2
    kill -INT -- "-$pid" 2>/dev/null
    exit 1
  fi
  sleep 0.2
done
kill -INT -- "-$pid"
wait "$pid"
rc=$?
echo "interrupted rc=${rc} after=$(( $(date +%s) - start ))"
