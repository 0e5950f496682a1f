"""Fabric validation logic: jumbo-ping matrix, address/MTU/link checks, parsers, the report.

Plain Python, no Ansible imports. The module ``gb10_fabric_check`` runs :func:`run_node_checks` on a
node (one task per node: the pings of all twins and peers run in parallel threads), and the module
``gb10_fabric_report`` merges every node's checks on the controller with :func:`summarize`.

A check is a dict ``{node, twin, peer, check, status, detail}``; ``status`` is ``passed``,
``failed`` or ``skipped``. Hardware-only checks on a node without the hardware are ``skipped`` with
the reason in ``detail``, never ``passed``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"
STATUSES = (PASSED, FAILED, SKIPPED)

# Checks about one node's own twin come first in a failure message: they are usually the cause of
# the ping failures seen from the other nodes.
LOCAL_CHECKS = ("link", "address", "mtu", "link_speed")
CHECK_ORDER = LOCAL_CHECKS + ("jumbo_ping", "ib_write_bw", "nccl_all_gather")

Runner = Callable[[list[str]], "tuple[int, str, str]"]


def check(node: str, twin: str | None, peer: str | None, name: str, status: str,
          detail: str) -> dict[str, Any]:
    """One report row."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    return {"node": node, "twin": twin, "peer": peer, "check": name, "status": status,
            "detail": detail}


def strip_prefix(cidr: str) -> str:
    """``192.168.100.11/24`` -> ``192.168.100.11``."""
    return cidr.split("/", 1)[0].strip()


# --- parsers -------------------------------------------------------------------------------------

_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_PING_RTT = re.compile(r"= [\d.]+/([\d.]+)/[\d.]+")
_PING_MTU = re.compile(r"(message too long|Message too long)(?:, mtu=(\d+))?")


def ping_command(interface: str, address: str, size: int = 8972, count: int = 2,
                 timeout: int = 2) -> list[str]:
    """``ping -M do -s 8972 -c 2 -W 2 -I <twin> <peer>``: a DF jumbo frame through that twin."""
    return ["ping", "-M", "do", "-s", str(size), "-c", str(count), "-W", str(timeout),
            "-I", interface, address]


def parse_ping(rc: int, stdout: str, stderr: str) -> tuple[bool, str]:
    """(passed, detail) from a ping run: every probe answered, else what went wrong."""
    text = f"{stdout}\n{stderr}"
    too_long = _PING_MTU.search(text)
    summary = _PING_SUMMARY.search(text)
    if too_long:
        mtu = f", local mtu={too_long.group(2)}" if too_long.group(2) else ""
        return False, f"message too long: the frame does not fit this twin's MTU{mtu}"
    if summary:
        sent, received = int(summary.group(1)), int(summary.group(2))
        rtt = _PING_RTT.search(text)
        avg = f", rtt avg {rtt.group(1)} ms" if rtt else ""
        if rc == 0 and sent > 0 and received == sent:
            return True, f"{received}/{sent} received{avg}"
        return False, f"{received}/{sent} received (no jumbo frame back: peer down, wrong address or MTU < 9000 on the path)"
    last = (stderr.strip() or stdout.strip() or f"exit code {rc}").splitlines()[-1]
    return False, f"ping failed: {last}"


def parse_ip_addr_json(text: str) -> list[str]:
    """IPv4 ``a.b.c.d/n`` addresses from ``ip -j -4 addr show dev <if>``."""
    try:
        data = json.loads(text or "[]")
    except ValueError:
        return []
    found: list[str] = []
    for link in data if isinstance(data, list) else []:
        for info in link.get("addr_info", []) or []:
            if info.get("family") == "inet" and info.get("local"):
                found.append(f"{info['local']}/{info.get('prefixlen', 32)}")
    return found


def parse_ethtool_speed(text: str) -> int | None:
    """``Speed: 200000Mb/s`` -> 200000; None for ``Unknown!`` or no line."""
    match = re.search(r"^\s*Speed:\s*(\d+)\s*Mb/s", text or "", re.MULTILINE)
    return int(match.group(1)) if match else None


def parse_ib_write_bw(text: str) -> float | None:
    """Average bandwidth (Gb/s with ``--report_gbits``) from the last result row of ib_write_bw.

    Result rows: ``#bytes #iterations BW peak[Gb/sec] BW average[Gb/sec] MsgRate[Mpps]``.
    """
    value = None
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) >= 4 and all(re.fullmatch(r"[\d.]+", f) for f in fields[:4]):
            value = float(fields[3])
    return value


def parse_nccl_busbw(text: str) -> float | None:
    """``# Avg bus bandwidth    : 22.6841`` (GB/s) from nccl-tests, None when absent."""
    match = re.search(r"Avg bus bandwidth\s*:\s*([\d.]+)", text or "")
    return float(match.group(1)) if match else None


# --- per-node checks -----------------------------------------------------------------------------

def interface_checks(node: str, twin: str, expected_cidr: str, expected_mtu: int,
                     observed: dict[str, Any]) -> list[dict[str, Any]]:
    """link (exists and up), address (the inventory CIDR is on the twin), mtu."""
    rows = []
    if not observed.get("exists"):
        reason = "netdev absent (CX7 not cabled yet? the netdevs appear once a cable is linked)"
        rows.append(check(node, twin, None, "link", FAILED, reason))
        rows.append(check(node, twin, None, "address", SKIPPED, "netdev absent"))
        rows.append(check(node, twin, None, "mtu", SKIPPED, "netdev absent"))
        return rows
    operstate = observed.get("operstate")
    rows.append(check(node, twin, None, "link",
                      PASSED if operstate == "up" else FAILED, f"operstate {operstate}"))
    addresses = list(observed.get("addresses") or [])
    found = ", ".join(addresses) or "none"
    rows.append(check(node, twin, None, "address",
                      PASSED if expected_cidr in addresses else FAILED,
                      f"expected {expected_cidr}, found {found}"))
    mtu = observed.get("mtu")
    rows.append(check(node, twin, None, "mtu", PASSED if mtu == expected_mtu else FAILED,
                      f"expected {expected_mtu}, found {mtu}"))
    return rows


def speed_check(node: str, twin: str, expected: int, ethtool_text: str | None,
                skip_reason: str | None) -> dict[str, Any]:
    """link_speed from ``ethtool <twin>``; skipped (with the reason) without the hardware."""
    if skip_reason:
        return check(node, twin, None, "link_speed", SKIPPED, skip_reason)
    speed = parse_ethtool_speed(ethtool_text or "")
    if speed is None:
        return check(node, twin, None, "link_speed", FAILED,
                     f"expected {expected} Mb/s, ethtool shows no speed (link down?)")
    return check(node, twin, None, "link_speed", PASSED if speed >= expected else FAILED,
                 f"expected {expected} Mb/s, found {speed} Mb/s")


def threshold_check(node: str, twin: str | None, peer: str | None, name: str,
                    value: float | None, minimum: float, unit: str,
                    skip_reason: str | None = None, output: str = "") -> dict[str, Any]:
    """A bandwidth against its minimum (ib_write_bw in Gb/s, nccl bus bandwidth in GB/s)."""
    if skip_reason:
        return check(node, twin, peer, name, SKIPPED, skip_reason)
    if value is None:
        tail = (output or "").strip().splitlines()[-1:] or ["no output"]
        return check(node, twin, peer, name, FAILED, f"no result parsed: {tail[0]}")
    return check(node, twin, peer, name, PASSED if value >= minimum else FAILED,
                 f"{value:g} {unit} (minimum {minimum:g} {unit})")


def run_node_checks(node: str, twins: list[dict[str, Any]], mtu: int,
                    read_interface: Callable[[str], dict[str, Any]], run: Runner,
                    ping_size: int = 8972, ping_count: int = 2, ping_timeout: int = 2,
                    parallel: int = 16, link_speed: int = 200000,
                    hardware_skip_reason: str | None = None) -> list[dict[str, Any]]:
    """Every check of one node: per twin link/address/mtu/link_speed, then the jumbo pings to every
    peer on that twin, run ``parallel`` at a time (so 7 peers x 2 twins take about one ping's time).

    ``twins``: ``[{interface, address (CIDR), peers: [{node, address}]}]``.
    ``read_interface(name)`` returns ``{exists, operstate, mtu, addresses}``.
    ``run(argv)`` returns ``(rc, stdout, stderr)``.
    """
    rows: list[dict[str, Any]] = []
    pings: list[tuple[str, str, str]] = []
    for twin in twins:
        name = twin["interface"]
        observed = read_interface(name)
        rows.extend(interface_checks(node, name, twin["address"], mtu, observed))
        if link_speed:
            ethtool = None
            if not hardware_skip_reason and observed.get("exists"):
                ethtool = run(["ethtool", name])[1]
            rows.append(speed_check(node, name, link_speed, ethtool,
                                    hardware_skip_reason or (None if observed.get("exists")
                                                             else "netdev absent")))
        for peer in twin.get("peers", []):
            pings.append((name, peer["node"], strip_prefix(peer["address"])))

    def _ping(item: tuple[str, str, str]) -> dict[str, Any]:
        name, peer, address = item
        rc, out, err = run(ping_command(name, address, ping_size, ping_count, ping_timeout))
        ok, detail = parse_ping(rc, out, err)
        return check(node, name, peer, "jumbo_ping", PASSED if ok else FAILED,
                     f"{address} size {ping_size} DF: {detail}")

    if pings:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(pings)))) as pool:
            rows.extend(pool.map(_ping, pings))
    return rows


# --- the report ----------------------------------------------------------------------------------

def _order(row: dict[str, Any]) -> tuple[Any, ...]:
    rank = CHECK_ORDER.index(row["check"]) if row["check"] in CHECK_ORDER else len(CHECK_ORDER)
    return (0 if row.get("peer") is None else 1, rank, row.get("node") or "",
            row.get("twin") or "", row.get("peer") or "")


def describe(row: dict[str, Any]) -> str:
    """``gx10-3 twin enP2p1s0f1np1: mtu failed (expected 9000, found 1500)``."""
    where = row["node"]
    if row.get("twin"):
        where += f" twin {row['twin']}"
    if row.get("peer"):
        where += f" -> {row['peer']}"
    return f"{where}: {row['check']} {row['status']} ({row['detail']})"


def summarize(checks: list[dict[str, Any]], max_listed: int = 12) -> dict[str, Any]:
    """Counts per status and per check, the failed rows (cause first) and one message naming the
    node, the twin and the failed check."""
    counts = {status: 0 for status in STATUSES}
    per_check: dict[str, dict[str, int]] = {}
    for row in checks:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        per_check.setdefault(row["check"], {s: 0 for s in STATUSES})[row["status"]] += 1
    failed = sorted((row for row in checks if row["status"] == FAILED), key=_order)
    skipped = sorted((row for row in checks if row["status"] == SKIPPED), key=_order)
    if failed:
        listed = "; ".join(describe(row) for row in failed[:max_listed])
        more = f"; and {len(failed) - max_listed} more" if len(failed) > max_listed else ""
        message = (f"Fabric check FAILED: {len(failed)} of {len(checks)} checks failed: "
                   f"{listed}{more}. Fix the first one (usually the cause of the others) and re-run "
                   f"playbooks/validate_fabric.yml.")
    else:
        message = (f"Fabric check passed: {counts[PASSED]} passed, {counts[SKIPPED]} skipped "
                   f"(hardware-only checks on a node without the hardware are SKIPPED, not passed).")
    lines = [f"{name}: " + ", ".join(f"{n} {status}" for status, n in by.items() if n)
             for name, by in sorted(per_check.items(),
                                    key=lambda kv: CHECK_ORDER.index(kv[0])
                                    if kv[0] in CHECK_ORDER else len(CHECK_ORDER))]
    return {
        "ok": not failed,
        "total": len(checks),
        "lines": lines,
        "counts": counts,
        "per_check": per_check,
        "failed": failed,
        "skipped_reasons": sorted({f"{row['check']}: {row['detail']}" for row in skipped}),
        "message": message,
    }


def build_report(checks: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON document written under artifacts/fabric/."""
    summary = summarize(checks)
    return {
        "meta": meta,
        "summary": {key: summary[key] for key in ("ok", "total", "counts", "per_check", "message")},
        "checks": sorted(checks, key=lambda r: (r["node"] or "", r["twin"] or "",
                                                CHECK_ORDER.index(r["check"])
                                                if r["check"] in CHECK_ORDER else 99,
                                                r["peer"] or "")),
    }
