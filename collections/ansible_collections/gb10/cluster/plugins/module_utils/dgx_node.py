"""What the dgx_node role reads from a node before it changes anything, in one pass.

Plain logic with no Ansible imports. Every reader takes its root (or its text) as an argument, so the
tests run on fixture trees. The module gb10.cluster.dgx_node_facts runs `systemctl` and hands the output
here; everything else is files.
"""
from __future__ import annotations

import base64
import grp
import os
import shutil
from collections.abc import Callable
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils.systemctl import parse_show

NVIDIA_PATHS = ("/dev/nvidia0", "/proc/driver/nvidia")
# CAP_SYS_RESOURCE is capability 24: Docker needs it to raise memlock/nofile in new containers.
CAP_SYS_RESOURCE = 24


def _under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/")) if root not in ("", "/") else path


def present_paths(root: str, paths: tuple[str, ...] | list[str]) -> list[str]:
    """The paths of `paths` that exist under `root`, in the given order."""
    return [path for path in paths if os.path.exists(_under(root, path))]


def bounding_capabilities(status_text: str) -> int | None:
    """CapBnd of a /proc/<pid>/status text as an integer, None when the line is missing or unreadable."""
    for line in status_text.splitlines():
        if line.startswith("CapBnd:"):
            try:
                return int(line.split(":", 1)[1].strip(), 16)
            except ValueError:
                return None
    return None


def has_capability(capbnd: int | None, capability: int) -> bool:
    return capbnd is not None and bool((capbnd >> capability) & 1)


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def dgx_facts(
    root: str,
    daemon_json: str,
    default_target: str,
    chrony_show: str,
    which: Callable[[str], str | None] = shutil.which,
    group_names: list[str] | None = None,
) -> dict[str, Any]:
    """The node facts the dgx_node role decides on.

    root: where the node's file system is (/ on a node, a fixture tree in tests).
    daemon_json: Docker's daemon.json path. default_target: `systemctl get-default` output.
    chrony_show: `systemctl show -p ActiveState,UnitFileState chrony` output ("" when systemctl failed).
    group_names: the node's groups (None: read them with the grp module).
    """
    daemon_text = read_text(_under(root, daemon_json))
    status = read_text(_under(root, "/proc/1/status")) or ""
    capbnd = bounding_capabilities(status)
    chrony = parse_show(chrony_show)
    groups = sorted({g.gr_name for g in grp.getgrall()}) if group_names is None else sorted(set(group_names))
    return {
        "nvidia_paths": present_paths(root, NVIDIA_PATHS),
        "default_target": default_target.strip(),
        "chronyd": os.path.exists(_under(root, "/usr/sbin/chronyd")),
        "chrony_active_state": chrony.get("ActiveState", ""),
        "chrony_unit_file_state": chrony.get("UnitFileState", ""),
        "groups": groups,
        "dockerd": which("dockerd") or "-",
        "nvidia_ctk": which("nvidia-ctk") or "-",
        "init_capbnd": capbnd,
        "can_raise_limits": has_capability(capbnd, CAP_SYS_RESOURCE),
        "daemon_json_exists": daemon_text is not None,
        # base64 so that a daemon.json that is not valid JSON (or not UTF-8 clean) reaches the role intact.
        "daemon_json_b64": base64.b64encode((daemon_text or "").encode()).decode(),
    }
