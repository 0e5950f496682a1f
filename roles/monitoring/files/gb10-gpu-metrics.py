#!/usr/bin/env python3
"""gb10-gpu-metrics: one nvidia-smi reading into node_exporter's textfile folder (run by gb10-gpu-metrics.timer).

Written by roles/monitoring (the rack only: nodes with an NVIDIA driver). gpu_metrics.py, next to this
script's library folder (PYTHONPATH), turns nvidia-smi's CSV into Prometheus text; the file is replaced
atomically so node_exporter never serves half of it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import gpu_metrics


def main() -> int:
    out_file = os.environ.get("GB10_GPU_METRICS_FILE", "/var/lib/prometheus/node-exporter/gb10_gpu.prom")
    try:
        proc = subprocess.run(gpu_metrics.nvidia_smi_argv(os.environ.get("GB10_NVIDIA_SMI", "nvidia-smi")),
                              capture_output=True, text=True, timeout=20, check=False)
        stdout, rc, err = proc.stdout, proc.returncode, proc.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        stdout, rc, err = "", 127, str(exc)
    text = gpu_metrics.render(stdout, rc)
    folder = os.path.dirname(out_file)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".gb10_gpu.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out_file)
    if rc != 0:
        print(f"gb10-gpu-metrics: nvidia-smi failed (rc {rc}): {err[:300]}; gb10_gpu_up is 0", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
