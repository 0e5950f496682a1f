"""The lab node's networking as DGX OS 7 has it: NetworkManager for everything, the management link
in a per-node netplan file with the NetworkManager renderer."""
from __future__ import annotations

import pytest
import yaml

from lab import lab


def test_management_netplan_is_networkmanager_with_the_nodes_address():
    doc = yaml.safe_load(lab.mgmt_netplan(3))
    net = doc["network"]
    assert net["renderer"] == "NetworkManager"
    assert list(net["ethernets"]) == [lab.MGMT_INTERFACE]
    mgmt = net["ethernets"][lab.MGMT_INTERFACE]
    assert mgmt["addresses"] == [lab.mgmt_address(3)]
    assert lab.mgmt_address(3) == f"{lab.MGMT_PREFIX}.13/24"
    assert mgmt["dhcp4"] is False and mgmt["dhcp6"] is False
    # The twins are the fabric role's, never the lab's.
    assert not any(twin[0] in lab.mgmt_netplan(3) for twin in lab.TWINS)


def test_image_runs_networkmanager_not_networkd():
    script = (lab.IMAGE_DIR / "customize.sh").read_text()
    assert "network-manager" in lab.packages()
    assert "renderer: NetworkManager" in script
    assert "systemctl enable lab-ssh-hostkeys.service ssh.service NetworkManager.service" in script
    assert "systemctl disable systemd-networkd.service" in script


def test_every_lab_bridge_has_its_own_fixed_unicast_locally_administered_mac():
    assert set(lab.BRIDGES) == {lab.MGMT_BRIDGE, *(t[1] for t in lab.TWINS)}
    macs = [lab.bridge_mac(b) for b in lab.BRIDGES]
    assert len(set(macs)) == len(lab.BRIDGES)
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert first & 0x02, f"{mac} is not locally administered"
        assert not first & 0x01, f"{mac} is multicast"
        assert len(mac.split(":")) == 6


def test_bridge_macs_differ_between_labs(monkeypatch):
    zero = lab.bridge_mac(lab.MGMT_BRIDGE)
    monkeypatch.setattr(lab, "LAB_ID", 3)
    assert lab.bridge_mac(lab.MGMT_BRIDGE) != zero


def test_ensure_bridge_sets_the_fixed_mac_also_on_a_bridge_that_exists(monkeypatch):
    """The address set explicitly is what keeps the bridge from taking a new port's MAC when a node is
    plumbed again; a bridge of a lab made before this must get it too."""
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(lab, "ok", lambda *cmd: True)
    monkeypatch.setattr(lab, "run", lambda *cmd, **kw: calls.append(cmd) or "")
    monkeypatch.setattr(lab.shutil, "which", lambda _name: None)
    lab.ensure_bridge(lab.MGMT_BRIDGE, 1500)
    assert ("ip", "link", "set", lab.MGMT_BRIDGE, "address", lab.bridge_mac(lab.MGMT_BRIDGE)) in calls
    assert not any(c[:3] == ("ip", "link", "add") for c in calls)


def test_unknown_bridge_is_refused():
    with pytest.raises(ValueError, match="not a lab bridge"):
        lab.bridge_mac("docker0")
