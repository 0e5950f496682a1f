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
# On a fresh machine the lab's images are built cold: minutes of downloads and unpacking that wait on
# the network and the disk, not the CPU. They are built in the background while lint and unit run; the
# node image is awaited before the first scenario, the vLLM CPU image before `serve`. Both builds are
# cached by content, so a scenario that finds its image ready skips the build.
py=.venv/bin/python
scenarios=$(make -s print-scenarios)
"${py}" -m lab.lab build >"${logs}/prebuild-node.log" 2>&1 &
node_pid=$!
vllm_pid=
if [[ " ${scenarios} " == *" serve "* ]]; then
  # Once built, the image and its variants are also uploaded into the lab registry's storage (prepush,
  # through a registry of its own on the loopback), so the serve scenario's create only writes manifests
  # and pins (it took 150 s of the scenario's critical path). A failed prepush costs nothing but that
  # head start: the serve scenario then pushes the image itself.
  ( while kill -0 "${node_pid}" 2>/dev/null; do sleep 5; done
    "${py}" -m lab.serving.lab_serving build || exit $?
    LAB_REGISTRY_ADDR=127.0.0.1:5999 "${py}" -m lab.serving.lab_serving prepush \
      || echo "prebuild: prepush failed; the serve scenario pushes the image itself" ) >"${logs}/prebuild-vllm.log" 2>&1 &
  vllm_pid=$!
fi
# `stage` runs its command in a pipeline (a subshell), which cannot wait for this shell's children:
# this shell waits, and the stage reports the build's log and status.
built() { local rc=$1 log=$2; cat "${log}"; return "${rc}"; }
stage lint make lint
stage unit make unit
wait "${node_pid}"; node_rc=$?
stage prebuild:node built "${node_rc}" "${logs}/prebuild-node.log"
for s in ${scenarios}; do
  if [ "${s}" = serve ] && [ -n "${vllm_pid}" ]; then
    wait "${vllm_pid}"; vllm_rc=$?
    stage prebuild:vllm built "${vllm_rc}" "${logs}/prebuild-vllm.log"
  fi
  stage "molecule:${s}" make molecule MOLECULE_SCENARIOS="${s}"
done
make lab-down >/dev/null 2>&1 || true
for n in "${failed_names[@]}"; do why "${n}"; done
echo "ci: total $(( $(date +%s) - start )) s; failed stages: ${failed_names[*]:-none}"
echo "ci: ${passed} passed, ${failed} failed"
[ "${failed}" -eq 0 ]
