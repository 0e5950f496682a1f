"""Parse a node's memory facts: /proc/meminfo and nvidia-smi, GB10-aware.

Plain typed Python, no Ansible imports. On GB10 (unified memory) nvidia-smi reports the GPU's
memory as "[N/A]" or "Not Supported"; the facts then say the GPU is integrated and leave the
GPU memory total as None, and the planner uses MemAvailable instead.
"""
from __future__ import annotations

import re
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


def memory_facts(meminfo_text: str, nvidia_smi_text: str | None = None) -> dict[str, Any]:
    """The gb10_memory fact: host memory plus what nvidia-smi says (None when it did not run)."""
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
    }
