"""roles/ray_cluster's main entry point: ray_cluster_state present runs tasks/apply.yml (the file serve.yml's
swap includes) once from the play's first host, never once per node; without a serving plan it stops in one
sentence. Run offline against the sample rack (nodes on loopback ports where nothing answers).

The plan without Ray is the sample rack's own case (the NGC image carries no Ray, the native executor needs
none): apply.yml used to fail there with "'ray_cluster_stale' is undefined", because Ansible templates a
skipped task's delegate_to."""
from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.playbooks import make_inventory, run_playbook


def _play(tmp_path: Path, plan: dict | None) -> Path:
    role = {"role": "ray_cluster"}
    if plan is not None:
        role["vars"] = {"ray_cluster_plan": plan}
    book = tmp_path / "ray.yml"
    book.write_text(yaml.safe_dump([{"name": "Ray", "hosts": "gx10", "gather_facts": False, "roles": [role]}]))
    return book


def _events(result, kind: str, task: str) -> list[dict]:
    return [e["event_data"] for e in result.events
            if e.get("event") == kind and e["event_data"].get("task") == task]


def test_present_runs_apply_once_for_the_whole_plan(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, lambda nodes: None)
    plan = {"model": "tiny-qwen3", "ray": {"enabled": False, "reason": "the native executor needs no Ray", "containers": []}}
    result = run_playbook(tmp_path, str(_play(tmp_path, plan)), inv)
    assert result.status == "successful", result.stdout.read()
    said = _events(result, "runner_on_ok", "Ray cluster | Nothing to start")
    assert [e["host"] for e in said] == ["gx10-1"]
    assert said[0]["res"]["msg"] == "tiny-qwen3: the native executor needs no Ray"
    assert not [e for e in result.events if e.get("event") == "runner_on_unreachable"]


def test_present_without_a_plan_stops_in_one_sentence(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, lambda nodes: None)
    result = run_playbook(tmp_path, str(_play(tmp_path, None)), inv)
    assert result.status == "failed"
    failed = _events(result, "runner_on_failed", "Ray cluster | The plan is given")
    assert [e["host"] for e in failed] == ["gx10-1"]
    assert failed[0]["res"]["msg"].startswith("ray_cluster_plan is not a serving plan;")
    assert not _events(result, "runner_on_ok", "Ray cluster | Nothing to start")
