"""bench/exposure: which TCP ports of the served lab does a stranger reach, without and with the firewall?

    LAB_ID=<n> .venv/bin/python -m bench.exposure.run      (as root, on a served lab: `make serve` first)

1. starts the outsider (lab.outsider: .200 on the management bridge and both fabric bridges);
2. lists every node's listening TCP sockets with the process that owns them (`ss -Htlnp`);
3. BEFORE: stops gb10-firewall on every node (its ExecStop deletes table inet gb10_firewall, nothing
   else) and scans every port of every node address from the outsider; a member (the second node)
   probes the head's Ray GCS port as a positive control;
4. AFTER: starts gb10-firewall again (also when the scan failed), checks the table is back, scans again;
5. writes bench/exposure/results.json and results.md, removes the outsider.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from lab import lab, outsider

HERE = Path(__file__).resolve().parent
SERVICE = "gb10-firewall"
TABLE = "gb10_firewall"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise SystemExit(f"exposure: command failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-800:]}")
    return res


def nodes() -> list[str]:
    return lab.lab_containers()


def on(node: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("docker", "exec", node, *cmd, check=check)


def table_loaded(node: str) -> bool:
    return on(node, "nft", "list", "table", "inet", TABLE, check=False).returncode == 0


def listeners(node: str) -> list[dict[str, object]]:
    """Listening TCP sockets of a node: address, port, owning process and its command line."""
    rows = []
    for line in on(node, "ss", "-Htlnp").stdout.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        addr, _, port = parts[3].rpartition(":")
        proc = re.search(r'users:\(\("([^"]+)",pid=(\d+)', line)
        rows.append({"address": addr.strip("[]"), "port": int(port),
                     "process": proc.group(1) if proc else "?", "pid": int(proc.group(2)) if proc else 0})
    pids = sorted({int(r["pid"]) for r in rows if r["pid"]})
    args: dict[int, str] = {}
    if pids:
        out = on(node, "ps", "-o", "pid=,args=", "-p", ",".join(map(str, pids)), check=False).stdout
        for line in out.splitlines():
            pid, _, cmd = line.strip().partition(" ")
            args[int(pid)] = " ".join(cmd.split())[:90]
    for r in rows:
        r["command"] = args.get(int(r["pid"]), "")  # type: ignore[call-overload]
    return sorted(rows, key=lambda r: (int(r["port"]), str(r["address"])))  # type: ignore[call-overload]


def node_addresses(node: str) -> list[str]:
    index = int(node.rsplit("-", 1)[1])
    return [f"{lab.MGMT_PREFIX}.{10 + index}"] + [f"{twin[2]}.{10 + index}" for twin in lab.TWINS]


def listening_exposure(sockets: dict[str, list[dict[str, object]]]) -> dict[str, list[int]]:
    """What a non-member could reach with no firewall, from the listeners themselves: a socket bound to
    a wildcard is reachable on every node address, one bound to an address only there; loopback never."""
    out: dict[str, set[int]] = {}
    for node, socks in sockets.items():
        addrs = node_addresses(node)
        for addr in addrs:
            out.setdefault(addr, set())
        for sock in socks:
            bound = str(sock["address"]).split("%")[0]
            if bound in ("0.0.0.0", "*", "::"):
                for addr in addrs:
                    out[addr].add(int(sock["port"]))  # type: ignore[call-overload]
            elif bound in addrs:
                out[bound].add(int(sock["port"]))  # type: ignore[call-overload]
    return {a: sorted(p) for a, p in out.items()}


def member_probe(address: str, port: int) -> str:
    """A TCP connection from the second node (a cluster member) to ``address:port``."""
    code = outsider.PROBE
    res = on(nodes()[1], "python3", "-c", code, address, str(port), "5")
    return str(json.loads(res.stdout)["result"])


def scan() -> tuple[dict[str, list[int]], float]:
    t0 = time.monotonic()
    result = outsider.scan("1-65535", 20000, outsider.targets())
    return result, round(time.monotonic() - t0, 1)


def main() -> int:
    if sys.argv[1:] == ["--render"]:
        results = json.loads((HERE / "results.json").read_text())
        results.setdefault("listening_without_firewall", listening_exposure(results["listeners"]))
        (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        (HERE / "results.md").write_text(markdown(results))
        return 0
    if len(nodes()) < 2:
        raise SystemExit(f"exposure: lab {lab.LAB_ID} needs at least 2 running nodes; run make demo and make serve")
    missing = [n for n in nodes() if not table_loaded(n)]
    if missing:
        raise SystemExit(f"exposure: the firewall table is not loaded on {', '.join(missing)}; run site.yml first")
    outsider.up()
    head = nodes()[0]
    head_index = int(head.rsplit("-", 1)[1])
    head_fabric = f"{lab.TWINS[0][2]}.{10 + head_index}"
    containers = {n: on(n, "docker", "ps", "--format", "{{.Names}}").stdout.split() for n in nodes()}
    sockets = {n: listeners(n) for n in nodes()}
    try:
        for n in nodes():
            on(n, "systemctl", "stop", SERVICE)
        if any(table_loaded(n) for n in nodes()):
            raise SystemExit("exposure: the firewall table is still loaded after stopping the unit")
        before, before_s = scan()
        member_before = member_probe(head_fabric, 6379)
    finally:
        for n in nodes():
            on(n, "systemctl", "start", SERVICE, check=False)
    back = [n for n in nodes() if not table_loaded(n)]
    if back:
        raise SystemExit(f"exposure: the firewall did not come back on {', '.join(back)}; run site.yml")
    after, after_s = scan()
    member_after = member_probe(head_fabric, 6379)
    outsider_ray = outsider.probe(head_fabric, 6379, 5.0)["result"]
    outsider.down()

    results = {
        "lab_id": lab.LAB_ID,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scanner": "nmap -Pn -n -sS -p 1-65535 --min-rate 20000 --max-retries 2 -T4 (inside lab/outsider.py)",
        "outsider": outsider.addresses(),
        "containers": containers,
        "listeners": sockets,
        "listening_without_firewall": listening_exposure(sockets),
        "before": {"open": before, "seconds": before_s, "open_total": sum(len(p) for p in before.values())},
        "after": {"open": after, "seconds": after_s, "open_total": sum(len(p) for p in after.values())},
        "ray_gcs_from_member": {"before": member_before, "after": member_after},
        "ray_gcs_from_outsider_after": outsider_ray,
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (HERE / "results.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(r: dict[str, object]) -> str:
    before = r["before"]["open"]  # type: ignore[index]
    after = r["after"]["open"]  # type: ignore[index]
    listening = r["listening_without_firewall"]  # type: ignore[index]
    listening_total = sum(len(p) for p in listening.values())  # type: ignore[union-attr]
    lines = [
        "# Exposure of the served lab to a non-member (bench/exposure/run.py)",
        "",
        f"Lab {r['lab_id']}, {r['date']}. Outsider: {', '.join(r['outsider'].values())} "  # type: ignore[union-attr]
        f"(management and both fabric subnets). Scanner: `{r['scanner']}`.",
        f"Serving containers: {json.dumps(r['containers'])}.",
        "",
        "| | (address, port) pairs open to the outsider | scan time |",
        "|---|---|---|",
        f"| firewall off, from the listeners (`ss`: every socket not bound to loopback) | {listening_total} | - |",
        f"| firewall off, seen by the scan | {r['before']['open_total']} | {r['before']['seconds']} s |",  # type: ignore[index]
        f"| firewall on, seen by the scan | {r['after']['open_total']} | {r['after']['seconds']} s |",  # type: ignore[index]
        "",
        "The scan with the firewall off runs while vLLM keeps both cores busy and misses some open ports",
        "(a lower bound); the listener count is the exact exposure. With the firewall on, the ports the",
        "threat model allows (SSH and the API from the management network) are seen, so the scan works.",
        "",
        f"Positive control, Ray GCS (head fabric address, port 6379) from a member: before "
        f"{r['ray_gcs_from_member']['before']}, after {r['ray_gcs_from_member']['after']}; "  # type: ignore[index]
        f"from the outsider after: {r['ray_gcs_from_outsider_after']}.",
        "",
        "| address | listening, firewall off | scan, firewall off | scan, firewall on |",
        "|---|---|---|---|",
    ]
    for addr in before:
        lines.append(f"| {addr} | {', '.join(map(str, listening.get(addr, []))) or '-'} "  # type: ignore[union-attr]
                     f"| {', '.join(map(str, before[addr])) or '-'} | {', '.join(map(str, after.get(addr, []))) or '-'} |")
    lines += ["", "What listened on the ports that were open with the firewall off (`ss -tlnp`, `ps`; ports",
              "without a fixed number are picked at random by each process at start):", "",
              "| port | node | bound to | process | command |", "|---|---|---|---|---|"]
    seen = sorted({p for ports in before.values() for p in ports})
    for node, socks in r["listeners"].items():  # type: ignore[union-attr]
        for s in socks:
            if int(s["port"]) in seen and int(s["port"]) != 22:
                lines.append(f"| {s['port']} | {node} | {s['address']} | {s['process']} | `{s['command']}` |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
