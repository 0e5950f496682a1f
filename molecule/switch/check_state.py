#!/usr/bin/env python3
"""Read the simulated switch over the API with librouteros and check what the switch role set.

    check_state.py --state-dir DIR --nodes 4|8 [--qos yes|no] [--admin disabled|renamed:NAME]
                                                  exit 0, or 1 with one line per problem
    check_state.py --state-dir DIR --dump         print a JSON snapshot (for check mode)
    check_state.py --state-dir DIR --break        change the configuration by hand (for the restore):
                                                  identity "broken", qsfp56-dd-1-1 back to mtu 1500
    check_state.py --state-dir DIR --drift        change one property in four places switch.yml writes
                                                  (mtu of qsfp56-dd-1-1, telnet enabled, MAC ping on,
                                                  queue 3 low-priority-group): a run must put them back

It trusts DIR/cert.pem, the lab CA or the simulator's self-signed certificate (lab/routeros_sim/tls.py).
"""
from __future__ import annotations

import argparse
import json
import ssl
import sys
from pathlib import Path

from librouteros import connect


def api_for(state_dir: Path):
    ctx = ssl.create_default_context(cafile=str(state_dir / "cert.pem"))
    ctx.check_hostname = False
    return connect(username=(state_dir / "username").read_text().strip(),
                   password=(state_dir / "password").read_text().strip(), host="127.0.0.1",
                   port=int((state_dir / "port").read_text()), ssl_wrapper=ctx.wrap_socket, timeout=10)


MENUS = [("system", "identity"), ("interface", "ethernet"), ("interface", "bridge"), ("interface", "bridge", "port"), ("ip", "address"),
         ("ip", "service"), ("interface", "ethernet", "switch"), ("interface", "ethernet", "switch", "port"),
         ("interface", "ethernet", "switch", "qos", "profile"),
         ("interface", "ethernet", "switch", "qos", "priority-flow-control"),
         ("interface", "ethernet", "switch", "qos", "port"),
         ("interface", "ethernet", "switch", "qos", "tx-manager", "queue"),
         ("interface", "ethernet", "switch", "qos", "settings"), ("file",), ("user",), ("tool", "mac-server"),
         ("tool", "mac-server", "mac-winbox"), ("tool", "mac-server", "ping"), ("ip", "neighbor", "discovery-settings"),
         ("tool", "bandwidth-server")]
VOLATILE = {"running", "uptime", "hw-offload", "slave", "actual-mtu", "l2mtu_bridge", "last-logged-in"}


def dump(api) -> dict:
    out = {}
    for menu in MENUS:
        rows = [{k: v for k, v in row.items() if k not in VOLATILE} for row in api.path(*menu)]
        out["/".join(menu)] = rows
    return out


def check(api, nodes: int, qos: bool, admin: str) -> list[str]:
    problems: list[str] = []
    lanes = (1,) if nodes == 4 else (1, 5)
    used = [f"qsfp56-dd-{c}-{lane}" for c in range(1, 5) for lane in lanes]
    masters = [f"qsfp56-dd-{c}-{lane}" for c in range(1, 5) for lane in (1, 5)]
    eth = {r["default-name"]: r for r in api.path("interface", "ethernet")}
    for port in masters:
        row = eth[port]
        # a master no node uses is configured but disabled (switch_ports_disable_unused)
        want = {"l2mtu": 9216, "mtu": 9000, "speed": "200G-baseCR4", "auto-negotiation": False,
                "fec-mode": "fec91", "disabled": port not in used}
        for key, value in want.items():
            if row.get(key) != value:
                problems.append(f"{port}: {key}={row.get(key)!r}, expected {value!r}")
    # the other sub-interfaces of the used lane groups stay enabled; the management port too; ether2 is off
    for port in [f"qsfp56-dd-{c}-{lane}" for c in range(1, 5) for lane in (2, 3, 4, 6, 7, 8)] + ["ether1"]:
        if eth[port].get("disabled") is not False:
            problems.append(f"{port} is disabled, expected enabled")
    if eth["ether2"].get("disabled") is not True:
        problems.append("ether2 (unused) is not disabled")
    problems += check_hardening(api, admin)
    untouched = eth["qsfp56-dd-1-3"]
    if untouched.get("l2mtu") != 1584:
        problems.append("qsfp56-dd-1-3 (not a 2x200G master) was changed")
    bridge_ports = {r["interface"]: r for r in api.path("interface", "bridge", "port")}
    for port in used:
        row = bridge_ports.get(port)
        if row is None:
            problems.append(f"{port} is not a bridge port")
        elif row["bridge"] != "gb10-fabric" or row.get("hw-offload") is not True:
            problems.append(f"{port}: bridge={row['bridge']} hw-offload={row.get('hw-offload')}")
    extra = sorted(set(bridge_ports) - set(used))
    if extra:
        problems.append(f"unexpected bridge ports: {extra}")
    services = {r["name"]: r for r in api.path("ip", "service")}
    enabled = sorted(n for n, r in services.items() if not r["disabled"])
    if enabled != ["api-ssl", "ssh"]:
        problems.append(f"enabled services {enabled}, expected api-ssl and ssh only")
    for name in ("ssh", "api-ssl"):
        if services[name].get("address") != "127.0.0.1/32,192.168.1.0/24":
            problems.append(f"service {name} address {services[name].get('address')!r}")
    addresses = [(r["address"], r["interface"]) for r in api.path("ip", "address")]
    if addresses != [("192.168.1.2/24", "ether1")]:
        problems.append(f"ip addresses {addresses}")
    chip = list(api.path("interface", "ethernet", "switch"))[0]
    if chip.get("qos-hw-offloading") is not qos or chip.get("l3-hw-offloading") is not False:
        problems.append(f"switch1: qos-hw-offloading={chip.get('qos-hw-offloading')} "
                        f"l3-hw-offloading={chip.get('l3-hw-offloading')}")
    profiles = {r["name"]: r for r in api.path("interface", "ethernet", "switch", "qos", "profile")}
    qos_ports = {r["name"]: r for r in api.path("interface", "ethernet", "switch", "qos", "port")}
    pfc = {r["name"]: r for r in api.path("interface", "ethernet", "switch", "qos", "priority-flow-control")}
    queues = {r["traffic-class"]: r for r in api.path("interface", "ethernet", "switch", "qos", "tx-manager", "queue")}
    if qos:
        if (profiles.get("roce", {}).get("dscp"), profiles.get("roce", {}).get("traffic-class")) != (26, 3):
            problems.append(f"qos profile roce: {profiles.get('roce')}")
        if (profiles.get("cnp", {}).get("dscp"), profiles.get("cnp", {}).get("traffic-class")) != (48, 6):
            problems.append(f"qos profile cnp: {profiles.get('cnp')}")
        if pfc.get("pfc-tc3") != {**pfc.get("pfc-tc3", {}), "traffic-class": 3, "rx": True, "tx": True}:
            problems.append(f"pfc: {pfc}")
        if queues[3].get("ecn") is not True or queues[3].get("schedule") != "high-priority-group":
            problems.append(f"queue 3: {queues[3]}")
        if queues[6].get("schedule") != "strict-priority":
            problems.append(f"queue 6: {queues[6]}")
        for port in used:
            row = qos_ports[port]
            got = (row.get("pfc"), row.get("trust-l3"), row.get("egress-rate-queue3"))
            if got != ("pfc-tc3", "keep", "200.0Gbps"):
                problems.append(f"qos port {port}: {got}")
    else:
        if set(profiles) != {"default"} or pfc:
            problems.append(f"QoS configured although gated off: profiles {sorted(profiles)}, pfc {sorted(pfc)}")
    return problems


def check_hardening(api, admin: str) -> list[str]:
    """MAC access, discovery, btest, the factory user and address, as the role's defaults set them."""
    problems: list[str] = []
    single = {
        ("tool", "mac-server"): ("allowed-interface-list", "none"),
        ("tool", "mac-server", "mac-winbox"): ("allowed-interface-list", "none"),
        ("tool", "mac-server", "ping"): ("enabled", False),
        ("ip", "neighbor", "discovery-settings"): ("discover-interface-list", "none"),
        ("tool", "bandwidth-server"): ("enabled", False),
    }
    for menu, (key, want) in single.items():
        got = list(api.path(*menu))[0].get(key)
        if got != want:
            problems.append(f"/{' '.join(menu)} {key}={got!r}, expected {want!r}")
    users = {u["name"]: u for u in api.path("user")}
    api_user = next(u for u in users if u not in ("admin", "retired-admin"))
    if users[api_user].get("disabled") is not False:
        problems.append(f"the API user {api_user} is disabled")
    if admin == "disabled":
        if users.get("admin", {}).get("disabled") is not True:
            problems.append(f"user admin: {users.get('admin')}, expected disabled")
    else:
        new_name = admin.split(":", 1)[1]
        if "admin" in users or users.get(new_name, {}).get("group") != "full":
            problems.append(f"users {sorted(users)}: admin should be renamed to {new_name}")
    factory = [r for r in api.path("ip", "address") if r["address"].startswith("192.168.88.1/")]
    if factory:
        problems.append(f"the factory address is still there: {factory}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--nodes", type=int, choices=(4, 8), default=4)
    parser.add_argument("--qos", choices=("yes", "no"), default="yes")
    parser.add_argument("--admin", default="disabled", help="disabled, or renamed:NAME")
    parser.add_argument("--dump", action="store_true")
    parser.add_argument("--break", dest="breakit", action="store_true")
    parser.add_argument("--drift", action="store_true")
    args = parser.parse_args()
    api = api_for(args.state_dir)
    if args.breakit:
        api.path("system", "identity").update(name="broken")
        port = next(r for r in api.path("interface", "ethernet") if r["default-name"] == "qsfp56-dd-1-1")
        api.path("interface", "ethernet").update(**{".id": port[".id"], "mtu": 1500})
        print("identity broken, qsfp56-dd-1-1 mtu 1500")
        return 0
    if args.drift:
        eth = api.path("interface", "ethernet")
        port = next(r for r in eth if r["default-name"] == "qsfp56-dd-1-1")
        eth.update(**{".id": port[".id"], "mtu": 1500})
        service = api.path("ip", "service")
        telnet = next(r for r in service if r["name"] == "telnet")
        service.update(**{".id": telnet[".id"], "disabled": False})
        api.path("tool", "mac-server", "ping").update(enabled=True)
        queues = api.path("interface", "ethernet", "switch", "qos", "tx-manager", "queue")
        queue = next(r for r in queues if int(r["traffic-class"]) == 3)
        queues.update(**{".id": queue[".id"], "schedule": "low-priority-group"})
        print("qsfp56-dd-1-1 mtu 1500, telnet enabled, MAC ping on, queue 3 low-priority-group")
        return 0
    if args.dump:
        print(json.dumps(dump(api), sort_keys=True, default=str))
        return 0
    problems = check(api, args.nodes, args.qos == "yes", args.admin)
    for line in problems:
        print(line)
    if not problems:
        print(f"switch state OK for {args.nodes} nodes (qos={args.qos})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
