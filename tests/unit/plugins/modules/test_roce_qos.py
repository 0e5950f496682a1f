"""gb10.cluster.roce_qos: marks the twins for the switch's RoCE class, changing only what differs.

The node is a fixture sysfs tree (the twins' netdevs with the mlx5 ecn files, the RDMA devices) and a
fake mlnx_qos (a script that prints and updates a small state file, as the real tool reports it): the
first run changes everything, the second nothing; check mode changes nothing; the lab (no RDMA device)
is skipped with the reason.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.modules import roce_qos as roce_qos_module

TWINS = ("enp1s0f1np1", "enP2p1s0f1np1")
RDMA = ("rocep1s0f1", "roceP2p1s0f1")

FAKE_MLNX_QOS = r'''#!PYTHON
"""A stand-in for mlnx_qos: -i <if> prints the state; --trust/--pfc/--dscp2prio change it."""
import json, pathlib, sys
state_file = pathlib.Path(__file__).with_name("qos-state.json")
state = json.loads(state_file.read_text()) if state_file.exists() else {}
args = sys.argv[1:]
iface = args[args.index("-i") + 1]
s = state.setdefault(iface, {"trust": "pcp", "pfc": [0] * 8, "dscp2prio": {str(d): d >> 3 for d in range(64)}})
with open(state_file.with_name("calls.log"), "a") as log:
    log.write(" ".join(args) + "\n")
if "--trust" in args:
    s["trust"] = args[args.index("--trust") + 1]
if "--pfc" in args:
    s["pfc"] = [int(x) for x in args[args.index("--pfc") + 1].split(",")]
if "--dscp2prio" in args:
    _, dscp, prio = args[args.index("--dscp2prio") + 1].split(",")
    s["dscp2prio"][dscp] = int(prio)
state_file.write_text(json.dumps(state))
print("DCBX mode: OS controlled")
print(f"Priority trust state: {s['trust']}")
if s["trust"] == "dscp":
    print("dscp2prio mapping:")
    for prio in range(8):
        dscps = [d for d, p in s["dscp2prio"].items() if p == prio]
        print(f"\tprio:{prio} dscp:" + ",".join(sorted(dscps, key=int, reverse=True)) + ",")
print("PFC configuration:")
print("\tpriority    0   1   2   3   4   5   6   7")
print("\tenabled     " + "   ".join(str(x) for x in s["pfc"]))
'''


@pytest.fixture
def node(tmp_path: Path) -> Path:
    sysfs = tmp_path / "sys"
    for twin, dev in zip(TWINS, RDMA):
        (sysfs / "class/infiniband" / dev).mkdir(parents=True)
        ecn = sysfs / "class/net" / twin / "ecn"
        for sub in ("roce_np", "roce_rp"):
            (ecn / sub / "enable").mkdir(parents=True)
            for prio in range(8):
                (ecn / sub / "enable" / str(prio)).write_text("0\n")
        (ecn / "roce_np/cnp_dscp").write_text("48\n")  # already right: left alone
        (ecn / "roce_np/cnp_802p_prio").write_text("0\n")
    tool = tmp_path / "bin" / "mlnx_qos"
    tool.parent.mkdir()
    tool.write_text(FAKE_MLNX_QOS.replace("PYTHON", sys.executable))
    tool.chmod(0o755)
    return tmp_path


def _run(capsys, monkeypatch, node: Path, **extra):
    monkeypatch.setenv("PATH", f"{node / 'bin'}:/usr/bin:/bin")
    args = {"interfaces": list(TWINS), "rdma_devices": list(RDMA), "dscp": 26, "priority": 3, "cnp_dscp": 48,
            "cnp_priority": 6, "sysfs_root": str(node / "sys"), **extra}
    with patch_module_args(args), pytest.raises(SystemExit):
        roce_qos_module.main()
    return json.loads(capsys.readouterr().out)


def test_first_run_marks_both_twins_second_run_changes_nothing(capsys, monkeypatch, node):
    first = _run(capsys, monkeypatch, node)
    assert first["changed"] is True and not first.get("failed")
    assert sorted({c["setting"] for c in first["changes"]}) == [
        "cnp_802p_prio", "dscp2prio", "ecn_np", "ecn_rp", "pfc", "trust"]  # cnp_dscp was already 48
    assert {c["interface"] for c in first["changes"]} == set(TWINS)
    ecn = node / "sys/class/net/enp1s0f1np1/ecn"
    assert (ecn / "roce_np/enable/3").read_text().strip() == "1" and (ecn / "roce_np/enable/2").read_text().strip() == "0"
    assert (ecn / "roce_np/cnp_802p_prio").read_text().strip() == "6"
    state = json.loads((node / "bin/qos-state.json").read_text())
    assert state["enP2p1s0f1np1"]["trust"] == "dscp" and state["enP2p1s0f1np1"]["pfc"] == [0, 0, 0, 1, 0, 0, 0, 0]
    second = _run(capsys, monkeypatch, node)
    assert second["changed"] is False and second["changes"] == []
    assert ["mlnx_qos", "-i", "enp1s0f1np1", "--trust", "dscp"] in second["commands"]


def test_check_mode_reports_and_changes_nothing(capsys, monkeypatch, node):
    got = _run(capsys, monkeypatch, node, _ansible_check_mode=True)
    assert got["changed"] is True and len(got["changes"]) == 12
    calls = (node / "bin/calls.log").read_text().split("\n")
    assert not [c for c in calls if "--trust" in c or "--pfc" in c or "--dscp2prio" in c]
    assert (node / "sys/class/net/enp1s0f1np1/ecn/roce_np/enable/3").read_text().strip() == "0"


def test_the_lab_is_skipped_with_the_reason(capsys, monkeypatch, node, tmp_path):
    got = _run(capsys, monkeypatch, node, sysfs_root=str(tmp_path / "empty"), container=True)
    assert got["skipped"] is True and got["changed"] is False
    assert got["msg"].startswith("hardware-only: a container; no RDMA device rocep1s0f1, roceP2p1s0f1 in ")


def test_a_missing_tool_is_one_sentence(capsys, monkeypatch, node):
    got = _run(capsys, monkeypatch, node, tool="mlnx_qos_absent")
    assert got["failed"] and "mlnx_qos_absent is not installed (Ubuntu package mlnx-tools)" in got["msg"]


def test_docs_parse_and_match_the_options():
    import yaml

    doc = yaml.safe_load(roce_qos_module.DOCUMENTATION)
    yaml.safe_load(roce_qos_module.EXAMPLES)
    yaml.safe_load(roce_qos_module.RETURN)
    source = Path(roce_qos_module.__file__).read_text()
    assert doc["module"] == "roce_qos"
    for option in doc["options"]:
        assert f'"{option}"' in source, f"{option} documented but not in argument_spec"
