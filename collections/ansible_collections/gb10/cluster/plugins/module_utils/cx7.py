"""ConnectX-7 discovery from sysfs: RoCE device -> netdev, RoCE v2 IPv4 GID index, link state.

Plain Python, no Ansible imports (unit-tested with pytest against fixture trees laid out like a
node's ``/sys``). Everything is read from files; nothing is executed.

Layout read (``<root>`` is ``/sys`` on a node)::

    <root>/class/infiniband/<dev>/device/net/<netdev>/         what ibdev2netdev prints
    <root>/class/infiniband/<dev>/ports/<p>/state              "4: ACTIVE"
    <root>/class/infiniband/<dev>/ports/<p>/phys_state         "5: LinkUp"
    <root>/class/infiniband/<dev>/ports/<p>/gids/<i>           "0000:0000:0000:0000:0000:ffff:c0a8:640b"
    <root>/class/infiniband/<dev>/ports/<p>/gid_attrs/types/<i> "RoCE v2" (EINVAL for an empty slot)
    <root>/class/net/<netdev>/{operstate,mtu,speed}            speed is -1 / EINVAL while the link is down

The RoCE v2 IPv4 GID index is NOT stable (3 -> 4 after link or netplan events), which is why it is
derived here at run time and never pinned in NCCL_IB_GID_INDEX.
"""
from __future__ import annotations

import ipaddress
import os
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils.systemctl import parse_show

ROCE_V2 = "RoCE v2"


def _read(path: str) -> str | None:
    """Return the stripped content of a sysfs file, or None when it is absent or unreadable.

    Real sysfs answers EINVAL for empty GID type slots and for the speed of a down link.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _numeric_sorted(names: list[str]) -> list[str]:
    return sorted((name for name in names if name.isdigit()), key=int)


def gid_to_ipv4(gid: str | None) -> str | None:
    """Return ``a.b.c.d`` when ``gid`` is an IPv4-mapped address (``::ffff:a.b.c.d``), else None."""
    if not gid:
        return None
    try:
        address = ipaddress.IPv6Address(gid.strip())
    except ValueError:
        return None
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else None


def parse_port_state(text: str | None) -> str | None:
    """``"4: ACTIVE"`` -> ``"ACTIVE"``; ``"5: LinkUp"`` -> ``"LinkUp"``."""
    if text is None:
        return None
    _, _, name = text.partition(":")
    return (name or text).strip() or None


def netdev_info(sysfs_root: str, netdev: str) -> dict[str, Any]:
    """State of one netdev from ``<root>/class/net/<netdev>``; ``exists`` False when absent."""
    base = os.path.join(sysfs_root, "class", "net", netdev)
    exists = os.path.isdir(base)
    speed = _read_int(os.path.join(base, "speed")) if exists else None
    if speed is not None and speed < 0:
        speed = None
    return {
        "name": netdev,
        "exists": exists,
        "operstate": _read(os.path.join(base, "operstate")) if exists else None,
        "mtu": _read_int(os.path.join(base, "mtu")) if exists else None,
        "speed": speed,
    }


def port_gids(port_dir: str) -> list[dict[str, Any]]:
    """Every populated GID slot of a port: index, gid, type, ipv4 (None unless IPv4-mapped)."""
    rows: list[dict[str, Any]] = []
    gids_dir = os.path.join(port_dir, "gids")
    for name in _numeric_sorted(_listdir(gids_dir)):
        gid = _read(os.path.join(gids_dir, name))
        if gid is None:
            continue
        try:
            if ipaddress.IPv6Address(gid) == ipaddress.IPv6Address("::"):
                continue
        except ValueError:
            continue
        rows.append({
            "index": int(name),
            "gid": gid,
            "type": _read(os.path.join(port_dir, "gid_attrs", "types", name)),
            "ipv4": gid_to_ipv4(gid),
        })
    return rows


def roce_v2_ipv4(gids: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The RoCE v2 GIDs that carry an IPv4 address, lowest index first (what NCCL would select)."""
    return [
        {"index": row["index"], "ipv4": row["ipv4"]}
        for row in gids
        if row["type"] == ROCE_V2 and row["ipv4"] is not None
    ]


def device_info(sysfs_root: str, device: str) -> list[dict[str, Any]]:
    """One record per port of an RDMA device (ConnectX-7 exposes one port per function)."""
    dev_dir = os.path.join(sysfs_root, "class", "infiniband", device)
    netdevs = _listdir(os.path.join(dev_dir, "device", "net"))
    netdev = netdevs[0] if netdevs else None
    net = netdev_info(sysfs_root, netdev) if netdev else None
    records: list[dict[str, Any]] = []
    for port in _numeric_sorted(_listdir(os.path.join(dev_dir, "ports"))):
        port_dir = os.path.join(dev_dir, "ports", port)
        state = parse_port_state(_read(os.path.join(port_dir, "state")))
        v2 = roce_v2_ipv4(port_gids(port_dir))
        up = "Up" if state == "ACTIVE" else "Down"
        records.append({
            "rdma_device": device,
            "port": int(port),
            "netdev": netdev,
            "state": state,
            "phys_state": parse_port_state(_read(os.path.join(port_dir, "phys_state"))),
            "link_layer": _read(os.path.join(port_dir, "link_layer")),
            "operstate": net["operstate"] if net else None,
            "mtu": net["mtu"] if net else None,
            "speed": net["speed"] if net else None,
            "roce_v2_ipv4_gid_index": v2[0]["index"] if v2 else None,
            "roce_v2_ipv4_gids": v2,
            "ibdev2netdev": f"{device} port {port} ==> {netdev or '(none)'} ({up})",
        })
    return records


def discover(sysfs_root: str = "/sys", interfaces: list[str] | None = None) -> dict[str, Any]:
    """Everything the roles need about the CX7 ports of one node.

    Returns ``devices`` (one record per RDMA port), ``by_netdev`` and ``by_rdma_device`` (the same
    records keyed), ``interfaces`` (state of the requested netdevs, RDMA or not, so the lab without
    RDMA still reports its twins) and ``present`` (any RDMA device with a netdev). A node whose CX7
    netdevs have not appeared yet (hot-plug, no cable) gives empty results, not an error.
    """
    devices: list[dict[str, Any]] = []
    for device in _listdir(os.path.join(sysfs_root, "class", "infiniband")):
        devices.extend(device_info(sysfs_root, device))
    by_netdev = {rec["netdev"]: rec for rec in devices if rec["netdev"]}
    by_rdma: dict[str, dict[str, Any]] = {}
    for rec in devices:
        by_rdma.setdefault(rec["rdma_device"], rec)
    wanted: dict[str, dict[str, Any]] = {}
    for name in interfaces or []:
        info = netdev_info(sysfs_root, name)
        rec = by_netdev.get(name)
        info["rdma_device"] = rec["rdma_device"] if rec else None
        info["roce_v2_ipv4_gid_index"] = rec["roce_v2_ipv4_gid_index"] if rec else None
        wanted[name] = info
    return {
        "devices": devices,
        "by_netdev": by_netdev,
        "by_rdma_device": by_rdma,
        "interfaces": wanted,
        "present": bool(by_netdev),
        "ibdev2netdev": [rec["ibdev2netdev"] for rec in devices],
    }


def parse_active_state(text: str) -> str:
    """The value of `systemctl show -p ActiveState <unit>` output (``ActiveState=active``); '' when absent."""
    return parse_show(text).get("ActiveState", "")


def networkmanager_view(active_state: str, connections: dict[str, str], netplan_file: str | None,
                        netplan_exists: bool) -> dict[str, Any]:
    """What the cx7_fabric role reads about NetworkManager, added to the CX7 facts.

    ``nm_active_state``: NetworkManager.service's ActiveState (the backend choice); ``nm_connections``:
    the connection each requested twin runs now ('' for none, read only while NetworkManager is
    active); ``netplan_file_exists``: whether the twins' netplan file is there (it would give them a
    second profile), null when no file was asked about.
    """
    return {
        "nm_active_state": active_state,
        "nm_connections": dict(connections),
        "netplan_file_exists": netplan_exists if netplan_file else None,
    }
