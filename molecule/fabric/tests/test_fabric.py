"""Lab proof of the fabric: every node's twins, files and the jumbo-ping matrix (testinfra).

Molecule runs this once per host of the lab inventory (``host`` fixture). Peer addresses come from
``ansible-inventory`` on the same inventory, so 4 or 8 nodes work alike.
"""
from __future__ import annotations

import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path

# Only the GB10 nodes of the lab inventory (it also holds `control` and the switch).
testinfra_hosts = ["ansible://gx10"]
TWINS = ("enp1s0f1np1", "enP2p1s0f1np1")
MTU = 9000


@lru_cache(maxsize=1)
def inventory() -> dict:
    source = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])
    out = subprocess.run(["ansible-inventory", "-i", source, "--list"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def nodes() -> list[str]:
    return sorted(inventory()["gx10"]["hosts"])


def hostvars(name: str) -> dict:
    return inventory()["_meta"]["hostvars"][name]


def name_of(host) -> str:
    return host.ansible.get_variables()["inventory_hostname"]


def test_twins_up_with_mtu_9000_and_their_addresses(host):
    me = hostvars(name_of(host))
    for twin in TWINS:
        data = json.loads(host.check_output(f"ip -j addr show dev {twin}"))[0]
        assert data["mtu"] == MTU, f"{twin} mtu {data['mtu']}"
        assert data["operstate"] in ("UP", "UNKNOWN"), f"{twin} {data['operstate']}"
        cidrs = [f"{a['local']}/{a['prefixlen']}" for a in data["addr_info"] if a["family"] == "inet"]
        assert cidrs == [me["gb10_fabric_addresses"][twin]], f"{twin} {cidrs}"
        assert not [a for a in data["addr_info"] if a["family"] == "inet6"], "link-local must be off"


def network_manager(host) -> bool:
    return host.run("systemctl -q is-active NetworkManager.service").rc == 0


def test_twins_configured_by_the_backend_the_node_runs_without_the_management_nic(host):
    if not network_manager(host):
        netplan = host.file("/etc/netplan/40-cx7.yaml")
        assert netplan.exists and netplan.mode == 0o600 and netplan.user == "root"
        text = host.check_output("sudo cat /etc/netplan/40-cx7.yaml")
        for twin in TWINS:
            assert f"    {twin}:" in text
        assert "enP7s7:" not in text
        assert text.count("mtu: 9000") == 2 and text.count("dhcp4: false") == 2
        assert text.count("link-local: []") == 2
        return
    # NetworkManager (the lab's nodes, as DGX OS 7): one profile per twin, each active on its twin, no
    # netplan file for the twins, and the management link still on its own netplan-rendered profile.
    assert not host.file("/etc/netplan/40-cx7.yaml").exists
    for twin in TWINS:
        path = f"/etc/NetworkManager/system-connections/gb10-cx7-{twin}.nmconnection"
        keyfile = host.file(path)
        assert keyfile.exists and keyfile.mode == 0o600 and keyfile.user == "root", path
        text = host.check_output(f"sudo cat {path}")
        assert f"interface-name={twin}\n" in text and "mtu=9000\n" in text and "method=manual\n" in text
        assert "[ipv6]\nmethod=disabled" in text and "enP7s7" not in text
        active = host.check_output(f"nmcli --get-values GENERAL.CONNECTION device show {twin}")
        assert active == f"gb10-cx7-{twin}", f"{twin} runs {active!r}"
    assert host.check_output("nmcli --get-values GENERAL.CONNECTION device show enP7s7") == "netplan-enP7s7"
    # Every checkpoint was confirmed (none left to roll back).
    assert host.check_output("busctl get-property org.freedesktop.NetworkManager /org/freedesktop/NetworkManager "
                             "org.freedesktop.NetworkManager Checkpoints") == "ao 0"


def test_serving_env_and_nccl_conf(host):
    name = name_of(host)
    ip = hostvars(name)["gb10_fabric_addresses"]["enp1s0f1np1"].split("/")[0]
    env_file = host.file("/etc/gb10/serving.env")
    assert env_file.mode == 0o644
    env = dict(line.split("=", 1) for line in env_file.content_string.splitlines()
               if line and not line.startswith("#"))
    for key in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "UCX_NET_DEVICES",
                "OMPI_MCA_btl_tcp_if_include"):
        assert env[key] == "enp1s0f1np1", key
    assert env["NCCL_IB_HCA"] == "rocep1s0f1,roceP2p1s0f1"
    assert env["VLLM_HOST_IP"] == env["RAY_NODE_IP_ADDRESS"] == ip
    assert env["RAY_memory_monitor_refresh_ms"] == "0"
    assert env["NCCL_IGNORE_CPU_AFFINITY"] == "1"
    assert "NCCL_IB_GID_INDEX" not in env
    conf = host.file("/etc/nccl.conf").content_string
    assert "NCCL_IB_HCA=rocep1s0f1,roceP2p1s0f1" in conf
    assert "NCCL_SOCKET_IFNAME=enp1s0f1np1" in conf
    assert "NCCL_IB_GID_INDEX" not in conf.replace("# NCCL_IB_GID_INDEX", "")


def test_jumbo_ping_matrix_on_both_twins(host):
    name = name_of(host)
    failures = []
    for twin in TWINS:
        for peer in nodes():
            if peer == name:
                continue
            address = hostvars(peer)["gb10_fabric_addresses"][twin].split("/")[0]
            # -i 0.2: the two DF jumbo frames 0.2 s apart, not ping's default 1 s (24 pings run one by one here)
            cmd = host.run(f"sudo ping -M do -s 8972 -c 2 -i 0.2 -W 2 -I {twin} {address}")
            if cmd.rc != 0:
                failures.append(f"{name} {twin} -> {peer} {address}: {cmd.stdout[-200:]}")
    assert not failures, failures


def test_node_settings(host):
    assert host.check_output("systemctl get-default") == "multi-user.target"
    assert host.file("/usr/local/sbin/gb10-drop-caches").mode == 0o755
    out = host.run("sudo /usr/local/sbin/gb10-drop-caches")
    assert "MemAvailable before:" in out.stdout and "MemAvailable after:" in out.stdout
    assert "vm.swappiness = 1" in host.file("/etc/sysctl.d/60-gb10.conf").content_string
    assert "memlock unlimited" in host.file("/etc/security/limits.d/90-gb10.conf").content_string
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["bridge"] == "none", "a key written by someone else must survive the merge"
    assert daemon["log-opts"]["max-size"] == "100m", "our keys are merged in"
    # Docker can raise container limits only with CAP_SYS_RESOURCE (bit 24 of init's bounding set);
    # a lab node lacks it, so default-ulimits must stay out there (or every `docker run` fails).
    capbnd = int(host.check_output("awk '/^CapBnd/ {print $2}' /proc/1/status"), 16)
    if capbnd >> 24 & 1:
        assert daemon["default-ulimits"]["memlock"]["Hard"] == -1
    else:
        assert "default-ulimits" not in daemon
    assert "passwordauthentication no" in host.check_output("sudo sshd -T")


def test_fabric_report_of_the_last_run_passed():
    report = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]).parents[1] / "artifacts/fabric/latest.json"
    data = json.loads(report.read_text())
    assert data["summary"]["ok"] is True, data["summary"]["message"]
    n = len(nodes())
    per = data["summary"]["per_check"]
    assert per["jumbo_ping"]["passed"] == n * (n - 1) * len(TWINS)
    assert per["link_speed"]["skipped"] == n * len(TWINS)  # lab: hardware-only, never passed
    assert per["link_speed"]["passed"] == 0


def test_link_tests_are_reported_skipped_not_passed():
    """The hardware-only link tests (the tools' build, ib_write_bw on every twin, the twins compared,
    nccl-tests across the nodes) are SKIPPED in the lab with the reason, never passed."""
    report = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]).parents[1] / "artifacts/fabric/latest.json"
    data = json.loads(report.read_text())
    n = len(nodes())
    per = data["summary"]["per_check"]
    expected = {"fabric_tools": n, "ib_write_bw": n * len(TWINS), "ib_write_bw_twins": n, "nccl_all_gather": 1}
    for name, count in expected.items():
        assert per[name] == {"passed": 0, "failed": 0, "skipped": count}, (name, per.get(name))
    assert "slow_twin" not in per
    rows = [r for r in data["checks"] if r["check"] in expected]
    assert rows and all(r["status"] == "skipped" and r["detail"].startswith("hardware-only: ") for r in rows), rows
    assert all("container (docker)" in r["detail"] for r in rows if r["check"] != "nccl_all_gather")
    # the commands that would have run are in the report, taken from the plan
    commands = data["meta"]["commands"]
    assert set(commands["ib_write_bw"]) == set(nodes()) and commands["nccl"]["np"] == n


def test_nothing_of_the_link_tests_is_built_in_the_lab(host):
    # (the lab image carries perftest itself; the role installs nothing and builds nothing there)
    assert not host.file("/opt/nccl-tests").exists
