"""The lab's push into its registry (lab_serving.push), against this machine's Docker and a real
docker-registry on a loopback port: a layer an image shares with an earlier push is not uploaded again,
an image whose blobs are all stored costs only its manifest, and what lands in the registry is the image
(every blob hashes to its digest, in the image's layer order)."""
from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import socket
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from lab.serving import lab_serving as L


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(addr: str, path: str, accept: str = "") -> bytes:
    conn = http.client.HTTPConnection(addr, timeout=30)
    conn.request("GET", path, headers={"Accept": accept} if accept else {})
    res = conn.getresponse()
    body = res.read()
    assert res.status == 200, (path, res.status, body[:200])
    return body


@pytest.fixture
def images(tmp_path, monkeypatch):
    """A one-layer image (2 MiB of a file) and a variant with one more layer, both local; a registry of
    this test's own; the module's state folder in tmp_path. Both images are removed afterwards."""
    for tool in ("docker", "docker-registry"):
        if not shutil.which(tool) and not Path(f"/usr/bin/{tool}").exists():
            pytest.fail(f"{tool} is missing on this machine: `make deps` installs it (lab/ensure-host.sh)")
    tag = f"gb10-push-test:t{uuid.uuid4().hex[:12]}"
    root = tmp_path / "root"
    root.mkdir()
    (root / "weights.bin").write_bytes(bytes(range(256)) * 8192)
    with tarfile.open(tmp_path / "root.tar", "w") as tar:
        tar.add(root / "weights.bin", arcname="weights.bin")
    # As the lab image: an imported root, a second stage on it, variants on top of that.
    subprocess.run(["docker", "import", str(tmp_path / "root.tar"), f"{tag}-root"], check=True, capture_output=True)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "stage.txt").write_text("the second stage\n")
    (ctx / "note.txt").write_text("the variant's own layer\n")
    variant = f"{tag}-variant"
    for name, body in ((tag, f"FROM {tag}-root\nCOPY stage.txt /stage.txt\n"), (variant, f"FROM {tag}\nCOPY note.txt /note.txt\n")):
        (ctx / "Dockerfile").write_text(body)
        subprocess.run(["docker", "build", "--network", "none", "-q", "-t", name, str(ctx)], check=True,
                       capture_output=True)
    addr = f"127.0.0.1:{_free_port()}"
    monkeypatch.setattr(L, "STATE", tmp_path / "state")
    monkeypatch.setattr(L, "LAYER_FOLDERS", tmp_path / "state" / "layer-folders.json")
    monkeypatch.setattr(L, "REGISTRY_ROOT", tmp_path / "registry")
    monkeypatch.setattr(L, "REGISTRY_ADDR", addr)
    lines: list[str] = []
    monkeypatch.setattr(L, "log", lines.append)
    try:
        yield {"base": tag, "variant": variant, "addr": addr, "log": lines, "state": tmp_path / "state"}
    finally:
        L.stop_registry()
        subprocess.run(["docker", "rmi", "-f", variant, tag, f"{tag}-root"], capture_output=True, check=False)


def _check_in_registry(addr: str, tag: str, pin: dict[str, str]) -> list[str]:
    """The manifest under the image's tag is the pinned digest, its config is the image ID, and every blob
    hashes to its digest; the layers' digests are the image's diff_ids in order."""
    manifest = _get(addr, f"/v2/{L.REGISTRY_REPO}/manifests/{tag.split(':', 1)[1]}", L.OCI_MANIFEST)
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == pin["digest"]
    m = json.loads(manifest)
    info = json.loads(subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=True).stdout)[0]
    assert m["config"]["digest"] == info["Id"]
    assert [layer["digest"] for layer in m["layers"]] == info["RootFS"]["Layers"]
    for blob in [m["config"], *m["layers"]]:
        body = _get(addr, f"/v2/{L.REGISTRY_REPO}/blobs/{blob['digest']}")
        assert len(body) == blob["size"] and "sha256:" + hashlib.sha256(body).hexdigest() == blob["digest"]
    return [layer["digest"] for layer in m["layers"]]


def test_a_shared_layer_is_uploaded_once_and_a_stored_image_costs_its_manifest(images):
    lines = images["log"]
    base = L.push(images["base"], write=False)
    root_layer, stage_layer = _check_in_registry(images["addr"], images["base"], base)
    assert sum("  uploaded " in line for line in lines) == 3  # two layers and the config

    # The variant shares the root layer (2 MiB, below the image's top as the lab image's 3.8 GB one is):
    # not uploaded again.
    lines.clear()
    variant = L.push(images["variant"], write=False)
    layers = _check_in_registry(images["addr"], images["variant"], variant)
    assert layers[:2] == [root_layer, stage_layer] and len(layers) == 3
    assert any(line.startswith(f"  {root_layer[:19]} ") and "in the registry already" in line for line in lines), lines
    # docker save names the image's top layer by the image, so the second stage's 1-file layer goes again,
    # with the variant's own layer and its config. (The lab image's top is a 5 kB check; its large layers
    # are all below it.)
    assert sum("  uploaded " in line for line in lines) == 3, lines

    # Nothing of either image is left to upload: a push again (here, or from another clone with the same
    # registry storage) writes the manifest from the registry's own sizes; same digest.
    lines.clear()
    again = L.push(images["variant"], write=False)
    assert again["digest"] == variant["digest"]
    assert not any("uploaded" in line or "pushing" in line for line in lines), lines
    assert any("holds its config and every layer" in line for line in lines), lines
