"""What a node runs and how it is, for status.yml: the serving and Ray containers, memory, uptime, twin links.

Plain typed Python, no Ansible imports. The module ``gb10.cluster.node_status`` feeds it what it read on a
node (``docker inspect`` JSON, /proc/meminfo, /proc/uptime, /sys/class/net, ``ip -j addr``); the filter
``gb10.cluster.status_lines`` turns every node's answer, the head's health and metrics and the switch's
port verdicts into the one screen the operator reads.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

LABEL_MODEL = "gb10.serving.model"
LABEL_ROLE = "gb10.serving.role"
LABEL_RAY_ROLE = "gb10.ray.role"
# vLLM's KV cache usage gauge (0..1); older releases call it gpu_cache_usage_perc.
KV_METRICS = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
_METRIC_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(?P<value>[-+0-9.eEinfNa]+)")


def flag_value(args: Sequence[str], name: str) -> str | None:
    """The value after ``name`` in an argument list (``--port 8000``), or None."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return str(args[i + 1])
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def container_rows(inspected: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per gb10 serving or Ray container from ``docker inspect`` output."""
    rows = []
    for c in inspected:
        config = c.get("Config") or {}
        labels = config.get("Labels") or {}
        state = c.get("State") or {}
        if LABEL_ROLE in labels:
            kind, role = "vllm", labels[LABEL_ROLE]
        elif LABEL_RAY_ROLE in labels:
            kind, role = "ray", labels[LABEL_RAY_ROLE]
        else:
            continue
        args = [str(a) for a in (c.get("Args") or [])]
        rows.append({
            "name": str(c.get("Name", "")).lstrip("/"),
            "kind": kind,
            "role": role,
            "model": labels.get(LABEL_MODEL, ""),
            "image": str(config.get("Image", "")),
            "image_id": str(c.get("Image", "")),
            "state": str(state.get("Status", "unknown")),
            "health": str((state.get("Health") or {}).get("Status", "")),
            "started_at": str(state.get("StartedAt", "")),
            "restarts": int(c.get("RestartCount", 0) or 0),
            "exit_code": int(state.get("ExitCode", 0) or 0),
            "api_port": int(flag_value(args, "--port") or 0) if kind == "vllm" and role == "api" else None,
            "tensor_parallel_size": int(flag_value(args, "--tensor-parallel-size") or 1) if kind == "vllm" else None,
            "pipeline_parallel_size": int(flag_value(args, "--pipeline-parallel-size") or 1) if kind == "vllm" else None,
            "max_model_len": int(flag_value(args, "--max-model-len") or 0) or None if kind == "vllm" else None,
        })
    return sorted(rows, key=lambda r: (r["kind"], r["name"]))


def twin_rows(interfaces: Sequence[str], sysfs: Mapping[str, Mapping[str, str]],
              ip_addr: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Link state of each fabric twin: operstate, speed (Mb/s, None when unknown), MTU and IPv4 addresses.

    ``sysfs`` maps an interface to the files read under /sys/class/net/<if>/ (operstate, speed, mtu); a
    missing interface has no entry. ``ip_addr`` is ``ip -j addr`` output.
    """
    addrs: dict[str, list[str]] = {}
    for link in ip_addr:
        addrs[str(link.get("ifname", ""))] = [
            f"{a.get('local')}/{a.get('prefixlen')}" for a in link.get("addr_info") or [] if a.get("family") == "inet"]
    rows = []
    for name in interfaces:
        files = sysfs.get(name)
        if files is None:
            rows.append({"interface": name, "present": False, "state": "missing", "speed_mbps": None, "mtu": None,
                         "addresses": []})
            continue
        try:
            speed: int | None = int(files.get("speed", "").strip())
        except ValueError:
            speed = None
        if speed is not None and speed <= 0:
            speed = None
        mtu = files.get("mtu", "").strip()
        rows.append({"interface": name, "present": True, "state": files.get("operstate", "unknown").strip(),
                     "speed_mbps": speed, "mtu": int(mtu) if mtu.isdigit() else None,
                     "addresses": addrs.get(name, [])})
    return rows


def kv_usage(metrics: str) -> float | None:
    """The KV cache usage (0..1) from vLLM's Prometheus text, averaged over its series; None when absent."""
    values = []
    for line in metrics.splitlines():
        m = _METRIC_LINE.match(line.strip())
        if m and m.group("name") in KV_METRICS:
            try:
                values.append(float(m.group("value")))
            except ValueError:
                continue
    return sum(values) / len(values) if values else None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes = s // 60
    return f"{days}d{hours:02d}h" if days else (f"{hours}h{minutes:02d}m" if hours else f"{minutes}m")


def _gib(value: Any) -> str:
    return f"{int(value) / 2**30:.1f}" if isinstance(value, int) else "?"


def status_lines(nodes: Sequence[Mapping[str, Any]], head: Mapping[str, Any] | None = None,
                 switch_ports: Sequence[Mapping[str, Any]] | None = None,
                 floor_bytes: int = 0) -> list[str]:
    """The one screen: what serves where, then a line per node, then the switch ports.

    ``nodes``: ``{host, reachable, msg, status}`` where ``status`` is the module's answer (containers,
    mem_total_bytes, mem_available_bytes, uptime_seconds, twins). ``head``: ``{host, url, health, kv_usage,
    error}`` or None. ``switch_ports``: the switch diagnosis verdicts (node, port, status, ok, action) or None
    when the inventory has no switch; a ``{'error': ...}`` item says why they could not be read.
    """
    lines: list[str] = []
    vllm = [(n["host"], c) for n in nodes if n.get("reachable") for c in (n.get("status") or {}).get("containers", [])
            if c["kind"] == "vllm"]
    api = [(h, c) for h, c in vllm if c["role"] == "api"]
    if not vllm:
        lines.append("serving: nothing (no gb10 vLLM container on any node that answered)")
    else:
        models = sorted({c["model"] for _, c in vllm})
        images = sorted({c["image"] for _, c in vllm})
        first = api[0][1] if api else vllm[0][1]
        hosts = sorted({h for h, _ in vllm})
        layout = f"TP={first['tensor_parallel_size']} PP={first['pipeline_parallel_size']} on {len(hosts)} node(s)"
        lines.append(f"serving: {', '.join(models)} | image {', '.join(images)} | {layout}"
                     + (f" | max_model_len {first['max_model_len']}" if first.get("max_model_len") else ""))
        if head:
            if head.get("error"):
                health = f"unhealthy ({head['error']})"
            else:
                health = "healthy" if head.get("health") == 200 else f"unhealthy (HTTP {head.get('health')})"
            kv = head.get("kv_usage")
            lines.append(f"endpoint: {head.get('url')} on {head.get('host')}: {health}"
                         + (f" | KV cache in use {kv * 100:.1f} %" if isinstance(kv, float) else " | KV in use ?"))
        down = [f"{h} ({c['role']}: {c['state']})" for h, c in vllm if c["state"] != "running"]
        if down:
            lines.append("not running: " + ", ".join(down))
    for n in nodes:
        host = n["host"]
        if not n.get("reachable"):
            lines.append(f"{host}: UNREACHABLE ({n.get('msg') or 'no answer'})")
            continue
        st = n.get("status") or {}
        avail = st.get("mem_available_bytes")
        low = isinstance(avail, int) and floor_bytes and avail < floor_bytes
        parts = [f"{host}: up {_duration(st.get('uptime_seconds'))}",
                 f"MemAvailable {_gib(avail)} of {_gib(st.get('mem_total_bytes'))} GiB"
                 + (" (BELOW THE FLOOR)" if low else "")]
        for c in st.get("containers", []):
            parts.append(f"{c['name']} {c['kind']}/{c['role']} {c['state']} restarts {c['restarts']}")
        twins = []
        for t in st.get("twins", []):
            speed = f"{t['speed_mbps'] // 1000}G" if t.get("speed_mbps") else "speed ?"
            twins.append(f"{t['interface']} {t['state']} {speed} mtu {t['mtu'] or '?'}"
                         + (f" {','.join(t['addresses'])}" if t.get("addresses") else " no address"))
        if twins:
            parts.append("twins " + "; ".join(twins))
        lines.append(" | ".join(parts))
    if switch_ports is not None:
        for p in switch_ports:
            if "error" in p:
                lines.append(f"switch: not read ({p['error']})")
                continue
            lines.append(f"switch {p.get('port')} ({p.get('node')}): {p.get('status')}"
                         + ("" if p.get("ok") else f": {p.get('action', '')}"))
    return lines
