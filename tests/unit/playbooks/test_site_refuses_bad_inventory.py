"""site.yml stops at inventory validation, before any host is contacted, on a bad inventory.

Runs the real playbook through ansible-runner against a copy of the sample inventory whose nodes are
moved to loopback addresses where no SSH server answers (so a broken validation could never send
traffic to a real network): any task that reached a node would show up as an event for that node.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.playbooks import make_inventory, run_playbook


def run_site(tmp_path: Path, inventory: Path):
    return run_playbook(tmp_path, "site.yml", inventory)


@pytest.mark.parametrize(
    "change,fragments",
    [
        (lambda n: n["gx10-2"]["gb10_fabric_addresses"].update({"enp1s0f1np1": "192.168.100.11/24"}),
         ["192.168.100.11 is used twice", "gx10-1 enp1s0f1np1", "gx10-2 enp1s0f1np1"]),
        (lambda n: n["gx10-3"]["gb10_fabric_addresses"].update({"enP2p1s0f1np1": "192.168.100.99/24"}),
         ["gx10-3: both twins", "192.168.100.0/24"]),
    ],
    ids=["duplicate-ip", "twins-one-subnet"],
)
def test_bad_inventory_stops_before_any_host(tmp_path: Path, change, fragments: list[str]) -> None:
    inv = make_inventory(tmp_path, change)
    result = run_site(tmp_path, inv)
    assert result.status == "failed"
    failures = [e for e in result.events if e.get("event") == "runner_on_failed"]
    assert failures, "validation did not fail"
    msg = str(failures[0]["event_data"]["res"].get("msg"))
    for fragment in fragments:
        assert fragment in msg
    touched = {e["event_data"].get("host") for e in result.events
               if e.get("event", "").startswith("runner_on_") and e["event_data"].get("host")}
    assert touched == {"localhost"}, f"hosts other than localhost were reached: {touched}"


def test_good_sample_inventory_passes_validation(tmp_path: Path) -> None:
    """The same run with the untouched sample gets past validation and stops in the preflight, which
    names the nodes it could not reach."""
    inv = make_inventory(tmp_path, lambda n: None)
    result = run_site(tmp_path, inv)
    ok_tasks = [e["event_data"]["task"] for e in result.events
                if e.get("event") == "runner_on_ok" and e["event_data"].get("host") == "localhost"]
    assert "Validate inventory | Summary" in " ".join(ok_tasks)
    tried = {e["event_data"]["host"] for e in result.events
             if e.get("event") == "runner_on_failed" and e["event_data"].get("task") == "Preflight | Wait for SSH (short)"}
    assert tried == {"gx10-1", "gx10-2", "gx10-3", "gx10-4"}, "expected the nodes (loopback, no SSH there) not to answer"
    failures = [e for e in result.events if e.get("event") == "runner_on_failed" and not e["event_data"].get("ignore_errors")]
    assert failures and "gx10-3 (127.0.0.103) does not answer over SSH" in str(failures[-1]["event_data"]["res"].get("msg"))
