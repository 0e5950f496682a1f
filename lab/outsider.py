"""A stranger on the lab's networks: what can someone who is not a cluster member reach on the nodes?

    python -m lab.outsider up                  start lab<ID>-outsider on the management bridge and both
                                               fabric bridges, at .200 of each subnet (not a cluster member)
    python -m lab.outsider scan [--ports P]    TCP SYN scan (nmap, default every port 1-65535) of every node's
                                               management and fabric addresses, from the outsider; prints
                                               {address: [open ports]} as JSON
    python -m lab.outsider scan --ipv6         the same over IPv6: every node's link-local address on each
                                               network (IPv6 turned on in the lab's namespaces, as DGX OS has it)
    python -m lab.outsider scan --udp [--ports P]   UDP scan (default the 200 most common UDP ports and the
                                               cluster's own: RoCE 4791, mDNS 5353, NTP 123, DHCP 67/68);
                                               only ports that answer count as open
    python -m lab.outsider probe ADDR PORT     one TCP connection from the outsider: open | refused | timeout
    python -m lab.outsider http < REQUEST.json HTTP requests from the outsider: REQUEST is {"base": URL,
                                               "routes": [[METHOD, PATH], ...] and/or "openapi": a server's
                                               /openapi.json (every route it lists), "key": API key or "",
                                               "ca_file": CA on this host for https, "body": JSON for POSTs};
                                               read on stdin so the key is on no command line; prints
                                               [{method, path, status, body}] (status -1: no answer)
    python -m lab.outsider exec -- CMD...      run a command inside the outsider (e.g. curl)
    python -m lab.outsider down                remove the outsider and its interfaces

The outsider runs the lab node image plus nmap (image ``gb10-lab-outsider:<node image hash>``, built
once with apt over the host network). It has no SSH key, no API key and no Ray: it is the home-LAN
client or the stranger plugged into a free switch port of the threat model (docs/threat-model.md).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils.firewall import parse_nmap_xml
from lab import lab  # names, bridges, subnets of this LAB_ID

NAME = f"lab{lab.LAB_ID}-outsider"
LABEL = f"gb10-lab-outsider={lab.LAB_ID}"
IMAGE_REPO = "gb10-lab-outsider"
HOST_INDEX = 200
# (interface inside the outsider, lab bridge, subnet prefix, host-side veth tag, MTU)
LINKS = [("mgmt0", lab.MGMT_BRIDGE, lab.MGMT_PREFIX, "m", 1500)] + [
    (f"fab{'ab'[i]}0", twin[1], twin[2], "ab"[i], lab.FABRIC_MTU) for i, twin in enumerate(lab.TWINS)
]


def log(msg: str) -> None:
    print(f"outsider: {msg}", file=sys.stderr, flush=True)


def host_veth(tag: str) -> str:
    """Host side of the outsider's veth ``tag``: ``gb<ID>o<tag>`` (node veths are ``gb<ID>l<n><tag>``)."""
    return f"gb{lab.LAB_ID}o{tag}" if lab.LAB_ID else f"gb10o{tag}"


def addresses() -> dict[str, str]:
    """The outsider's address per interface (the .200 of each lab subnet)."""
    return {ifname: f"{prefix}.{HOST_INDEX}" for ifname, _bridge, prefix, _tag, _mtu in LINKS}


def image() -> str:
    """The outsider image (node image + nmap), built once per node image."""
    node = lab.build()
    tag = f"{IMAGE_REPO}:{node.split(':', 1)[1]}"
    if lab.ok("docker", "image", "inspect", tag):
        return tag
    log(f"building {tag} (node image + nmap, apt over the host network)")
    dockerfile = (
        f"FROM {node}\n"
        "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nmap "
        "&& apt-get clean && rm -rf /var/lib/apt/lists/*\n"
    )
    lab.run("docker", "build", "--network", "host", "-t", tag, "-", inp=dockerfile.encode())
    return tag


def node_indexes() -> list[int]:
    return [int(n.rsplit("-", 1)[1]) for n in lab.lab_containers()]


def targets() -> list[str]:
    """Every node's management and fabric addresses (what the lab gives them, see lab.py)."""
    out = []
    for i in node_indexes():
        out.append(f"{lab.MGMT_PREFIX}.{10 + i}")
        out += [f"{twin[2]}.{10 + i}" for twin in lab.TWINS]
    return out


def up() -> None:
    if not node_indexes():
        raise SystemExit(f"outsider: lab {lab.LAB_ID} has no nodes; run `LAB_ID={lab.LAB_ID} make lab-up` first")
    if HOST_INDEX - 10 in node_indexes():
        raise SystemExit(f"outsider: .{HOST_INDEX} belongs to a lab node; the outsider must not be a cluster member")
    tag = image()
    state = lab.run("docker", "inspect", "-f", "{{.State.Running}}", NAME, capture=True, check=False).strip()
    if state == "false":
        lab.run("docker", "start", NAME, capture=True)
    elif state != "true":
        lab.run("docker", "run", "--detach", "--name", NAME, "--hostname", "outsider", "--label", LABEL,
                "--network", "none", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", "--memory", "1g",
                "--entrypoint", "sleep", tag, "infinity", capture=True)
    pid = lab.container_pid(NAME)
    links = lab.nsenter(pid, "ip", "-o", "link", "show")
    for ifname, bridge, prefix, tag_, mtu in LINKS:
        if f" {ifname}@" not in links and f" {ifname}:" not in links:
            host_side = host_veth(tag_)
            if lab.ok("ip", "link", "show", host_side):
                lab.run("ip", "link", "del", host_side)
            lab.run("ip", "link", "add", host_side, "type", "veth", "peer", "name", ifname, "netns", str(pid))
            lab.run("ip", "link", "set", host_side, "mtu", str(mtu), "master", bridge, "up")
            lab.nsenter(pid, "ip", "link", "set", ifname, "mtu", str(mtu), "up")
        addr = f"{prefix}.{HOST_INDEX}"
        if addr not in lab.nsenter(pid, "ip", "-4", "addr", "show", ifname):
            lab.nsenter(pid, "ip", "addr", "add", f"{addr}/24", "dev", ifname)
    log(f"{NAME} is up: {', '.join(f'{k} {v}' for k, v in addresses().items())}")


# Docker starts containers with IPv6 off; DGX OS has a link-local IPv6 address on every interface, and a
# stranger on the segment can use it without any router. The IPv6 scan turns IPv6 on in the nodes' and the
# outsider's network namespaces first (what the rack has), then scans each network's link-local addresses.
OUTSIDER_IF = {lab.MGMT_INTERFACE: "mgmt0", **{twin[0]: f"fab{'ab'[i]}0" for i, twin in enumerate(lab.TWINS)}}
UDP_PORTS = "T:0,U:67,68,123,161,500,1900,4500,4791,5353,8472,29500-29510"


def _ipv6_on(pid: int) -> None:
    lab.nsenter(pid, "sh", "-c", "for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do echo 0 > $f; done")


def _link_local(pid: int) -> dict[str, str]:
    """``{interface: fe80::...}`` of a namespace, leaving out addresses still in duplicate address detection."""
    out = {}
    for line in lab.nsenter(pid, "ip", "-6", "-o", "addr", "show", "scope", "link").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "inet6" and "tentative" not in parts:
            out[parts[1]] = parts[3].split("/", 1)[0]
    return out


def targets6(wait: float = 30.0) -> dict[str, list[str]]:
    """``{outsider interface: [node link-local addresses on that network]}``, IPv6 turned on first."""
    nodes = {name: lab.container_pid(name) for name in lab.lab_containers()}
    for pid in [*nodes.values(), lab.container_pid(NAME)]:
        _ipv6_on(pid)
    deadline = time.monotonic() + wait
    while True:
        seen = {name: _link_local(pid) for name, pid in nodes.items()}
        # The management link always has one (as on DGX OS); the fabric role turns link-local off on the twins
        # (netplan link-local: []), so a twin without IPv6 is what the rack has, not a missing target.
        missing = [f"{name} {lab.MGMT_INTERFACE}" for name, addrs in seen.items() if lab.MGMT_INTERFACE not in addrs]
        own = _link_local(lab.container_pid(NAME))
        missing += [f"outsider {ifname}" for ifname in OUTSIDER_IF.values() if ifname not in own]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"outsider: no IPv6 link-local address after {wait:.0f} s on {', '.join(missing)}")
        time.sleep(1)
    out: dict[str, list[str]] = {ifname: [] for ifname in OUTSIDER_IF.values()}
    for name, addrs in seen.items():
        for node_if, outsider_if in OUTSIDER_IF.items():
            if node_if in addrs:
                out[outsider_if].append(addrs[node_if])
            else:
                log(f"{name} {node_if}: no IPv6 address (nothing to reach over IPv6 there)")
    return {ifname: addrs for ifname, addrs in out.items() if addrs}


def scan6(ports: str, min_rate: int) -> dict[str, list[int]]:
    """Open TCP ports per node link-local address over IPv6, network by network (nmap -6 -e <interface>)."""
    t0 = time.monotonic()
    result: dict[str, list[int]] = {}
    by_if = targets6()
    for ifname, addrs in by_if.items():
        xml = exec_in("nmap", "-6", "-e", ifname, "-Pn", "-n", "-sS", "-p", ports, "--min-rate", str(min_rate),
                      "--max-retries", "2", "-T4", "-oX", "-", *addrs)
        found = parse_nmap_xml(xml)
        missing = [a for a in addrs if a not in found]
        if missing:
            raise SystemExit(f"outsider: nmap -6 reported nothing for {', '.join(missing)} on {ifname}")
        result.update({f"{a}%{ifname}": found[a] for a in addrs})
    log(f"scanned {sum(len(a) for a in by_if.values())} IPv6 link-local addresses, ports {ports}, "
        f"in {time.monotonic() - t0:.0f} s")
    return result


def scan_udp(ports: str, target_list: list[str]) -> dict[str, list[int]]:
    """UDP ports that answered, per address (a drop policy leaves every port open|filtered: not open)."""
    t0 = time.monotonic()
    port_args = ["--top-ports", "200", "-p", UDP_PORTS] if ports == "default" else ["-p", ports]
    xml = exec_in("nmap", "-Pn", "-n", "-sU", *port_args, "--max-retries", "1", "--min-rate", "2000", "-T4",
                  "-oX", "-", *target_list)
    result = parse_nmap_xml(xml, "udp")
    missing = [t for t in target_list if t not in result]
    if missing:
        raise SystemExit(f"outsider: nmap -sU reported nothing for {', '.join(missing)}; the scan is incomplete")
    log(f"UDP-scanned {len(target_list)} addresses in {time.monotonic() - t0:.0f} s")
    return result


def exec_in(*cmd: str, check: bool = True) -> str:
    return lab.run("docker", "exec", NAME, *cmd, capture=True, check=check)


def scan(ports: str, min_rate: int, target_list: list[str]) -> dict[str, list[int]]:
    """Open TCP ports per address, seen from the outsider (SYN scan, no ping, no DNS)."""
    t0 = time.monotonic()
    xml = exec_in("nmap", "-Pn", "-n", "-sS", "-p", ports, "--min-rate", str(min_rate), "--max-retries", "2",
                  "-T4", "-oX", "-", *target_list)
    result = parse_nmap_xml(xml)
    missing = [t for t in target_list if t not in result]
    if missing:
        raise SystemExit(f"outsider: nmap reported nothing for {', '.join(missing)}; the scan is incomplete")
    log(f"scanned {len(target_list)} addresses, ports {ports}, in {time.monotonic() - t0:.0f} s")
    return result


PROBE = """
import socket, sys, json
addr, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(timeout)
try:
    s.connect((addr, port)); result = "open"
except socket.timeout:
    result = "timeout"
except ConnectionRefusedError:
    result = "refused"
except OSError as exc:
    result = "error: " + exc.strerror if exc.strerror else "error"
print(json.dumps({"address": addr, "port": port, "result": result}))
"""


def probe(address: str, port: int, timeout: float) -> dict[str, object]:
    return json.loads(exec_in("python3", "-c", PROBE, address, str(port), str(timeout)))


HTTP_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
# FastAPI's own pages: served by the app but never listed in its OpenAPI document.
FASTAPI_PAGES = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")


def routes_from_openapi(doc: Mapping[str, Any]) -> list[list[str]]:
    """Every ``[METHOD, path]`` a server's OpenAPI document lists (path parameters filled with ``x``), and
    FastAPI's own pages, which the document leaves out."""
    paths = doc.get("paths") if isinstance(doc, Mapping) else None
    if not isinstance(paths, Mapping) or not paths:
        raise ValueError("the OpenAPI document lists no paths")
    out = []
    for path, ops in sorted(paths.items()):
        concrete = re.sub(r"\{[^}/]*\}", "x", str(path))
        for method in sorted(ops or {}):
            if str(method).lower() in HTTP_METHODS:
                out.append([str(method).upper(), concrete])
    out += [["GET", p] for p in FASTAPI_PAGES if p not in paths]
    return out


HTTP_PY = """
import json, ssl, sys, urllib.error, urllib.request
req = json.load(sys.stdin)
ctx = ssl.create_default_context(cadata=req["ca"] or None) if req["base"].startswith("https:") else None
out = []
for method, path in req["routes"]:
    headers = {"Content-Type": "application/json"}
    if req["key"]:
        headers["Authorization"] = "Bearer " + req["key"]
    data = json.dumps(req["body"]).encode() if method in ("POST", "PUT", "PATCH") else None
    r = urllib.request.Request(req["base"] + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(r, timeout=req["timeout"], context=ctx) as resp:
            status, body = resp.status, resp.read(16384)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(16384)
    except Exception as exc:
        status, body = -1, repr(exc).encode()
    out.append({"method": method, "path": path, "status": status, "body": body.decode(errors="replace")})
print(json.dumps(out))
"""


def http(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Run ``request`` (see the module's usage) from inside the outsider; the key travels on stdin."""
    routes = [list(r) for r in request.get("routes") or []]
    if request.get("openapi"):
        routes += routes_from_openapi(request["openapi"])
    ca_file = str(request.get("ca_file") or "")
    payload = {"base": str(request["base"]).rstrip("/"), "routes": routes, "key": str(request.get("key") or ""),
               "ca": Path(ca_file).read_text() if ca_file else "", "body": request.get("body") or {},
               "timeout": float(request.get("timeout") or 60)}
    res = subprocess.run(["docker", "exec", "-i", NAME, "python3", "-c", HTTP_PY], input=json.dumps(payload).encode(),
                         capture_output=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"outsider: the HTTP requests failed inside {NAME}: {res.stderr.decode(errors='replace')[-500:]}")
    return json.loads(res.stdout)


def down() -> None:
    lab.run("docker", "rm", "-f", NAME, capture=True, check=False)
    for _ifname, _bridge, _prefix, tag, _mtu in LINKS:
        if lab.ok("ip", "link", "show", host_veth(tag)):
            lab.run("ip", "link", "del", host_veth(tag), check=False)
    log(f"{NAME} removed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("up")
    sub.add_parser("down")
    sub.add_parser("targets")
    p_scan = sub.add_parser("scan")
    p_scan.add_argument("--ports", default=None, help="default 1-65535 (TCP), the common and cluster ports (UDP)")
    p_scan.add_argument("--ipv6", action="store_true", help="TCP over IPv6 link-local, network by network")
    p_scan.add_argument("--udp", action="store_true", help="UDP (IPv4)")
    p_scan.add_argument("--min-rate", type=int, default=20000)
    p_scan.add_argument("targets", nargs="*", help="addresses (default every node's management and fabric addresses)")
    p_probe = sub.add_parser("probe")
    p_probe.add_argument("address")
    p_probe.add_argument("port", type=int)
    p_probe.add_argument("--timeout", type=float, default=5.0)
    sub.add_parser("http")
    p_exec = sub.add_parser("exec")
    p_exec.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.action == "up":
        up()
    elif args.action == "down":
        down()
    elif args.action == "targets":
        print(json.dumps({"outsider": addresses(), "targets": targets()}))
    elif args.action == "scan":
        if args.ipv6:
            print(json.dumps(scan6(args.ports or "1-65535", args.min_rate), indent=1))
        elif args.udp:
            print(json.dumps(scan_udp(args.ports or "default", args.targets or targets()), indent=1))
        else:
            print(json.dumps(scan(args.ports or "1-65535", args.min_rate, args.targets or targets()), indent=1))
    elif args.action == "probe":
        print(json.dumps(probe(args.address, args.port, args.timeout)))
    elif args.action == "http":
        print(json.dumps(http(json.load(sys.stdin)), indent=1))
    elif args.action == "exec":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            parser.error("exec needs a command")
        res = subprocess.run(["docker", "exec", NAME, *cmd], check=False)
        return res.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
