"""bench/staging: how long does staging N lab nodes take, against one node-to-node copy?

    sudo python3 -m bench.staging.run [--rate 100mbit] [--mib 96] [--nodes 4]

On the running lab (inventory/lab): rate-limits every node's fabric twin A (tc tbf on both ends of the veth: the host
side gb10l<N>a towards the node, the node side enp1s0f1np1 from it), writes a payload of --mib MiB on gx10-1,
and times the weights role's mechanism (roles/weights/files/gb10_stage.py: a chain of relays, each
writing and forwarding at once) for 1 target (the node-to-node baseline) and for every node of the
lab. Removes the limits at the end (also on failure). Writes bench/staging/results/results.{json,md}.
Target: N nodes in at most 1.25x the baseline.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from lab.lab import MGMT_PREFIX, container_name, host_veth

ROOT = Path(__file__).resolve().parents[2]
KEY = ROOT / "lab" / ".state" / "ssh" / "id_ed25519"
TOOL = ROOT / "roles" / "weights" / "files" / "gb10_stage.py"
RESULTS = Path(__file__).resolve().parent / "results"
SRC = "/srv/gb10/bench/src"
DST = "/srv/gb10/bench/dst"
REMOTE_TOOL = "/usr/local/lib/gb10/gb10_stage.py"
PORT = 29650


def sh(*cmd: str, check: bool = True, inp: bytes | None = None) -> str:
    res = subprocess.run(cmd, input=inp, capture_output=True)
    if check and res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr.decode()[-800:]}")
    return res.stdout.decode()


def ssh(ip: str, cmd: str, check: bool = True, background: bool = False):  # type: ignore[no-untyped-def]
    argv = ["ssh", "-q", "-i", str(KEY), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", f"gb10admin@{ip}", f"sudo sh -c {json.dumps(cmd)}"]
    if background:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return sh(*argv, check=check)


def node_pid(i: int) -> str:
    return sh("docker", "inspect", "-f", "{{.State.Pid}}", container_name(i)).strip()


def limit(nodes: list[int], rate: str) -> None:
    """tbf on both ends of each node's twin-A veth: the host side shapes traffic towards the node, the
    node side (its netns, via nsenter; the host kernel has no police action) traffic from it."""
    for i in nodes:
        sh("tc", "qdisc", "replace", "dev", host_veth(i, "a"), "root", "tbf", "rate", rate, "burst", "256kb", "latency", "50ms")
        sh("nsenter", "-t", node_pid(i), "-n", "tc", "qdisc", "replace", "dev", "enp1s0f1np1", "root", "tbf",
           "rate", rate, "burst", "256kb", "latency", "50ms")


def unlimit(nodes: list[int]) -> None:
    for i in nodes:
        sh("tc", "qdisc", "del", "dev", host_veth(i, "a"), "root", check=False)
        sh("nsenter", "-t", node_pid(i), "-n", "tc", "qdisc", "del", "dev", "enp1s0f1np1", "root", check=False)


def mgmt(i: int) -> str:
    return f"{MGMT_PREFIX}.{10 + i}"


def fabric(i: int) -> str:
    return f"192.168.100.{10 + i}"


def stage(source: int, targets: list[int]) -> dict[str, object]:
    """One chained copy source -> targets; returns the source's result with the wall time."""
    manifest = f"{SRC}/.gb10-stage/manifest.json"
    for t in targets:
        ssh(mgmt(t), f"rm -rf {DST} && mkdir -p {DST}/.gb10-stage && true", check=False)
    man = ssh(mgmt(source), f"cat {manifest}")
    for t in targets:
        subprocess.run(["ssh", "-q", "-i", str(KEY), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        f"gb10admin@{mgmt(t)}", f"sudo tee {DST}/.gb10-stage/manifest.json >/dev/null"],
                       input=man.encode(), check=True)
    status = json.loads(ssh(mgmt(targets[0]), f"python3 {REMOTE_TOOL} status {DST} {DST}/.gb10-stage/manifest.json"))
    ssh(mgmt(source), f"echo '{json.dumps(status['need'])}' > /tmp/bench-need.json")
    relays = []
    for pos in range(len(targets) - 1, -1, -1):
        t = targets[pos]
        nxt = f" --next {fabric(targets[pos + 1])}:{PORT}" if pos + 1 < len(targets) else ""
        relays.append(ssh(mgmt(t), f"python3 {REMOTE_TOOL} relay {DST} {DST}/.gb10-stage/manifest.json "
                                   f"--listen {fabric(t)}:{PORT}{nxt} --timeout 300", background=True))
    time.sleep(2)
    t0 = time.monotonic()
    try:
        out = ssh(mgmt(source), f"python3 {REMOTE_TOOL} send {SRC} {manifest} --next {fabric(targets[0])}:{PORT} "
                                f"--need /tmp/bench-need.json")
    except BaseException:
        # Say which relay of the chain failed, and why (relays were started last target first).
        for t, r in zip(reversed(targets), relays):
            try:
                _, err = r.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                r.kill()
                _, err = r.communicate()
            print(f"relay on gx10-{t} (rc {r.returncode}): {err.decode(errors='replace').strip()[-1500:]}", flush=True)
        raise
    wall = time.monotonic() - t0
    for r in relays:
        r.wait(timeout=120)
    res = json.loads(out)
    res["wall_s"] = round(wall, 2)
    res["nodes"] = len(targets) + 1
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--mib", type=int, default=96)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    nodes = list(range(1, args.nodes + 1))
    for i in nodes:
        subprocess.run(["scp", "-q", "-i", str(KEY), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        str(TOOL), f"gb10admin@{mgmt(i)}:/tmp/gb10_stage.py"], check=True)
        ssh(mgmt(i), f"mkdir -p /usr/local/lib/gb10 && install -m 0755 /tmp/gb10_stage.py {REMOTE_TOOL}")
    ssh(mgmt(1), f"mkdir -p {SRC} && [ $(stat -c %s {SRC}/payload.bin 2>/dev/null || echo 0) -eq {args.mib << 20} ] "
                 f"|| head -c {args.mib << 20} /dev/urandom > {SRC}/payload.bin; python3 {REMOTE_TOOL} manifest {SRC} "
                 f"--chunk-bytes 16777216 >/dev/null")
    runs = []
    try:
        limit(nodes, args.rate)
        for _ in range(args.repeat):
            base = stage(1, [2])
            print(f"1 -> 1 node (baseline): {base['wall_s']} s", flush=True)
            fan = stage(1, nodes[1:])
            print(f"1 -> {len(nodes) - 1} nodes ({len(nodes)} in all): {fan['wall_s']} s "
                  f"({fan['wall_s'] / base['wall_s']:.2f}x)", flush=True)
            runs.append({"baseline": base, "all": fan, "ratio": round(fan["wall_s"] / base["wall_s"], 3)})
    finally:
        unlimit(nodes)
    doc = {"rate": args.rate, "payload_mib": args.mib, "lab_nodes": len(nodes), "runs": runs,
           "target_ratio": 1.25, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "method": "roles/weights/files/gb10_stage.py chain (source -> relays), tc tbf on both ends of each twin-A veth"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"results-{len(nodes)}nodes.json").write_text(json.dumps(doc, indent=2) + "\n")
    best = min(runs, key=lambda r: r["ratio"])
    worst = max(runs, key=lambda r: r["ratio"])
    line = (f"| {len(nodes)} | {args.rate} | {args.mib} MiB | {best['baseline']['wall_s']} s | "
            f"{best['all']['wall_s']} s | {best['ratio']:.2f}x (worst {worst['ratio']:.2f}x) | "
            f"{'yes' if worst['ratio'] <= 1.25 else 'NO'} |\n")
    md = RESULTS / "results.md"
    if not md.exists():
        md.write_text("# bench/staging results\n\n| lab nodes | fabric limit per node | payload | one node-to-node copy "
                      "| all nodes | ratio | <= 1.25x |\n|---|---|---|---|---|---|---|\n")
    with md.open("a") as f:
        f.write(line)
    print(line.strip())
    return 0 if worst["ratio"] <= 1.25 else 1


if __name__ == "__main__":
    sys.exit(main())
