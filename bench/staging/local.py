"""bench/staging/local.py: the relay's CPU per GiB against a plain copy, on this machine, without the lab.

    python3 -m bench.staging.local [--mib 512] [--repeat 5] [--dir /var/tmp/gb10-stage-local]

Two (or three) processes over 127.0.0.1, the same bytes, the same disk:

- **plain**: `plain.py send` -> `plain.py recv` (sendfile; the receiver reads the socket into one buffer,
  writes it, fsyncs);
- **relay tail**: `gb10_stage.py send` -> `gb10_stage.py relay` (the last node of a chain: receives,
  writes, hashes every byte against the manifest, fsyncs, acknowledges);
- **relay middle**: `send` -> `relay` -> `relay` (a node inside the chain: also forwards every byte);
  its CPU is the middle relay's.

CPU is what each process reports itself (getrusage user + system from the start of the copy, all its
threads). The methods alternate every round; medians are printed with the 1-minute load average. On the
lab every node is a container on the same cores, so this is the same measurement without ssh and veths.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOOL = HERE.parents[1] / "roles" / "weights" / "files" / "gb10_stage.py"
PLAIN = HERE / "plain.py"
GIB = 1 << 30


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                time.sleep(0.02)
                continue
        return
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after 30 s")


def _last_json(out: bytes) -> dict:
    return json.loads(out.decode().strip().splitlines()[-1])


def _fresh(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    (path / ".gb10-stage").mkdir(parents=True)


def plain(work: Path) -> dict[str, float]:
    _fresh(work / "dst-a")
    port = _port()
    recv = subprocess.Popen([sys.executable, str(PLAIN), "recv", "--listen", f"127.0.0.1:{port}", "--out",
                             str(work / "dst-a" / "payload.bin")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # plain.py's sender retries its connect until the receiver listens (no probe connection: it counts one)
    sent = _last_json(subprocess.run([sys.executable, str(PLAIN), "send", str(work / "src" / "payload.bin"), "--to",
                                      f"127.0.0.1:{port}"], capture_output=True, check=True).stdout)
    out, err = recv.communicate(timeout=300)
    if recv.returncode:
        raise SystemExit(f"plain recv failed: {err.decode()[-500:]}")
    return {"wall_s": sent["wall_s"], "sender_cpu_s": sent["cpu_s"], "receiver_cpu_s": _last_json(out)["cpu_s"]}


def relay(work: Path, hops: int, tool: Path) -> dict[str, float]:
    manifest = work / "src" / ".gb10-stage" / "manifest.json"
    ports = [_port() for _ in range(hops)]
    procs = []
    for k in range(hops - 1, -1, -1):
        dst = work / f"dst-{'ab'[k]}"
        _fresh(dst)
        nxt = ["--next", f"127.0.0.1:{ports[k + 1]}"] if k + 1 < hops else []
        procs.append(subprocess.Popen([sys.executable, str(tool), "relay", str(dst), str(manifest), "--listen",
                                       f"127.0.0.1:{ports[k]}", *nxt, "--timeout", "120", "--name", f"r{k}"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    time.sleep(0.3)  # the relays bind; the sender retries its connect meanwhile
    need = work / "need.json"
    res = subprocess.run([sys.executable, str(tool), "send", str(work / "src"), str(manifest), "--next",
                          f"127.0.0.1:{ports[0]}", "--need", str(need), "--name", "src"], capture_output=True)
    sent = _last_json(res.stdout)
    for p in procs:
        p.communicate(timeout=300)
    if not sent.get("complete"):
        raise SystemExit(f"the relay chain did not complete: {sent} {res.stderr.decode()[-500:]}")
    cpu = {r["node"]: r.get("cpu_s", 0.0) for r in sent["results"]}
    return {"wall_s": sent["elapsed_s"], "sender_cpu_s": sent["cpu_s"], "receiver_cpu_s": cpu["r0"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default="/var/tmp/gb10-stage-local")
    ap.add_argument("--only", action="append", help="plain, tail, middle (default: all)")
    ap.add_argument("--tool", default=str(TOOL), help="the gb10_stage.py to measure (e.g. an older one)")
    args = ap.parse_args()
    tool = Path(args.tool)
    work = Path(args.dir)
    src = work / "src"
    payload = src / "payload.bin"
    if not payload.exists() or payload.stat().st_size != args.mib << 20:
        src.mkdir(parents=True, exist_ok=True)
        with payload.open("wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
    subprocess.run([sys.executable, str(tool), "manifest", str(src), "--chunk-bytes", str(64 << 20)],
                   check=True, capture_output=True)
    manifest = json.loads((src / ".gb10-stage" / "manifest.json").read_text())
    (work / "need.json").write_text(json.dumps([[f["path"], i] for f in manifest["files"]
                                                for i in range(len(f["chunks"]))]))
    methods = {"plain": lambda: plain(work), "tail": lambda: relay(work, 1, tool), "middle": lambda: relay(work, 2, tool)}
    names = args.only or list(methods)
    runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    gib = (args.mib << 20) / GIB
    for rnd in range(args.repeat):
        for name in names[rnd % len(names):] + names[:rnd % len(names)]:
            load = os.getloadavg()[0]
            r = methods[name]()
            r["load1"] = round(load, 2)
            runs[name].append(r)
            print(f"round {rnd + 1} {name}: {r['wall_s']} s, receiver {r['receiver_cpu_s'] / gib:.3f} CPU s/GiB,"
                  f" sender {r['sender_cpu_s'] / gib:.3f} (load {load:.1f})", flush=True)
    summary = {n: {"receiver_cpu_s_per_gib": round(statistics.median(r["receiver_cpu_s"] for r in rs) / gib, 3),
                   "sender_cpu_s_per_gib": round(statistics.median(r["sender_cpu_s"] for r in rs) / gib, 3),
                   "wall_s": round(statistics.median(r["wall_s"] for r in rs), 3),
                   "load1": round(statistics.median(r["load1"] for r in rs), 2)} for n, rs in runs.items()}
    if "plain" in summary:
        base = summary["plain"]["receiver_cpu_s_per_gib"]
        for n in summary:
            summary[n]["receiver_vs_plain"] = round(summary[n]["receiver_cpu_s_per_gib"] / base, 3)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
