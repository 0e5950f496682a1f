"""gb10_cx7 (module_utils) and gb10.cluster.cx7_facts (module) against sysfs fixture trees."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.module_utils.cx7 import (
    discover,
    gid_to_ipv4,
    networkmanager_view,
    parse_active_state,
    parse_port_state,
)
from ansible_collections.gb10.cluster.plugins.modules import cx7_facts as cx7_facts_module

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sysfs"
TWINS = ["enp1s0f1np1", "enP2p1s0f1np1"]


def test_gid_to_ipv4_mapped_only():
    assert gid_to_ipv4("0000:0000:0000:0000:0000:ffff:c0a8:640b") == "192.168.100.11"
    assert gid_to_ipv4("fe80:0000:0000:0000:5e25:73ff:fe4e:0001") is None
    assert gid_to_ipv4("0000:0000:0000:0000:0000:0000:0000:0000") is None
    assert gid_to_ipv4("not-a-gid") is None
    assert gid_to_ipv4(None) is None


def test_parse_port_state():
    assert parse_port_state("4: ACTIVE") == "ACTIVE"
    assert parse_port_state("5: LinkUp") == "LinkUp"
    assert parse_port_state(None) is None


def test_ibdev2netdev_mapping_matches_the_node():
    facts = discover(str(FIXTURES / "gx10_cabled"))
    mapping = {rec["rdma_device"]: rec["netdev"] for rec in facts["devices"]}
    assert mapping == {
        "rocep1s0f0": "enp1s0f0np0",
        "rocep1s0f1": "enp1s0f1np1",
        "roceP2p1s0f0": "enP2p1s0f0np0",
        "roceP2p1s0f1": "enP2p1s0f1np1",
    }
    assert "rocep1s0f1 port 1 ==> enp1s0f1np1 (Up)" in facts["ibdev2netdev"]
    assert "rocep1s0f0 port 1 ==> enp1s0f0np0 (Down)" in facts["ibdev2netdev"]
    assert facts["present"] is True


def test_cabled_twins_have_roce_v2_ipv4_gid_index_3_and_link_state():
    facts = discover(str(FIXTURES / "gx10_cabled"), TWINS)
    twin_a = facts["by_netdev"]["enp1s0f1np1"]
    assert twin_a["roce_v2_ipv4_gid_index"] == 3
    assert twin_a["roce_v2_ipv4_gids"] == [{"index": 3, "ipv4": "192.168.100.11"}]
    assert (twin_a["state"], twin_a["phys_state"], twin_a["operstate"]) == ("ACTIVE", "LinkUp", "up")
    assert (twin_a["mtu"], twin_a["speed"]) == (9000, 200000)
    twin_b = facts["by_rdma_device"]["roceP2p1s0f1"]
    assert twin_b["netdev"] == "enP2p1s0f1np1"
    assert twin_b["roce_v2_ipv4_gids"] == [{"index": 3, "ipv4": "192.168.101.11"}]
    assert facts["interfaces"]["enP2p1s0f1np1"]["rdma_device"] == "roceP2p1s0f1"
    assert facts["interfaces"]["enP2p1s0f1np1"]["roce_v2_ipv4_gid_index"] == 3


def test_uncabled_cage_has_no_ipv4_gid_and_no_speed():
    facts = discover(str(FIXTURES / "gx10_cabled"))
    other = facts["by_netdev"]["enp1s0f0np0"]
    assert other["roce_v2_ipv4_gid_index"] is None
    assert other["roce_v2_ipv4_gids"] == []
    assert other["speed"] is None  # sysfs gives -1 (or EINVAL) while the link is down
    assert other["state"] == "DOWN"


def test_gid_index_drift_3_to_4_is_followed():
    facts = discover(str(FIXTURES / "gx10_gid_drift"), TWINS)
    assert facts["by_netdev"]["enp1s0f1np1"]["roce_v2_ipv4_gid_index"] == 4
    # the RoCE v1 entry of the same address (slot 3) is not taken
    assert facts["by_netdev"]["enp1s0f1np1"]["roce_v2_ipv4_gids"] == [
        {"index": 4, "ipv4": "192.168.100.11"}]
    # the other twin did not move: head and worker (or twins) can differ, so nothing is pinned
    assert facts["by_netdev"]["enP2p1s0f1np1"]["roce_v2_ipv4_gid_index"] == 3


def test_hotplug_without_cx7_netdevs_is_empty_not_an_error():
    facts = discover(str(FIXTURES / "gx10_hotplug"), TWINS)
    assert facts["devices"] == []
    assert facts["by_netdev"] == {}
    assert facts["present"] is False
    assert facts["interfaces"]["enp1s0f1np1"]["exists"] is False
    assert facts["interfaces"]["enp1s0f1np1"]["rdma_device"] is None


def test_missing_sysfs_root_is_empty(tmp_path):
    facts = discover(str(tmp_path / "nothing"), TWINS)
    assert facts["present"] is False and facts["devices"] == []


def _run_module(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        cx7_facts_module.main()
    out = json.loads(capsys.readouterr().out)
    return exc.value.code, out


def test_module_returns_facts_from_sysfs_root(capsys):
    code, out = _run_module(capsys, {"sysfs_root": str(FIXTURES / "gx10_gid_drift"),
                                     "interfaces": TWINS})
    assert code == 0
    assert out["changed"] is False
    cx7 = out["ansible_facts"]["gb10_cx7"]
    assert cx7["interfaces"]["enp1s0f1np1"]["roce_v2_ipv4_gid_index"] == 4
    assert cx7["interfaces"]["enP2p1s0f1np1"]["mtu"] == 9000


def test_module_hotplug_succeeds_with_empty_facts(capsys):
    code, out = _run_module(capsys, {"sysfs_root": str(FIXTURES / "gx10_hotplug"),
                                     "interfaces": TWINS, "_ansible_check_mode": True})
    assert code == 0
    assert "failed" not in out
    assert out["ansible_facts"]["gb10_cx7"]["present"] is False


def test_module_rejects_unknown_option(capsys):
    code, out = _run_module(capsys, {"sysfs_roots": "/sys"})
    assert code == 1 and out["failed"] is True


def test_cx7_facts_docs_parse_and_match_the_options():
    import yaml

    doc = yaml.safe_load(cx7_facts_module.DOCUMENTATION)
    yaml.safe_load(cx7_facts_module.EXAMPLES)
    yaml.safe_load(cx7_facts_module.RETURN)
    assert set(doc["options"]) == {"sysfs_root", "interfaces", "networkmanager", "netplan_file"}


def test_parse_active_state():
    assert parse_active_state("ActiveState=active\n") == "active"
    assert parse_active_state("Id=NetworkManager.service\nActiveState=inactive\n") == "inactive"
    assert parse_active_state("") == ""


def test_networkmanager_view_reports_the_netplan_file_only_when_asked():
    assert networkmanager_view("active", {"a": "gb10-cx7-a"}, "/etc/netplan/40-cx7.yaml", True) == {
        "nm_active_state": "active", "nm_connections": {"a": "gb10-cx7-a"}, "netplan_file_exists": True}
    assert networkmanager_view("", {}, None, False)["netplan_file_exists"] is None


def _fake_node(monkeypatch, active_state, connections, nmcli=True):
    """systemctl and nmcli as the module would find them on a node: the commands it ran are returned."""
    calls = []

    def run_command(self, args, **_kwargs):
        calls.append(args)
        if args[1] == "show":
            return 0, f"ActiveState={active_state}\n", ""
        return 0, connections.get(args[-1], "") + "\n", ""

    bins = {"systemctl": "/bin/systemctl", **({"nmcli": "/usr/bin/nmcli"} if nmcli else {})}
    monkeypatch.setattr("ansible.module_utils.basic.AnsibleModule.run_command", run_command)
    monkeypatch.setattr("ansible.module_utils.basic.AnsibleModule.get_bin_path",
                        lambda self, name, *a, **k: bins.get(name))
    return calls


def test_module_reads_networkmanager_and_the_profile_each_present_twin_runs(capsys, monkeypatch, tmp_path):
    netplan = tmp_path / "40-cx7.yaml"
    netplan.write_text("network: {}\n")
    calls = _fake_node(monkeypatch, "active", {"enp1s0f1np1": "gb10-cx7-enp1s0f1np1", "enP2p1s0f1np1": "Wired connection 1"})
    code, out = _run_module(capsys, {"sysfs_root": str(FIXTURES / "gx10_cabled"), "interfaces": TWINS,
                                     "networkmanager": True, "netplan_file": str(netplan), "_ansible_check_mode": True})
    assert code == 0 and out["changed"] is False
    cx7 = out["ansible_facts"]["gb10_cx7"]
    assert cx7["nm_active_state"] == "active"
    assert cx7["nm_connections"] == {"enp1s0f1np1": "gb10-cx7-enp1s0f1np1", "enP2p1s0f1np1": "Wired connection 1"}
    assert cx7["netplan_file_exists"] is True
    assert [c[1:] for c in calls if c[0].endswith("nmcli")] == [
        ["--get-values", "GENERAL.CONNECTION", "device", "show", twin] for twin in TWINS]


def test_module_asks_nmcli_nothing_while_networkmanager_does_not_run(capsys, monkeypatch, tmp_path):
    calls = _fake_node(monkeypatch, "inactive", {"enp1s0f1np1": "x"})
    code, out = _run_module(capsys, {"sysfs_root": str(FIXTURES / "gx10_cabled"), "interfaces": TWINS,
                                     "networkmanager": True, "netplan_file": str(tmp_path / "absent.yaml")})
    cx7 = out["ansible_facts"]["gb10_cx7"]
    assert code == 0
    assert cx7["nm_active_state"] == "inactive" and cx7["nm_connections"] == {}
    assert cx7["netplan_file_exists"] is False
    assert all(not c[0].endswith("nmcli") for c in calls)


def test_module_without_networkmanager_runs_no_command(capsys, monkeypatch):
    calls = _fake_node(monkeypatch, "active", {})
    code, out = _run_module(capsys, {"sysfs_root": str(FIXTURES / "gx10_hotplug"), "interfaces": TWINS})
    assert code == 0 and calls == []
    assert out["ansible_facts"]["gb10_cx7"]["nm_active_state"] == ""
    assert out["ansible_facts"]["gb10_cx7"]["netplan_file_exists"] is None
