"""gb10_meminfo (module_utils) and gb10_memory_facts (module): /proc/meminfo and a GB10 nvidia-smi."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.module_utils.meminfo import memory_facts, parse_meminfo, parse_nvidia_smi
from ansible_collections.gb10.cluster.plugins.modules import memory_facts as memory_facts_module

MEMINFO = Path(__file__).resolve().parents[2] / "fixtures" / "memfit" / "meminfo-gb10.txt"
GB10_SMI = "NVIDIA GB10, [N/A], [N/A]\n"
GB10_SMI_NOT_SUPPORTED = "NVIDIA GB10, Not Supported, Not Supported\n"
H100_SMI = "NVIDIA H100 80GB HBM3, 81559 MiB, 1234 MiB\n"


def _run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        memory_facts_module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_parse_meminfo_converts_kib_to_bytes():
    info = parse_meminfo(MEMINFO.read_text())
    assert info["MemTotal"] == 127_601_124 * 1024
    assert info["MemAvailable"] == 119_876_544 * 1024
    assert info["HugePages_Total"] == 0  # a count, not kB


def test_gb10_nvidia_smi_memory_is_not_supported():
    for text in (GB10_SMI, GB10_SMI_NOT_SUPPORTED):
        (gpu,) = parse_nvidia_smi(text)
        assert gpu == {"name": "NVIDIA GB10", "memory_total_bytes": None, "memory_used_bytes": None}


def test_dedicated_gpu_memory_is_parsed():
    (gpu,) = parse_nvidia_smi(H100_SMI)
    assert gpu["memory_total_bytes"] == 81_559 * 1024**2
    assert gpu["memory_used_bytes"] == 1_234 * 1024**2


def test_facts_on_a_gb10_node():
    facts = memory_facts(MEMINFO.read_text(), GB10_SMI)
    assert facts["mem_total_bytes"] == 127_601_124 * 1024
    assert facts["mem_available_bytes"] == 119_876_544 * 1024
    # Cached 21,734,212 kB + Buffers 412,344 kB
    assert facts["page_cache_bytes"] == (21_734_212 + 412_344) * 1024
    assert facts["swap_total_bytes"] == 16_777_212 * 1024
    assert facts["gpu_present"] is True
    assert facts["gpu_name"] == "NVIDIA GB10"
    assert facts["gpu_integrated"] is True
    assert facts["gpu_memory_total_bytes"] is None


def test_facts_without_nvidia_smi_and_on_a_discrete_gpu():
    none = memory_facts(MEMINFO.read_text(), None)
    assert (none["gpu_present"], none["gpu_integrated"], none["gpu_name"]) == (False, False, None)
    h100 = memory_facts(MEMINFO.read_text(), H100_SMI)
    assert h100["gpu_integrated"] is False
    assert h100["gpu_memory_total_bytes"] == 81_559 * 1024**2


def test_facts_refuse_text_without_memtotal():
    with pytest.raises(ValueError, match="MemTotal"):
        memory_facts("garbage\n")


def test_module_on_gb10(capsys, monkeypatch):
    calls = []

    def fake_run(self, args, **kwargs):
        calls.append(args)
        return 0, GB10_SMI, ""

    monkeypatch.setattr(basic.AnsibleModule, "run_command", fake_run)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: f"/usr/bin/{name}")
    code, out = _run(capsys, {"meminfo_path": str(MEMINFO), "_ansible_check_mode": True})
    assert code == 0 and out["changed"] is False
    facts = out["ansible_facts"]["gb10_memory"]
    assert facts["gpu_integrated"] is True and facts["gpu_memory_total_bytes"] is None
    assert facts["mem_available_bytes"] == 119_876_544 * 1024
    assert calls == [
        ["/usr/bin/nvidia-smi", "--query-gpu=name,memory.total,memory.used", "--format=csv,noheader"]
    ]
    assert out["nvidia_smi_error"] == ""


def test_module_without_nvidia_smi_does_not_fail(capsys, monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: None)
    code, out = _run(capsys, {"meminfo_path": str(MEMINFO)})
    assert code == 0
    assert out["ansible_facts"]["gb10_memory"]["gpu_present"] is False
    assert out["nvidia_smi_error"] == "nvidia-smi not found"


def test_module_with_failing_nvidia_smi_does_not_fail(capsys, monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, args, **k: (9, "", "NVML: Unknown Error"))
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: f"/usr/bin/{name}")
    code, out = _run(capsys, {"meminfo_path": str(MEMINFO)})
    assert code == 0
    assert out["ansible_facts"]["gb10_memory"]["gpu_present"] is False
    assert out["nvidia_smi_error"] == "/usr/bin/nvidia-smi exited 9: NVML: Unknown Error"


def test_module_fails_on_unreadable_meminfo(capsys, tmp_path):
    code, out = _run(capsys, {"meminfo_path": str(tmp_path / "nope"), "nvidia_smi": ""})
    assert code == 1 and out["failed"] is True
    assert "Cannot read" in out["msg"]
