"""The lab node's networking as DGX OS 7 has it: NetworkManager for everything, the management link
in a per-node netplan file with the NetworkManager renderer."""
from __future__ import annotations

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
