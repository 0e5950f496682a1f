"""Configuration files for the coding agents that use the rack (plain Python, no Ansible).

After ``serve.yml`` (or with ``playbooks/agents.yml``) the role ``agent_configs`` writes, under the
operator's inventory (``<inventory>/agents/<model>/``), one set of files per served model:

- ``opencode/opencode.json``: an OpenAI-compatible provider for OpenCode (``OPENCODE_CONFIG``);
- ``claude-code/settings.json``: Claude Code through vLLM's Anthropic-style ``/v1/messages`` endpoint
  (``claude --settings``);
- ``codex/config.toml``: a model provider for Codex (``CODEX_HOME``), on vLLM's Responses API;
- ``aider/.aider.conf.yml`` with ``.aider.model.settings.yml`` and ``.aider.model.metadata.json``;
- ``README.md``: what each file is for and how to give the API key.

Every file uses the endpoint, the catalog name vLLM serves, the context length (``max_model_len``) and
the entry's tool calling and reasoning settings. The API key is never written: each file names the
environment variable that holds it (:data:`API_KEY_ENV` by default), and says so. :func:`agent_warnings`
says what an agent will not be able to do with the entry (tool calling off, a context too short for an
agent's instructions).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils.catalog import as_positive_int

API_KEY_ENV = "GB10_VLLM_API_KEY"
PROVIDER_ID = "gb10"
PROVIDER_NAME = "GB10 cluster (vLLM)"
# What an agent sends before the first user word (system prompt and tool definitions): Claude Code and
# Codex send on the order of 20K tokens; a context under this leaves them no room to work.
AGENT_PROMPT_TOKENS = 20000
# Output budget per request: a quarter of the context, at most 32K tokens.
MAX_OUTPUT_TOKENS = 32768
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
ENDPOINT_RE = re.compile(r"^https?://[^/\s]+(:\d+)?/v1$")
AGENTS = ("opencode", "claude-code", "codex", "aider")
HEADER = "Written by gb10-cluster (roles/agent_configs) for {model}; serve.yml and playbooks/agents.yml rewrite it."


class AgentConfigError(ValueError):
    """The agents' files cannot be written; ``errors`` holds one sentence per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(" ".join(errors))
        self.errors = errors


_positive_int = as_positive_int


def agent_settings(model: str, entry: Mapping[str, Any], endpoint: str, max_model_len: Any = None,
                   api_key_env: str = API_KEY_ENV, folder: str = "") -> dict[str, Any]:
    """What every agent file says about the model: endpoint, name, context, output budget, tool calling
    and reasoning. ``max_model_len`` is what the serving plan launched (the entry's when not given);
    ``folder`` is where the files go (the agents run in the operator's project, so the files name each
    other by absolute path; relative to the model's folder when not given). Raises AgentConfigError."""
    errors: list[str] = []
    launch = entry.get("launch") if isinstance(entry, Mapping) else None
    launch = launch if isinstance(launch, Mapping) else {}
    endpoint = str(endpoint or "").rstrip("/")
    if not ENDPOINT_RE.match(endpoint):
        errors.append(
            f"agent_configs_endpoint '{endpoint}' is not an OpenAI-compatible base URL such as "
            "http://10.0.0.11:8000/v1; serve the model first (serve.yml) or set agent_configs_endpoint."
        )
    if not ENV_NAME_RE.match(str(api_key_env or "")):
        errors.append(
            f"agent_configs_api_key_env '{api_key_env}' is not an environment variable name; use capitals, "
            f"digits and _ (default {API_KEY_ENV})."
        )
    context = _positive_int(max_model_len) or _positive_int(launch.get("max_model_len"))
    if context is None:
        errors.append(f"{model}: no max_model_len in the serving plan or in gb10_catalog['{model}'].launch.")
    if errors or context is None:
        raise AgentConfigError(errors)
    tools = launch.get("enable_auto_tool_choice") is True and bool(launch.get("tool_call_parser"))
    return {
        "model": model,
        "endpoint": endpoint,
        "base_url": endpoint[: -len("/v1")],
        "context": context,
        "output": max(1, min(MAX_OUTPUT_TOKENS, context // 4)),
        "tool_calling": tools,
        "tool_call_parser": str(launch.get("tool_call_parser") or ""),
        "reasoning": bool(launch.get("reasoning_parser")),
        "api_key_env": str(api_key_env),
        "description": " ".join(str(entry.get("description") or model).split())[:200],
        "folder": str(folder or "").rstrip("/") + "/" if folder else "",
    }


def agent_warnings(settings: Mapping[str, Any]) -> list[str]:
    """What the agents cannot do with this entry, one sentence each (empty when nothing)."""
    model = settings["model"]
    warnings = []
    if not settings["tool_calling"]:
        warnings.append(
            f"{model} has tool calling off in the catalog (launch.enable_auto_tool_choice and "
            "launch.tool_call_parser): OpenCode, Claude Code and Codex need it to read files, edit and run "
            "commands, and will only chat; aider works without it. Turn it on in the entry with the "
            "model's parser (docs/agents.md)."
        )
    if settings["context"] < AGENT_PROMPT_TOKENS * 2:
        warnings.append(
            f"{model} serves a context of {settings['context']:,} tokens: Claude Code and Codex send about "
            f"{AGENT_PROMPT_TOKENS:,} tokens of instructions and tools with every request, so little or no "
            "room is left for code; use a longer max_model_len for agent work (docs/agents.md)."
        )
    return warnings


def _json(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a TOML basic string is a JSON string for these characters


def opencode_json(s: Mapping[str, Any]) -> str:
    model: dict[str, Any] = {
        "name": f"{s['model']} (GB10)",
        "tool_call": s["tool_calling"],
        "reasoning": s["reasoning"],
        "limit": {"context": s["context"], "output": s["output"]},
    }
    return _json({
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            PROVIDER_ID: {
                "npm": "@ai-sdk/openai-compatible",
                "name": PROVIDER_NAME,
                # {env:NAME}: OpenCode reads the key from the environment; it is not in this file.
                "options": {"baseURL": s["endpoint"], "apiKey": "{env:" + s["api_key_env"] + "}"},
                "models": {s["model"]: model},
            }
        },
        "model": f"{PROVIDER_ID}/{s['model']}",
        "small_model": f"{PROVIDER_ID}/{s['model']}",
    })


def claude_code_settings(s: Mapping[str, Any]) -> str:
    """Claude Code on vLLM's /v1/messages: every model alias is the served model; the key comes from
    apiKeyHelper (a command that prints the environment variable), sent as x-api-key and Bearer."""
    model = s["model"]
    return _json({
        "model": "sonnet",
        "apiKeyHelper": f"printenv {s['api_key_env']}",
        "env": {
            "ANTHROPIC_BASE_URL": s["base_url"],
            "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
            "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
            "ANTHROPIC_SMALL_FAST_MODEL": model,
            "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(s["output"]),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        },
    })


def codex_toml(s: Mapping[str, Any]) -> str:
    lines = [
        f"# {HEADER.format(model=s['model'])}",
        f"# The API key is not in this file: Codex reads it from the environment variable {s['api_key_env']}",
        "# (env_key below). Copy the keys into ~/.codex/config.toml, or run with CODEX_HOME=<this folder>.",
    ]
    if not s["tool_calling"]:
        lines.append("# WARNING: tool calling is off for this model in the catalog; Codex cannot run tools with it.")
    lines += [
        f"model = {_toml_string(s['model'])}",
        f"model_provider = {_toml_string(PROVIDER_ID)}",
        f"model_context_window = {s['context']}",
        f"model_max_output_tokens = {s['output']}",
        "",
        f"[model_providers.{PROVIDER_ID}]",
        f"name = {_toml_string(PROVIDER_NAME)}",
        f"base_url = {_toml_string(s['endpoint'])}",
        f"env_key = {_toml_string(s['api_key_env'])}",
        '# vLLM serves the Responses API (/v1/responses), the only wire API recent Codex releases accept.',
        'wire_api = "responses"',
        "",
    ]
    return "\n".join(lines)


def aider_files(s: Mapping[str, Any]) -> dict[str, str]:
    name = f"openai/{s['model']}"
    conf = "\n".join([
        f"# {HEADER.format(model=s['model'])}",
        "# The API key is not in this file: aider reads OPENAI_API_KEY from the environment. Run it as",
        f'#   OPENAI_API_KEY="${s["api_key_env"]}" aider --config {s["folder"]}aider/.aider.conf.yml',
        "# in your project's folder.",
        f"openai-api-base: {s['endpoint']}",
        f"model: {name}",
        f"weak-model: {name}",
        f"model-settings-file: {s['folder']}aider/.aider.model.settings.yml",
        f"model-metadata-file: {s['folder']}aider/.aider.model.metadata.json",
        "show-model-warnings: false",
        "",
    ])
    settings = "\n".join([
        f"# {HEADER.format(model=s['model'])}",
        f"- name: {name}",
        "  edit_format: diff",
        "  use_repo_map: true",
        "  examples_as_sys_msg: true",
        "  extra_params:",
        f"    max_tokens: {s['output']}",
        "",
    ])
    metadata = _json({
        name: {
            "max_input_tokens": s["context"],
            "max_output_tokens": s["output"],
            "input_cost_per_token": 0,
            "output_cost_per_token": 0,
            "litellm_provider": "openai",
            "mode": "chat",
            "supports_function_calling": s["tool_calling"],
        }
    })
    return {
        "aider/.aider.conf.yml": conf,
        "aider/.aider.model.settings.yml": settings,
        "aider/.aider.model.metadata.json": metadata,
    }


def readme(s: Mapping[str, Any], warnings: list[str]) -> str:
    env = s["api_key_env"]
    d = s["folder"]
    lines = [
        f"# Coding agents for {s['model']}",
        "",
        HEADER.format(model=s["model"]),
        "",
        f"- Endpoint: {s['endpoint']} (OpenAI-compatible); Claude Code uses {s['base_url']}/v1/messages",
        f"- Model: {s['model']}; context {s['context']:,} tokens, output up to {s['output']:,} tokens per request",
        f"- Tool calling: {'on (' + s['tool_call_parser'] + ')' if s['tool_calling'] else 'OFF'}; "
        f"reasoning parser: {'yes' if s['reasoning'] else 'no'}",
        "",
        "## The API key",
        "",
        f"No file here holds the API key. Every agent reads it from the environment variable `{env}`",
        "(aider from `OPENAI_API_KEY`). The key is `vllm_serve_api_key` in the inventory's ansible-vault;",
        "put it in the variable without showing it, for instance from a file only you can read:",
        "",
        "```sh",
        f'export {env}="$(cat ~/.config/gb10/vllm-api-key)"',
        "```",
        "",
        "## Use (in your project's folder)",
        "",
        "| Agent | Command |",
        "|---|---|",
        f"| OpenCode | `OPENCODE_CONFIG={d}opencode/opencode.json opencode` |",
        f"| Claude Code | `claude --settings {d}claude-code/settings.json` |",
        f"| Codex | `CODEX_HOME={d}codex codex` (or copy the keys into `~/.codex/config.toml`) |",
        f'| aider | `OPENAI_API_KEY="${env}" aider --config {d}aider/.aider.conf.yml` |',
        "",
    ]
    if warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    return "\n".join(lines)


def agent_files(model: str, entry: Mapping[str, Any], endpoint: str, max_model_len: Any = None,
                api_key_env: str = API_KEY_ENV, folder: str = "") -> dict[str, Any]:
    """``{files: {path relative to folder: content}, warnings: [...], settings: {...}, entries: [...]}`` for
    one catalog entry (``entries``: the same files as gb10.cluster.node_files entries under ``folder``).
    Raises AgentConfigError."""
    s = agent_settings(model, entry, endpoint, max_model_len, api_key_env, folder)
    warnings = agent_warnings(s)
    files = {
        "README.md": readme(s, warnings),
        "opencode/opencode.json": opencode_json(s),
        "claude-code/settings.json": claude_code_settings(s),
        "codex/config.toml": codex_toml(s),
        **aider_files(s),
    }
    files = dict(sorted(files.items()))
    return {"files": files, "warnings": warnings, "settings": s, "entries": file_entries(folder, files)}


def file_entries(folder: str, files: Mapping[str, str]) -> list[dict[str, str]]:
    """gb10.cluster.node_files entries that write ``files`` under ``folder``: every folder first (0755,
    parents before children), then the files (0644). Empty without a folder."""
    root = str(folder or "").rstrip("/")
    if not root:
        return []
    dirs: set[str] = set()
    for rel in files:
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        while parent:
            dirs.add(parent)
            parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
    entries = [{"path": root, "state": "directory", "mode": "0755"}]
    entries += [{"path": f"{root}/{d}", "state": "directory", "mode": "0755"} for d in sorted(dirs)]
    entries += [{"path": f"{root}/{rel}", "state": "file", "mode": "0644", "content": text} for rel, text in files.items()]
    return entries
