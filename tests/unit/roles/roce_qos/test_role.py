"""roles/roce_qos on a machine without ConnectX-7 (this one, like a lab node): the RoCE class comes from the
switch role, the twins are left alone, and the run says SKIPPED with the reason, changing nothing."""
from __future__ import annotations

import sys
from pathlib import Path

import ansible_runner

ROOT = Path(__file__).resolve().parents[4]

PLAYBOOK = """
- name: The role where there is no ConnectX-7
  hosts: localhost
  gather_facts: true
  gather_subset: [virtual]
  vars:
    gb10_fabric_twins:
      - {interface: enp1s0f1np1, rdma_device: rocep1s0f1}
      - {interface: enP2p1s0f1np1, rdma_device: roceP2p1s0f1}
  roles:
    - role: roce_qos
      vars:
        roce_qos_sysfs_root: SYSFS
"""


def test_skipped_without_the_hardware(tmp_path: Path) -> None:
    (tmp_path / "sys/class/net").mkdir(parents=True)
    (tmp_path / "play.yml").write_text(PLAYBOOK.replace("SYSFS", str(tmp_path / "sys")))
    (tmp_path / "runner").mkdir()
    result = ansible_runner.run(
        private_data_dir=str(tmp_path / "runner"), playbook=str(tmp_path / "play.yml"),
        inventory="localhost ansible_connection=local", quiet=True,
        extravars={"ansible_python_interpreter": sys.executable},
        envvars={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
                 "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"), "ANSIBLE_GATHERING": "implicit",
                 "ANSIBLE_CACHE_PLUGIN": "memory", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    assert result.status == "successful", result.stdout.read()[-2000:]
    msgs = [str((e["event_data"].get("res") or {}).get("msg")) for e in result.events if e.get("event") == "runner_on_ok"]
    skipped = [m for m in msgs if m.startswith("SKIPPED roce_qos on localhost: ")]
    assert skipped, msgs
    assert "no RDMA device rocep1s0f1, roceP2p1s0f1" in skipped[0] or "without ConnectX-7" in skipped[0]
    assert "would trust DSCP, pause priority 3 (PFC), map DSCP 26 to it and send CNPs with DSCP 48" in skipped[0]
    assert not [e for e in result.events if e.get("event") == "runner_on_ok" and e["event_data"]["res"].get("changed")]
