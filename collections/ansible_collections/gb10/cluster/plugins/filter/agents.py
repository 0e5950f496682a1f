"""Filters for the coding agents' files (logic in plugins/module_utils/agents.py).

- ``catalog | agent_files(model, endpoint, max_model_len, api_key_env, folder)``: ``{files: {path: content},
  warnings: [...], settings: {...}}`` for the model's catalog entry, or ``{'errors': [...]}`` (one
  sentence per problem).
"""

from __future__ import annotations

from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils import agents as _A


def agent_files(catalog: Any, model: Any, endpoint: Any, max_model_len: Any = None,
                api_key_env: Any = _A.API_KEY_ENV, folder: Any = "") -> dict[str, Any]:
    catalog = dict(catalog or {})
    name = str(model or "")
    if name not in catalog:
        known = ", ".join(sorted(catalog))
        return {"errors": [f"Unknown model '{name}' (-e model): use one of {known}."]}
    try:
        return _A.agent_files(name, catalog[name], str(endpoint or ""), max_model_len, str(api_key_env or ""),
                              str(folder or ""))
    except _A.AgentConfigError as exc:
        return {"errors": list(exc.errors)}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"agent_files": agent_files}
