"""module_utils/registry_mirror.py: references, the mirror's names, and copies between two real registries.

The copy tests start two instances of Debian's docker-registry (the binary the mirror runs; the lab and
CI hosts have it, `lab/ensure-host.sh`) on 127.0.0.1: an "upstream" holding a small image pushed here,
and the mirror. The upstream's access log counts the blob GETs.
"""
from __future__ import annotations

import hashlib
import json

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.registry_mirror import (
    MirrorError,
    RegistryClient,
    check_manifest,
    copy_image,
    mirror_errors,
    mirror_ref,
    parse_ref,
    pinned_refs,
)
from tests.support.registries import push, start_registries

D = "sha256:" + "ab" * 32
D2 = "sha256:" + "cd" * 32


# --------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize(("ref", "registry", "repository"), [
    (f"nvcr.io/nvidia/vllm@{D}", "nvcr.io", "nvidia/vllm"),
    (f"nvcr.io/nvidia/vllm:26.10-py3@{D}", "nvcr.io", "nvidia/vllm"),
    (f"vllm/vllm-openai@{D}", "docker.io", "vllm/vllm-openai"),
    (f"ubuntu@{D}", "docker.io", "library/ubuntu"),
    (f"10.77.0.1:5000/gb10/vllm-cpu@{D}", "10.77.0.1:5000", "gb10/vllm-cpu"),
    (f"localhost/x@{D}", "localhost", "x"),
])
def test_parse_ref(ref: str, registry: str, repository: str) -> None:
    parsed = parse_ref(ref)
    assert (parsed.registry, parsed.repository, parsed.digest) == (registry, repository, D)


@pytest.mark.parametrize("ref", ["nvcr.io/nvidia/vllm:26.10-py3", "nvcr.io/nvidia/vllm@sha256:abc", "", f"Bad/Name@{D}"])
def test_parse_ref_refuses(ref: str) -> None:
    with pytest.raises(MirrorError):
        parse_ref(ref)


def test_mirror_ref_keeps_the_digest_and_the_upstream_name() -> None:
    assert mirror_ref(f"nvcr.io/nvidia/vllm:26.10-py3@{D}", "10.0.0.5:5001") == f"10.0.0.5:5001/nvcr.io/nvidia/vllm@{D}"
    assert mirror_ref(f"ubuntu@{D}", "m:5001") == f"m:5001/docker.io/library/ubuntu@{D}"
    # a registry with a port becomes host-port (no ':' in a repository path)
    assert mirror_ref(f"10.77.0.1:5000/gb10/x@{D}", "m:5001") == f"m:5001/10.77.0.1-5000/gb10/x@{D}"
    # no mirror, or already in it: unchanged
    assert mirror_ref(f"nvcr.io/nvidia/vllm@{D}", "") == f"nvcr.io/nvidia/vllm@{D}"
    assert mirror_ref(f"m:5001/nvcr.io/nvidia/vllm@{D}", "m:5001") == f"m:5001/nvcr.io/nvidia/vllm@{D}"


def test_pinned_refs_and_errors() -> None:
    pins = {"a": {"repository": "nvcr.io/nvidia/vllm", "digest": D}, "b": {"repository": "x/y", "digest": ""},
            "c": {"repository": "nvcr.io/nvidia/vllm", "digest": D}, "d": "repo:tag"}
    assert pinned_refs(pins) == [f"nvcr.io/nvidia/vllm@{D}"]
    assert mirror_errors("10.0.0.5:5001", [f"nvcr.io/nvidia/vllm@{D}"]) == []
    assert mirror_errors("", []) == []
    errors = mirror_errors("http://10.0.0.5:5001/", ["nvcr.io/nvidia/vllm:latest"])
    assert len(errors) == 2 and "gb10_registry_mirror" in errors[0] and "not pinned by digest" in errors[1]


def test_check_manifest_refuses_altered_bytes_and_indexes() -> None:
    body = json.dumps({"schemaVersion": 2, "config": {}, "layers": []}).encode()
    ref = parse_ref(f"nvcr.io/nvidia/vllm@{D}")
    with pytest.raises(MirrorError, match="altered"):
        check_manifest(ref, "application/vnd.oci.image.manifest.v1+json", body, "linux/arm64")
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"digest": D2, "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": D, "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    iref = parse_ref(f"nvcr.io/nvidia/vllm@sha256:{hashlib.sha256(index).hexdigest()}")
    with pytest.raises(MirrorError, match=f"pin that platform's manifest instead, nvcr.io/nvidia/vllm@{D2}"):
        check_manifest(iref, "application/vnd.oci.image.index.v1+json", index, "linux/arm64")
    with pytest.raises(MirrorError, match="without linux/riscv64"):
        check_manifest(iref, "application/vnd.oci.image.index.v1+json", index, "linux/riscv64")


# --------------------------------------------------------------------------------------------- copies
@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from start_registries(tmp_path_factory)


def test_copy_fetches_each_blob_once_and_then_nothing(registries) -> None:  # type: ignore[no-untyped-def]
    up, mirror = registries
    blobs = [b'{"architecture":"arm64","os":"linux"}', b"layer-one" * 1000, bytes(range(256)) * 4096]
    digest = push(up.addr, "gb10/tiny", blobs)
    ref = f"{up.addr}/gb10/tiny@{digest}"
    before = up.blob_gets()
    first = copy_image(ref, mirror.addr, upstream_insecure=True)
    assert first.changed and [b["action"] for b in first.blobs] == ["copy", "copy", "copy"]
    assert first.bytes_copied == sum(len(b) for b in blobs)
    assert up.blob_gets() - before == 3  # one GET per blob, from upstream
    assert first.mirror_ref == f"{mirror.addr}/127.0.0.1-{up.addr.split(':')[1]}/gb10/tiny@{digest}"
    # the mirror serves the same manifest bytes under the same digest
    client = RegistryClient(mirror.addr, insecure=True)
    res = client.request("GET", f"/v2/127.0.0.1-{up.addr.split(':')[1]}/gb10/tiny/manifests/{digest}",
                         {"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert "sha256:" + hashlib.sha256(res.read()).hexdigest() == digest
    again = copy_image(ref, mirror.addr, upstream_insecure=True)
    assert not again.changed and again.bytes_copied == 0 and up.blob_gets() - before == 3


def test_check_mode_copies_nothing(registries) -> None:  # type: ignore[no-untyped-def]
    up, mirror = registries
    digest = push(up.addr, "gb10/other", [b'{"os":"linux"}', b"x" * 5000])
    before = up.blob_gets()
    res = copy_image(f"{up.addr}/gb10/other@{digest}", mirror.addr, upstream_insecure=True, check=True)
    assert res.changed and [b["action"] for b in res.blobs] == ["copy", "copy"] and up.blob_gets() == before
    assert not RegistryClient(mirror.addr, insecure=True).exists(
        "manifests", f"127.0.0.1-{up.addr.split(':')[1]}/gb10/other", digest)


def test_a_wrong_pin_is_refused(registries) -> None:  # type: ignore[no-untyped-def]
    up, mirror = registries
    with pytest.raises(MirrorError, match="404"):
        copy_image(f"{up.addr}/gb10/tiny@{D}", mirror.addr, upstream_insecure=True)
