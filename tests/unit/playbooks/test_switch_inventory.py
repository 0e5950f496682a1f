"""site.yml refuses, at inventory validation, a switch it cannot recognise or would lock itself out of.

Same harness as test_site_refuses_bad_inventory.py: a copy of the sample inventory whose nodes sit on
loopback addresses where nothing answers; a row passes when the run fails with the sentence and no host
but localhost was reached.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.playbooks import make_inventory, run_playbook


def _switch(inv: Path, change) -> None:
    hosts_file = inv / "hosts.yml"
    hosts = yaml.safe_load(hosts_file.read_text())
    change(hosts["all"]["children"]["switch"]["hosts"]["crs804"])
    hosts_file.write_text(yaml.safe_dump(hosts))


@pytest.mark.parametrize("node_change,switch_change,fragment", [
    (lambda n: None, lambda s: s.pop("switch_api_cert_sha256"),
     "crs804: nothing tells Ansible how to recognise the switch"),
    (lambda n: n["gx10-2"].update({"gb10_switch_port": "ether1"}), lambda s: None,
     "gx10-2: gb10_switch_port is ether1, the switch's management port (switch_mgmt_interface on crs804), which "
     "never joins the fabric bridge gb10-fabric"),
], ids=["no-pin", "management-port-bridged"])
def test_site_refuses_the_switch_before_any_host(tmp_path: Path, node_change, switch_change, fragment: str) -> None:
    inv = make_inventory(tmp_path, node_change)
    _switch(inv, switch_change)
    result = run_playbook(tmp_path, "site.yml", inv)
    assert result.status == "failed"
    failures = [e for e in result.events if e.get("event") == "runner_on_failed"]
    assert failures, "validation did not fail"
    msg = failures[0]["event_data"]["res"].get("msg")
    assert any(fragment in line for line in msg), msg
    assert len(msg) == 2, msg  # the heading and one sentence
    touched = {e["event_data"].get("host") for e in result.events
               if e.get("event", "").startswith("runner_on_") and e["event_data"].get("host")}
    assert touched == {"localhost"}, f"hosts other than localhost were reached: {touched}"
