"""playbooks/agents.yml (issue 16, item 6), run for real through ansible-runner on a generated inventory
(a copy of inventory/sample with the lab's tiny models): the coding agents' files land under that
inventory, none holds the API key, a model with tool calling off is warned about, a second run changes
nothing, --check --diff writes nothing, and serve.yml ends with this play."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.support.playbooks import ROOT, make_inventory, run_playbook

API_KEY = "agents-test-key-" + "z" * 16
PINS = {"lab-vllm-cpu": {"repository": "10.77.0.1:5000/gb10/vllm-cpu", "tag": "lab", "digest": "sha256:" + "cd" * 32}}


@pytest.fixture()
def inventory(tmp_path: Path) -> Path:
    inv = make_inventory(tmp_path, lambda nodes: None)
    group = inv / "group_vars" / "all"
    images = yaml.safe_load((group / "images.yml").read_text()) or {}
    images["gb10_image_pins"] = dict(images.get("gb10_image_pins") or {}, **PINS)
    (group / "images.yml").write_text(yaml.safe_dump(images))
    (group / "agents_test.yml").write_text(yaml.safe_dump({"vllm_serve_api_key": API_KEY}))
    return inv


def _events(result, event: str) -> list[dict]:
    return [e["event_data"] for e in result.events if e.get("event") == event]


def _debug_lines(result) -> list[str]:
    lines: list[str] = []
    for data in _events(result, "runner_on_ok") + [r for e in _events(result, "runner_item_on_ok") for r in [e]]:
        msg = data.get("res", {}).get("msg")
        lines += msg if isinstance(msg, list) else [str(msg)] if msg else []
    return lines


def _changed(result) -> int:
    return result.stats["changed"].get("localhost", 0)


def test_agents_play_writes_the_files_under_the_inventory(tmp_path, inventory):
    result = run_playbook(tmp_path, "playbooks/agents.yml", inventory, {"model": "gpt-oss-120b"})
    assert result.status == "successful", result.stdout.read()
    folder = inventory / "agents" / "gpt-oss-120b"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["README.md", "aider/.aider.conf.yml", "aider/.aider.model.metadata.json",
                     "aider/.aider.model.settings.yml", "claude-code/settings.json", "codex/config.toml",
                     "opencode/opencode.json"]
    # the endpoint of the plan serve.yml runs: the head's management address (sample inventory, 127.0.0.101)
    opencode = json.loads((folder / "opencode/opencode.json").read_text())
    assert opencode["provider"]["gb10"]["options"] == {"baseURL": "http://127.0.0.101:8000/v1",
                                                       "apiKey": "{env:GB10_VLLM_API_KEY}"}
    assert json.loads((folder / "claude-code/settings.json").read_text())["env"]["ANTHROPIC_BASE_URL"] == "http://127.0.0.101:8000"
    assert tomllib.loads((folder / "codex/config.toml").read_text())["model_context_window"] == 131072
    for path in folder.rglob("*"):
        if path.is_file():
            assert API_KEY not in path.read_text(), f"{path} holds the API key"
    assert not _events(result, "runner_on_unreachable"), "no node is contacted"
    lines = _debug_lines(result)
    assert not [line for line in lines if line.startswith("WARNING")]
    assert any("The API key is not in these files: export GB10_VLLM_API_KEY" in line for line in lines)

    # a second run changes nothing; --check --diff neither
    again = run_playbook(tmp_path, "playbooks/agents.yml", inventory, {"model": "gpt-oss-120b"})
    assert again.status == "successful" and _changed(again) == 0
    (folder / "codex/config.toml").write_text("changed by hand\n")
    check = run_playbook(tmp_path, "playbooks/agents.yml", inventory, {"model": "gpt-oss-120b"}, cmdline="--check --diff")
    assert check.status == "successful" and _changed(check) == 1
    assert (folder / "codex/config.toml").read_text() == "changed by hand\n", "--check wrote a file"


def test_tool_calling_off_is_warned(tmp_path, inventory):
    result = run_playbook(tmp_path, "playbooks/agents.yml", inventory, {"model": "tiny-llama"})
    assert result.status == "successful", result.stdout.read()
    warnings = [line for line in _debug_lines(result) if line.startswith("WARNING")]
    assert any("tiny-llama has tool calling off in the catalog" in w for w in warnings), warnings
    readme = (inventory / "agents" / "tiny-llama" / "README.md").read_text()
    assert "Tool calling: OFF" in readme


def test_unknown_model_is_one_sentence(tmp_path, inventory):
    result = run_playbook(tmp_path, "playbooks/agents.yml", inventory, {"model": "nope"})
    assert result.status == "failed"
    failed = _events(result, "runner_on_failed")
    assert "Unknown model 'nope' (-e model): use one of" in failed[-1]["res"]["msg"]
    assert not (inventory / "agents").exists()


def test_serve_ends_with_the_agents_play():
    plays = yaml.safe_load((ROOT / "playbooks" / "serve.yml").read_text())
    assert plays[-1]["ansible.builtin.import_playbook"] == "agents.yml"
