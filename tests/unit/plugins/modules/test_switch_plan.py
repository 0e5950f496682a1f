"""gb10.cluster.switch_plan: the normaliser (RouterOS echoed forms) and the port map / configuration plan."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.module_utils import switch_plan as plan_utils
from ansible_collections.gb10.cluster.plugins.module_utils.switch_plan import (
    PlanError,
    build,
    echo_address_list,
    echo_interface_address,
    echo_rate,
    input_rate,
    port_map,
    rate_to_bits,
    version_at_least,
    version_tuple,
)
from ansible_collections.gb10.cluster.plugins.modules import switch_plan as switch_plan_module

FOUR = [{"name": f"gx10-{c}", "port": f"qsfp56-dd-{c}-1"} for c in range(1, 5)]
EIGHT = [{"name": f"gx10-{2 * (c - 1) + i + 1}", "port": f"qsfp56-dd-{c}-{lane}"}
         for c in range(1, 5) for i, lane in enumerate((1, 5))]
BASE = {"nodes": FOUR, "routeros_version": "7.25 (stable)", "services_address": "192.168.1.0/24",
        "host": "crs804"}


# ------------------------------------------------------------------------------- normaliser

@pytest.mark.parametrize("value,bits", [
    ("100G", 10**11), ("100g", 10**11), ("100000M", 10**11), ("100.0Gbps", 10**11), ("0", 0), (0, 0),
    ("2.5G", 2_500_000_000), ("512k", 512_000), (1234, 1234),
])
def test_rate_to_bits(value, bits):
    assert rate_to_bits(value) == bits


@pytest.mark.parametrize("value,echo,sent", [
    ("100G", "100.0Gbps", "100G"), ("200G", "200.0Gbps", "200G"), ("100000M", "100.0Gbps", "100G"),
    ("2500M", "2.5Gbps", "2500M"), ("0", "0", "0"), ("100.0Gbps", "100.0Gbps", "100G"), ("10M", "10.0Mbps", "10M"),
])
def test_echo_and_input_rate(value, echo, sent):
    assert echo_rate(value) == echo
    assert input_rate(value) == sent


@pytest.mark.parametrize("bad", ["fast", "", "100T", True])
def test_bad_rates(bad):
    with pytest.raises(ValueError):
        rate_to_bits(bad)


def test_addresses():
    assert echo_address_list("192.168.1.0/24") == "192.168.1.0/24"
    assert echo_address_list(["127.0.0.1", "192.168.1.7/24"]) == "127.0.0.1/32,192.168.1.0/24"
    assert echo_address_list("127.0.0.1/32, 10.0.0.0/8") == "127.0.0.1/32,10.0.0.0/8"
    assert echo_address_list("") == ""
    assert echo_interface_address("192.168.1.2/24") == "192.168.1.2/24"
    assert echo_interface_address("192.168.1.2") == "192.168.1.2/32"


def test_versions():
    assert version_tuple("7.22.1 (stable)") == (7, 22, 1)
    assert version_tuple("7.25beta2") == (7, 25)
    assert version_at_least("7.23", "7.23") and not version_at_least("7.22.1", "7.23")
    assert version_at_least("7.25 (testing)", "7.23")
    with pytest.raises(ValueError):
        version_tuple("stable")


# ------------------------------------------------------------------------------- port map

def test_four_nodes_one_per_cage_at_200g():
    plan = port_map(FOUR)
    assert sorted(plan.cages) == [1, 2, 3, 4]
    assert all(c["mode"] == "2x200G" and c["speed"] == "200G-baseCR4" for c in plan.cages.values())
    assert plan.cages[2]["masters"] == ["qsfp56-dd-2-1", "qsfp56-dd-2-5"]
    assert plan.cages[2]["used"] == ["qsfp56-dd-2-1"]
    assert plan.fabric_ports == [f"qsfp56-dd-{c}-1" for c in range(1, 5)]
    assert plan.expected["qsfp56-dd-3-1"] == {"node": "gx10-3", "speed": "200G-baseCR4", "rate": "200Gbps",
                                               "fec": "fec91", "mode": "2x200G"}


def test_eight_nodes_is_only_an_inventory_change():
    plan = port_map(EIGHT)
    assert all(c["mode"] == "2x200G" and c["used"] == c["masters"] for c in plan.cages.values())
    assert len(plan.fabric_ports) == 8
    assert plan.port_nodes["qsfp56-dd-1-5"] == "gx10-2"


def test_other_rates():
    assert port_map(FOUR, "400G").cages[1] == {"mode": "1x400G", "speed": "400G-baseCR8",
                                               "masters": ["qsfp56-dd-1-1"], "used": ["qsfp56-dd-1-1"]}
    four = port_map([{"name": "a", "port": "qsfp56-dd-1-3"}, {"name": "b", "port": "qsfp56-dd-1-7"}], "100G")
    assert four.cages[1]["mode"] == "4x100G" and four.cages[1]["speed"] == "100G-baseCR2"
    assert four.cages[1]["masters"] == [f"qsfp56-dd-1-{x}" for x in (1, 3, 5, 7)]


@pytest.mark.parametrize("nodes,rate,fragment", [
    ([{"name": "gx10-3"}], "200G", "gx10-3 has no gb10_switch_port"),
    ([{"name": "gx10-3", "port": ""}], "200G", "gx10-3 has no gb10_switch_port"),
    ([{"name": "gx10-1", "port": "qsfp28-1-1"}], "200G", "is not a CRS804-4DDQ fabric port"),
    ([{"name": "gx10-1", "port": "qsfp56-dd-5-1"}], "200G", "is not a CRS804-4DDQ fabric port"),
    ([{"name": "a", "port": "qsfp56-dd-1-1"}, {"name": "b", "port": "qsfp56-dd-1-1"}], "200G",
     "a and b both have gb10_switch_port=qsfp56-dd-1-1"),
    ([{"name": "gx10-2", "port": "qsfp56-dd-1-3"}], "200G",
     "gx10-2: gb10_switch_port=qsfp56-dd-1-3 is lane 3, which is not a port when the cage runs 2x200G"),
    ([{"name": "gx10-2", "port": "qsfp56-dd-1-5"}], "400G", "use qsfp56-dd-1-1"),
    (FOUR, "300G", "switch_fabric_link_rate='300G' is not supported"),
    (FOUR, "fast", "is not a rate"),
])
def test_inventory_mistakes_get_one_sentence(nodes, rate, fragment):
    with pytest.raises(PlanError) as exc:
        port_map(nodes, rate)
    assert fragment in str(exc.value)


# ------------------------------------------------------------------------------- full plan

def test_build_ports_bridge_services_mgmt():
    plan = build(dict(BASE, mgmt_subnet="192.168.1.0/24", ansible_host="192.168.1.2"))
    assert plan["ethernet_l2mtu"][0] == {"default-name": "qsfp56-dd-1-1", "l2mtu": 9216}
    assert plan["ethernet_link"][1] == {"default-name": "qsfp56-dd-1-5", "mtu": 9000, "auto-negotiation": False,
                                        "speed": "200G-baseCR4", "fec-mode": "fec91", "disabled": False}
    assert len(plan["ethernet_l2mtu"]) == len(plan["ethernet_link"]) == 8  # two masters per cage
    assert plan["bridge"] == [{"name": "gb10-fabric", "comment": "gb10 fabric (managed by Ansible)"}]
    assert plan["bridge_ports"][3] == {"interface": "qsfp56-dd-4-1", "bridge": "gb10-fabric", "hw": True,
                                       "comment": "gb10 gx10-4"}
    services = {s["name"]: s for s in plan["services"]}
    assert services["ssh"] == {"name": "ssh", "disabled": False, "address": "192.168.1.0/24"}
    assert services["api-ssl"]["disabled"] is False
    assert all(services[n] == {"name": n, "disabled": True} for n in ("telnet", "ftp", "www", "www-ssl", "api",
                                                                       "winbox"))
    assert plan["mgmt_address"] == [{"address": "192.168.1.2/24", "interface": "ether1"}]


def test_mgmt_address_explicit_or_nothing():
    assert build(dict(BASE, mgmt_address="10.1.1.2/24"))["mgmt_address"] == [
        {"address": "10.1.1.2/24", "interface": "ether1"}]
    assert build(dict(BASE, mgmt_subnet="192.168.1.0/24", ansible_host="127.0.0.1"))["mgmt_address"] == []
    with pytest.raises(PlanError, match="switch_mgmt_address"):
        build(dict(BASE, mgmt_address="nope"))


def test_mtu_checks():
    with pytest.raises(PlanError, match="larger than switch_port_l2mtu"):
        build(dict(BASE, mtu=9300))
    with pytest.raises(PlanError, match="9570"):
        build(dict(BASE, l2mtu=9600))


def test_qos_on_7_25():
    plan = build(BASE)
    assert plan["qos_enabled"] and not plan["qos_map_ip"] and plan["qos_settings"]
    assert plan["qos_port_values"] == {"pfc": "pfc-tc3", "trust-l3": "keep", "egress-rate-queue3": "200G"}
    assert plan["qos_port_echo"]["egress-rate-queue3"] == "200.0Gbps"
    assert plan["warnings"] == []


def test_qos_gate_names_the_version():
    plan = build(dict(BASE, routeros_version="7.22 (stable)"))
    assert plan["qos_enabled"] is False
    assert plan["qos_skip_reason"].startswith("RouterOS 7.22 (stable) on crs804 is older than 7.23")
    assert plan["warnings"] == [plan["qos_skip_reason"]]


def test_qos_7_23_caps_auto_rate_and_warns():
    plan = build(dict(BASE, routeros_version="7.23"))
    assert plan["qos_enabled"] and plan["qos_settings"] and not plan["qos_map_ip"]
    assert plan["qos_port_values"]["egress-rate-queue3"] == "100G"
    assert plan["qos_port_echo"]["egress-rate-queue3"] == "100.0Gbps"
    assert any("max bit rate is 100G" in w for w in plan["warnings"])
    assert any("7.25" in w for w in plan["warnings"])


def test_qos_lowered_minimum_maps_dscp_by_hand():
    plan = build(dict(BASE, routeros_version="7.21", qos_min_version="7.17"))
    assert plan["qos_enabled"] and plan["qos_map_ip"] and not plan["qos_settings"]


def test_qos_explicit_rate_and_disabled():
    plan = build(dict(BASE, qos_egress_rate_queue3="0"))
    assert plan["qos_port_values"]["egress-rate-queue3"] == "0" and plan["qos_port_echo"]["egress-rate-queue3"] == "0"
    assert build(dict(BASE, qos=False))["qos_skip_reason"] == "switch_qos_enabled is false"
    with pytest.raises(PlanError, match="switch_qos_egress_rate_queue3"):
        build(dict(BASE, qos_egress_rate_queue3="lots"))


@pytest.mark.parametrize("extra,fragment", [
    ({"services_enabled": ["ssh"]}, "must keep api-ssl"),
    ({"services_enabled": ["ssh", "api-ssl", "gopher"]}, "gopher"),
    ({"services_address": ""}, "switch_services_address is empty"),
    ({"services_address": "not-a-net"}, "is not a list of networks"),
])
def test_service_mistakes(extra, fragment):
    with pytest.raises(PlanError, match=fragment):
        build(dict(BASE, **extra))


def test_scope_ports_needs_no_services():
    plan = build({"nodes": FOUR, "scope": "ports", "qos": False, "services_address": ""})
    assert plan["services"] == [] and plan["fabric_ports"]


# ------------------------------------------------------------------------------- the module

def _run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        switch_plan_module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_module_check_mode_and_warnings(capsys):
    code, out = _run(capsys, {"nodes": EIGHT, "routeros_version": "7.22", "services_address": "192.168.1.0/24",
                              "host": "crs804", "_ansible_check_mode": True})
    assert code == 0 and out["changed"] is False
    assert out["cages"]["4"]["mode"] == "2x200G" and out["cages"]["4"]["used"] == ["qsfp56-dd-4-1", "qsfp56-dd-4-5"]
    assert out["qos_enabled"] is False
    assert len(out["plan_warnings"]) == 1 and "older than 7.23" in out["plan_warnings"][0]


def test_module_fails_with_the_inventory_sentence(capsys):
    code, out = _run(capsys, {"nodes": [{"name": "gx10-9"}], "services_address": "192.168.1.0/24"})
    assert code == 1 and out["failed"] is True
    assert out["msg"].startswith("gx10-9 has no gb10_switch_port")


# ------------------------------------------------------------------------------- management port, lock-out guards

ROOT = Path(__file__).resolve().parents[4]
NODE_PORTS = {f"gx10-{c}": f"qsfp56-dd-{c}-1" for c in range(1, 5)}


def test_defaults_are_the_roles():
    """The inventory validation checks the values the role will use when the inventory sets none."""
    defaults = yaml.safe_load((ROOT / "roles" / "switch" / "defaults" / "main.yml").read_text())
    for name, value in plan_utils.DEFAULTS.items():
        assert defaults[name] == value, name


def test_good_settings_have_no_errors():
    assert plan_utils.settings_errors("crs804", {"ansible_host": "192.168.1.2"}, NODE_PORTS) == []
    assert plan_utils.settings_errors("crs804", {"switch_default_admin": "keep", "switch_api_username": "admin",
                                                 "switch_factory_address_remove": False,
                                                 "ansible_host": "192.168.88.1"}, NODE_PORTS) == []


@pytest.mark.parametrize("settings,ports,fragment", [
    ({"switch_mgmt_interface": "gb10-fabric"}, NODE_PORTS,
     "crs804: switch_mgmt_interface is gb10-fabric, the fabric bridge (switch_bridge_name), and the management port "
     "never joins the fabric"),
    ({"switch_mgmt_interface": "qsfp56-dd-2-1"}, NODE_PORTS,
     "gx10-2: gb10_switch_port is qsfp56-dd-2-1, the switch's management port (switch_mgmt_interface on crs804), "
     "which never joins the fabric bridge gb10-fabric"),
    ({}, {**NODE_PORTS, "gx10-4": "ether1"},
     "gx10-4: gb10_switch_port is ether1, the switch's management port"),
    ({"switch_mgmt_interface": ""}, NODE_PORTS, "crs804: switch_mgmt_interface is empty"),
    ({"switch_ports_keep_enabled": "ether2"}, NODE_PORTS, "crs804: switch_ports_keep_enabled is 'ether2'; give a list"),
    ({"switch_api_username": "admin"}, NODE_PORTS,
     "crs804: switch_default_admin is disable but Ansible logs in as admin (switch_api_username), so the run would "
     "lock itself out"),
    ({"switch_default_admin": "delete"}, NODE_PORTS, "switch_default_admin is 'delete'; use keep, disable or rename"),
    ({"switch_default_admin": "rename"}, NODE_PORTS,
     "switch_default_admin is rename but switch_default_admin_new_name is empty"),
    ({"switch_default_admin": "rename", "switch_default_admin_new_name": "ansible"}, NODE_PORTS,
     "switch_default_admin_new_name is ansible, the user Ansible logs in as"),
    ({"ansible_host": "192.168.88.1"}, NODE_PORTS,
     "crs804: Ansible reaches the switch at 192.168.88.1, the factory address that switch_factory_address_remove "
     "takes away, so the run would lock itself out"),
    ({"ansible_host": "192.168.1.2", "switch_api_host": "192.168.88.1"}, NODE_PORTS,
     "Ansible reaches the switch at 192.168.88.1"),
    ({"switch_mgmt_address": "192.168.88.1/24"}, NODE_PORTS,
     "switch_mgmt_address 192.168.88.1/24 is the factory address"),
    ({"switch_factory_address": "192.168.88.1"}, NODE_PORTS, "not an address with prefix like 192.168.88.1/24"),
])
def test_settings_mistakes(settings, ports, fragment):
    errors = plan_utils.settings_errors("crs804", settings, ports)
    assert len(errors) == 1, errors
    assert fragment in errors[0]


USERS = [{".id": "*1", "name": "admin", "group": "full", "disabled": False},
         {".id": "*2", "name": "gb10", "group": "full", "disabled": False}]
HARD = dict(BASE, api_username="gb10", users=USERS, default_admin="disable", disable_unused_ports=True,
            factory_address_remove=True)


def test_admin_disabled_once_another_full_user_exists():
    plan = build(HARD)
    assert plan["admin"] == {"action": "disable", "find": {"name": "admin"}, "values": {"disabled": True}, "reason": ""}
    renamed = build(dict(HARD, default_admin="rename", default_admin_new_name="retired"))
    assert renamed["admin"]["action"] == "rename" and renamed["admin"]["values"] == {"name": "retired"}
    gone = build(dict(HARD, users=USERS[1:]))  # already renamed or removed: nothing to do (second run)
    assert gone["admin"]["action"] == "none" and gone["admin"]["reason"] == "there is no user admin"
    assert build(dict(HARD, default_admin="keep"))["admin"]["action"] == "none"


def test_admin_kept_with_a_warning_when_no_other_full_user():
    users = [USERS[0], {".id": "*2", "name": "gb10", "group": "write", "disabled": False}]
    plan = build(dict(HARD, users=users))
    assert plan["admin"]["action"] == "none"
    assert any("the admin user of crs804 was kept: Ansible's user gb10 is in group write" in w for w in plan["warnings"])
    groups = [{"name": "ops", "policy": "local,ssh,read,write,policy,test,api,!ftp"}]
    custom = build(dict(HARD, users=[USERS[0], {".id": "*2", "name": "gb10", "group": "ops"}], user_groups=groups))
    assert custom["admin"]["action"] == "disable"


@pytest.mark.parametrize("extra,fragment", [
    ({"api_username": "admin"}, "Ansible logs in as admin"),
    ({"api_username": "nobody"}, "Ansible logs in as nobody"),
    ({"default_admin": "rename", "default_admin_new_name": "gb10"}, "switch_default_admin_new_name gb10 already exists"),
])
def test_admin_lock_out_refused(extra, fragment):
    with pytest.raises(PlanError, match=fragment):
        build(dict(HARD, **extra))


def test_factory_address_rows():
    rows = [{".id": "*1", "address": "192.168.88.1/24", "interface": "ether1"},
            {".id": "*2", "address": "192.168.1.2/24", "interface": "ether1"}]
    assert build(dict(HARD, addresses=rows))["factory_addresses"] == [
        {"id": "*1", "address": "192.168.88.1/24", "interface": "ether1"}]
    assert build(dict(HARD, addresses=rows[1:]))["factory_addresses"] == []
    assert build(dict(HARD, addresses=rows, factory_address_remove=False))["factory_addresses"] == []


def _disabled(plan):
    states = {e["default-name"]: e["disabled"] for e in plan["ethernet_link"] + plan["ethernet_unused"]}
    return sorted(p for p, d in states.items() if d), states


def test_unused_ports_four_nodes():
    plan = build(HARD)
    off, states = _disabled(plan)
    assert off == ["ether2"] + [f"qsfp56-dd-{c}-5" for c in range(1, 5)]
    assert states["qsfp56-dd-1-3"] is False and "ether1" not in states  # lane-group members kept; mgmt untouched


def test_unused_ports_eight_nodes_and_empty_cages():
    assert _disabled(build(dict(HARD, nodes=EIGHT)))[0] == ["ether2"]
    two = build(dict(HARD, nodes=FOUR[:2]))
    off, _ = _disabled(two)
    assert off == ["ether2", "qsfp56-dd-1-5", "qsfp56-dd-2-5"] + [f"qsfp56-dd-{c}-{lane}" for c in (3, 4)
                                                                   for lane in range(1, 9)]
    # a node on -5 only: lane 1 of its cage stays up (it may hold the module up for the whole cage)
    five = build(dict(HARD, nodes=[{"name": "gx10-9", "port": "qsfp56-dd-1-5"}]))
    assert "qsfp56-dd-1-1" not in _disabled(five)[0]


def test_unused_ports_keep_list_api_path_and_switch_off():
    kept = build(dict(HARD, nodes=FOUR[:2], ports_keep_enabled=["ether2", "qsfp56-dd-4-1"]))
    off, _ = _disabled(kept)
    assert "ether2" not in off and not any(p.startswith("qsfp56-dd-4-") for p in off)
    # the address Ansible connects to sits on a bridge holding ether2: ether2 stays up
    rows = [{".id": "*1", "address": "10.0.0.2/24", "interface": "mgmt-br"}]
    bridged = build(dict(HARD, api_host="10.0.0.2", addresses=rows,
                         bridge_port_rows=[{"interface": "ether2", "bridge": "mgmt-br"}]))
    assert "ether2" not in _disabled(bridged)[0]
    vlan = build(dict(HARD, mgmt_interface="vlan99"))
    assert "ether2" not in _disabled(vlan)[0]
    assert any("switch_mgmt_interface of crs804 is vlan99, not a port" in w for w in vlan["warnings"])
    plain = build(dict(HARD, disable_unused_ports=False))
    assert plain["ethernet_unused"] == [] and not any(e["disabled"] for e in plain["ethernet_link"])


@pytest.mark.parametrize("extra,fragment", [
    ({"mgmt_interface": "gb10-fabric"}, "switch_mgmt_interface gb10-fabric would be part of the fabric bridge"),
    ({"mgmt_interface": "qsfp56-dd-3-1"}, "switch_mgmt_interface qsfp56-dd-3-1 would be part of the fabric bridge"),
    ({"bridge_port_rows": [{"interface": "ether1", "bridge": "gb10-fabric"}]},
     "crs804: ether1 \\(switch_mgmt_interface\\) is a port of the fabric bridge gb10-fabric on the switch"),
])
def test_the_management_port_never_joins_the_fabric(extra, fragment):
    with pytest.raises(PlanError, match=fragment):
        build(dict(HARD, **extra))
    # the bridge data never holds it
    assert "ether1" not in [p["interface"] for p in build(HARD)["bridge_ports"]]
