"""An operator adds a model from their own inventory: gb10_catalog_extra in its group_vars, with the
model's config.json kept next to the inventory (a relative `config:` starts at the inventory folder).

Runs the real plan.yml and serve.yml through ansible-runner against a copy of inventory/sample whose nodes
sit on loopback addresses where nothing answers (tests/support/playbooks.py): plan.yml plans the new
entry; a broken extra entry is refused in one sentence naming it and the inventory, before any host is
contacted.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from tests.support.catalog import builtin_catalog, write_extra
from tests.support.playbooks import ROOT, make_inventory, run_playbook

API_KEY = "k" * 24


def _entry(config: str, **changes) -> dict:
    """A new catalog entry shaped like the built-in Llama 3.3 70B one (2 nodes, TP=2)."""
    entry = copy.deepcopy(builtin_catalog()["llama-3.3-70b-instruct"])
    entry.update(description="Our fine-tune of Llama 3.3 70B, added from the inventory.", config=config, **changes)
    return entry


def _inventory(tmp_path: Path, extra: dict) -> Path:
    inv = make_inventory(tmp_path, lambda nodes: None, lab_models=False)
    model_dir = inv / "models" / "our-llama-70b"
    model_dir.mkdir(parents=True)
    shutil.copy(ROOT / "catalog" / "models" / "llama-3.3-70b-instruct" / "config.json", model_dir / "config.json")
    write_extra(inv, extra)
    return inv


def _failure_message(result) -> str:
    failures = [e for e in result.events if e.get("event") == "runner_on_failed"
                and not e["event_data"].get("ignore_errors")]
    assert failures, f"the run did not fail (status {result.status})"
    return str(failures[-1]["event_data"]["res"].get("msg"))


def _touched(result) -> set[str]:
    return {e["event_data"].get("host") for e in result.events
            if e.get("event", "") in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable")
            and e["event_data"].get("host")}


def test_plan_yml_plans_a_model_the_inventory_adds(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, {"our-llama-70b": _entry("models/our-llama-70b/config.json")})
    artifacts = tmp_path / "artifacts"
    result = run_playbook(tmp_path, "plan.yml", inv, {"model": "our-llama-70b", "memory_plan_draw_chart": False,
                                                      "memory_plan_artifacts_dir": str(artifacts)})
    assert result.status == "successful"
    report = json.loads((artifacts / "plan-our-llama-70b-2nodes.json").read_text())
    assert report["model"] == "our-llama-70b" and report["catalog_entry"] is True
    # The planner read the copy next to the inventory, not the built-in one.
    assert Path(report["planner_args"]["model_config"]).resolve() == (inv / "models" / "our-llama-70b" / "config.json").resolve()
    assert isinstance(report["plan"]["fits"], bool)


@pytest.mark.parametrize("playbook", ["plan.yml", "serve.yml"])
def test_a_broken_extra_entry_is_refused_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    playbook: str) -> None:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    inv = _inventory(tmp_path, {"our-llama-70b": _entry("models/our-llama-70b/config.jsn")})
    (inv / "group_vars" / "all" / "serving.yml").write_text(f"vllm_serve_api_key: {API_KEY}\n")
    result = run_playbook(tmp_path, playbook, inv, {"model": "our-llama-70b", "memory_plan_draw_chart": False,
                                                    "memory_plan_artifacts_dir": str(tmp_path / "artifacts")})
    assert result.status == "failed"
    msg = _failure_message(result)
    assert (f"gb10_catalog_extra['our-llama-70b'].config: models/our-llama-70b/config.jsn "
            f"({inv}/models/our-llama-70b/config.jsn) does not exist (inventory {inv}).") in msg
    assert "gb10_catalog['" not in msg
    assert _touched(result) == {"localhost"}, "refused before any node was contacted"


def test_an_extra_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, lambda nodes: None, lab_models=False)
    (inv / "group_vars" / "all" / "catalog.yml").write_text("gb10_catalog_extra:\n  - our-llama-70b\n")
    result = run_playbook(tmp_path, "plan.yml", inv, {"model": "our-llama-70b", "memory_plan_draw_chart": False})
    assert result.status == "failed"
    assert (f"gb10_catalog_extra (inventory {inv}) must be a mapping of catalog name to entry, not a list"
            in _failure_message(result))
