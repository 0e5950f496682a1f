"""bench/pull: N lab nodes pulling one image, through the rack's mirror against straight from upstream.

    sudo .venv/bin/python -m bench.pull.run [--rate 200mbit] [--big-mib 200] [--nodes 4] [--repeat 1]

On the running lab (inventory/lab, LAB_ID as for make lab-up):
- builds a test image locally (cached by content): a small base layer (a few MiB) and one layer of
  --big-mib MiB of seeded random bytes (incompressible), and pushes it to an "upstream" registry, a
  second docker-registry on <gateway>:5002 (lab/serving/lab_serving.py extra_registry) whose access log
  counts every blob GET;
- shapes what that upstream sends to --rate (tc on the host: an HTB class for source port 5002 on the
  management bridge, which carries upstream -> node traffic, and on lo, which carries upstream -> mirror):
  the rack's internet link;
- "direct": every node pulls the image from upstream at once (N downloads over the shared link);
- "mirror": the copy into the mirror on <gateway>:5003 (gb10.cluster registry_copy's code: one fetch of
  each blob, sha256 checked) then every node pulls from the mirror at once;
- each run starts from empty nodes (image removed) and an empty mirror, counts upstream blob GETs and
  checks every node holds the same image ID.
Writes bench/pull/results/results.json and results.md. Removes the shaping at the end (also on failure).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from ansible_collections.gb10.cluster.plugins.module_utils.registry_mirror import copy_image, mirror_ref
from lab.lab import LAB_ID, MGMT_BRIDGE, MGMT_GATEWAY, MGMT_PREFIX, STATE
from lab.serving.lab_serving import OCI_MANIFEST, Registry, blob_gets, extra_registry, stop_extra_registry, upload_image

ROOT = Path(__file__).resolve().parents[2]
KEY = STATE / "ssh" / "id_ed25519"
RESULTS = Path(__file__).resolve().parent / "results"
UPSTREAM_PORT = 5002
MIRROR_PORT = 5003
UPSTREAM = f"{MGMT_GATEWAY}:{UPSTREAM_PORT}"
MIRROR = f"{MGMT_GATEWAY}:{MIRROR_PORT}"
REPO = "gb10/pull-bench"


def log(msg: str) -> None:
    print(f"bench-pull: {msg}", flush=True)


def sh(*cmd: str, check: bool = True, inp: bytes | None = None) -> str:
    res = subprocess.run(cmd, input=inp, capture_output=True)
    if check and res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr.decode()[-800:]}")
    return res.stdout.decode()


def ssh_argv(i: int, cmd: str) -> list[str]:
    return ["ssh", "-q", "-i", str(KEY), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", f"gb10admin@{MGMT_PREFIX}.{10 + i}", f"sudo sh -c {json.dumps(cmd)}"]


def ssh(i: int, cmd: str, check: bool = True) -> str:
    return sh(*ssh_argv(i, cmd), check=check)


# --------------------------------------------------------------------------------------------- image
def build_image(big_mib: int) -> str:
    """gb10-pull-bench:<big_mib>: a small base (a few MiB) plus one incompressible layer of big_mib MiB."""
    tag = f"gb10-pull-bench:big{big_mib}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    rng = random.Random(20261129)
    with tempfile.TemporaryDirectory(dir=STATE) as tmp:
        base = Path(tmp) / "base.tar"
        with tarfile.open(base, "w") as tar:  # a few MiB of text, like a minimal root
            for name in ("etc/os-release", "usr/share/doc/bench/README"):
                data = f"gb10 pull bench {name}\n".encode()
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
            data = rng.randbytes(4 << 20)
            info = tarfile.TarInfo("usr/lib/bench/base.bin")
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
        sh("docker", "import", "--change", 'CMD ["/bin/true"]', str(base), f"{tag}-base")
        (Path(tmp) / "big.bin").write_bytes(rng.randbytes(big_mib << 20))
        (Path(tmp) / "Dockerfile").write_text(f"FROM {tag}-base\nCOPY big.bin /srv/big.bin\n")
        sh("docker", "build", "-q", "-t", tag, tmp)
    log(f"built {tag}")
    return tag


def push(tag: str) -> str:
    """Push ``tag`` to the upstream registry (uncompressed layers, lab_serving's upload); returns the ref."""
    reg = Registry(UPSTREAM, REPO)
    digest = reg.put_manifest(tag.split(":")[1], upload_image(reg, tag), OCI_MANIFEST)
    return f"{UPSTREAM}/{REPO}@{digest}"


# --------------------------------------------------------------------------------------------- shaping
def shape(rate: str) -> None:
    """Only what the upstream registry sends (source port 5002) goes through an HTB class of ``rate``;
    everything else is unclassified, which HTB sends on unshaped (no default class)."""
    for dev in (MGMT_BRIDGE, "lo"):
        sh("tc", "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb")
        sh("tc", "class", "replace", "dev", dev, "parent", "1:", "classid", "1:4", "htb", "rate", rate, "ceil", rate)
        sh("tc", "filter", "replace", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
           "match", "ip", "src", f"{MGMT_GATEWAY}/32", "match", "ip", "sport", str(UPSTREAM_PORT), "0xffff",
           "flowid", "1:4")


def unshape() -> None:
    for dev in (MGMT_BRIDGE, "lo"):
        sh("tc", "qdisc", "del", "dev", dev, "root", check=False)


# --------------------------------------------------------------------------------------------- runs
def prepare_nodes(nodes: list[int]) -> None:
    """Both registries as insecure in every node's daemon.json (other keys kept), Docker restarted once."""
    want = [UPSTREAM, MIRROR]
    for i in nodes:
        raw = ssh(i, "cat /etc/docker/daemon.json 2>/dev/null || echo {}")
        conf = json.loads(raw or "{}")
        have = conf.get("insecure-registries", [])
        if all(r in have for r in want):
            continue
        conf["insecure-registries"] = list(dict.fromkeys(have + want))
        sh(*ssh_argv(i, "cat > /etc/docker/daemon.json && systemctl restart docker"), inp=json.dumps(conf).encode())


def clear_nodes(nodes: list[int], ref: str) -> None:
    repo_digest = ref.split("/", 1)[1]
    for i in nodes:
        ssh(i, f"docker image ls --no-trunc --format '{{{{.ID}}}}' --filter reference='*/{repo_digest.split('@')[0]}' "
               f"--filter reference='*/*/{repo_digest.split('@')[0]}' | sort -u | xargs -r docker image rm -f >/dev/null; "
               "docker image prune -f >/dev/null", check=False)


def pull_all(nodes: list[int], ref: str) -> tuple[float, list[str], dict[int, float]]:
    t0 = time.monotonic()
    procs = {i: subprocess.Popen(ssh_argv(i, f"docker pull -q {ref} >/dev/null && docker image inspect -f '{{{{.Id}}}}' {ref}"),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in nodes}
    ids, each = [], {}
    for i, proc in procs.items():
        out, err = proc.communicate(timeout=1800)
        each[i] = round(time.monotonic() - t0, 2)
        if proc.returncode != 0:
            raise SystemExit(f"gx10-{i}: docker pull {ref} failed: {err.decode()[-500:]}")
        ids.append(out.decode().strip())
    return round(time.monotonic() - t0, 2), ids, each


def reset_mirror() -> Path:
    stop_extra_registry("pull-mirror")
    return extra_registry("pull-mirror", MIRROR)


def run_direct(nodes: list[int], ref: str, upstream_log: Path) -> dict[str, object]:
    clear_nodes(nodes, ref)
    mark = upstream_log.stat().st_size
    wall, ids, each = pull_all(nodes, ref)
    gets = blob_gets(upstream_log, mark)
    return {"mode": "direct", "wall_s": wall, "per_node_s": each, "upstream_blob_gets": len(gets),
            "image_ids": sorted(set(ids))}


def run_mirror(nodes: list[int], ref: str, upstream_log: Path) -> dict[str, object]:
    target = mirror_ref(ref, MIRROR)
    clear_nodes(nodes, target)
    mirror_log = reset_mirror()
    mark = upstream_log.stat().st_size
    t0 = time.monotonic()
    copied = copy_image(ref, MIRROR, upstream_insecure=True, mirror_insecure=True)
    copy_s = round(time.monotonic() - t0, 2)
    mirror_mark = mirror_log.stat().st_size
    wall, ids, each = pull_all(nodes, target)
    gets = blob_gets(upstream_log, mark)
    # The nodes really downloaded every blob from the mirror (none was left over from the direct run).
    served = blob_gets(mirror_log, mirror_mark)
    return {"mode": "mirror", "wall_s": round(copy_s + wall, 2), "copy_s": copy_s, "pull_s": wall,
            "per_node_s": each, "upstream_blob_gets": len(gets), "mirror_blob_gets": len(served),
            "bytes_from_upstream": copied.bytes_copied, "image_ids": sorted(set(ids)), "mirror_ref": target}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", default="200mbit")
    ap.add_argument("--big-mib", type=int, default=200)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="leave the upstream and mirror registries running")
    ap.add_argument("--upstream-only", metavar="JSON", help="only build the image, start the upstream registry, push, "
                    "and write {ref, image_id, blobs, access_log, mark} to JSON (molecule/mirror's prepare)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench-pull: run as root (tc, docker)")
    if args.upstream_only:
        tag = build_image(args.big_mib)
        upstream_log = extra_registry("pull-upstream", UPSTREAM)
        ref = push(tag)
        info = json.loads(sh("docker", "image", "inspect", tag))[0]
        Path(args.upstream_only).write_text(json.dumps({
            "ref": ref, "image_id": info["Id"], "blobs": len(info["RootFS"]["Layers"]) + 1, "upstream": UPSTREAM,
            "access_log": str(upstream_log), "mark": upstream_log.stat().st_size}) + "\n")
        log(f"upstream {ref}; access log {upstream_log}")
        return 0
    nodes = list(range(1, args.nodes + 1))
    tag = build_image(args.big_mib)
    upstream_log = extra_registry("pull-upstream", UPSTREAM)
    ref = push(tag)
    manifest_layers = json.loads(sh("docker", "image", "inspect", tag))[0]["RootFS"]["Layers"]
    blobs = len(manifest_layers) + 1  # layers + config
    size = int(json.loads(sh("docker", "image", "inspect", tag))[0]["Size"])
    log(f"upstream image {ref} ({size / 2**20:.0f} MiB, {blobs} blobs)")
    prepare_nodes(nodes)
    runs = []
    try:
        shape(args.rate)
        for _ in range(args.repeat):
            for fn in (run_direct, run_mirror):
                res = fn(nodes, ref, upstream_log)
                log(json.dumps(res))
                runs.append(res)
    finally:
        unshape()
        if not args.keep:
            stop_extra_registry("pull-mirror")
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "lab_id": LAB_ID, "nodes": len(nodes),
        "rate": args.rate, "image_bytes": size, "image_blobs": blobs, "ref": ref,
        "registry": sh("docker-registry", "--version").strip(), "node_docker": ssh(1, "docker version -f '{{.Server.Version}}'").strip(),
        "host_cores": os.cpu_count(), "runs": runs,
    }
    (RESULTS / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["| mode | wall (s) | copy into mirror (s) | nodes' pull (s) | upstream blob GETs | mirror blob GETs "
             "| image IDs |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['mode']} | {r['wall_s']} | {r.get('copy_s', '-')} | {r.get('pull_s', r['wall_s'])} | "
                     f"{r['upstream_blob_gets']} | {r.get('mirror_blob_gets', '-')} | {len(r['image_ids'])} |")
    (RESULTS / "results.md").write_text(
        f"# {len(nodes)} nodes pulling {size / 2**20:.0f} MiB ({blobs} blobs), upstream shaped to {args.rate}\n\n"
        + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
