"""What the rack's containers and nodes carry for RDMA and NCCL (plain Python, no Ansible).

- :func:`node_fabric`: nccl_env's rules for one node (the socket interface, the node's address on it,
  the RoCE devices), from the node's variables. The nodes work (roles/nccl_env) and the serving plan
  (serving.py) both call it, so /etc/gb10/serving.env and the containers' environment cannot disagree.
- :func:`serving_env_lines`: the KEY=value lines of /etc/gb10/serving.env (and :func:`nccl_conf_lines`).
- :func:`rack_env`: the environment every GPU container of the rack carries (serving.env's keys plus
  subnet-aware routing, the RoCE traffic class, the buffer size for 4+ nodes through a switch, NCCL's
  INFO log for the transport check).
- :func:`roce_class`: the RoCE class the switch role prioritises (DSCP, priority, CNP), and NCCL_IB_TC
  derived from it, so NCCL and the switch cannot disagree.
- :func:`qos_items` / :func:`parse_mlnx_qos` / :func:`qos_changes`: the host-side marking of the twins
  (trust DSCP, PFC on the RoCE priority, ECN, CNP DSCP) as commands, and what differs on a node.
- :func:`nccl_transport`: which transport NCCL used, read from its INFO log lines (NET/IB or NET/Socket).
Every problem is one sentence: what is wrong, where, what to do.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# nccl_env's defaults (roles/nccl_env/defaults/main.yml says the same; a unit test keeps them equal).
NCCL_ENV_DEFAULTS: dict[str, Any] = {
    "nccl_env_socket_ifname": "",
    "nccl_env_node_ip": "",
    "nccl_env_ib_hca": "",
    "nccl_env_ignore_cpu_affinity": 1,
    "nccl_env_ray_memory_monitor_refresh_ms": 0,
    "nccl_env_nccl_extra": {},
    "nccl_env_extra": {},
}
DEFAULT_MGMT_INTERFACE = "enP7s7"
SOCKET_VARS = ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "UCX_NET_DEVICES",
               "OMPI_MCA_btl_tcp_if_include")
FORBIDDEN = ("NCCL_IB_GID_INDEX",)
# ECN field of the IP TOS byte that NCCL_IB_TC carries: ECT(0), as in MikroTik's RoCEv2 recipe (DSCP 26 -> 106).
ECN_ECT0 = 2


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def node_fabric(host: str, hv: Mapping[str, Any]) -> dict[str, Any]:
    """``{host, socket_ifname, node_ip, ib_hca, rdma_devices, interfaces, errors}`` for one node.

    ``hv`` holds the node's variables: gb10_fabric_twins, gb10_fabric_addresses, gb10_mgmt_interface,
    ansible_host and any nccl_env_* set in the inventory (empty means: derive it, as nccl_env does).
    """
    twins = [t for t in (hv.get("gb10_fabric_twins") or []) if isinstance(t, Mapping)]
    addrs = hv.get("gb10_fabric_addresses") or {}
    addrs = addrs if isinstance(addrs, Mapping) else {}
    mgmt_if = _str(hv.get("gb10_mgmt_interface")) or DEFAULT_MGMT_INTERFACE
    first = _str(twins[0].get("interface")) if twins else ""
    ifname = _str(hv.get("nccl_env_socket_ifname")) or first
    ip = _str(hv.get("nccl_env_node_ip"))
    if not ip:
        if ifname and ifname in addrs:
            ip = _str(addrs[ifname]).split("/")[0]
        elif ifname and ifname == mgmt_if:
            ip = _str(hv.get("ansible_host"))
    devices = [_str(t.get("rdma_device")) for t in twins if t.get("rdma_device")]
    hca = _str(hv.get("nccl_env_ib_hca")) or ",".join(devices)
    errors: list[str] = []
    if not ip:
        errors.append(
            f"{host}: no IP for nccl_env_socket_ifname={ifname or '(none)'}: it is neither a twin in "
            "gb10_fabric_addresses nor gb10_mgmt_interface; set nccl_env_socket_ifname to one of them or set "
            "nccl_env_node_ip."
        )
    extras = {**dict(hv.get("nccl_env_nccl_extra") or {}), **dict(hv.get("nccl_env_extra") or {})}
    for key in FORBIDDEN:
        if key in extras:
            errors.append(
                f"{host}: {key} is set in nccl_env_nccl_extra/nccl_env_extra: remove it; the RoCE v2 IPv4 GID "
                "index moves (3 -> 4) and a pin fails with ibv_modify_qp errors."
            )
    if not hca:
        errors.append(f"{host}: nccl_env_ib_hca is empty: list the RoCE devices of both twins in gb10_fabric_twins.")
    return {
        "host": str(host),
        "socket_ifname": ifname,
        "node_ip": ip,
        "ib_hca": hca,
        "rdma_devices": [d for d in hca.split(",") if d],
        "interfaces": [_str(t.get("interface")) for t in twins if t.get("interface")],
        "errors": errors,
    }


def _setting(hv: Mapping[str, Any], key: str) -> Any:
    value = hv.get(key)
    return NCCL_ENV_DEFAULTS[key] if value is None or value == "" else value


def serving_env_lines(fabric: Mapping[str, Any], hv: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The KEY=value lines of /etc/gb10/serving.env for a node, in the file's order."""
    ifname = str(fabric["socket_ifname"])
    ip = str(fabric["node_ip"])
    lines = [(key, ifname) for key in SOCKET_VARS]
    lines += [
        ("NCCL_IB_HCA", str(fabric["ib_hca"])),
        ("NCCL_IGNORE_CPU_AFFINITY", str(_setting(hv, "nccl_env_ignore_cpu_affinity"))),
        ("VLLM_HOST_IP", ip),
        ("RAY_NODE_IP_ADDRESS", ip),
        ("RAY_OVERRIDE_NODE_IP_ADDRESS", ip),
        ("RAY_memory_monitor_refresh_ms", str(_setting(hv, "nccl_env_ray_memory_monitor_refresh_ms"))),
    ]
    extra = {**dict(_setting(hv, "nccl_env_nccl_extra")), **dict(_setting(hv, "nccl_env_extra"))}
    lines += [(str(k), str(v)) for k, v in sorted(extra.items())]
    return lines


def nccl_conf_lines(fabric: Mapping[str, Any], hv: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The KEY=value lines of /etc/nccl.conf for a node."""
    lines = [
        ("NCCL_SOCKET_IFNAME", str(fabric["socket_ifname"])),
        ("NCCL_IB_HCA", str(fabric["ib_hca"])),
        ("NCCL_IGNORE_CPU_AFFINITY", str(_setting(hv, "nccl_env_ignore_cpu_affinity"))),
    ]
    return lines + [(str(k), str(v)) for k, v in sorted(dict(_setting(hv, "nccl_env_nccl_extra")).items())]


# ------------------------------------------------------------------------------------------ RoCE class
def _int_in(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if low <= number <= high else None


ROCE_KEYS = {
    # ours: (the switch role's variable, range)
    "dscp": ("switch_qos_roce_dscp", 63),
    "priority": ("switch_qos_roce_traffic_class", 7),
    "cnp_dscp": ("switch_qos_cnp_dscp", 63),
    "cnp_priority": ("switch_qos_cnp_traffic_class", 7),
}


def roce_class(overrides: Mapping[str, Any], switch_vars: Mapping[str, Any],
               switch_defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The RoCE class the switch role prioritises, as the nodes must mark it.

    Each value is, in order: ``overrides`` (roce_qos_* set in the inventory), the switch host's variables
    (switch_qos_* set in the inventory), the switch role's defaults (roles/switch/defaults/main.yml).
    ``tc`` is NCCL_IB_TC: the IP TOS byte, DSCP << 2 with ECT(0) (26 -> 106). ``enabled`` follows
    switch_qos_enabled and the override ``enabled``. ``errors`` holds one sentence per bad value.
    """
    out: dict[str, Any] = {"errors": [], "source": {}}
    for key, (switch_key, high) in ROCE_KEYS.items():
        for source, table, name in (("roce_qos_" + key, overrides, key),
                                    ("the switch's " + switch_key, switch_vars, switch_key),
                                    ("roles/switch/defaults " + switch_key, switch_defaults, switch_key)):
            raw = table.get(name)
            if raw is None or raw == "":
                continue
            value = _int_in(raw, 0, high)
            if value is None:
                out["errors"].append(f"{source} is {raw!r}; give a whole number from 0 to {high}.")
            out[key] = value
            out["source"][key] = source
            break
        else:
            out[key] = None
            out["errors"].append(f"No {key} for the RoCE class: set {switch_key} (switch role) or roce_qos_{key}.")
    enabled = True
    for table, name in ((switch_vars, "switch_qos_enabled"), (switch_defaults, "switch_qos_enabled")):
        if table.get(name) is not None:
            enabled = _truthy(table.get(name))
            break
    if overrides.get("enabled") is not None and overrides.get("enabled") != "":
        enabled = enabled and _truthy(overrides.get("enabled"))
    out["enabled"] = enabled
    out["tc"] = (out["dscp"] << 2 | ECN_ECT0) if isinstance(out.get("dscp"), int) else None
    return out


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return bool(value)


# ------------------------------------------------------------------------------- container environment
def rack_env(fabric: Mapping[str, Any], hv: Mapping[str, Any], *, nodes: int, roce: Mapping[str, Any] | None,
             nccl: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The environment a GPU container of the rack carries on this node (vLLM and Ray alike).

    serving.env's keys (same values: the same function computes both), then:
    - NCCL_IB_SUBNET_AWARE_ROUTING=1 when NCCL_IB_HCA lists two or more devices (each twin on its own /24);
    - NCCL_IB_TC from the switch's RoCE class (when the switch role's QoS is on);
    - NCCL_BUFFSIZE for ``nodes`` >= nccl.buffsize_min_nodes through a switch (nccl.switch);
    - NCCL_DEBUG / NCCL_DEBUG_SUBSYS so the transport NCCL picked is in the log (nccl_transport()).
    """
    nccl = dict(nccl or {})
    env = dict(serving_env_lines(fabric, hv))
    if len(fabric.get("rdma_devices") or []) >= 2:
        env["NCCL_IB_SUBNET_AWARE_ROUTING"] = "1"
    if roce and roce.get("enabled") and roce.get("tc") is not None:
        env["NCCL_IB_TC"] = str(roce["tc"])
    buffsize = nccl.get("buffsize")
    if buffsize and nccl.get("switch") and nodes >= int(nccl.get("buffsize_min_nodes") or 4):
        env["NCCL_BUFFSIZE"] = str(buffsize)
    if nccl.get("debug"):
        env["NCCL_DEBUG"] = str(nccl["debug"])
        if nccl.get("debug_subsys"):
            env["NCCL_DEBUG_SUBSYS"] = str(nccl["debug_subsys"])
    return env


# ------------------------------------------------------------------------------------ host-side marking
QOS_TOOL = "mlnx_qos"


def qos_items(interfaces: Sequence[str], roce: Mapping[str, Any], tool: str = QOS_TOOL,
              sysfs_root: str = "/sys") -> list[dict[str, Any]]:
    """What each twin must carry for the switch's RoCE class, as one item per setting.

    Items are ``{interface, setting, want, argv}`` for the mlx5 DCB settings (trust DSCP, PFC on the RoCE
    priority only, DSCP -> priority) and ``{interface, setting, want, path}`` for the ECN/CNP sysfs files
    of the mlx5 driver (``argv`` is then ``sh -c 'echo <want> > <path>'``, for the render).
    """
    prio = int(roce["priority"])
    dscp = int(roce["dscp"])
    pfc = ",".join("1" if p == prio else "0" for p in range(8))
    items: list[dict[str, Any]] = []
    for iface in interfaces:
        net = f"{sysfs_root}/class/net/{iface}/ecn"
        items += [
            {"interface": iface, "setting": "trust", "want": "dscp", "argv": [tool, "-i", iface, "--trust", "dscp"]},
            {"interface": iface, "setting": "pfc", "want": pfc, "argv": [tool, "-i", iface, "--pfc", pfc]},
            {"interface": iface, "setting": "dscp2prio", "want": f"{dscp}:{prio}",
             "argv": [tool, "-i", iface, "--dscp2prio", f"set,{dscp},{prio}"]},
            {"interface": iface, "setting": "ecn_np", "want": "1", "path": f"{net}/roce_np/enable/{prio}"},
            {"interface": iface, "setting": "ecn_rp", "want": "1", "path": f"{net}/roce_rp/enable/{prio}"},
        ]
        if roce.get("cnp_dscp") is not None:
            items.append({"interface": iface, "setting": "cnp_dscp", "want": str(int(roce["cnp_dscp"])),
                          "path": f"{net}/roce_np/cnp_dscp"})
        if roce.get("cnp_priority") is not None:
            items.append({"interface": iface, "setting": "cnp_802p_prio", "want": str(int(roce["cnp_priority"])),
                          "path": f"{net}/roce_np/cnp_802p_prio"})
    for item in items:
        if "path" in item:
            item["argv"] = ["sh", "-c", f"echo {item['want']} > {item['path']}"]
    return items


_TRUST_RE = re.compile(r"Priority trust state:\s*(\w+)", re.I)
_PFC_RE = re.compile(r"^\s*enabled\s+((?:[01]\s*){8})", re.M)
_PRIO_RE = re.compile(r"prio:\s*(\d+)\s+dscp:\s*([\d,\s]*)")


def parse_mlnx_qos(text: str) -> dict[str, Any]:
    """``mlnx_qos -i <if>`` (no settings) as ``{trust, pfc: 'a,b,...' | None, dscp2prio: {dscp: prio}}``."""
    trust = _TRUST_RE.search(text or "")
    pfc = _PFC_RE.search(text or "")
    mapping: dict[int, int] = {}
    for prio, dscps in _PRIO_RE.findall(text or ""):
        for d in re.findall(r"\d+", dscps):
            mapping[int(d)] = int(prio)
    return {
        "trust": trust.group(1).lower() if trust else None,
        "pfc": ",".join(pfc.group(1).split()) if pfc else None,
        "dscp2prio": mapping,
    }


def qos_changes(items: Sequence[Mapping[str, Any]], tool_state: Mapping[str, Mapping[str, Any]],
                files: Mapping[str, str | None]) -> tuple[list[dict[str, Any]], list[str]]:
    """The items whose value on the node differs from what is wanted, and notes for settings the
    driver does not offer (a sysfs file that is absent), given ``tool_state`` (interface -> parsed
    mlnx_qos) and ``files`` (path -> its content, None when absent)."""
    changes: list[dict[str, Any]] = []
    notes: list[str] = []
    for item in items:
        iface, setting, want = item["interface"], item["setting"], str(item["want"])
        if "path" in item:
            current = files.get(item["path"])
            if current is None:
                notes.append(f"{iface}: {item['path']} is absent (driver without this setting): {setting} not set")
                continue
            if current.strip() != want:
                changes.append(dict(item, current=current.strip()))
            continue
        state = tool_state.get(iface) or {}
        if setting == "trust":
            current = state.get("trust")
        elif setting == "pfc":
            current = state.get("pfc")
        else:
            dscp, prio = (int(x) for x in want.split(":"))
            mapped = (state.get("dscp2prio") or {}).get(dscp)
            current = None if mapped is None else f"{dscp}:{mapped}"
        if current != want:
            changes.append(dict(item, current=current))
    return changes, notes


# --------------------------------------------------------------------------------------- NCCL transport
# NCCL's INFO lines ("<host>:<pid>:<tid> [<dev>] NCCL INFO <message>"), possibly behind a Ray or vLLM
# prefix. What tells the transport: "Using network IB|Socket" (the net plugin NCCL picked), the
# "NET/IB : Using [0]dev:1/RoCE ..." device list (or "NET/IB : No device found."), and the channel
# lines "Channel 00/0 : 0[0] -> 1[0] [send] via NET/IB/0" or "... via NET/Socket/0".
_NCCL_LINE = re.compile(r"NCCL INFO (.*)$")
_USING_NET = re.compile(r"Using network (\S+)")
_VIA = re.compile(r"via NET/([A-Za-z]+)")
_IB_DEVS = re.compile(r"NET/IB\S* : Using (.*?)(?: ; OOB|$)")


def nccl_transport(text: str) -> dict[str, Any]:
    """Which transport NCCL used, from its INFO log lines.

    ``transport`` is ``ib`` (RoCE/InfiniBand verbs), ``socket`` (TCP sockets: the silent fallback),
    ``mixed`` (both seen) or None (no NCCL INFO line that tells: NCCL_DEBUG is not INFO, or NCCL never
    used the network). ``evidence`` holds up to four lines that decided it.
    """
    networks: list[str] = []
    via: dict[str, int] = {}
    devices: list[str] = []
    evidence: list[str] = []
    no_ib = False
    lines = 0
    for raw in (text or "").splitlines():
        m = _NCCL_LINE.search(raw)
        if not m:
            continue
        lines += 1
        msg = m.group(1).strip()
        used = _USING_NET.search(msg)
        if used:
            networks.append(used.group(1))
            evidence.append(msg)
        for kind in _VIA.findall(msg):
            via[kind] = via.get(kind, 0) + 1
            if via[kind] == 1:
                evidence.append(msg)
        devs = _IB_DEVS.search(msg)
        if devs and "No device" not in msg:
            devices += re.findall(r"\[\d+\](\S+?)(?::\d+)?/", devs.group(1))
        if re.search(r"NET/IB\S* : No device found", msg):
            no_ib = True
            evidence.append(msg)
    kinds = set()
    for name in networks:
        kinds.add("socket" if name.lower().startswith("socket") else "ib" if name.lower().startswith("ib") else name.lower())
    for name in via:
        kinds.add("socket" if name.lower().startswith("socket") else "ib" if name.lower().startswith("ib") else name.lower())
    if "socket" in kinds and "ib" in kinds:
        transport: str | None = "mixed"
    elif "socket" in kinds:
        transport = "socket"
    elif "ib" in kinds:
        transport = "ib"
    else:
        transport = None
    return {
        "transport": transport,
        "networks": sorted(set(networks)),
        "channels": via,
        "ib_devices": sorted(set(devices)),
        "ib_device_missing": no_ib,
        "nccl_lines": lines,
        "evidence": evidence[:4],
    }
