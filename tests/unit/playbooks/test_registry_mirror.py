"""The rack's registry mirror (playbooks/registry_mirror.yml in site.yml, roles/registry_mirror):
a bad gb10_registry_mirror is refused by the inventory check before any host is reached, in one
sentence; without a mirror the control play says so and changes nothing."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.playbooks import make_inventory, run_playbook


def _touched(result) -> set[str]:
    return {e["event_data"].get("host") for e in result.events
            if e.get("event", "") in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable")
            and e["event_data"].get("host")}


def _inventory(tmp_path: Path, mirror: str | None) -> Path:
    inv = make_inventory(tmp_path, lambda nodes: None)
    if mirror is not None:
        (inv / "group_vars" / "all" / "mirror.yml").write_text(yaml.safe_dump({"gb10_registry_mirror": mirror}))
    return inv


def test_site_refuses_a_bad_mirror_address_before_any_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    result = run_playbook(tmp_path, "site.yml", _inventory(tmp_path, "http://192.168.1.10:5001/"))
    assert result.status == "failed"
    failures = [e for e in result.events if e.get("event") == "runner_on_failed"]
    msg = str(failures[-1]["event_data"]["res"].get("msg"))
    assert "gb10_registry_mirror is 'http://192.168.1.10:5001/' (inventory); give the host:port" in msg
    assert _touched(result) == {"localhost"}


def test_no_mirror_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    result = run_playbook(tmp_path, "playbooks/registry_mirror.yml", _inventory(tmp_path, None))
    assert result.status == "successful"
    oks = [e for e in result.events if e.get("event") == "runner_on_ok"]
    assert not any(e["event_data"]["res"].get("changed") for e in oks)
    assert any("Set gb10_registry_mirror" in str(e["event_data"]["res"].get("msg")) for e in oks)
