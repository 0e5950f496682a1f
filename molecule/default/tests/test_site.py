"""After site.yml on the lab: what a node must look like (checked over the same SSH path)."""
from __future__ import annotations

import os

import yaml

testinfra_hosts = ["ansible://gx10"]  # every lab node, from the molecule inventory


def test_identity_file(host) -> None:
    node = yaml.safe_load(host.file("/etc/gb10/node.yml").content_string)
    name = host.backend.get_hostname()
    assert node["node"] == name
    assert node["rank"] == int(name.rsplit("-", 1)[1]) - 1
    assert node["head"] == "gx10-1"
    assert node["nodes"] == int(os.environ.get("LAB_NODES", "4"))
    assert set(node["fabric_addresses"]) == {"enp1s0f1np1", "enP2p1s0f1np1"}


def test_base_packages(host) -> None:
    for pkg in ("chrony", "rsync", "jq", "nftables", "ethtool"):
        assert host.package(pkg).is_installed, pkg


def test_reached_as_non_root_with_sudo(host) -> None:
    """Ansible logs in as the lab admin over SSH and becomes root with sudo (never docker exec)."""
    hostvars = host.backend.get_variables()
    assert hostvars.get("ansible_connection", "ssh") == "ssh"
    assert hostvars["ansible_user"] == "gb10admin"
    assert host.check_output("echo $SUDO_USER") == "gb10admin"
    assert host.user().name == "root"


def test_node_docker_runs_host_network_containers(host) -> None:
    """The node's own Docker engine starts a --network host container that sees the node's NICs."""
    with host.sudo():
        script = (
            "set -e; d=$(mktemp -d); "
            "for b in /bin/sh /bin/cat; do for f in $b $(ldd $b | grep -o '/[^ ]*'); do "
            "  mkdir -p $d$(dirname $f); cp -L $f $d$f; done; done; "
            "tar -C $d -c . | docker import - gb10-lab-probe:1 >/dev/null; rm -rf $d; "
            "docker run --rm --network host gb10-lab-probe:1 /bin/cat /proc/net/dev"
        )
        out = host.check_output(script)
    assert "enP7s7" in out and "enp1s0f1np1" in out
