"""What a node's Docker holds for the serving image (gb10.cluster.serving_image_state).

Plain logic, no Ansible imports: the insecure-registries merge of /etc/docker/daemon.json (other keys
stay), and the parsing of `docker image inspect` / `docker image ls` output. One module run reads all
of it, where the role used to run five (slurp, stat + copy, two inspects, ls).
"""
from __future__ import annotations

import json
from typing import Any


class DaemonJsonError(ValueError):
    """daemon.json cannot be read as a JSON object."""


def parse_daemon_json(text: str | None, path: str) -> dict[str, Any]:
    """The daemon.json object ({} for a missing or empty file); DaemonJsonError names the file."""
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DaemonJsonError(f"{path} is not valid JSON ({exc}); fix or remove it and run again") from exc
    if not isinstance(data, dict):
        raise DaemonJsonError(f"{path} holds a JSON {type(data).__name__}, not an object; fix it and run again")
    return data


def merge_insecure(daemon: dict[str, Any], registries: list[str]) -> dict[str, Any]:
    """daemon.json with every registry of ``registries`` in its insecure-registries (order kept, no
    duplicates); every other key unchanged."""
    have = daemon.get("insecure-registries") or []
    if not isinstance(have, list):
        have = [have]
    merged: list[str] = []
    for reg in [*have, *registries]:
        if reg not in merged:
            merged.append(reg)
    return {**daemon, "insecure-registries": merged}


def daemon_text(daemon: dict[str, Any]) -> str:
    """The file byte for byte as Ansible's ``to_nice_json(indent=2)`` plus a newline writes it (sorted keys),
    which is how roles/dgx_node writes it too: neither role rewrites what the other wrote."""
    return json.dumps(daemon, indent=2, sort_keys=True, separators=(",", ": ")) + "\n"


def parse_image_list(stdout: str) -> list[dict[str, str]]:
    """`docker image ls --no-trunc --format '{{.ID}} {{.CreatedAt}}'` -> [{id, created}], newest first,
    one per image ID."""
    seen: dict[str, str] = {}
    for line in stdout.splitlines():
        parts = line.strip().split(" ", 1)
        if len(parts) == 2 and parts[0] and parts[0] not in seen:
            seen[parts[0]] = parts[1]
    return [{"id": i, "created": c} for i, c in sorted(seen.items(), key=lambda kv: kv[1], reverse=True)]


def repository(ref: str) -> str:
    """'reg:5000/gb10/vllm@sha256:…' or 'reg:5000/gb10/vllm:tag' -> 'reg:5000/gb10/vllm'."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]
