"""Inventory validation: one sentence per operator mistake, nothing for a good inventory."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.gb10.cluster.plugins.module_utils import inventory as gb10_inventory

ROOT = Path(__file__).resolve().parents[4]
TWINS = [
    {"interface": "enp1s0f1np1", "rdma_device": "rocep1s0f1"},
    {"interface": "enP2p1s0f1np1", "rdma_device": "roceP2p1s0f1"},
]
ALL = {"gb10_mgmt_subnet": "192.168.1.0/24", "gb10_mgmt_interface": "enP7s7", "gb10_fabric_twins": TWINS}


def rack(n: int = 4) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    nodes = [f"gx10-{i}" for i in range(1, n + 1)]
    hostvars: dict[str, dict[str, Any]] = {}
    for i, host in enumerate(nodes, start=1):
        hostvars[host] = {
            **ALL,
            "ansible_host": f"192.168.1.{100 + i}",
            "gb10_fabric_addresses": {"enp1s0f1np1": f"192.168.100.{10 + i}/24", "enP2p1s0f1np1": f"192.168.101.{10 + i}/24"},
            "gb10_switch_port": f"qsfp56-dd-{i}-1",
        }
    hostvars["crs804"] = {"ansible_host": "192.168.1.2", "switch_api_cert_sha256": "AB" * 32}
    hostvars["controller"] = {"ansible_host": "127.0.0.1"}
    return {"gx10": nodes, "switch": ["crs804"], "control": ["controller"]}, hostvars


def test_good_rack_has_no_errors() -> None:
    groups, hv = rack()
    assert gb10_inventory.validate(groups, hv) == []


def test_sample_inventory_files_are_valid() -> None:
    """The shipped sample inventories pass their own validation."""
    for name in ("sample", "sample-8"):
        inv = yaml.safe_load((ROOT / "inventory" / name / "hosts.yml").read_text())
        all_vars = yaml.safe_load((ROOT / "inventory" / name / "group_vars" / "all" / "main.yml").read_text())
        children = inv["all"]["children"]
        groups = {g: list(children[g]["hosts"]) for g in children}
        hv = {h: {**all_vars, **(v or {})} for g in children.values() for h, v in g["hosts"].items()}
        assert gb10_inventory.validate(groups, hv) == [], name


def mutate(fn) -> list[str]:
    groups, hv = rack()
    fn(groups, hv)
    return gb10_inventory.validate(groups, hv)


CASES = [
    ("duplicate fabric IP",
     lambda g, h: h["gx10-2"]["gb10_fabric_addresses"].update({"enp1s0f1np1": "192.168.100.11/24"}),
     ["Address 192.168.100.11 is used twice: gx10-1 enp1s0f1np1 and gx10-2 enp1s0f1np1"]),
    ("duplicate management IP",
     lambda g, h: h["gx10-3"].update({"ansible_host": "192.168.1.101"}),
     ["Address 192.168.1.101 is used twice: gx10-1 ansible_host and gx10-3 ansible_host"]),
    ("both twins in one subnet",
     lambda g, h: h["gx10-2"]["gb10_fabric_addresses"].update({"enP2p1s0f1np1": "192.168.100.99/24"}),
     ["gx10-2: both twins (enp1s0f1np1 and enP2p1s0f1np1) are in 192.168.100.0/24"]),
    ("missing fabric addresses",
     lambda g, h: h["gx10-4"].pop("gb10_fabric_addresses"),
     ["gx10-4: gb10_fabric_addresses is not set"]),
    ("missing one twin",
     lambda g, h: h["gx10-1"]["gb10_fabric_addresses"].pop("enP2p1s0f1np1"),
     ["gx10-1: gb10_fabric_addresses has no address for twin enP2p1s0f1np1"]),
    ("address without prefix",
     lambda g, h: h["gx10-1"]["gb10_fabric_addresses"].update({"enp1s0f1np1": "192.168.100.11"}),
     ["gx10-1: gb10_fabric_addresses.enp1s0f1np1 is '192.168.100.11', not an IPv4 address with a prefix"]),
    ("unknown twin name",
     lambda g, h: h["gx10-1"]["gb10_fabric_addresses"].update({"enp1s0f0np0": "192.168.102.11/24"}),
     ["gx10-1: gb10_fabric_addresses names 'enp1s0f0np0', which is not a twin"]),
    ("twin in another subnet than on other nodes",
     lambda g, h: h["gx10-3"]["gb10_fabric_addresses"].update({"enp1s0f1np1": "192.168.110.13/24"}),
     ["gx10-3: twin enp1s0f1np1 is in 192.168.110.0/24 but on gx10-1 it is in 192.168.100.0/24"]),
    ("twin inside management on every node",
     lambda g, h: [h[n]["gb10_fabric_addresses"].update({"enp1s0f1np1": f"192.168.1.{50 + i}/24"}) for i, n in enumerate(g["gx10"])],
     ["gx10-1: gb10_fabric_addresses.enp1s0f1np1 192.168.1.50/24 is inside the management subnet gb10_mgmt_subnet "
      "192.168.1.0/24, so the node would answer SSH out of the twin and drop the session: give the twin an address "
      "in a subnet of its own, e.g. 192.168.100.X/24."]),
    ("twin at the controller's address with a host prefix",
     lambda g, h: h["gx10-2"]["gb10_fabric_addresses"].update({"enP2p1s0f1np1": "192.168.1.1/32"}),
     ["gx10-2: gb10_fabric_addresses.enP2p1s0f1np1 192.168.1.1/32 is inside the management subnet gb10_mgmt_subnet"]),
    ("twin subnet wider than management",
     lambda g, h: [h[n]["gb10_fabric_addresses"].update({"enp1s0f1np1": f"192.168.200.{10 + i}/16"}) for i, n in enumerate(g["gx10"])],
     ["gx10-1: gb10_fabric_addresses.enp1s0f1np1 192.168.200.10/16 makes the twin's subnet 192.168.0.0/16 overlap "
      "the management subnet gb10_mgmt_subnet 192.168.1.0/24: give the twin a subnet that shares no address with it",
      "gx10-1: the subnets of its twins overlap (enp1s0f1np1 in 192.168.0.0/16, enP2p1s0f1np1 in 192.168.101.0/24;"]),
    ("twins in overlapping subnets of different sizes",
     lambda g, h: [h[n]["gb10_fabric_addresses"].update({"enP2p1s0f1np1": f"192.168.100.{130 + i}/25"}) for i, n in enumerate(g["gx10"])],
     ["gx10-3: the subnets of its twins overlap (enp1s0f1np1 in 192.168.100.0/24, enP2p1s0f1np1 in 192.168.100.128/25; "
      "gb10_fabric_addresses); give each twin a subnet of its own"]),
    ("network address",
     lambda g, h: h["gx10-1"]["gb10_fabric_addresses"].update({"enp1s0f1np1": "192.168.100.0/24"}),
     ["gx10-1: gb10_fabric_addresses.enp1s0f1np1 192.168.100.0/24 is the network or broadcast address"]),
    ("node also in switch group",
     lambda g, h: g["switch"].append("gx10-2"),
     ["gx10-2 is in group 'gx10' and in switch", "Group 'switch' has 2 hosts"]),
    ("no nodes",
     lambda g, h: g.update({"gx10": []}),
     ["The inventory has no hosts in group 'gx10'"]),
    ("missing ansible_host",
     lambda g, h: h["gx10-2"].pop("ansible_host"),
     ["gx10-2: ansible_host is not set"]),
    ("ansible_host outside mgmt subnet",
     lambda g, h: h["gx10-2"].update({"ansible_host": "10.0.0.5"}),
     ["gx10-2: ansible_host 10.0.0.5 is outside gb10_mgmt_subnet 192.168.1.0/24"]),
    ("bad mgmt subnet",
     lambda g, h: [h[n].update({"gb10_mgmt_subnet": "192.168.1.1/24"}) for n in g["gx10"]],
     ["gb10_mgmt_subnet is '192.168.1.1/24' (group_vars/all), which is not a network in CIDR form"]),
    ("string where a boolean belongs",
     lambda g, h: h["gx10-1"].update({"ansible_become": "false"}),
     ["gx10-1: ansible_become is 'false' (str); write true or false without quotes."]),
    ("switch port typo",
     lambda g, h: h["gx10-1"].update({"gb10_switch_port": "qsfp28-1-1"}),
     ["gx10-1: gb10_switch_port is 'qsfp28-1-1'"]),
    ("switch port reused",
     lambda g, h: h["gx10-2"].update({"gb10_switch_port": "qsfp56-dd-1-1"}),
     ["gx10-2: gb10_switch_port qsfp56-dd-1-1 is already used by gx10-1"]),
    ("switch port not a lane-group master",
     lambda g, h: h["gx10-2"].update({"gb10_switch_port": "qsfp56-dd-2-2"}),
     ["gx10-2: gb10_switch_port qsfp56-dd-2-2 is not a lane-group master"]),
    ("twins list missing",
     lambda g, h: [h[n].pop("gb10_fabric_twins") for n in g["gx10"]],
     ["gb10_fabric_twins is not set (group_vars/all)"]),
    ("uppercase node name",
     lambda g, h: (g["gx10"].append("GX10-5"), h.update({"GX10-5": copy.deepcopy(h["gx10-4"]) | {"ansible_host": "192.168.1.150", "gb10_switch_port": "qsfp56-dd-4-5", "gb10_fabric_addresses": {"enp1s0f1np1": "192.168.100.50/24", "enP2p1s0f1np1": "192.168.101.50/24"}}})),
     ["GX10-5: node names must be lowercase"]),
]


def test_twin_mistakes_are_one_sentence_each() -> None:
    """The lab's wrong-address case (a twin at the controller's management address, on every node) and
    both twins on one subnet: exactly one sentence per node, nothing else."""
    errors = mutate(lambda g, h: [h[n]["gb10_fabric_addresses"].update({"enp1s0f1np1": f"192.168.1.{200 + i}/24"})
                                  for i, n in enumerate(g["gx10"])])
    assert len(errors) == 4 and all("is inside the management subnet gb10_mgmt_subnet" in e for e in errors), errors
    errors = mutate(lambda g, h: [h[n]["gb10_fabric_addresses"].update({"enP2p1s0f1np1": f"192.168.100.{50 + i}/24"})
                                  for i, n in enumerate(g["gx10"])])
    assert errors == [f"gx10-{i}: both twins (enp1s0f1np1 and enP2p1s0f1np1) are in 192.168.100.0/24 "
                      "(gb10_fabric_addresses); each twin needs its own subnet (e.g. 192.168.100.0/24 and "
                      "192.168.101.0/24), or routing becomes ambiguous and NCCL fails." for i in range(1, 5)]


@pytest.mark.parametrize("name,change,expected", CASES, ids=[c[0] for c in CASES])
def test_each_mistake_gets_its_sentence(name: str, change, expected: list[str]) -> None:
    errors = mutate(change)
    for fragment in expected:
        assert any(fragment in e for e in errors), f"{name}: {fragment!r} not in {errors}"
    # one sentence per problem: no error without a host or variable to act on
    assert all(e.rstrip().endswith((".", ")")) or ";" in e for e in errors)


# ------------------------------------------------------------------------------- the switch: who it is, lock-outs

SWITCH_CASES = [
    ("no pin, no opt-out", lambda g, h: h["crs804"].pop("switch_api_cert_sha256"),
     "crs804: nothing tells Ansible how to recognise the switch: set switch_api_ca_path to the CA file that signed "
     "its api-ssl certificate, or switch_api_cert_sha256 to that certificate's SHA-256 fingerprint"),
    ("fingerprint typo", lambda g, h: h["crs804"].update({"switch_api_cert_sha256": "AB:CD"}),
     "crs804: switch_api_cert_sha256 is 'AB:CD', not a SHA-256 fingerprint"),
    ("CA file missing", lambda g, h: h["crs804"].update({"switch_api_ca_path": "/nonexistent/ca.pem"}),
     "crs804: switch_api_ca_path /nonexistent/ca.pem does not exist on this machine"),
    ("removed variable", lambda g, h: h["crs804"].update({"switch_api_validate_certs": False}),
     "crs804: switch_api_validate_certs is no longer used"),
    ("plain API without opt-out", lambda g, h: h["crs804"].update({"switch_api_tls": False}),
     "crs804: switch_api_tls is false, so the certificate pinned"),
    ("management port as a node's port", lambda g, h: h["gx10-2"].update({"gb10_switch_port": "ether1"}),
     "gx10-2: gb10_switch_port is ether1, the switch's management port (switch_mgmt_interface on crs804), which "
     "never joins the fabric bridge gb10-fabric"),
    ("node port as the management port", lambda g, h: h["crs804"].update({"switch_mgmt_interface": "qsfp56-dd-3-1"}),
     "gx10-3: gb10_switch_port is qsfp56-dd-3-1, the switch's management port"),
    ("fabric bridge as the management port", lambda g, h: h["crs804"].update({"switch_mgmt_interface": "gb10-fabric"}),
     "crs804: switch_mgmt_interface is gb10-fabric, the fabric bridge"),
    ("admin disabled while Ansible is admin", lambda g, h: h["crs804"].update({"switch_api_username": "admin"}),
     "crs804: switch_default_admin is disable but Ansible logs in as admin"),
    ("factory address removed while Ansible uses it", lambda g, h: h["crs804"].update({"ansible_host": "192.168.88.1"}),
     "crs804: Ansible reaches the switch at 192.168.88.1, the factory address"),
]


@pytest.mark.parametrize("name,change,expected", SWITCH_CASES, ids=[c[0] for c in SWITCH_CASES])
def test_each_switch_mistake_is_one_sentence(name: str, change, expected: str) -> None:
    errors = mutate(change)
    assert len(errors) == 1, errors
    assert expected in errors[0]


def test_switch_opt_out_and_ca_pin_are_accepted(tmp_path: Path) -> None:
    assert mutate(lambda g, h: (h["crs804"].pop("switch_api_cert_sha256"),
                                h["crs804"].update({"switch_api_allow_unverified": True}))) == []
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    assert mutate(lambda g, h: h["crs804"].update({"switch_api_ca_path": str(ca)})) == []
    # the opt-out is a boolean like every role boolean
    errors = gb10_inventory.validate(*_rack_with({"switch_api_allow_unverified": "yes"}),
                                     boolean_vars=["switch_api_allow_unverified"])
    assert any("crs804: switch_api_allow_unverified is 'yes' (str)" in e for e in errors)


def _rack_with(switch_vars: dict[str, Any]):
    groups, hv = rack()
    hv["crs804"].update(switch_vars)
    return groups, hv


# ---------------------------------------------- role booleans, extra variables, the preflight's sentences
def test_boolean_options_come_from_the_role_specs() -> None:
    specs = {role: yaml.safe_load(path.read_text())
             for path in sorted((ROOT / "roles").glob("*/meta/argument_specs.yml"))
             for role in [path.parent.parent.name]}
    names = gb10_inventory.boolean_options(specs)
    assert {"dgx_node_ssh_key_only", "switch_qos_enabled", "vllm_serve_rollback"} <= set(names)
    assert "switch_api_port" not in names
    assert gb10_inventory.boolean_options({"x": {"argument_specs": {"main": {"options": {
        "x_on": {"type": "bool"}, "x_n": {"type": "int"}}}}}, "broken": None}) == ["x_on"]


def test_role_booleans_are_checked_in_the_inventory() -> None:
    groups = {"gx10": ["gx10-1"]}
    hostvars = {"gx10-1": {"ansible_host": "192.168.1.101", "gb10_mgmt_subnet": "192.168.1.0/24",
                           "gb10_fabric_twins": [{"interface": "a", "rdma_device": "ra"}],
                           "gb10_fabric_addresses": {"a": "192.168.100.11/24"}, "x_on": "yes please"}}
    assert gb10_inventory.validate(groups, hostvars) == []
    assert gb10_inventory.validate(groups, hostvars, boolean_vars=["x_on"]) == [
        "gx10-1: x_on is 'yes please' (str); write true or false without quotes."]


@pytest.mark.parametrize("value,ok", [("true", True), ("False", True), ("yes", True), ("0", True), (True, True),
                                      (None, True), ("maybe", False), ("", False), (2, False)])
def test_extra_var_booleans(value: Any, ok: bool) -> None:
    errors = gb10_inventory.extra_var_bool_errors({"serve_ray": value})
    assert (errors == []) is ok
    if not ok:
        assert errors == [f"-e serve_ray={value} is not a boolean (extra variables); "
                          "give -e serve_ray=true or -e serve_ray=false."]


def test_silent_nodes_and_the_sentence() -> None:
    results = {"gx10-1": {"failed": False, "elapsed": 0},
               "gx10-2": {"failed": True, "msg": "timed out waiting for ping module test:\n  banner exchange"},
               "gx10-3": {"unreachable": True, "msg": "ssh: connect to host 10.0.0.13 port 22: No route"}}
    silent = gb10_inventory.silent_nodes(["gx10-1", "gx10-2", "gx10-3", "gx10-4"], results,
                                         {"gx10-2": "10.0.0.12", "gx10-3": "10.0.0.13", "gx10-4": "10.0.0.14"})
    assert [s["host"] for s in silent] == ["gx10-2", "gx10-3", "gx10-4"]
    assert silent[2]["reason"] == "no answer"  # the check never ran there
    one = gb10_inventory.unreachable_message(silent[:1], 10)
    assert one == ("gx10-2 (10.0.0.12) does not answer over SSH within 10 s: timed out waiting for ping module "
                   "test: banner exchange; nothing was changed: bring it up or remove it from the inventory "
                   "(or --limit), then run again.")
    many = gb10_inventory.unreachable_message(silent, 5)
    assert "gx10-3 (10.0.0.13) does not answer over SSH within 5 s" in many and "bring them up" in many
    assert gb10_inventory.unreachable_message([], 5) == ""


def test_switch_sentence_names_address_and_port() -> None:
    msg = gb10_inventory.switch_unreachable_message("crs804", "192.168.1.2", 8729, 10)
    assert msg.startswith("The switch crs804 does not answer on 192.168.1.2:8729 (RouterOS api-ssl, switch_api_port) "
                          "within 10 s; nothing was changed:")


@pytest.mark.parametrize("value", ["auto", "full"])
def test_converge_modes_are_accepted(value: str) -> None:
    groups, hv = rack()
    for host in groups["gx10"]:
        hv[host]["gb10_converge"] = value
    assert gb10_inventory.validate(groups, hv) == []


def test_a_wrong_converge_mode_is_one_sentence() -> None:
    groups, hv = rack()
    for host in groups["gx10"]:
        hv[host]["gb10_converge"] = "always"
    assert gb10_inventory.validate(groups, hv) == [
        "gb10_converge is 'always'; use auto (a role is skipped on a node where nothing changed since its last "
        "converge) or full (every role runs), e.g. -e gb10_converge=full."]
