"""meminfo (module_utils) and memory_facts (module): /proc/meminfo, the cgroup memory limit, a GB10 nvidia-smi."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.module_utils.meminfo import (
    cgroup_memory,
    effective_memory,
    memory_facts,
    own_cgroup,
    parse_meminfo,
    parse_nvidia_smi,
)
from ansible_collections.gb10.cluster.plugins.modules import memory_facts as memory_facts_module

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
MEMINFO = FIXTURES / "memfit" / "meminfo-gb10.txt"
CGROUPS = FIXTURES / "cgroup"
GiB = 2**30
HOST_TOTAL = 127_601_124 * 1024  # meminfo-gb10.txt
HOST_AVAILABLE = 119_876_544 * 1024
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


def _cgroup(case):
    return cgroup_memory(CGROUPS / case / "cgroup", CGROUPS / case / "proc")


def test_own_cgroup_per_version():
    text = "12:pids:/docker/a\n11:cpu,cpuacct:/docker/a\n4:blkio,memory:/docker/b\n0::/init.scope\n"
    assert own_cgroup(text, 2) == "/init.scope"
    assert own_cgroup(text, 1) == "/docker/b"
    assert own_cgroup("0::/\n", 2) == "/"
    assert own_cgroup("1:name=systemd:/x\n", 1) == ""


@pytest.mark.parametrize(("case", "expected"), [
    # the container's 16 GiB, not the looser 32 GiB of the session's user slice below it
    ("v2_limit", {"version": 2, "path": "/system.slice/docker-4f1c2a.scope", "limit_bytes": 16 * GiB,
                  "usage_bytes": 5 * GiB, "inactive_file_bytes": 2 * GiB}),
    ("v2_nolimit", {"version": 2, "path": None, "limit_bytes": None, "usage_bytes": None,
                    "inactive_file_bytes": None}),
    # total_inactive_file (hierarchical), not the cgroup's own inactive_file
    ("v1_limit", {"version": 1, "path": "/docker/4f1c2a", "limit_bytes": 8 * GiB, "usage_bytes": 3 * GiB,
                  "inactive_file_bytes": 1 * GiB}),
])
def test_cgroup_memory_finds_the_tightest_limit(case, expected):
    assert _cgroup(case) == expected


@pytest.mark.parametrize(("case", "total", "available"), [
    ("v2_limit", 16 * GiB, (16 - 5 + 2) * GiB),  # limit - usage + inactive file cache
    ("v2_nolimit", HOST_TOTAL, HOST_AVAILABLE),
    ("v1_limit", 8 * GiB, (8 - 3 + 1) * GiB),
])
def test_effective_memory_is_capped_by_the_cgroup(case, total, available):
    facts = memory_facts(MEMINFO.read_text(), None, _cgroup(case))
    assert (facts["effective_mem_total_bytes"], facts["effective_mem_available_bytes"]) == (total, available)
    assert (facts["mem_total_bytes"], facts["mem_available_bytes"]) == (HOST_TOTAL, HOST_AVAILABLE)
    assert facts["cgroup_memory_limit_bytes"] == _cgroup(case)["limit_bytes"]


def test_a_host_tighter_than_the_cgroup_keeps_its_own_numbers():
    cgroup = {"limit_bytes": 64 * GiB, "usage_bytes": 1 * GiB, "inactive_file_bytes": 0}
    assert effective_memory(32 * GiB, 20 * GiB, cgroup) == (32 * GiB, 20 * GiB)
    assert effective_memory(32 * GiB, 20 * GiB, {"limit_bytes": None}) == (32 * GiB, 20 * GiB)


def test_unreadable_usage_and_stat_count_as_zero(tmp_path):
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").write_text("0::/lab.slice\n")
    (tmp_path / "cgroup" / "lab.slice").mkdir(parents=True)
    (tmp_path / "cgroup" / "cgroup.controllers").write_text("memory\n")
    (tmp_path / "cgroup" / "lab.slice" / "memory.max").write_text("1073741824\n")
    found = cgroup_memory(tmp_path / "cgroup", tmp_path / "proc")
    assert (found["limit_bytes"], found["usage_bytes"], found["inactive_file_bytes"]) == (GiB, 0, 0)


def test_no_proc_cgroup_means_no_limit(tmp_path):
    found = cgroup_memory(CGROUPS / "v2_limit" / "cgroup", tmp_path)
    assert found["limit_bytes"] is None
    facts = memory_facts(MEMINFO.read_text(), None, found)
    assert facts["effective_mem_available_bytes"] == HOST_AVAILABLE


def test_module_reports_the_container_limit(capsys):
    code, out = _run(capsys, {
        "meminfo_path": str(MEMINFO), "nvidia_smi": "",
        "cgroup_root": str(CGROUPS / "v2_limit" / "cgroup"), "proc_root": str(CGROUPS / "v2_limit" / "proc"),
    })
    assert code == 0 and out["changed"] is False
    facts = out["ansible_facts"]["gb10_memory"]
    assert facts["cgroup_version"] == 2
    assert facts["cgroup_path"] == "/system.slice/docker-4f1c2a.scope"
    assert facts["cgroup_memory_limit_bytes"] == 16 * GiB
    assert facts["effective_mem_total_bytes"] == 16 * GiB
    assert facts["effective_mem_available_bytes"] == 13 * GiB
    assert facts["mem_available_bytes"] == HOST_AVAILABLE
