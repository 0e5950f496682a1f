"""The coding agents' files for a catalog entry (module_utils/agents.py): exactly what each agent reads,
the API key only by name, and the warnings."""

from __future__ import annotations

import copy
import json
import tomllib

import pytest
import yaml

from ansible_collections.gb10.cluster.plugins.module_utils.agents import (
    API_KEY_ENV,
    AgentConfigError,
    agent_files,
    file_entries,
)
from tests.support.catalog import merged_catalog

ENDPOINT = "http://192.168.1.101:8000/v1"
FILES = [
    "README.md",
    "aider/.aider.conf.yml",
    "aider/.aider.model.metadata.json",
    "aider/.aider.model.settings.yml",
    "claude-code/settings.json",
    "codex/config.toml",
    "opencode/opencode.json",
]


@pytest.fixture(scope="module")
def catalog() -> dict:
    return merged_catalog()


def test_the_exact_files_for_gpt_oss(catalog):
    got = agent_files("gpt-oss-120b", catalog["gpt-oss-120b"], ENDPOINT)
    files = got["files"]
    assert list(files) == FILES
    assert got["warnings"] == []
    assert json.loads(files["opencode/opencode.json"]) == {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "gb10": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "GB10 cluster (vLLM)",
                "options": {"baseURL": ENDPOINT, "apiKey": "{env:GB10_VLLM_API_KEY}"},
                "models": {
                    "gpt-oss-120b": {
                        "name": "gpt-oss-120b (GB10)",
                        "tool_call": True,
                        "reasoning": True,
                        "limit": {"context": 131072, "output": 32768},
                    }
                },
            }
        },
        "model": "gb10/gpt-oss-120b",
        "small_model": "gb10/gpt-oss-120b",
    }
    assert json.loads(files["claude-code/settings.json"]) == {
        "model": "sonnet",
        "apiKeyHelper": "printenv GB10_VLLM_API_KEY",
        "env": {
            "ANTHROPIC_BASE_URL": "http://192.168.1.101:8000",
            "ANTHROPIC_DEFAULT_OPUS_MODEL": "gpt-oss-120b",
            "ANTHROPIC_DEFAULT_SONNET_MODEL": "gpt-oss-120b",
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": "gpt-oss-120b",
            "ANTHROPIC_SMALL_FAST_MODEL": "gpt-oss-120b",
            "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "32768",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        },
    }
    codex = files["codex/config.toml"]
    assert tomllib.loads(codex) == {
        "model": "gpt-oss-120b",
        "model_provider": "gb10",
        "model_context_window": 131072,
        "model_max_output_tokens": 32768,
        "model_providers": {
            "gb10": {"name": "GB10 cluster (vLLM)", "base_url": ENDPOINT, "env_key": "GB10_VLLM_API_KEY",
                     "wire_api": "responses"}
        },
    }
    assert "The API key is not in this file" in codex
    conf = files["aider/.aider.conf.yml"]
    assert yaml.safe_load(conf) == {
        "openai-api-base": ENDPOINT,
        "model": "openai/gpt-oss-120b",
        "weak-model": "openai/gpt-oss-120b",
        "model-settings-file": "aider/.aider.model.settings.yml",
        "model-metadata-file": "aider/.aider.model.metadata.json",
        "show-model-warnings": False,
    }
    assert "The API key is not in this file: aider reads OPENAI_API_KEY" in conf
    assert yaml.safe_load(files["aider/.aider.model.settings.yml"]) == [
        {"name": "openai/gpt-oss-120b", "edit_format": "diff", "use_repo_map": True, "examples_as_sys_msg": True,
         "extra_params": {"max_tokens": 32768}}
    ]
    assert json.loads(files["aider/.aider.model.metadata.json"]) == {
        "openai/gpt-oss-120b": {"max_input_tokens": 131072, "max_output_tokens": 32768, "input_cost_per_token": 0,
                                "output_cost_per_token": 0, "litellm_provider": "openai", "mode": "chat",
                                "supports_function_calling": True}
    }
    readme = files["README.md"]
    assert "Tool calling: on (openai)" in readme and "No file here holds the API key" in readme
    assert f"export {API_KEY_ENV}=" in readme


def test_the_files_name_each_other_by_absolute_path_in_their_folder(catalog):
    folder = "/srv/inv/agents/gpt-oss-120b"
    files = agent_files("gpt-oss-120b", catalog["gpt-oss-120b"], ENDPOINT, folder=folder)["files"]
    conf = yaml.safe_load(files["aider/.aider.conf.yml"])
    assert conf["model-settings-file"] == f"{folder}/aider/.aider.model.settings.yml"
    assert f"OPENCODE_CONFIG={folder}/opencode/opencode.json opencode" in files["README.md"]
    assert f"claude --settings {folder}/claude-code/settings.json" in files["README.md"]


def test_the_plan_context_wins_and_the_output_follows_it(catalog):
    got = agent_files("gpt-oss-120b", catalog["gpt-oss-120b"], ENDPOINT + "/", max_model_len=65536)
    assert got["settings"]["context"] == 65536 and got["settings"]["output"] == 16384
    assert got["settings"]["endpoint"] == ENDPOINT


def test_tool_calling_off_warns_and_says_so_in_the_files(catalog):
    got = agent_files("tiny-llama", catalog["tiny-llama"], "http://10.77.0.11:8000/v1")
    assert len(got["warnings"]) == 2
    assert got["warnings"][0].startswith("tiny-llama has tool calling off in the catalog")
    assert "serves a context of 1,024 tokens" in got["warnings"][1]
    assert json.loads(got["files"]["opencode/opencode.json"])["provider"]["gb10"]["models"]["tiny-llama"]["tool_call"] is False
    assert "WARNING: tool calling is off" in got["files"]["codex/config.toml"]
    assert "Tool calling: OFF" in got["files"]["README.md"] and "## Warnings" in got["files"]["README.md"]
    assert got["settings"]["output"] == 256


def test_a_parser_without_auto_tool_choice_is_off(catalog):
    entry = copy.deepcopy(catalog["gpt-oss-120b"])
    entry["launch"]["enable_auto_tool_choice"] = False
    assert agent_files("gpt-oss-120b", entry, ENDPOINT)["settings"]["tool_calling"] is False


def test_the_key_is_named_never_given(catalog):
    got = agent_files("gpt-oss-120b", catalog["gpt-oss-120b"], ENDPOINT, api_key_env="MY_RACK_KEY")
    text = "".join(got["files"].values())
    assert "MY_RACK_KEY" in got["files"]["opencode/opencode.json"]
    assert "printenv MY_RACK_KEY" in got["files"]["claude-code/settings.json"]
    assert API_KEY_ENV not in text


@pytest.mark.parametrize(
    ("endpoint", "env", "needle"),
    [
        ("", API_KEY_ENV, "agent_configs_endpoint '' is not an OpenAI-compatible base URL"),
        ("http://10.0.0.1:8000", API_KEY_ENV, "serve the model first (serve.yml) or set agent_configs_endpoint"),
        (ENDPOINT, "my key", "agent_configs_api_key_env 'my key' is not an environment variable name"),
    ],
)
def test_mistakes_are_one_sentence(catalog, endpoint, env, needle):
    with pytest.raises(AgentConfigError) as exc:
        agent_files("gpt-oss-120b", catalog["gpt-oss-120b"], endpoint, api_key_env=env)
    assert len(exc.value.errors) == 1 and needle in exc.value.errors[0]


def test_file_entries_write_every_folder_before_its_files():
    files = {"README.md": "r", "a/b/c.json": "{}", "a/d.toml": "x = 1", "e/f.yml": "---"}
    entries = file_entries("/inv/agents/m/", files)
    paths = [e["path"] for e in entries]
    assert paths[:4] == ["/inv/agents/m", "/inv/agents/m/a", "/inv/agents/m/a/b", "/inv/agents/m/e"]
    assert all(e["state"] == "directory" and e["mode"] == "0755" for e in entries[:4])
    assert {e["path"]: e["content"] for e in entries[4:]} == {f"/inv/agents/m/{k}": v for k, v in files.items()}
    assert all(e["state"] == "file" and e["mode"] == "0644" for e in entries[4:])
    assert file_entries("", files) == []
