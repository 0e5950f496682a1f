#!/usr/bin/env bash
# Ctrl-C on the control machine mid-run: start `ansible-playbook ... site.yml` in a session of its own,
# wait until a task has changed something, then send SIGINT to its whole process group (what a
# terminal sends on Ctrl-C) and wait for it to exit. lab/on-line.sh does the waiting.
#   interrupt.sh <log file> <ansible-playbook command...>
# Prints "fault at: <line> | fault rc=0 | run rc=<rc> | after=<s>"; exits 1 when the run ended (or
# changed nothing within 600 s) before the signal could be sent.
set -uo pipefail
log=$1; shift
# shellcheck disable=SC2016  # $RUN_PGID is expanded by on-line.sh when it runs the fault command
exec "$(dirname "$0")/../../lab/on-line.sh" "$log" '^changed: \[' 'kill -INT "-$RUN_PGID"' "$@"
