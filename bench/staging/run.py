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
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def fabric(i: int, twin: int = 0) -> str:
    return f"192.168.{100 + twin}.{10 + i}"


def wait_listen(node: int, port: int, timeout: float = 60) -> None:
    """Until something on the node listens on the port (a relay or a receiver started in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f":{port} " in ssh(mgmt(node), "ss -Hltn", check=False):
            return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on port {port} of gx10-{node} after {timeout:.0f} s")


def stage(source: int, targets: list[int], lanes: int = 1) -> dict[str, object]:
    """One chained copy source -> targets (one stream per twin in ``lanes``); the source's result with the
    wall time seen from here and the node-side time and CPU seconds of every process."""
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
        nxt = "".join(f" --next {fabric(targets[pos + 1], k)}:{PORT}" for k in range(lanes)) if pos + 1 < len(targets) else ""
        listen = "".join(f" --listen {fabric(t, k)}:{PORT}" for k in range(lanes))
        relays.append(ssh(mgmt(t), f"python3 {REMOTE_TOOL} relay {DST} {DST}/.gb10-stage/manifest.json "
                                   f"{listen}{nxt} --timeout 300 --name gx10-{t}", background=True))
    for t in targets:
        wait_listen(t, PORT)
    t0 = time.monotonic()
    try:
        first = "".join(f" --next {fabric(targets[0], k)}:{PORT}" for k in range(lanes))
        out = ssh(mgmt(source), f"python3 {REMOTE_TOOL} send {SRC} {manifest}{first} "
                                f"--need /tmp/bench-need.json --name gx10-{source}")
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



# ------------------------------------------------------------------------------------ unthrottled (#15)
# No tc: the relay against the plain baselines (bench/staging/plain.py) on the same bytes, the same twin,
# the same lab, interleaved (the order of the methods rotates every round), medians reported with the
# machine's load average: all lab nodes share this machine's cores, and other labs run on it too.
PLAIN = Path(__file__).resolve().parent / "plain.py"
REMOTE_PLAIN = "/usr/local/lib/gb10/bench-plain.py"
PLAIN_PORT = 29652
RSYNC_PORT = 29651
GIB = 1 << 30


def _json(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


def plain(source: int, targets: list[int]) -> dict[str, Any]:
    """Plain copies source -> each target, one after another, over twin A (sendfile; read + write + fsync)."""
    for t in targets:
        ssh(mgmt(t), f"rm -rf {DST} && mkdir -p {DST}")
    recvs = [ssh(mgmt(t), f"python3 {REMOTE_PLAIN} recv --listen {fabric(t)}:{PLAIN_PORT} --out {DST}/payload.bin",
                 background=True) for t in targets]
    for t in targets:
        wait_listen(t, PLAIN_PORT)
    to = "".join(f" --to {fabric(t)}:{PLAIN_PORT}" for t in targets)
    sent = _json(ssh(mgmt(source), f"python3 {REMOTE_PLAIN} send {SRC}/payload.bin{to}"))
    got = []
    for r in recvs:
        out, err = r.communicate(timeout=120)
        if r.returncode:
            raise SystemExit(f"plain receiver failed: {err.decode()[-500:]}")
        got.append(_json(out.decode()))
    return {"elapsed_s": sent["wall_s"], "each_s": sent["each_s"], "bytes": sent["bytes"],
            "cpu_s": {f"gx10-{source}": sent["cpu_s"]} | {f"gx10-{t}": g["cpu_s"] for t, g in zip(targets, got)}}


def rsync_daemons(targets: list[int], start: bool) -> None:
    """An rsync daemon on each target's twin A, as a transient systemd unit (it outlives the ssh session)."""
    for t in targets:
        ssh(mgmt(t), "systemctl stop gb10-bench-rsyncd 2>/dev/null; systemctl reset-failed gb10-bench-rsyncd 2>/dev/null; true",
            check=False)
        if start:
            conf = f"[bench]\\n path = {DST}\\n read only = false\\n uid = root\\n gid = root\\n use chroot = false\\n"
            ssh(mgmt(t), f"printf '{conf}' > /tmp/bench-rsyncd.conf; mkdir -p {DST}; systemd-run --quiet --collect"
                         f" --unit=gb10-bench-rsyncd rsync --daemon --no-detach --config=/tmp/bench-rsyncd.conf"
                         f" --port={RSYNC_PORT} --address={fabric(t)}")
    if start:
        for t in targets:
            wait_listen(t, RSYNC_PORT)


def rsync_fanout(source: int, targets: list[int]) -> dict[str, Any]:
    """What the community launcher does: one rsync per target from the source, all at once."""
    for t in targets:
        ssh(mgmt(t), f"rm -rf {DST}/* {DST}/.gb10-stage; mkdir -p {DST}")
    to = "".join(f" --to {fabric(t)}" for t in targets)
    res = _json(ssh(mgmt(source), f"python3 {REMOTE_PLAIN} rsync {SRC}/payload.bin{to} --port {RSYNC_PORT}"))
    for t in targets:  # rsync checks its own transfer; here, that every target has the whole file
        ssh(mgmt(t), f"[ $(stat -c %s {DST}/payload.bin) -eq {res['bytes'] // len(targets)} ]")
    return {"elapsed_s": res["wall_s"], "bytes": res["bytes"], "cpu_s": {f"gx10-{source}": res["cpu_s"]}}


def relay_run(source: int, targets: list[int], lanes: int) -> dict[str, Any]:
    res = stage(source, targets, lanes)
    if not res.get("complete"):
        raise SystemExit(f"the relay chain did not complete: {res.get('results')}")
    cpu = {f"gx10-{source}": res["cpu_s"]} | {r["node"]: r.get("cpu_s", 0.0) for r in res["results"]}
    return {"elapsed_s": res["elapsed_s"], "wall_s": res["wall_s"], "bytes": res["bytes"], "cpu_s": cpu,
            "verified_in_stream": [r.get("verified_in_stream") for r in res["results"]],
            "node_s": {r["node"]: [r.get("stream_s"), r.get("finish_s"), r.get("write_s")] for r in res["results"]}}


def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 3)


def unthrottled(args: argparse.Namespace) -> int:
    nodes = list(range(1, args.nodes + 1))
    peers = nodes[1:]
    size = args.mib << 20
    methods: dict[str, Any] = {
        "relay 1 hop": lambda: relay_run(1, [2], 1),
        "plain 1 hop": lambda: plain(1, [2]),
        f"relay chain to {len(peers)}": lambda: relay_run(1, peers, 1),
        f"plain copies one after another to {len(peers)}": lambda: plain(1, peers),
        f"rsync fan-out to {len(peers)}": lambda: rsync_fanout(1, peers),
    }
    if args.lanes > 1:
        methods[f"relay 1 hop, {args.lanes} lanes (both twins)"] = lambda: relay_run(1, [2], args.lanes)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in methods}
    rsync_daemons(peers, True)
    try:
        names = list(methods)
        for rnd in range(args.repeat):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            for name in order:
                load = os.getloadavg()[0]
                res = methods[name]()
                res["load1"] = round(load, 2)
                runs[name].append(res)
                print(f"round {rnd + 1} {name}: {res['elapsed_s']} s, {size / res['elapsed_s'] / 1e9:.3f} GB/s per target,"
                      f" cpu {res['cpu_s']} (load {load:.1f})", flush=True)
    finally:
        rsync_daemons(peers, False)
    summary: dict[str, Any] = {}
    for name, rs in runs.items():
        med = _median([r["elapsed_s"] for r in rs])
        cpu_nodes = sorted({n for r in rs for n in r["cpu_s"]})
        summary[name] = {"median_s": med, "min_s": min(r["elapsed_s"] for r in rs), "max_s": max(r["elapsed_s"] for r in rs),
                         "median_payload_gbps": round(size / med / 1e9, 3),
                         "cpu_s_per_gib": {n: round(_median([r["cpu_s"][n] for r in rs if n in r["cpu_s"]]) / (size / GIB), 3)
                                           for n in cpu_nodes},
                         "load1_median": _median([r["load1"] for r in rs])}
    hop, base = summary["relay 1 hop"], summary["plain 1 hop"]
    chain = summary[f"relay chain to {len(peers)}"]
    ratios = {
        "one_hop_throughput_vs_plain": round(base["median_s"] / hop["median_s"], 3),
        "cpu_per_gib_vs_plain": {"source (sender)": round(hop["cpu_s_per_gib"]["gx10-1"] / base["cpu_s_per_gib"]["gx10-1"], 3),
                                 "target (receiver)": round(hop["cpu_s_per_gib"]["gx10-2"] / base["cpu_s_per_gib"]["gx10-2"], 3)},
        "chain_vs_rsync_fanout": round(summary[f"rsync fan-out to {len(peers)}"]["median_s"] / chain["median_s"], 3),
        "chain_vs_sequential_plain": round(summary[f"plain copies one after another to {len(peers)}"]["median_s"] / chain["median_s"], 3),
    }
    targets = {"one_hop_throughput_vs_plain": ">= 0.9", "cpu_per_gib_vs_plain": "<= 1.25 per node",
               "chain_vs_rsync_fanout": "> 1 (chain faster)", "chain_vs_sequential_plain": "> 1 (chain faster)"}
    doc = {"mode": "unthrottled", "payload_mib": args.mib, "checksum": args.checksum, "lab_nodes": len(nodes), "repeat": args.repeat,
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
           "summary": summary, "ratios": ratios, "targets": targets, "runs": runs,
           "method": ("no tc; twin A (192.168.100.0/24); times from the sending process (connect to the last "
                      "node's acknowledgement, after its fsync); CPU = getrusage user+system of each process")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"results-unthrottled-{len(nodes)}nodes.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({"summary": summary, "ratios": ratios}, indent=2))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--mib", type=int, default=96)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--unthrottled", action="store_true",
                    help="no tc: the relay against plain sendfile copies and rsync fan-out (see plain.py)")
    ap.add_argument("--lanes", type=int, default=1, help="--unthrottled: also one hop over this many twins")
    ap.add_argument("--hash", choices=("auto", "xxh3_128", "sha256"), default="auto",
                    help="the manifest's chunk checksum (the role's weights_checksum; auto: xxh3_128 when the node has"
                         " python3-xxhash)")
    args = ap.parse_args()
    nodes = list(range(1, args.nodes + 1))
    for i in nodes:
        for src, dst in ((TOOL, REMOTE_TOOL), (PLAIN, REMOTE_PLAIN)):
            subprocess.run(["scp", "-q", "-i", str(KEY), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            str(src), f"gb10admin@{mgmt(i)}:/tmp/{src.name}"], check=True)
            ssh(mgmt(i), f"mkdir -p /usr/local/lib/gb10 && install -m 0755 /tmp/{src.name} {dst}")
    chunk = 67108864 if args.unthrottled else 16777216  # the role's chunk size unthrottled
    ssh(mgmt(1), f"mkdir -p {SRC} && [ $(stat -c %s {SRC}/payload.bin 2>/dev/null || echo 0) -eq {args.mib << 20} ] "
                 f"|| head -c {args.mib << 20} /dev/urandom > {SRC}/payload.bin; python3 {REMOTE_TOOL} manifest {SRC} "
                 f"--chunk-bytes {chunk} --hash {args.hash} >/dev/null")
    args.checksum = json.loads(ssh(mgmt(1), f"cat {SRC}/.gb10-stage/manifest.json")).get("hash", "sha256")
    print(f"manifest checksum: {args.checksum}", flush=True)
    if args.unthrottled:
        return unthrottled(args)
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
