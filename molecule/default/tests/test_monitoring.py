"""Prometheus on the control machine after site.yml: every node scraped, the rack's alert rules loaded, an alert
that really fires when a node stops answering, the console; the node exporter closed to the management LAN."""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

PROM = "http://127.0.0.1:9090"
NODES = int(os.environ.get("LAB_NODES", "4"))
LAB_ID = int(os.environ.get("LAB_ID", "0"))
# One Prometheus per control machine: only the default lab (LAB_ID=0, what CI runs) installs it.
pytestmark = pytest.mark.skipif(LAB_ID != 0, reason="lab N>0 leaves Prometheus to lab 0 (one per control machine)")


def api(path: str, **params: str) -> dict:
    url = f"{PROM}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=10) as res:
        return json.load(res)


def _wait(what: str, check, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"Prometheus: {what} not seen in {timeout:.0f} s"
        time.sleep(5)


def test_every_node_is_scraped() -> None:
    def all_up():
        targets = [t for t in api("/api/v1/targets")["data"]["activeTargets"] if t["labels"]["job"] == "node"]
        return targets if len(targets) == NODES and all(t["health"] == "up" for t in targets) else None

    targets = _wait("every node exporter up", all_up)
    assert sorted(t["labels"]["node"] for t in targets) == [f"gx10-{i}" for i in range(1, NODES + 1)]
    series = api("/api/v1/query", query='node_memory_MemAvailable_bytes{job="node"}')["data"]["result"]
    assert len(series) == NODES and all(float(s["value"][1]) > 0 for s in series)
    twins = api("/api/v1/query", query='node_network_up{job="node", device=~"enp1s0f1np1|enP2p1s0f1np1"}')["data"]
    assert len(twins["result"]) == 2 * NODES and all(s["value"][1] == "1" for s in twins["result"])


def test_the_rack_alert_rules_are_loaded() -> None:
    groups = api("/api/v1/rules")["data"]["groups"]
    names = {r["name"] for g in groups for r in g["rules"]}
    assert {"GB10NodeDown", "GB10TwinDown", "GB10MemAvailableUnderFloor", "GB10VllmDown", "GB10RayNodeDown"} <= names


def test_node_down_alert_fires() -> None:
    node = f"lab{LAB_ID}-gx10-{NODES}" if LAB_ID else f"gx10-{NODES}"
    subprocess.run(["docker", "pause", node], check=True)
    try:
        def firing():
            alerts = api("/api/v1/alerts")["data"]["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "GB10NodeDown"
                    and a["labels"].get("node") == f"gx10-{NODES}" and a["state"] == "firing"]
        assert _wait("GB10NodeDown firing for the paused node", firing, timeout=300)
    finally:
        subprocess.run(["docker", "unpause", node], check=True)


def test_the_console() -> None:
    with urllib.request.urlopen(f"{PROM}/consoles/gb10.html", timeout=10) as res:
        page = res.read().decode()
    assert "gb10 rack" in page and "gx10-1" in page


def test_node_exporter_is_closed_to_the_management_lan() -> None:
    """Only the control machine may scrape: the outsider on the management network finds 9100 filtered."""
    target = f"10.77.{LAB_ID}.11"
    root = Path(__file__).resolve().parents[3]
    py = str(root / ".venv" / "bin" / "python")
    subprocess.run([py, "-m", "lab.outsider", "up"], cwd=root, check=True, capture_output=True, timeout=900)
    try:
        res = subprocess.run([py, "-m", "lab.outsider", "probe", target, "9100"], cwd=root, check=True,
                             capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run([py, "-m", "lab.outsider", "down"], cwd=root, check=False, capture_output=True, timeout=300)
    assert json.loads(res.stdout)["result"] == "timeout", res.stdout
    with urllib.request.urlopen(f"http://{target}:9100/metrics", timeout=10) as page:  # the control machine may
        assert page.status == 200
