"""site.yml's converge stamps on the converged lab (docs/converge.md).

Molecule's idempotence step already ran site.yml a second time with changed=0, with every role
skipped by its stamp. Here: forced (-e gb10_converge=full) every role runs whole and still changes
nothing (the roles' own idempotence); a file edited by hand on one node and a firewall chain flushed on
another make exactly those roles run on exactly those nodes, with the reason named (in --check --diff
too, which writes nothing), and repair them;
the run after that skips every role again and changes nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NODES = [f"gx10-{i}" for i in range(1, int(os.environ.get("LAB_NODES", "4")) + 1)]
SYSCTL_FILE = "/etc/sysctl.d/60-gb10.conf"

# The task that runs a role whole, per role: skipped on a node where the stamp is current.
GATES = {
    "base": "Base | Packages and identity file (skipped where unchanged since their last converge)",
    "dgx_node": "Dgx node | Converge (skipped where unchanged since its last converge)",
    "cx7_fabric": "Cx7 fabric | Converge (skipped where unchanged since its last converge)",
    "firewall": "Firewall | Converge (skipped where unchanged since its last converge)",
    "monitoring_node": "Monitoring | Node exporter (skipped where unchanged since its last converge)",
}
# The task that records the stamps after the handlers (playbooks/tasks/converge_record.yml).
RECORD = "Converge | Record the stamp of each role that converged here (after its handlers)"
# Prometheus on the control machine, when the inventory has monitoring on.
PROMETHEUS_GATE = "Monitoring | Prometheus (skipped where unchanged since its last converge)"
PROBES = {
    "dgx_node": "Dgx node | Unchanged since the last converge on this node (inputs, files, units, sysctls)?",
    "firewall": "Firewall | Unchanged since the last converge on this node (inputs, files, the loaded table)?",
}
# The nodes play's one probe of its roles (playbooks/nodes.yml): a role takes its result from `given`.
NODES_PROBE = "GB10 nodes | Its roles unchanged since their last converge on this node (one read for all)?"


def _env() -> dict[str, str]:
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")


def _site(*args: str) -> tuple[int, dict]:
    env = dict(_env(), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    res = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(ROOT / "inventory" / "lab"),
                          "site.yml", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False)
    return res.returncode, json.JSONDecoder().raw_decode(res.stdout[res.stdout.index("{"):])[0]


def _on(node: str, *module_args: str) -> str:
    res = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible"), "-i", str(ROOT / "inventory" / "lab"), node, "-b",
                          *module_args], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300, check=True)
    return res.stdout


def _named(task: dict, name: str) -> bool:
    """A task of that name, with or without the role's prefix ("dgx_node : ...")."""
    return task["task"]["name"] == name or task["task"]["name"].endswith(f" : {name}")


def _task(out: dict, name: str) -> dict:
    for play in out["plays"]:
        for task in play["tasks"]:
            if _named(task, name):
                return task["hosts"]
    raise AssertionError(f"no task {name!r} in the run")


def _has(out: dict, name: str) -> bool:
    return any(_named(task, name) for play in out["plays"] for task in play["tasks"])


def _ran(out: dict, role: str) -> set[str]:
    """The hosts where the role ran whole (its gate was not skipped)."""
    hosts = _task(out, GATES.get(role, PROMETHEUS_GATE))
    return {node for node, result in hosts.items() if not result.get("skipped")}


def _roles(out: dict) -> list[str]:
    """The gated roles of this run: monitoring's only when the inventory has it on."""
    return [role for role in GATES if role != "monitoring_node" or _has(out, GATES[role])]


def _reason(out: dict, role: str, node: str) -> str:
    """Why the role ran on the node: from the nodes play's probe where the role took its result from it,
    else from the role's own probe (it probed itself after an earlier role of the play ran)."""
    given = _task(out, NODES_PROBE)[node].get("given", {})
    if role in given:
        return given[role]["reason"]
    return _task(out, PROBES[role])[node]["reason"]


def _changed(out: dict) -> dict[str, int]:
    return {host: stats["changed"] for host, stats in out["stats"].items() if stats["changed"]}


def test_forced_run_runs_every_role_and_changes_nothing() -> None:
    rc, out = _site("-e", "gb10_converge=full")
    assert rc == 0, json.dumps(out)[-3000:]
    for role in _roles(out):
        assert _ran(out, role) == set(NODES), f"{role} did not run whole everywhere under gb10_converge=full"
    if _has(out, PROMETHEUS_GATE):
        assert _ran(out, "prometheus") == {"localhost"}
    # The roles changed nothing. Their stamps may be recorded afresh: molecule's converge read the
    # inventory through its own folder of links, which is another inventory folder than inventory/lab.
    changed = [f"{host}: {task['task']['name']}" for play in out["plays"] for task in play["tasks"]
               for host, result in task["hosts"].items() if result.get("changed") and task["task"]["name"] != RECORD]
    assert changed == [], f"a forced run over a converged lab changed something: {changed}"


def test_drift_runs_exactly_the_roles_that_drifted_and_repairs_them() -> None:
    before = _on("gx10-2", "-m", "ansible.builtin.command", "-a", f"cat {SYSCTL_FILE}")
    _on("gx10-2", "-m", "ansible.builtin.shell", "-a", f"echo 'vm.swappiness = 60' >> {SYSCTL_FILE}")
    _on("gx10-3", "-m", "ansible.builtin.command", "-a", "nft flush chain inet gb10_firewall forward")
    stamps = _on("gx10-2", "-m", "ansible.builtin.command", "-a", "cat /var/lib/gb10/converge/dgx_node.json")
    # --check --diff: the drifted roles run in check mode and say they would change; nothing is written.
    rc, out = _site("--check", "--diff")
    assert rc == 0, json.dumps(out)[-3000:]
    assert _ran(out, "dgx_node") == {"gx10-2"} and _ran(out, "firewall") == {"gx10-3"}
    assert set(_changed(out)) == {"gx10-2", "gx10-3"}, _changed(out)
    assert "vm.swappiness = 60" in _on("gx10-2", "-m", "ansible.builtin.command", "-a", f"cat {SYSCTL_FILE}")
    assert _on("gx10-2", "-m", "ansible.builtin.command", "-a", "cat /var/lib/gb10/converge/dgx_node.json") == stamps
    rc, out = _site()
    assert rc == 0, json.dumps(out)[-3000:]
    assert _ran(out, "dgx_node") == {"gx10-2"}
    assert _ran(out, "firewall") == {"gx10-3"}
    assert _ran(out, "cx7_fabric") == set() and _ran(out, "base") == set()
    reason = _reason(out, "dgx_node", "gx10-2")
    assert reason == f"path {SYSCTL_FILE} changed since its last converge", reason
    # gx10-3: every role before the firewall was current, so the nodes play's one probe stood for its own.
    assert "firewall" in _task(out, NODES_PROBE)["gx10-3"]["given"]
    assert not _task(out, PROBES["firewall"])["gx10-3"].get("reason")
    # gx10-2: dgx_node was not current, so the roles after it probed themselves once it had run.
    assert list(_task(out, NODES_PROBE)["gx10-2"]["given"]) == ["dgx_node"]
    assert _task(out, PROBES["firewall"])["gx10-2"]["current"] is True
    reason = _reason(out, "firewall", "gx10-3")
    assert reason.startswith("command nft -s list table inet gb10_firewall changed"), reason
    assert set(_changed(out)) == {"gx10-2", "gx10-3"}, _changed(out)
    after = _on("gx10-2", "-m", "ansible.builtin.command", "-a", f"cat {SYSCTL_FILE}")
    assert "vm.swappiness = 60" not in after and after.split(">>", 1)[-1] == before.split(">>", 1)[-1]


def test_the_next_run_skips_every_role_and_changes_nothing() -> None:
    rc, out = _site()
    assert rc == 0, json.dumps(out)[-3000:]
    for role in _roles(out) + (["prometheus"] if _has(out, PROMETHEUS_GATE) else []):
        assert _ran(out, role) == set(), f"{role} ran on {_ran(out, role)} with nothing changed"
    assert _changed(out) == {}, _changed(out)
