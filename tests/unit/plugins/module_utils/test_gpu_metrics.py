"""module_utils/gpu_metrics: nvidia-smi's CSV into node_exporter textfile metrics, and the node script."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ansible_collections.gb10.cluster.plugins.module_utils import gpu_metrics

ROOT = Path(__file__).resolve().parents[4]
SCRIPT = ROOT / "roles" / "monitoring" / "files" / "gb10-gpu-metrics.py"
LIB = ROOT / "collections" / "ansible_collections" / "gb10" / "cluster" / "plugins" / "module_utils"
# What nvidia-smi prints for the query on a GB10-like GPU: the SM clock and power known, utilization 37 %.
GB10 = "0, GPU-1b2c3d4e-aaaa-bbbb-cccc-0123456789ab, NVIDIA GB10, 37, 52, 18.43, 2418\n"


def _samples(text: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if not line.startswith("#")}


def test_one_gpu_with_every_field():
    samples = _samples(gpu_metrics.render(GB10, 0))
    labels = 'gpu="0",uuid="GPU-1b2c3d4e-aaaa-bbbb-cccc-0123456789ab",name="NVIDIA GB10"'
    assert samples == {
        "gb10_gpu_up": 1.0,
        f"gb10_gpu_utilization_ratio{{{labels}}}": 0.37,
        f"gb10_gpu_temperature_celsius{{{labels}}}": 52.0,
        f"gb10_gpu_power_watts{{{labels}}}": 18.43,
        f"gb10_gpu_sm_clock_hertz{{{labels}}}": 2418e6,
    }


def test_unsupported_fields_are_left_out_not_zero():
    text = gpu_metrics.render("0, GPU-x, NVIDIA GB10, [N/A], 48, [Not Supported], 1500\n", 0)
    assert "gb10_gpu_utilization_ratio" not in text and "gb10_gpu_power_watts" not in text
    assert 'gb10_gpu_temperature_celsius{gpu="0",uuid="GPU-x",name="NVIDIA GB10"} 48' in text


def test_a_failed_or_empty_answer_is_gpu_up_zero():
    for stdout, rc in (("", 9), ("NVIDIA-SMI has failed because it couldn't communicate with the driver\n", 0)):
        assert _samples(gpu_metrics.render(stdout, rc)) == {"gb10_gpu_up": 0.0}


def test_labels_are_escaped():
    text = gpu_metrics.render('0, GPU-y, Name "with" \\ quote, 1, 2, 3, 4\n', 0)
    assert 'name="Name \\"with\\" \\\\ quote"' in text


def test_the_node_script_writes_the_file_with_a_fake_nvidia_smi(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = '--query-gpu={','.join(gpu_metrics.FIELDS)}' ] || exit 2\nprintf '{GB10}'\n")
    fake.chmod(0o755)
    out = tmp_path / "gb10_gpu.prom"
    env = {**os.environ, "PYTHONPATH": str(LIB), "GB10_NVIDIA_SMI": str(fake), "GB10_GPU_METRICS_FILE": str(out)}
    subprocess.run([sys.executable, str(SCRIPT)], env=env, check=True)
    assert out.read_text() == gpu_metrics.render(GB10, 0)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".gb10_gpu.")] == []
    env["GB10_NVIDIA_SMI"] = str(tmp_path / "missing")
    r = subprocess.run([sys.executable, str(SCRIPT)], env=env, check=True, capture_output=True, text=True)
    assert out.read_text().splitlines()[-1] == "gb10_gpu_up 0" and "nvidia-smi failed (rc 127)" in r.stderr
