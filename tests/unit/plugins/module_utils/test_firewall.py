"""The node firewall: input checks, the member set, the lock-out guard, scan parsing, the rendered rules."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from ansible_collections.gb10.cluster.plugins.filter import firewall as filters
from ansible_collections.gb10.cluster.plugins.module_utils.firewall import (
    FirewallError,
    address_in,
    cluster_members,
    fabric_interfaces,
    lockout_error,
    networks,
    parse_load_record,
    parse_nmap_xml,
    parse_ready_probe,
    readiness_message,
    readiness_problems,
    ssh_session,
)

ROOT = Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "firewall"
SAMPLE = ROOT / "inventory" / "sample"



def sample_hosts() -> dict[str, Any]:
    doc = yaml.safe_load((SAMPLE / "hosts.yml").read_text())
    return doc["all"]["children"]["gx10"]["hosts"]


# ------------------------------------------------------------------------------------- networks
def test_networks_normalise_sort_and_split_families() -> None:
    got = networks(["10.0.0.7/24", "fd00::1/64", "10.0.0.0/24", "192.168.1.5"], "firewall_client_networks")
    assert got == {"ipv4": ["10.0.0.0/24", "192.168.1.5/32"], "ipv6": ["fd00::/64"]}


def test_networks_name_the_variable_and_index_of_a_bad_entry() -> None:
    with pytest.raises(FirewallError) as exc:
        networks(["10.0.0.0/24", "10.0.0.0/33", "home-lan"], "firewall_ssh_networks")
    assert len(exc.value.errors) == 2
    assert "firewall_ssh_networks[1]" in exc.value.errors[0] and "10.0.0.0/33" in exc.value.errors[0]
    assert "firewall_ssh_networks[2]" in exc.value.errors[1] and "'home-lan'" in exc.value.errors[1]


@pytest.mark.parametrize("value", ["10.0.0.0/24", None, 5])
def test_networks_refuse_something_that_is_not_a_list(value: Any) -> None:
    with pytest.raises(FirewallError, match="must be a list of CIDR networks"):
        networks(value, "firewall_client_networks")


def test_networks_refuse_an_empty_list() -> None:
    with pytest.raises(FirewallError, match="firewall_client_networks is empty"):
        networks([], "firewall_client_networks")


def test_filter_returns_errors_instead_of_raising() -> None:
    assert filters.firewall_networks(["nope"], "firewall_ssh_networks")["errors"][0].startswith(
        "firewall_ssh_networks[0] holds 'nope'"
    )


# ------------------------------------------------------------------------------------- members
def test_members_are_every_nodes_fabric_addresses_never_the_management_address() -> None:
    hosts = sample_hosts()
    got = cluster_members(list(hosts), hosts)
    assert got["ipv6"] == []
    assert len(got["ipv4"]) == 2 * len(hosts)
    for hv in hosts.values():
        # A device that takes over a node's management address (DHCP lease, ARP) is not a member.
        assert hv["ansible_host"] not in got["ipv4"]
        for addr in hv["gb10_fabric_addresses"].values():
            assert addr.split("/")[0] in got["ipv4"]
    # Addresses, never whole subnets: a stranger in 192.168.100.0/24 is not a member.
    assert all("/" not in a for a in got["ipv4"])
    assert not address_in("192.168.100.200", got["ipv4"])


def test_members_refuse_a_dns_name_or_no_fabric_naming_host_and_variable() -> None:
    hostvars = {"gx10-1": {"ansible_host": "gx10-1.lan"},
                "gx10-2": {"ansible_host": "10.0.0.12", "gb10_fabric_addresses": {"enp1s0f1np1": "fabric"}}}
    with pytest.raises(FirewallError) as exc:
        cluster_members(["gx10-1", "gx10-2"], hostvars)
    assert exc.value.errors[0].startswith("gx10-1 has no gb10_fabric_addresses")
    assert "gb10_fabric_addresses.enp1s0f1np1 of gx10-2 is 'fabric'" in exc.value.errors[1]


def test_fabric_interfaces_are_the_twins_of_the_host() -> None:
    hosts = sample_hosts()
    host = next(iter(hosts))
    assert fabric_interfaces(host, hosts) == sorted(hosts[host]["gb10_fabric_addresses"])
    with pytest.raises(FirewallError, match="gx10-9 has no gb10_fabric_addresses"):
        fabric_interfaces("gx10-9", {"gx10-9": {"ansible_host": "10.0.0.19"}})
    with pytest.raises(FirewallError, match="names 'eth0 } accept', not an interface name"):
        fabric_interfaces("gx10-9", {"gx10-9": {"gb10_fabric_addresses": {"eth0 } accept": "10.1.0.1/24"}}})
    assert filters.firewall_fabric_interfaces("gx10-9", {"gx10-9": {}})["errors"][0].startswith("gx10-9 has no")


def test_members_refuse_an_empty_group() -> None:
    with pytest.raises(FirewallError, match="gx10 group is empty"):
        cluster_members([], {})


# ------------------------------------------------------------------------------------- lock-out
def test_ssh_session_parses_ssh_connection() -> None:
    assert ssh_session("10.77.3.1 51234 10.77.3.11 22") == {
        "client": "10.77.3.1", "client_port": 51234, "server": "10.77.3.11", "server_port": 22}
    assert ssh_session("") == {}


def test_lockout_allows_a_session_from_inside() -> None:
    assert lockout_error("gx10-1", "10.77.3.1 51234 10.77.3.11 22", ["10.77.3.0/24"], 22) == ""


def test_lockout_refuses_a_session_from_outside() -> None:
    msg = lockout_error("gx10-1", "172.16.0.9 51234 10.77.3.11 22", ["10.77.3.0/24"], 22)
    assert msg.startswith("gx10-1: Ansible connects from 172.16.0.9")
    assert "firewall_ssh_networks" in msg and msg.count(".") >= 1


def test_lockout_refuses_another_ssh_port() -> None:
    msg = lockout_error("gx10-2", "10.77.3.1 51234 10.77.3.12 2222", ["10.77.3.0/24"], 22)
    assert "port 2222" in msg and "firewall_ssh_port" in msg


def test_lockout_filter_reports_a_garbled_ssh_connection() -> None:
    assert "four fields" in filters.firewall_lockout("10.0.0.1 22", "gx10-1", ["10.0.0.0/8"], 22)


# ------------------------------------------------------------------------------------- scans
NMAP_XML = """<?xml version="1.0"?>
<nmaprun scanner="nmap">
<host><status state="up"/><address addr="10.77.3.11" addrtype="ipv4"/><address addr="02:00:00:00:00:01" addrtype="mac"/>
<ports><extraports state="filtered" count="65533"/>
<port protocol="tcp" portid="22"><state state="open"/></port>
<port protocol="tcp" portid="8000"><state state="open"/></port>
<port protocol="tcp" portid="6379"><state state="filtered"/></port>
</ports></host>
<host><status state="up"/><address addr="192.168.100.11" addrtype="ipv4"/>
<ports><extraports state="filtered" count="65535"/></ports></host>
<host><status state="up"/><address addr="10.77.3.2" addrtype="ipv4"/>
<ports><port protocol="tcp" portid="6379"><state state="open"/></port>
<port protocol="tcp" portid="10001"><state state="closed"/></port></ports></host>
</nmaprun>
"""


def test_parse_nmap_xml_lists_open_ports_per_address() -> None:
    assert parse_nmap_xml(NMAP_XML) == {"10.77.3.2": [6379], "10.77.3.11": [22, 8000], "192.168.100.11": []}


# ------------------------------------------------------------------------------------- role files
def _defaults() -> dict[str, Any]:
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


def test_every_default_is_documented_and_prefixed() -> None:
    defaults = _defaults()
    options = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options)
    assert all(name.startswith("firewall_") for name in defaults)


def test_api_port_default_follows_vllm_serve() -> None:
    vllm = yaml.safe_load((ROOT / "roles" / "vllm_serve" / "defaults" / "main.yml").read_text())
    (expr,) = _defaults()["firewall_api_ports"]
    match = re.fullmatch(r"\{\{ vllm_serve_api_port \| default\((\d+)\) \}\}", expr)
    assert match is not None, expr
    assert int(match.group(1)) == vllm["vllm_serve_api_port"]


def render_rules(**overrides: Any) -> str:
    hosts = sample_hosts()
    ctx: dict[str, Any] = {
        "ansible_managed": "Ansible managed",
        "firewall_service": "gb10-firewall",
        "firewall_table": "gb10_firewall",
        "firewall_member_hosts": list(hosts),
        "firewall_fabric_interfaces": ["enP2p1s0f1np1", "enp1s0f1np1"],
        "firewall_rp_filter": True,
        "firewall_forward_out_interfaces": ["docker0"],
        "firewall_extra_member_networks": [],
        "firewall_members": cluster_members(list(hosts), hosts),
        "firewall_extra": {"ipv4": [], "ipv6": []},
        "firewall_ssh": networks(["192.168.1.0/24"], "firewall_ssh_networks"),
        "firewall_clients": networks(["192.168.1.0/24", "fd00:1::/64"], "firewall_client_networks"),
        "firewall_ssh_port": 22,
        "firewall_api_ports": [8000],
        "firewall_monitoring": networks(["192.168.1.5/32"], "firewall_monitoring_networks"),
        "firewall_monitoring_ports": [9100],
        "firewall_log_drops": True,
        "firewall_log_rate": "5/minute",
    }
    ctx.update(overrides)
    # Ansible's template module: trim_blocks on, undefined variables are errors.
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["bool"] = lambda v: str(v).lower() in ("1", "true", "yes", "on")
    env.filters["to_json"] = json.dumps
    return env.from_string((ROLE / "templates" / "firewall.nft.j2").read_text()).render(**ctx)


def test_rules_touch_only_their_own_table_in_one_transaction() -> None:
    text = render_rules()
    assert "flush ruleset" not in text
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert lines[:3] == ["table inet gb10_firewall", "delete table inet gb10_firewall", "table inet gb10_firewall {"]
    assert "type filter hook input priority filter; policy drop;" in text


def test_rules_allow_members_by_fabric_address_on_fabric_interfaces_and_the_api_only_from_clients() -> None:
    text = render_rules()
    members = re.search(r"set members4 \{.*?elements = \{ (.*?) \}", text, re.S)
    assert members is not None
    assert members.group(1).split(", ") == cluster_members(list(sample_hosts()), sample_hosts())["ipv4"]
    assert 'iifname { "enP2p1s0f1np1", "enp1s0f1np1" } ip saddr @members4 accept' in text
    # No member rule without the interface match.
    assert not re.search(r"^\s*ip6? saddr @members[46] accept", text, re.M)
    assert "192.168.100.0/24" not in text
    assert "ip saddr @clients4 tcp dport { 8000 } accept" in text
    assert "ip saddr @ssh4 tcp dport 22 accept" in text
    assert "ip6 saddr @clients6" in text and "fd00:1::/64" in text


def test_rules_filter_reverse_path_and_drop_forwarding() -> None:
    text = render_rules()
    assert "fib saddr . iif oif missing counter drop" in text
    assert "type filter hook forward priority filter; policy drop;" in text
    assert 'iifname { "docker0" } accept' in text
    off = render_rules(firewall_rp_filter=False, firewall_forward_out_interfaces=[])
    assert "fib saddr" not in off and "iifname { \"docker0\" }" not in off
    assert "hook forward priority filter; policy drop;" in off


def test_rules_without_drop_logging() -> None:
    assert "log prefix" not in render_rules(firewall_log_drops=False)


def _can_check_with_nft() -> str:
    if shutil.which("nft") is None and not Path("/usr/sbin/nft").exists():
        return "nft is not installed (make deps installs nftables)"
    if os.geteuid() != 0:
        return "nft -c needs CAP_NET_ADMIN (run the unit tests as root)"
    return ""


@pytest.mark.skipif(bool(_can_check_with_nft()), reason=_can_check_with_nft() or "nft available")
@pytest.mark.parametrize("overrides", [{}, {"firewall_log_drops": False, "firewall_api_ports": [8000, 8001],
                                        "firewall_rp_filter": False, "firewall_forward_out_interfaces": []}])
def test_rendered_rules_pass_nft_check(tmp_path: Path, overrides: dict[str, Any]) -> None:
    rules = tmp_path / "firewall.nft"
    rules.write_text(render_rules(**overrides))
    nft = shutil.which("nft") or "/usr/sbin/nft"
    res = subprocess.run([nft, "-c", "-f", str(rules)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


@pytest.mark.skipif(bool(_can_check_with_nft()), reason=_can_check_with_nft() or "nft available")
def test_nft_check_catches_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: a rule nft does not understand is refused."""
    rules = tmp_path / "firewall.nft"
    rules.write_text(render_rules().replace("policy drop;", "policy maybe;"))
    nft = shutil.which("nft") or "/usr/sbin/nft"
    assert subprocess.run([nft, "-c", "-f", str(rules)], capture_output=True, check=False).returncode != 0


NMAP_UDP6_XML = """<?xml version="1.0"?>
<nmaprun scanner="nmap">
<host><status state="up"/><address addr="fe80::383b:42ff:fee5:563f" addrtype="ipv6"/>
<ports><extraports state="open|filtered" count="198"/>
<port protocol="udp" portid="47999"><state state="open"/></port>
<port protocol="udp" portid="5353"><state state="open|filtered"/></port>
<port protocol="tcp" portid="22"><state state="open"/></port>
</ports></host>
<host><status state="up"/><address addr="10.77.3.12" addrtype="ipv4"/>
<ports><extraports state="open|filtered" count="200"/></ports></host>
</nmaprun>
"""


def test_parse_nmap_xml_udp_and_ipv6() -> None:
    """UDP: only ports that answered count (open|filtered is what a drop policy looks like); IPv6 addresses sort."""
    assert parse_nmap_xml(NMAP_UDP6_XML, "udp") == {"10.77.3.12": [], "fe80::383b:42ff:fee5:563f": [47999]}
    assert parse_nmap_xml(NMAP_UDP6_XML) == {"10.77.3.12": [], "fe80::383b:42ff:fee5:563f": [22]}
# ------------------------------------------------------------------------------------- readiness
FABRIC = {"enp1s0f1np1": "192.168.100.11/24", "enP2p1s0f1np1": "192.168.101.11/24"}
LISTING = "table inet gb10_firewall {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t}\n}"
SHA = "ab" * 32


def ip_json(**addrs: list[str]) -> str:
    links = [{"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]}]
    for name, values in addrs.items():
        links.append({"ifname": name, "addr_info": [
            {"family": "inet", "local": v.split("/")[0], "prefixlen": int(v.split("/")[1])} for v in values]})
    return json.dumps(links)


CONVERGED = ip_json(enP7s7=["10.77.5.11/24"], enp1s0f1np1=["192.168.100.11/24"], enP2p1s0f1np1=["192.168.101.11/24"])


def firewall(**over: Any) -> dict[str, Any]:
    fw = {"enabled": True, "table": "gb10_firewall", "rules_file": "/etc/gb10/firewall.nft", "rules_exist": True,
          "rules_match": True, "rules_sha256": SHA, "loaded_rc": 0, "loaded": LISTING + "\n",
          "record": f"sha256 {SHA}\n{LISTING}\n"}
    fw.update(over)
    return fw


def probe(ip: str, loaded: str, rc: int, record: str, rules: str) -> str:
    """What ready.yml's probe prints (sha256sum prints nothing when the rules file is missing)."""
    return (f"{ip}\n@@gb10 nft\n{loaded}\n@@gb10 nft-rc {rc}\n@@gb10 record\n{record}\n@@gb10 rules\n"
            + (f"{rules}  /etc/gb10/firewall.nft\n" if rules else ""))


FW_IN = {"enabled": True, "table": "gb10_firewall", "rules_file": "/etc/gb10/firewall.nft", "expected_sha256": SHA}


def test_a_converged_node_is_ready() -> None:
    assert readiness_problems("gx10-1", FABRIC, CONVERGED, firewall()) == []
    assert readiness_message("gx10-1", []) == ""
    text = probe(CONVERGED, LISTING, 0, f"sha256 {SHA}\n{LISTING}", SHA)
    assert parse_ready_probe(text) == {"ip_json": CONVERGED, "loaded": LISTING, "loaded_rc": 0,
                                       "record": f"sha256 {SHA}\n{LISTING}", "rules_sha256": SHA}
    assert filters.firewall_readiness("gx10-1", FABRIC, text, FW_IN) == ""


def test_the_filter_compares_the_rules_file_with_the_inventorys_render() -> None:
    text = probe(CONVERGED, LISTING, 0, f"sha256 {SHA}\n{LISTING}", SHA)
    msg = filters.firewall_readiness("gx10-1", FABRIC, text, {**FW_IN, "expected_sha256": "ef" * 32})
    assert "the firewall rules in /etc/gb10/firewall.nft differ from what the inventory says" in msg


def test_a_fresh_node_names_the_twins_the_firewall_and_site_yml() -> None:
    """`make lab-down; make serve`: twins up with no address, no rules, no table (nft: rc 1)."""
    fresh = ip_json(enP7s7=["10.77.5.11/24"], enp1s0f1np1=[], enP2p1s0f1np1=[])
    msg = filters.firewall_readiness("gx10-1", FABRIC, probe(fresh, "", 1, "", ""), FW_IN)
    assert msg == (
        "gx10-1 is not ready to serve: fabric twin enP2p1s0f1np1 lacks its address 192.168.101.11/24 (it has none); "
        "fabric twin enp1s0f1np1 lacks its address 192.168.100.11/24 (it has none); the firewall rules file "
        "/etc/gb10/firewall.nft is missing; the firewall table inet gb10_firewall is not loaded; run site.yml on it "
        "first (ansible-playbook -i <inventory> site.yml --limit gx10-1), then serve.yml again."
    )


def test_a_missing_twin_or_a_wrong_address_is_named() -> None:
    wrong = ip_json(enp1s0f1np1=["192.168.100.99/24"])
    assert readiness_problems("gx10-1", FABRIC, wrong, firewall()) == [
        "fabric twin enP2p1s0f1np1 does not exist",
        "fabric twin enp1s0f1np1 lacks its address 192.168.100.11/24 (it has 192.168.100.99/24)",
    ]
    assert readiness_problems("gx10-1", {}, CONVERGED, firewall()) == ["the inventory gives it no gb10_fabric_addresses"]


@pytest.mark.parametrize(("over", "expected"), [
    ({"rules_match": False}, "the firewall rules in /etc/gb10/firewall.nft differ from what the inventory says"),
    ({"loaded_rc": 1, "loaded": ""}, "the firewall table inet gb10_firewall is not loaded"),
    ({"record": ""}, "the loaded firewall table inet gb10_firewall was not loaded by gb10-firewall (no load record)"),
    # `nft flush chain` / `nft delete rule` by hand: the listing is no longer the one recorded at the load.
    ({"loaded": LISTING.replace("policy drop", "policy accept")},
     "the loaded firewall table inet gb10_firewall differs from the rules gb10-firewall loaded (changed by hand)"),
    # New rules on disk, old ones loaded (what an interrupted write-then-reload run used to leave).
    ({"rules_sha256": "cd" * 32},
     "the loaded firewall table inet gb10_firewall was not loaded from the current /etc/gb10/firewall.nft (edited by hand, or a run was interrupted)"),
])
def test_firewall_drift_is_named(over: dict[str, Any], expected: str) -> None:
    assert readiness_problems("gx10-1", FABRIC, CONVERGED, firewall(**over)) == [expected]


def test_a_disabled_firewall_is_not_checked() -> None:
    assert readiness_problems("gx10-1", FABRIC, CONVERGED, firewall(enabled=False, loaded_rc=1, rules_exist=False)) == []


def test_load_record_parses_hash_and_listing() -> None:
    assert parse_load_record(f"sha256 {SHA}\n{LISTING}\n") == {"sha256": SHA, "listing": LISTING}
    assert parse_load_record("garbage") == {}


def test_metrics_only_for_the_control_machine() -> None:
    """The node exporter answers the monitoring networks (default: the control machine's address), not the LAN."""
    text = render_rules()
    assert "192.168.1.5/32" in text and "ip saddr @monitor4 tcp dport { 9100 } accept" in text
    assert "@clients4 tcp dport { 8000 } accept" in text  # the LAN keeps the API only
    assert "@monitor4" not in render_rules(firewall_monitoring_ports=[])


def test_raws_terminal_and_sudos_notice_do_not_change_the_probe() -> None:
    """ready.yml's probe runs with raw: CRLF line ends, and sudo's notice before the probe's first mark."""
    text = "@@gb10 ip\n" + probe(CONVERGED, LISTING, 0, f"sha256 {SHA}\n{LISTING}", SHA)
    noisy = "sudo: unable to resolve host gx10-1: Name or service not known\r\n" + text.replace("\n", "\r\n")
    assert parse_ready_probe(noisy) == parse_ready_probe(text)
    assert parse_ready_probe(noisy)["rules_sha256"] == SHA
    assert filters.firewall_readiness("gx10-1", FABRIC, noisy, FW_IN) == ""
    # Without the mark, what the node printed is still read (and the noise makes the addresses unreadable).
    assert parse_ready_probe("garbage\r\n@@gb10 nft-rc 1\r\n")["loaded_rc"] == 1


def test_ssh_connection_through_raws_terminal() -> None:
    """facts.yml reads SSH_CONNECTION with raw: a CRLF line end, possibly after a login's own lines."""
    want = {"client": "10.77.3.1", "client_port": 51234, "server": "10.77.3.11", "server_port": 22}
    assert ssh_session("10.77.3.1 51234 10.77.3.11 22\r\n") == want
    assert ssh_session("Welcome to DGX OS\r\n\r\n10.77.3.1 51234 10.77.3.11 22\r\n") == want
    assert filters.firewall_ssh_client("Welcome\r\n10.77.3.1 51234 10.77.3.11 22\r\n") == "10.77.3.1"
    assert filters.firewall_ssh_client("") == ""
    assert filters.firewall_ssh_client("not an ssh session") == ""
    assert lockout_error("gx10-1", "motd line\r\n10.77.3.1 51234 10.77.3.11 22\r\n", ["10.77.3.0/24"], 22) == ""
