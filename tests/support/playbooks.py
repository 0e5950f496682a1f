"""Run the repository's playbooks through ansible-runner against a copy of the sample inventory.

Shared by the playbook tests in tests/unit/playbooks/. The nodes of the copy sit on loopback addresses
where no SSH server answers, so a broken validation could never send traffic to a real network: any task
that reached a node would show up as an event for that node. The copy also carries the lab's tiny models
(gb10_catalog_extra, as the lab's generated inventory does), which the serving tests ask for.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import ansible_runner
import yaml

from tests.support.catalog import lab_extra, write_extra

ROOT = Path(__file__).resolve().parents[2]
# Ray's token (roles/ray_cluster, ray_cluster_auth_token): a real inventory keeps it in the vault; the copies
# here carry a stand-in in group_vars/all/ray_auth.yml (a test removes that file to see the refusal).
RAY_TOKEN = "ray-test-token-" + "r" * 32


def _ray_token(inv_dir: Path) -> None:
    (inv_dir / "group_vars" / "all" / "ray_auth.yml").write_text(yaml.safe_dump({"ray_cluster_auth_token": RAY_TOKEN}))


def make_inventory(tmp_path: Path, change, lab_models: bool = True) -> Path:
    inv_dir = tmp_path / "inventory"
    shutil.copytree(ROOT / "inventory" / "sample", inv_dir)
    if lab_models:
        write_extra(inv_dir, lab_extra(), "lab_catalog.yml")
    hosts = yaml.safe_load((inv_dir / "hosts.yml").read_text())
    nodes = hosts["all"]["children"]["gx10"]["hosts"]
    for i, node in enumerate(nodes.values(), start=1):
        node["ansible_host"] = f"127.0.0.{100 + i}"
        node["ansible_port"] = 1  # nothing listens there: unreachable at once
    hosts["all"]["children"]["switch"]["hosts"]["crs804"]["ansible_host"] = "127.0.0.99"
    group_all = inv_dir / "group_vars" / "all" / "main.yml"
    settings = yaml.safe_load(group_all.read_text())
    settings["gb10_mgmt_subnet"] = "127.0.0.0/8"
    group_all.write_text(yaml.safe_dump(settings))
    change(nodes)
    (inv_dir / "hosts.yml").write_text(yaml.safe_dump(hosts))
    _ray_token(inv_dir)
    return inv_dir


def run_playbook(tmp_path: Path, playbook: str, inventory: Path, extravars: dict | None = None,
                 cmdline: str | None = None):
    """Run one of the repository's playbooks through ansible-runner; the events tell which hosts were reached."""
    runner_dir = tmp_path / "runner"
    runner_dir.mkdir(exist_ok=True)
    return ansible_runner.run(
        private_data_dir=str(runner_dir),
        project_dir=str(ROOT),
        playbook=str(ROOT / playbook),
        inventory=str(inventory),
        extravars=extravars or {},
        cmdline=cmdline,
        envvars={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_TIMEOUT": "3",
                 "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"},
        quiet=True,
    )


def offline_rack(tmp_path: Path, name: str, group_all: dict) -> Path:
    """A copy of inventory/<name> whose nodes sit on loopback ports where nothing answers, with
    ``group_all`` as its group_vars/all/serving.yml."""
    inv = tmp_path / "inventory"
    shutil.copytree(ROOT / "inventory" / name, inv)
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    for i, node in enumerate(hosts["all"]["children"]["gx10"]["hosts"].values(), start=1):
        node["ansible_host"] = f"127.0.0.{100 + i}"
        node["ansible_port"] = 1
    hosts["all"]["children"]["switch"]["hosts"]["crs804"]["ansible_host"] = "127.0.0.99"
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    main = yaml.safe_load((inv / "group_vars/all/main.yml").read_text())
    main["gb10_mgmt_subnet"] = "127.0.0.0/8"
    (inv / "group_vars/all/main.yml").write_text(yaml.safe_dump(main))
    (inv / "group_vars/all/serving.yml").write_text(yaml.safe_dump(group_all))
    _ray_token(inv)
    return inv
