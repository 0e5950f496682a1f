#!/usr/bin/env bash
# `make test`: every check, stage by stage (lint, unit, each molecule scenario), ending with one
# "N passed, N failed" line. Exits non-zero when any stage failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
passed=0; failed=0; failed_names=()
logs=artifacts/ci
mkdir -p "${logs}"
stage() {
  local name=$1; shift
  local t0; t0=$(date +%s)
  local log="${logs}/${name//[:\/]/-}.log"
  echo "::: stage ${name}"
  if "$@" 2>&1 | tee "${log}"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
    passed=$((passed + 1)); echo "::: stage ${name} passed in $(( $(date +%s) - t0 )) s"
  else
    failed=$((failed + 1)); failed_names+=("${name}"); echo "::: stage ${name} FAILED after $(( $(date +%s) - t0 )) s"
  fi
}
# The output of a long run scrolls away: repeat what failed, stage by stage, at the very end.
why() {
  local name=$1 log="${logs}/${1//[:\/]/-}.log"
  echo "::: why ${name} failed (full output: ${log})"
  grep -E -B2 -A1 '^(fatal|failed):|FAILED!|UNREACHABLE!|^ERROR|^E  |Error [0-9]+$|^FAILED |assert|Traceback' "${log}" \
    | grep -v -E '^(--|\s*)$' | cut -c1-600 | tail -40
}
stage setup make deps
stage lint make lint
stage unit make unit
scenarios=$(make -s print-scenarios)
for s in ${scenarios}; do
  stage "molecule:${s}" make molecule MOLECULE_SCENARIOS="${s}"
done
make lab-down >/dev/null 2>&1 || true
for n in "${failed_names[@]}"; do why "${n}"; done
echo "ci: total $(( $(date +%s) - start )) s; failed stages: ${failed_names[*]:-none}"
echo "ci: ${passed} passed, ${failed} failed"
[ "${failed}" -eq 0 ]
