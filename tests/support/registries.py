"""Two real registries for tests: Debian's docker-registry (the binary the rack's mirror runs; the lab and
CI hosts have it, lab/ensure-host.sh) on 127.0.0.1, and a push of raw blobs into one."""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.registry_mirror import RegistryClient, _upload

BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveRegistry:
    def __init__(self, tmp: Path, name: str) -> None:
        self.addr = f"127.0.0.1:{_free_port()}"
        self.log = tmp / f"{name}.log"
        config = tmp / f"{name}.yml"
        config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {tmp / name}\n"
                          f"http:\n  addr: {self.addr}\n")
        self.proc = subprocess.Popen([BINARY, "serve", str(config)], stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                socket.create_connection(tuple(self.addr.split(":")), timeout=0.2).close()  # type: ignore[arg-type]
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"docker-registry did not start: {self.log.read_text()}")

    def blob_gets(self) -> int:
        return sum(1 for line in self.log.read_text().splitlines() if '"GET /v2/' in line and "/blobs/sha256:" in line)


def start_registries(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    assert Path(BINARY).exists(), "docker-registry is missing: apt-get install docker-registry (lab/ensure-host.sh)"
    tmp = tmp_path_factory.mktemp("registries")
    up, mirror = LiveRegistry(tmp, "upstream"), LiveRegistry(tmp, "mirror")
    yield up, mirror
    for reg in (up, mirror):
        reg.proc.terminate()
        reg.proc.wait(timeout=10)


def push(addr: str, repository: str, blobs: list[bytes]) -> str:
    """Push a config and layers (raw bytes) and an OCI manifest; returns its digest."""
    client = RegistryClient(addr, insecure=True)
    descs = []
    for data in blobs:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        _upload(client, repository, io.BytesIO(data), len(data), digest, None)  # type: ignore[arg-type]
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": len(data)})
    descs[0]["mediaType"] = "application/vnd.oci.image.config.v1+json"
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": descs[0], "layers": descs[1:]}).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    res = client.request("PUT", f"/v2/{repository}/manifests/{digest}",
                         {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, body=body, ok=(201,))
    res.read()
    return digest
