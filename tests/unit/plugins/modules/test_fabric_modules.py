"""gb10.cluster.fabric_check and gb10.cluster.fabric_report run as modules (patch_module_args)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.modules import fabric_check as fabric_check_module
from ansible_collections.gb10.cluster.plugins.modules import fabric_perf as fabric_perf_module
from ansible_collections.gb10.cluster.plugins.modules import fabric_report as fabric_report_module
from tests.support.fabric_outputs import (
    ADDRESSES,
    DEVICES,
    HOSTS,
    IB_TWIN_A,
    IB_TWIN_B_DEGRADED,
    NCCL_FAILED_RANK,
    NODES,
    ring,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sysfs"


def _run(capsys, module, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_check_module_reads_sysfs_and_runs_commands(capsys, monkeypatch):
    seen = []

    def fake_run(args, **kwargs):
        seen.append(args)
        if "ip" in args[0]:
            out = ('[{"ifname":"enp1s0f1np1","addr_info":[{"family":"inet",'
                   '"local":"192.168.100.11","prefixlen":24}]}]')
        elif "ethtool" in args[0]:
            out = "\tSpeed: 200000Mb/s\n"
        else:
            out = "2 packets transmitted, 2 received, 0% packet loss\n"
        return subprocess.CompletedProcess(args, 0, out, "")

    monkeypatch.setattr(fabric_check_module.subprocess, "run", fake_run)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: f"/usr/bin/{name}")
    code, out = _run(capsys, fabric_check_module, {
        "node": "gx10-1",
        "sysfs_root": str(FIXTURES / "gx10_cabled"),
        "twins": [{"interface": "enp1s0f1np1", "address": "192.168.100.11/24",
                   "peers": [{"node": "gx10-2", "address": "192.168.100.12/24"}]}],
        "_ansible_check_mode": True,
    })
    assert code == 0 and out["changed"] is False and out["failed_checks"] == 0
    checks = {row["check"]: row for row in out["checks"]}
    assert checks["mtu"]["detail"] == "expected 9000, found 9000"
    assert checks["link_speed"]["status"] == "passed"
    assert checks["jumbo_ping"]["peer"] == "gx10-2"
    assert ["/usr/bin/ping", "-M", "do", "-s", "8972", "-c", "2", "-W", "2", "-I",
            "enp1s0f1np1", "192.168.100.12"] in seen


def test_report_module_writes_json_and_names_the_failure(capsys, tmp_path):
    rows = [
        {"node": "gx10-1", "twin": "enP2p1s0f1np1", "peer": "gx10-3", "check": "jumbo_ping",
         "status": "failed", "detail": "0/2 received"},
        {"node": "gx10-3", "twin": "enP2p1s0f1np1", "peer": None, "check": "mtu",
         "status": "failed", "detail": "expected 9000, found 1500"},
        {"node": "gx10-3", "twin": "enp1s0f1np1", "peer": None, "check": "link_speed",
         "status": "skipped", "detail": "lab container"},
    ]
    code, out = _run(capsys, fabric_report_module, {
        "checks": rows, "dest_dir": str(tmp_path / "fabric"), "run_id": "20261127T100000Z",
        "meta": {"nodes": ["gx10-1", "gx10-3"]}})
    assert code == 0 and out["ok"] is False and "failed" not in out
    assert [r["check"] for r in out["failed_rows"]] == ["mtu", "jumbo_ping"]
    assert out["message"].startswith(
        "Fabric check FAILED: 2 of 3 checks failed: gx10-3 twin enP2p1s0f1np1: mtu failed")
    report = json.loads(Path(out["path"]).read_text())
    assert Path(out["path"]).name == "fabric-20261127T100000Z.json"
    assert json.loads((tmp_path / "fabric" / "latest.json").read_text()) == report
    assert report["summary"]["counts"] == {"passed": 0, "failed": 2, "skipped": 1}
    assert report["meta"] == {"nodes": ["gx10-1", "gx10-3"]}


def test_report_module_rejects_unknown_status(capsys, tmp_path):
    code, out = _run(capsys, fabric_report_module, {
        "checks": [{"node": "a", "twin": None, "peer": None, "check": "x", "status": "ok",
                    "detail": ""}],
        "dest_dir": str(tmp_path), "run_id": "x"})
    assert code == 1 and "unknown status" in out["msg"]


def test_perf_module_skips_without_hardware(capsys, monkeypatch):
    def boom(*_a, **_k):
        raise AssertionError("must not run a command when skipped")

    monkeypatch.setattr(fabric_perf_module, "run", boom)
    code, out = _run(capsys, fabric_perf_module, {
        "node": "gx10-1", "twin": "enp1s0f1np1", "peer": "gx10-2", "check": "ib_write_bw",
        "minimum": 90, "skip_reason": "lab container (docker): no RDMA device rocep1s0f1"})
    assert code == 0
    assert out["row"]["status"] == "skipped"
    assert out["row"]["detail"] == "lab container (docker): no RDMA device rocep1s0f1"


def test_perf_module_rates_nccl_bus_bandwidth(capsys, monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: f"/usr/bin/{name}")
    monkeypatch.setattr(fabric_perf_module, "run",
                        lambda argv, timeout: (0, "# Avg bus bandwidth    : 20.1\n", ""))
    code, out = _run(capsys, fabric_perf_module, {
        "node": "gx10-1", "check": "nccl_all_gather", "minimum": 21.875,
        "argv": ["mpirun", "all_gather_perf"]})
    assert code == 0 and out["row"]["status"] == "failed"
    assert out["row"]["detail"] == "20.1 GB/s (minimum 21.875 GB/s); 1 node"
    assert out["row"]["value"] == 20.1


def test_perf_module_failed_command_is_a_failed_row(capsys, monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: f"/usr/bin/{name}")
    monkeypatch.setattr(fabric_perf_module, "run",
                        lambda argv, timeout: (1, "", "Couldn't connect to 192.168.100.12:18515"))
    code, out = _run(capsys, fabric_perf_module, {
        "node": "gx10-1", "twin": "enp1s0f1np1", "peer": "gx10-2", "check": "ib_write_bw",
        "minimum": 90, "argv": ["ib_write_bw", "192.168.100.12"]})
    assert code == 0 and out["row"]["status"] == "failed"
    assert "Couldn't connect" in out["row"]["detail"]


def test_perf_module_missing_binary_is_a_failed_row(capsys, monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: None)
    code, out = _run(capsys, fabric_perf_module, {
        "node": "gx10-1", "twin": "enp1s0f1np1", "peer": "gx10-2", "check": "ib_write_bw",
        "minimum": 90, "argv": ["ib_write_bw", "192.168.100.12"]})
    assert code == 0 and out["row"]["status"] == "failed"
    assert "command not found" in out["row"]["detail"]


@pytest.mark.parametrize("module", [fabric_check_module, fabric_perf_module, fabric_report_module])
def test_fabric_module_docs_parse_and_match_the_options(module):
    import yaml

    doc = yaml.safe_load(module.DOCUMENTATION)
    yaml.safe_load(module.EXAMPLES)
    yaml.safe_load(module.RETURN)
    source = Path(module.__file__).read_text()
    for option in doc["options"]:
        assert f'"{option}"' in source, f"{option} documented but not in argument_spec"


def test_perf_module_runs_both_twins_at_once_and_rates_each(capsys, monkeypatch):
    started = []

    def fake_run(argv, timeout):
        started.append(argv)
        device = argv[argv.index("-d") + 1]
        return (0, IB_TWIN_A, "") if device == "rocep1s0f1" else (0, IB_TWIN_B_DEGRADED, "")

    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: f"/usr/bin/{name}")
    monkeypatch.setattr(fabric_perf_module, "run", fake_run)
    code, out = _run(capsys, fabric_perf_module, {
        "node": "gx10-3", "check": "ib_write_bw", "minimum": 90,
        "runs": [
            {"twin": "enp1s0f1np1", "peer": "gx10-4",
             "argv": ["ib_write_bw", "-d", "rocep1s0f1", "-x", "3", "-p", "18515", "192.168.100.14"]},
            {"twin": "enP2p1s0f1np1", "peer": "gx10-4",
             "argv": ["ib_write_bw", "-d", "roceP2p1s0f1", "-x", "3", "-p", "18516", "192.168.101.14"]},
            {"twin": "enP2p1s0f1np1", "peer": "gx10-9", "argv": None,
             "error": "no RoCE v2 IPv4 GID on roceP2p1s0f1 of gx10-3"},
        ]})
    assert code == 0 and len(started) == 2 and started[0][0] == "/usr/bin/ib_write_bw"
    assert [(r["twin"], r["status"]) for r in out["rows"]] == [
        ("enp1s0f1np1", "passed"), ("enP2p1s0f1np1", "failed"), ("enP2p1s0f1np1", "failed")]
    assert out["rows"][1]["value"] == 46.12 and out["rows"][2]["detail"].startswith("no RoCE v2 IPv4 GID")
    assert out["row"] == out["rows"][0]


def test_perf_module_names_the_failing_rank_of_nccl(capsys, monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: f"/usr/bin/{name}")
    monkeypatch.setattr(fabric_perf_module, "run", lambda argv, timeout: (3, NCCL_FAILED_RANK, ""))
    code, out = _run(capsys, fabric_perf_module, {
        "node": "gx10-1", "peer": "all", "check": "nccl_all_gather", "minimum": 21.875,
        "argv": ["mpirun", "-np", "4", "all_gather_perf"], "nodes": NODES, "hostnames": HOSTS,
        "addresses": ADDRESSES, "ib_devices": DEVICES})
    assert code == 0 and out["row"]["status"] == "failed" and out["row"]["node"] == "gx10-3"
    assert out["row"]["peer"] == "all"


def test_perf_module_skips_every_run_in_check_mode(capsys, monkeypatch):
    monkeypatch.setattr(fabric_perf_module, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    code, out = _run(capsys, fabric_perf_module, {
        "node": "gx10-1", "check": "ib_write_bw", "minimum": 90, "_ansible_check_mode": True,
        "runs": [{"twin": "a", "peer": "gx10-2", "argv": ["ib_write_bw"]},
                 {"twin": "b", "peer": "gx10-2", "argv": ["ib_write_bw"]}]})
    assert code == 0 and [r["status"] for r in out["rows"]] == ["skipped", "skipped"]
    assert out["rows"][0]["detail"] == "check mode: nothing run"


def test_report_module_compares_the_twins_and_names_the_slow_end(capsys, tmp_path):
    rows = ring({("gx10-3", "enP2p1s0f1np1"): 46.12, ("gx10-2", "enP2p1s0f1np1"): 47.05})
    code, out = _run(capsys, fabric_report_module, {
        "checks": rows, "dest_dir": str(tmp_path), "run_id": "x", "twin_ratio_min": 0.9})
    assert code == 0 and out["ok"] is False
    assert out["findings"][0].startswith("gx10-3 twin enP2p1s0f1np1: slow_twin failed (both ring links")
    assert out["per_check"]["ib_write_bw_twins"] == {"passed": 3, "failed": 1, "skipped": 0}
    report = json.loads(Path(out["path"]).read_text())
    assert report["summary"]["findings"] == out["findings"]
    assert {r["check"]: r.get("value") for r in report["checks"] if r["node"] == "gx10-3"
            and r["twin"] == "enP2p1s0f1np1" and r["check"] == "ib_write_bw"} == {"ib_write_bw": 46.12}
