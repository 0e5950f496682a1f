"""The outsider's view over IPv6 and UDP after site.yml (the IPv4 TCP scan runs in molecule/serve).

A positive control first: one node opens a test port (a listener and an accept rule), and the scans must
see it over IPv6 and UDP; then, with the rule gone, nothing answers on any node over IPv6 (any TCP port)
or UDP (the common ports and the cluster's own)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PY = str(ROOT / ".venv" / "bin" / "python")
LAB_ID = int(os.environ.get("LAB_ID", "0"))
NODE = f"lab{LAB_ID}-gx10-2" if LAB_ID else "gx10-2"
MGMT = f"10.77.{LAB_ID}.12"
PORT = 47999
TABLE = "gb10_firewall"
LISTEN = f"""
import socket, threading
t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM); t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(("::", {PORT})); t.listen(16)
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
u.bind(("::", {PORT}))
def udp():
    while True:
        data, peer = u.recvfrom(2048); u.sendto(data or b"x", peer)
threading.Thread(target=udp, daemon=True).start()
while True:
    c, _ = t.accept(); c.close()
"""


def outsider(*args: str) -> str:
    res = subprocess.run([PY, "-m", "lab.outsider", *args], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                         check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    print(res.stderr, file=sys.stderr)
    return res.stdout


def node(*cmd: str, check: bool = True) -> str:
    res = subprocess.run(["docker", "exec", NODE, *cmd], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0 or not check, res.stderr
    return res.stdout


@pytest.fixture(scope="module")
def outsider_up():
    outsider("up")
    yield
    outsider("down")


def _open_test_port() -> None:
    node("nft", "insert", "rule", "inet", TABLE, "input", "meta", "l4proto", "{", "tcp", ",", "udp", "}", "th", "dport",
         str(PORT), "accept", "comment", '"outsider-control"')
    subprocess.Popen(["docker", "exec", "-d", NODE, "python3", "-c", LISTEN]).wait(timeout=60)


def _close_test_port() -> None:
    node("pkill", "-f", f"bind\\(\\(\"::\", {PORT}", check=False)
    listing = node("nft", "-a", "list", "chain", "inet", TABLE, "input")
    for handle in re.findall(r'comment "outsider-control" # handle (\d+)', listing):
        node("nft", "delete", "rule", "inet", TABLE, "input", "handle", handle)


def test_the_scans_see_an_open_port(outsider_up) -> None:
    """Positive control: the IPv6 and UDP scans find a port that one node really opens."""
    _open_test_port()
    try:
        v6 = json.loads(outsider("scan", "--ipv6", "--ports", f"22,{PORT}"))
        udp = json.loads(outsider("scan", "--udp", "--ports", str(PORT), MGMT))
    finally:
        _close_test_port()
    assert sorted(map(tuple, v6.values())) == [()] * (len(v6) - 1) + [(PORT,)], v6  # only that node, only that port
    assert udp == {MGMT: [PORT]}, udp


def test_nothing_answers_over_ipv6_or_udp(outsider_up) -> None:
    v6 = json.loads(outsider("scan", "--ipv6"))
    assert v6 and all(addr.endswith("%mgmt0") for addr in v6), v6  # twins: link-local off (netplan link-local: [])
    assert {a: p for a, p in v6.items() if p} == {}, v6
    udp = json.loads(outsider("scan", "--udp"))
    assert len(udp) == 3 * int(os.environ.get("LAB_NODES", "4")), udp
    assert {a: p for a, p in udp.items() if p} == {}, udp
