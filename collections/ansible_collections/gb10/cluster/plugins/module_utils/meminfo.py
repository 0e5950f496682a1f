"""Parse a node's memory facts: /proc/meminfo, its cgroup's memory limit and nvidia-smi, GB10-aware.

Plain typed Python, no Ansible imports. On GB10 (unified memory) nvidia-smi reports the GPU's
memory as "[N/A]" or "Not Supported"; the facts then say the GPU is integrated and leave the
GPU memory total as None, and the planner uses MemAvailable instead.

A process in a cgroup with a memory limit (a lab node is a container with one; a GB10 has none)
can use no more than that limit: ``cgroup_memory`` finds the tightest limit on the way from the
process's own cgroup up to the root, and ``effective_memory`` caps MemTotal and MemAvailable by it.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

NVIDIA_SMI_QUERY = ("--query-gpu=name,memory.total,memory.used", "--format=csv,noheader")
UNSUPPORTED_MARKERS = ("n/a", "not supported", "[not supported]", "unknown error", "")
INTEGRATED_NAMES = ("GB10", "GH200", "ORIN", "THOR", "JETSON")

_UNITS = {
    "b": 1,
    "kb": 1024,
    "kib": 1024,
    "mb": 1024**2,
    "mib": 1024**2,
    "gb": 1024**3,
    "gib": 1024**3,
}


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as {field: bytes}; "kB" values are KiB, unit-less ones (HugePages_*) are counts."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        parts = rest.split()
        if not parts:
            continue
        try:
            number = int(parts[0])
        except ValueError:
            continue
        unit = parts[1].lower() if len(parts) > 1 else ""
        values[key.strip()] = number * _UNITS.get(unit, 1) if unit else number
    return values


def _memory_value(text: str) -> int | None:
    cleaned = text.strip().strip("[]").strip()
    if cleaned.lower() in UNSUPPORTED_MARKERS:
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", cleaned)
    if not match:
        return None
    number = float(match.group(1))
    unit = match.group(2).lower() or "mib"  # nvidia-smi memory fields are MiB
    if unit not in _UNITS:
        return None
    return int(number * _UNITS[unit])


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """Rows of `nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader`."""
    gpus: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        name = fields[0] if fields else ""
        total = _memory_value(fields[1]) if len(fields) > 1 else None
        used = _memory_value(fields[2]) if len(fields) > 2 else None
        gpus.append({"name": name, "memory_total_bytes": total, "memory_used_bytes": used})
    return gpus


def _is_integrated(gpu: dict[str, Any]) -> bool:
    name = str(gpu.get("name") or "").upper()
    return gpu.get("memory_total_bytes") is None or any(marker in name for marker in INTEGRATED_NAMES)


# A cgroup v1 limit at or above this (PAGE_COUNTER_MAX rounded to pages, 2**63 - 4096 on 4 KiB pages)
# means "no limit"; cgroup v2 writes "max".
NO_LIMIT_V1 = 2**62

# The files of each cgroup version: limit, usage, and the memory.stat key of the inactive file cache.
CGROUP_FILES = {
    2: ("memory.max", "memory.current", "inactive_file"),
    1: ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int((text or "").strip())
    except ValueError:
        return None


def own_cgroup(proc_cgroup_text: str, version: int) -> str:
    """This process's cgroup path from /proc/self/cgroup: the ``0::`` line on cgroup v2, the line of
    the memory controller on v1 (``4:memory:/docker/abc``); '' when there is none."""
    for line in proc_cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if version == 2 and hierarchy == "0" and controllers == "":
            return path
        if version == 1 and "memory" in controllers.split(","):
            return path
    return ""


def _parents(path: str) -> list[str]:
    """'/a/b' -> ['/a/b', '/a', '/']."""
    chain = []
    current = "/" + path.strip("/")
    while True:
        chain.append(current)
        if current == "/":
            return chain
        current = current.rsplit("/", 1)[0] or "/"


def _stat_value(stat_text: str | None, key: str) -> int:
    for line in (stat_text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return _int(parts[1]) or 0
    return 0


def cgroup_memory(cgroup_root: str | Path = "/sys/fs/cgroup", proc_root: str | Path = "/proc") -> dict[str, Any]:
    """The tightest memory limit on the way from this process's cgroup (``<proc_root>/self/cgroup``) up
    to the root of the cgroup tree mounted at ``cgroup_root``.

    Returns ``version`` (2 when ``cgroup.controllers`` is at the root, else 1; the v1 memory controller
    is ``<cgroup_root>/memory``), ``path`` (the cgroup holding the limit), ``limit_bytes``, and that
    cgroup's ``usage_bytes`` (memory.current / memory.usage_in_bytes) and ``inactive_file_bytes``
    (memory.stat inactive_file / total_inactive_file): the kernel reclaims that cache before it
    OOM-kills, so it counts as available, the way the kubelet's working set does. Without a limit,
    ``path``, ``limit_bytes``, ``usage_bytes`` and ``inactive_file_bytes`` are None. A file that cannot
    be read is skipped (a usage or memory.stat that cannot be read counts as 0).
    """
    root = Path(cgroup_root)
    version = 2 if (root / "cgroup.controllers").is_file() else 1
    base = root if version == 2 else root / "memory"
    limit_file, usage_file, inactive_key = CGROUP_FILES[version]
    own = own_cgroup(_read(Path(proc_root) / "self" / "cgroup") or "", version)
    found: dict[str, Any] = {
        "version": version, "path": None, "limit_bytes": None, "usage_bytes": None, "inactive_file_bytes": None,
    }
    if not own:
        return found
    for path in _parents(own):
        folder = base / path.lstrip("/")
        limit = _int(_read(folder / limit_file))  # "max" (v2, no limit) reads as None
        if limit is None or limit >= NO_LIMIT_V1:
            continue
        if found["limit_bytes"] is None or limit < found["limit_bytes"]:
            found.update(
                path=path,
                limit_bytes=limit,
                usage_bytes=_int(_read(folder / usage_file)) or 0,
                inactive_file_bytes=_stat_value(_read(folder / "memory.stat"), inactive_key),
            )
    return found


def effective_memory(mem_total: int, mem_available: int, cgroup: dict[str, Any]) -> tuple[int, int]:
    """(total, available) for a process in that cgroup: the host's MemTotal and MemAvailable, each
    capped by the cgroup's limit; what the cgroup may still use is its limit minus its usage plus its
    inactive file cache."""
    limit = cgroup.get("limit_bytes")
    if limit is None:
        return mem_total, mem_available
    used = (cgroup.get("usage_bytes") or 0) - (cgroup.get("inactive_file_bytes") or 0)
    return min(mem_total, limit), min(mem_available, limit - used)


def memory_facts(meminfo_text: str, nvidia_smi_text: str | None = None,
                 cgroup: dict[str, Any] | None = None) -> dict[str, Any]:
    """The gb10_memory fact: host memory, the cgroup limit (``cgroup_memory``; None: not measured, as
    without a limit) and what nvidia-smi says (None when it did not run)."""
    info = parse_meminfo(meminfo_text)
    if "MemTotal" not in info:
        raise ValueError("meminfo text has no MemTotal line")
    total = info["MemTotal"]
    # MemAvailable exists since Linux 3.14; older kernels: free + reclaimable page cache.
    available = info.get(
        "MemAvailable", info.get("MemFree", 0) + info.get("Cached", 0) + info.get("Buffers", 0)
    )
    cached = info.get("Cached", 0)
    buffers = info.get("Buffers", 0)
    gpus = parse_nvidia_smi(nvidia_smi_text) if nvidia_smi_text else []
    first = gpus[0] if gpus else {}
    group = cgroup or {}
    effective_total, effective_available = effective_memory(total, available, group)
    return {
        "mem_total_bytes": total,
        "mem_available_bytes": available,
        "mem_free_bytes": info.get("MemFree", 0),
        "page_cache_bytes": cached + buffers,
        "cached_bytes": cached,
        "buffers_bytes": buffers,
        "shmem_bytes": info.get("Shmem", 0),
        "swap_total_bytes": info.get("SwapTotal", 0),
        "swap_free_bytes": info.get("SwapFree", 0),
        "gpu_present": bool(gpus),
        "gpu_count": len(gpus),
        "gpu_name": first.get("name") if gpus else None,
        "gpu_integrated": bool(gpus) and _is_integrated(first),
        "gpu_memory_total_bytes": first.get("memory_total_bytes") if gpus else None,
        "gpu_memory_used_bytes": first.get("memory_used_bytes") if gpus else None,
        "cgroup_version": group.get("version"),
        "cgroup_path": group.get("path"),
        "cgroup_memory_limit_bytes": group.get("limit_bytes"),
        "cgroup_memory_usage_bytes": group.get("usage_bytes"),
        "cgroup_inactive_file_bytes": group.get("inactive_file_bytes"),
        "effective_mem_total_bytes": effective_total,
        "effective_mem_available_bytes": effective_available,
    }
