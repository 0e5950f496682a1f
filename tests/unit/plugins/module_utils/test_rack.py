"""plugins/module_utils/rack.py: nccl_env's rules, the rack's NCCL environment, the RoCE class, the twins'
marking, and the NCCL transport read from INFO lines (excerpts written in NCCL's documented format:
``<host>:<pid>:<tid> [<cuda dev>] NCCL INFO <message>``)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.gb10.cluster.plugins.module_utils.rack import (
    NCCL_ENV_DEFAULTS,
    nccl_conf_lines,
    nccl_transport,
    node_fabric,
    parse_mlnx_qos,
    qos_changes,
    qos_items,
    rack_env,
    roce_class,
    serving_env_lines,
)
from tests.support.nccl_logs import IB_NATIVE, SOCKET_VIA_RAY

ROOT = Path(__file__).resolve().parents[4]
TWINS = [{"interface": "enp1s0f1np1", "rdma_device": "rocep1s0f1"},
         {"interface": "enP2p1s0f1np1", "rdma_device": "roceP2p1s0f1"}]
NODE = {"ansible_host": "192.168.1.101", "gb10_mgmt_interface": "enP7s7", "gb10_fabric_twins": TWINS,
        "gb10_fabric_addresses": {"enp1s0f1np1": "192.168.100.11/24", "enP2p1s0f1np1": "192.168.101.11/24"}}
SWITCH_DEFAULTS = yaml.safe_load((ROOT / "roles/switch/defaults/main.yml").read_text())


def test_nccl_env_defaults_are_the_roles():
    role = yaml.safe_load((ROOT / "roles/nccl_env/defaults/main.yml").read_text())
    for key, value in NCCL_ENV_DEFAULTS.items():
        assert role[key] == value, key


def test_node_fabric_derives_like_nccl_env():
    fabric = node_fabric("gx10-1", NODE)
    assert fabric["socket_ifname"] == "enp1s0f1np1" and fabric["node_ip"] == "192.168.100.11"
    assert fabric["ib_hca"] == "rocep1s0f1,roceP2p1s0f1" and fabric["errors"] == []
    mgmt = node_fabric("gx10-1", {**NODE, "nccl_env_socket_ifname": "enP7s7"})
    assert mgmt["node_ip"] == "192.168.1.101"
    bad = node_fabric("gx10-1", {**NODE, "nccl_env_socket_ifname": "eth9", "nccl_env_extra": {"NCCL_IB_GID_INDEX": 3}})
    assert "no IP for nccl_env_socket_ifname=eth9" in bad["errors"][0]
    assert "NCCL_IB_GID_INDEX is set" in bad["errors"][1]


def test_serving_env_lines_are_the_files_lines():
    """The content nccl_env wrote before (its template), line for line, now from rack.py."""
    fabric = node_fabric("gx10-1", NODE)
    assert serving_env_lines(fabric, {}) == [
        ("NCCL_SOCKET_IFNAME", "enp1s0f1np1"), ("GLOO_SOCKET_IFNAME", "enp1s0f1np1"),
        ("TP_SOCKET_IFNAME", "enp1s0f1np1"), ("UCX_NET_DEVICES", "enp1s0f1np1"),
        ("OMPI_MCA_btl_tcp_if_include", "enp1s0f1np1"), ("NCCL_IB_HCA", "rocep1s0f1,roceP2p1s0f1"),
        ("NCCL_IGNORE_CPU_AFFINITY", "1"), ("VLLM_HOST_IP", "192.168.100.11"),
        ("RAY_NODE_IP_ADDRESS", "192.168.100.11"), ("RAY_OVERRIDE_NODE_IP_ADDRESS", "192.168.100.11"),
        ("RAY_memory_monitor_refresh_ms", "0"),
    ]
    extra = serving_env_lines(fabric, {"nccl_env_nccl_extra": {"NCCL_B": 2}, "nccl_env_extra": {"A_X": "y"}})
    assert extra[-2:] == [("A_X", "y"), ("NCCL_B", "2")]
    assert nccl_conf_lines(fabric, {"nccl_env_nccl_extra": {"NCCL_B": 2}}) == [
        ("NCCL_SOCKET_IFNAME", "enp1s0f1np1"), ("NCCL_IB_HCA", "rocep1s0f1,roceP2p1s0f1"),
        ("NCCL_IGNORE_CPU_AFFINITY", "1"), ("NCCL_B", "2")]


def test_roce_class_follows_the_switch_role():
    roce = roce_class({}, {}, SWITCH_DEFAULTS)
    assert (roce["dscp"], roce["priority"], roce["cnp_dscp"], roce["cnp_priority"]) == (26, 3, 48, 6)
    assert roce["tc"] == 106 and roce["enabled"] and roce["errors"] == []  # the owners' NCCL_IB_TC=106
    # the inventory's switch host wins over the role's defaults; roce_qos_* over both
    assert roce_class({}, {"switch_qos_roce_dscp": 24}, SWITCH_DEFAULTS)["tc"] == 98
    assert roce_class({"dscp": "30"}, {"switch_qos_roce_dscp": 24}, SWITCH_DEFAULTS)["tc"] == 122
    assert not roce_class({}, {"switch_qos_enabled": False}, SWITCH_DEFAULTS)["enabled"]
    assert not roce_class({"enabled": False}, {}, SWITCH_DEFAULTS)["enabled"]
    assert "give a whole number from 0 to 63" in roce_class({"dscp": 99}, {}, SWITCH_DEFAULTS)["errors"][0]


def test_rack_env():
    fabric = node_fabric("gx10-1", NODE)
    roce = roce_class({}, {}, SWITCH_DEFAULTS)
    nccl = {"debug": "INFO", "debug_subsys": "INIT,NET", "buffsize": 524288, "buffsize_min_nodes": 4, "switch": True}
    env = rack_env(fabric, {}, nodes=4, roce=roce, nccl=nccl)
    assert env["NCCL_IB_SUBNET_AWARE_ROUTING"] == "1" and env["NCCL_IB_TC"] == "106"
    assert env["NCCL_BUFFSIZE"] == "524288" and env["NCCL_DEBUG"] == "INFO"
    assert dict(serving_env_lines(fabric, {})).items() <= env.items()
    assert "NCCL_BUFFSIZE" not in rack_env(fabric, {}, nodes=3, roce=roce, nccl=nccl)
    assert "NCCL_BUFFSIZE" not in rack_env(fabric, {}, nodes=8, roce=roce, nccl={**nccl, "switch": False})
    assert "NCCL_IB_TC" not in rack_env(fabric, {}, nodes=4, roce={**roce, "enabled": False}, nccl=nccl)
    assert "NCCL_IB_GID_INDEX" not in env


MLNX_QOS_PCP = """DCBX mode: OS controlled
Priority trust state: pcp
Receive buffer size (bytes): 262016,0,0,0,0,0,0,0,
Cable len: 7
PFC configuration:
\tpriority    0   1   2   3   4   5   6   7
\tenabled     0   0   0   0   0   0   0   0
\tbuffer      0   0   0   0   0   0   0   0
tc: 0 ratelimit: unlimited, tsa: vendor
\t priority:  1
"""
MLNX_QOS_DSCP = """DCBX mode: OS controlled
Priority trust state: dscp
dscp2prio mapping:
\tprio:0 dscp:07,06,05,04,03,02,01,00,
\tprio:1 dscp:15,14,13,12,11,10,09,08,
\tprio:2 dscp:23,22,21,20,19,18,17,16,
\tprio:3 dscp:31,30,29,28,27,26,25,24,
\tprio:4 dscp:39,38,37,36,35,34,33,32,
\tprio:5 dscp:47,46,45,44,43,42,41,40,
\tprio:6 dscp:55,54,53,52,51,50,49,48,
\tprio:7 dscp:63,62,61,60,59,58,57,56,
default priority:
Receive buffer size (bytes): 130944,130944,0,0,0,0,0,0,
PFC configuration:
\tpriority    0   1   2   3   4   5   6   7
\tenabled     0   0   0   1   0   0   0   0
\tbuffer      0   0   0   1   0   0   0   0
"""


def test_parse_mlnx_qos():
    assert parse_mlnx_qos(MLNX_QOS_PCP) == {"trust": "pcp", "pfc": "0,0,0,0,0,0,0,0", "dscp2prio": {}}
    dscp = parse_mlnx_qos(MLNX_QOS_DSCP)
    assert dscp["trust"] == "dscp" and dscp["pfc"] == "0,0,0,1,0,0,0,0" and dscp["dscp2prio"][26] == 3


def test_qos_items_and_changes():
    roce = roce_class({}, {}, SWITCH_DEFAULTS)
    items = qos_items(["enp1s0f1np1"], roce, sysfs_root="/s")
    assert [i["argv"] for i in items[:3]] == [
        ["mlnx_qos", "-i", "enp1s0f1np1", "--trust", "dscp"],
        ["mlnx_qos", "-i", "enp1s0f1np1", "--pfc", "0,0,0,1,0,0,0,0"],
        ["mlnx_qos", "-i", "enp1s0f1np1", "--dscp2prio", "set,26,3"]]
    assert items[3]["path"] == "/s/class/net/enp1s0f1np1/ecn/roce_np/enable/3"
    assert items[5] == {"interface": "enp1s0f1np1", "setting": "cnp_dscp", "want": "48",
                        "path": "/s/class/net/enp1s0f1np1/ecn/roce_np/cnp_dscp",
                        "argv": ["sh", "-c", "echo 48 > /s/class/net/enp1s0f1np1/ecn/roce_np/cnp_dscp"]}
    files = {i["path"]: "0\n" for i in items if "path" in i}
    files[items[6]["path"]] = None  # a driver without cnp_802p_prio
    changes, notes = qos_changes(items, {"enp1s0f1np1": parse_mlnx_qos(MLNX_QOS_PCP)}, files)
    assert [c["setting"] for c in changes] == ["trust", "pfc", "dscp2prio", "ecn_np", "ecn_rp", "cnp_dscp"]
    assert "cnp_802p_prio not set" in notes[0]
    done = {i["path"]: i["want"] + "\n" for i in items if "path" in i}
    assert qos_changes(items, {"enp1s0f1np1": parse_mlnx_qos(MLNX_QOS_DSCP)}, done) == ([], [])


def test_nccl_transport_roce():
    got = nccl_transport(IB_NATIVE)
    assert got["transport"] == "ib" and got["networks"] == ["IB"]
    assert got["ib_devices"] == ["roceP2p1s0f1", "rocep1s0f1"] and got["channels"] == {"IB": 4}
    assert not got["ib_device_missing"] and got["evidence"][0] == "Using network IB"


def test_nccl_transport_sockets_behind_ray_prefix():
    got = nccl_transport(SOCKET_VIA_RAY)
    assert got["transport"] == "socket" and got["ib_device_missing"]
    assert got["channels"] == {"Socket": 2}
    assert any("NET/IB : No device found" in e for e in got["evidence"])


def test_nccl_transport_mixed_and_unknown():
    assert nccl_transport(IB_NATIVE + SOCKET_VIA_RAY)["transport"] == "mixed"
    quiet = nccl_transport("INFO 11-29 Loading weights took 52.1 seconds\n(EngineCore pid=10) CPU KV cache size: 5 tokens")
    assert quiet["transport"] is None and quiet["nccl_lines"] == 0


@pytest.mark.parametrize("line", [
    "gx10-3:77:91 [0] NCCL INFO Using network IBext_v8",
    "gx10-3:77:91 [0] NCCL INFO Channel 02/1 : 2[0] -> 3[0] [send] via NET/IBext_v8/0",
])
def test_nccl_transport_net_plugin_counts_as_ib(line):
    assert nccl_transport(line)["transport"] == "ib"
