#!/usr/bin/env bash
# `make test`: every check, stage by stage (lint, unit, each molecule scenario), ending with one
# "N passed, N failed" line. Exits non-zero when any stage failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
passed=0; failed=0; failed_names=()
stage() {
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo "::: stage ${name}"
  if "$@"; then
    passed=$((passed + 1)); echo "::: stage ${name} passed in $(( $(date +%s) - t0 )) s"
  else
    failed=$((failed + 1)); failed_names+=("${name}"); echo "::: stage ${name} FAILED after $(( $(date +%s) - t0 )) s"
  fi
}
stage setup make deps
stage lint make lint
stage unit make unit
scenarios=$(make -s print-scenarios)
for s in ${scenarios}; do
  stage "molecule:${s}" make molecule MOLECULE_SCENARIOS="${s}"
done
make lab-down >/dev/null 2>&1 || true
echo "ci: total $(( $(date +%s) - start )) s; failed stages: ${failed_names[*]:-none}"
echo "ci: ${passed} passed, ${failed} failed"
[ "${failed}" -eq 0 ]
