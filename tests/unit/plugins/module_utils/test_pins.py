"""module_utils/pins.py: resolving an image at a real registry, a revision at the lab's Hub-like endpoint,
the probe's answer, the pins file and how the catalog (and serve's checks) read it."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from ansible_collections.gb10.cluster.plugins.module_utils import pins as P
from ansible_collections.gb10.cluster.plugins.module_utils import serving as S
from ansible_collections.gb10.cluster.plugins.module_utils.registry_mirror import RegistryClient
from lab import hub as labhub
from tests.support.registries import push, start_registries

TOKEN = "hf_pinTestToken_0123456789"
REPO = "lab-org/tiny-fetch"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from start_registries(tmp_path_factory)


@pytest.fixture
def hub(tmp_path):  # type: ignore[no-untyped-def]
    info = labhub.make_repo(tmp_path / "repos", REPO, 1)
    server, cdn = labhub.pair(("127.0.0.1", 0), labhub.load_repos(tmp_path / "repos"), TOKEN, 0, str(tmp_path / "hub.log"))
    for s in (server, cdn):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", info
    server.shutdown()
    cdn.shutdown()


def _tag(addr: str, repository: str, digest: str, tag: str, media_type: str = OCI_MANIFEST) -> None:
    client = RegistryClient(addr, insecure=True)
    body = client.request("GET", f"/v2/{repository}/manifests/{digest}", {"Accept": media_type}).read()
    client.request("PUT", f"/v2/{repository}/manifests/{tag}", {"Content-Type": media_type}, body=body, ok=(201,)).read()


# ----------------------------------------------------------------------------------------------- image
def test_tag_resolves_to_the_manifest_digest_and_the_config_digest(registries):
    up, _ = registries
    config, layer = b'{"architecture":"amd64","os":"linux"}', b"layer-bytes" * 100
    digest = push(up.addr, "gb10/pin-test", [config, layer])
    _tag(up.addr, "gb10/pin-test", digest, "v1")
    got = P.resolve_image(f"{up.addr}/gb10/pin-test", "v1", insecure=True)
    assert got["digest"] == digest
    assert got["image_id"] == "sha256:" + hashlib.sha256(config).hexdigest()
    assert got["ref"] == f"{up.addr}/gb10/pin-test@{digest}" and got["layers"] == 1 and got["index"] == ""
    # by digest: checked and the same answer
    assert P.resolve_image(f"{up.addr}/gb10/pin-test", "", digest, insecure=True)["image_id"] == got["image_id"]


def test_an_index_resolves_to_the_nodes_platform(registries):
    up, _ = registries
    arm = push(up.addr, "gb10/pin-multi", [b'{"architecture":"arm64"}', b"arm-layer"])
    amd = push(up.addr, "gb10/pin-multi", [b'{"architecture":"amd64"}', b"amd-layer"])
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": amd, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": arm, "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
    ]}).encode()
    client = RegistryClient(up.addr, insecure=True)
    client.request("PUT", "/v2/gb10/pin-multi/manifests/26.10", {"Content-Type": OCI_INDEX}, body=index, ok=(201,)).read()
    got = P.resolve_image(f"{up.addr}/gb10/pin-multi", "26.10", insecure=True)
    assert got["digest"] == arm and got["index"] == "sha256:" + hashlib.sha256(index).hexdigest()
    assert P.resolve_image(f"{up.addr}/gb10/pin-multi", "26.10", platform="linux/amd64", insecure=True)["digest"] == amd
    with pytest.raises(P.PinError, match="without linux/riscv64 .it has linux/amd64, linux/arm64"):
        P.resolve_image(f"{up.addr}/gb10/pin-multi", "26.10", platform="linux/riscv64", insecure=True)


def test_registry_mistakes_are_one_sentence(registries):
    up, _ = registries
    with pytest.raises(P.PinError) as exc:
        P.resolve_image(f"{up.addr}/gb10/pin-test", "no-such-tag", insecure=True)
    assert str(exc.value) == f"the registry {up.addr} has no {up.addr}/gb10/pin-test:no-such-tag (HTTP 404); check the repository and tag."
    with pytest.raises(P.PinError) as exc:
        P.resolve_image("127.0.0.1:9/gb10/pin-test", "v1", insecure=True, timeout=5)
    assert str(exc.value).startswith("cannot reach the registry 127.0.0.1:9 (http) for 127.0.0.1:9/gb10/pin-test:v1 (")
    assert str(exc.value).endswith("check that it runs and that the control machine reaches it, then run pin.yml again.")


@pytest.mark.parametrize(("ref", "want"), [
    ("nvcr.io/nvidia/vllm:26.10-py3", ("nvcr.io/nvidia/vllm", "26.10-py3", "")),
    ("10.77.0.1:5000/gb10/vllm-cpu:lab", ("10.77.0.1:5000/gb10/vllm-cpu", "lab", "")),
    ("10.77.0.1:5000/gb10/x@sha256:" + "a" * 64, ("10.77.0.1:5000/gb10/x", "", "sha256:" + "a" * 64)),
    ("10.77.0.1:5000/gb10/x", ("10.77.0.1:5000/gb10/x", "", "")),
])
def test_split_image(ref, want):
    assert P.split_image(ref) == want


# ----------------------------------------------------------------------------------------------- hub
def test_hub_revision_commit_sizes_and_checksums(hub, tmp_path):
    endpoint, info = hub
    got = P.hub_revision(endpoint, REPO, "main", TOKEN, ["original/*"])
    assert got["revision"] == info["revision"] and got["requested"] == "main"
    assert [f["path"] for f in got["files"]] == ["config.json", "model-00001-of-00002.safetensors",
                                                 "model-00002-of-00002.safetensors", "tokenizer.json"]
    folder = tmp_path / "repos" / REPO
    for f in got["files"]:
        data = (folder / f["path"]).read_bytes()
        assert f["size"] == len(data)
        if f["path"].endswith(".safetensors"):
            assert f["sha256"] == hashlib.sha256(data).hexdigest()
        else:
            assert f["git_sha1"] == labhub.git_blob_sha1(data)
    assert got["checkpoint_bytes"] == sum(f["size"] for f in got["files"] if f["path"].endswith(".safetensors")) == 2**20
    assert P.hub_revision(endpoint, REPO, info["revision"], TOKEN, ["original/*"]) == got | {"requested": info["revision"]}


def test_hub_mistakes_are_one_sentence(hub):
    endpoint, info = hub
    with pytest.raises(P.PinError, match=r"answered HTTP 401 for lab-org/tiny-fetch@main: the token was refused; put a valid"):
        P.hub_revision(endpoint, REPO, "main", "hf_wrong")
    with pytest.raises(P.PinError, match=r"answered HTTP 404 for lab-org/tiny-fetch@v9: no such repository or revision"):
        P.hub_revision(endpoint, REPO, "v9", TOKEN)
    with pytest.raises(P.PinError) as exc:
        P.hub_revision("http://127.0.0.1:9", REPO, "main", TOKEN, timeout=5)
    assert str(exc.value).startswith("cannot reach the Hub http://127.0.0.1:9 for lab-org/tiny-fetch (")
    assert TOKEN not in str(exc.value)


# ----------------------------------------------------------------------------------------------- probe
def test_probe_runs_here_and_parses():
    """The probe code itself, run by this Python (no vLLM or Ray here: reported absent, not an error)."""
    res = subprocess.run([sys.executable, "-c", P.PROBE], capture_output=True, text=True, timeout=120)
    got = P.parse_probe(res.returncode, res.stdout, res.stderr)
    assert got["python"] == ".".join(str(n) for n in sys.version_info[:3])
    assert set(got) == {"python", "vllm", "ray", "nccl", "torch"}


def test_probe_without_python_and_with_versions():
    err = 'docker: Error response from daemon: failed to create task: exec: "python3": executable file not found in $PATH'
    assert P.parse_probe(127, "", err) == dict.fromkeys(("python", "vllm", "ray", "nccl", "torch"), "absent")
    out = '{"python": "3.11.2", "vllm": "0.32.0+cpu", "ray": "2.58.0", "torch": "2.9.0+cpu", "nccl": "absent"}\n'
    assert P.parse_probe(0, out, "") == {"python": "3.11.2", "vllm": "0.32.0+cpu", "ray": "2.58.0", "nccl": "absent",
                                         "torch": "2.9.0+cpu"}
    with pytest.raises(P.PinError, match=r"the probe in x@y failed \(rc 1: MemoryError\)"):
        P.parse_probe(1, "", "Traceback\nMemoryError", "x@y")


# ----------------------------------------------------------------------------------------------- record
IMAGE = {"repository": "10.77.4.1:5002/gb10/pull-bench", "tag": "big16", "digest": "sha256:" + "d" * 64,
         "image_id": "sha256:" + "e" * 64, "index": ""}
HUB = {"endpoint": "http://10.77.4.1:18708", "repo": REPO, "revision": "c" * 40, "checkpoint_bytes": 8388608,
       "files": [{"path": "config.json", "size": 61, "git_sha1": "1" * 40},
                 {"path": "model-00001-of-00002.safetensors", "size": 4194304, "sha256": "2" * 64},
                 {"path": "model-00002-of-00002.safetensors", "size": 4194304, "sha256": "3" * 64}]}
ABSENT_PROBE = dict.fromkeys(("python", "vllm", "ray", "nccl", "torch"), "absent")
ENTRY = {"description": "x", "hf_repo": REPO, "hf_revision": "", "config": "c.json", "checkpoint_bytes": 1,
         "checkpoint_bytes_source": "estimated", "platform": "cuda", "min_nodes": 2, "vllm_release": "0.31.0",
         "image": {"repository": "nvcr.io/nvidia/vllm", "tag": "26.10-py3", "digest": ""},
         "serving": {"image_pin": "nvidia-vllm-26.10", "layouts": {2: {"tp": 2, "pp": 1, "source": "t"}}},
         "launch": {"tensor_parallel_size": 2, "pipeline_parallel_size": 1}, "env": {}}


def _write_pin(tmp_path: Path, probe: dict[str, str]) -> Path:
    record = P.pin_record("tiny-pin", IMAGE, probe, HUB, "gx10-1")
    path = Path(P.pin_path(str(tmp_path / "pins"), "tiny-pin"))
    path.parent.mkdir(exist_ok=True, parents=True)
    path.write_text(P.pin_text(record))
    return path


def _vars(tmp_path: Path) -> dict:
    """What the inventory loads from group_vars/all/pins/, read back through pins_from_vars."""
    data = yaml.safe_load(Path(P.pin_path(str(tmp_path / "pins"), "tiny-pin")).read_text())
    return P.pins_from_vars(data)


def test_pins_file_round_trip_is_stable(tmp_path):
    path = _write_pin(tmp_path, ABSENT_PROBE)
    text = path.read_text()
    assert text.startswith("# tiny-pin: pinned by `ansible-playbook pin.yml -e model=tiny-pin`")
    assert list(yaml.safe_load(text)) == ["gb10_pin__tiny_pin"] == [P.pin_var("tiny-pin")]
    loaded = P.read_pin(str(tmp_path / "pins"), "tiny-pin")
    assert loaded["image"]["digest"] == IMAGE["digest"] and loaded["image"]["carries_ray"] is False
    assert loaded["image"]["ray"] is False and loaded["image"]["vllm"] == "absent"
    assert loaded["hf"]["files"][1] == {"path": "model-00001-of-00002.safetensors", "size": 4194304, "sha256": "2" * 64}
    again = P.pin_record("tiny-pin", IMAGE, ABSENT_PROBE, HUB, "gx10-1")
    assert P.pin_text(again) == text  # a second run writes the same bytes
    assert P.pin_changes(loaded, again) == []
    changed = P.pin_record("tiny-pin", IMAGE | {"digest": "sha256:" + "f" * 64}, ABSENT_PROBE, HUB, "gx10-1")
    assert P.pin_changes(loaded, changed) == [f"image.digest: {IMAGE['digest']} -> sha256:{'f' * 64}"]
    assert P.pin_changes({}, again)[0] == "model: (none) -> tiny-pin"


def test_a_pin_makes_the_entry_servable_and_ray_is_refused_without_ray(tmp_path):
    catalog = {"tiny-pin": ENTRY}
    before = S.image_errors("tiny-pin", S.image_for("tiny-pin", ENTRY, {}))
    assert "is not pinned by digest" in before[0]
    _write_pin(tmp_path, ABSENT_PROBE)
    pinned = P.apply_pins(catalog, _vars(tmp_path))["tiny-pin"]
    assert pinned["hf_revision"] == "c" * 40 and pinned["checkpoint_bytes"] == 8388608
    assert pinned["checkpoint_bytes_source"].startswith("pinned: 2 .safetensors at cccccccccccc (")
    assert "image_pin" not in pinned["serving"] and ENTRY["serving"]["image_pin"] == "nvidia-vllm-26.10"
    image = S.image_for("tiny-pin", pinned, {"nvidia-vllm-26.10": {"repository": "r", "tag": "t", "digest": ""}})
    assert S.image_errors("tiny-pin", image) == []
    assert image["digest"] == IMAGE["digest"] and image["image_id"] == IMAGE["image_id"] and image["ray"] is False
    # no Ray in the image: serve refuses the Ray executor with its sentence
    errors = S.ray_image_errors("tiny-pin", image, needs_ray=True)
    assert errors and "carries none (gb10_catalog['tiny-pin'].image.ray is false)" in errors[0]
    # with Ray: accepted
    _write_pin(tmp_path, ABSENT_PROBE | {"python": "3.12.3", "vllm": "0.31.0", "ray": "2.58.0", "nccl": "2.27.7"})
    pinned = P.apply_pins(catalog, _vars(tmp_path))["tiny-pin"]
    assert pinned["image"]["ray"] == "2.58.0"
    assert S.ray_image_errors("tiny-pin", S.image_for("tiny-pin", pinned, {}), needs_ray=True) == []


def test_bad_pins_are_one_sentence_each(tmp_path):
    good = P.pin_record("tiny-pin", IMAGE, ABSENT_PROBE, HUB)
    bad = {"gb10_pin__a": good,  # the variable of another model
           "gb10_pin__c": {"model": "c", "image": {"repository": "r", "digest": "latest"}},
           "gb10_pin__tiny_pin": good, "other_var": 1}
    with pytest.raises(P.PinError) as exc:
        P.pins_from_vars(bad, "inv/group_vars/all/pins")
    assert str(exc.value) == (
        "gb10_pin__a (inv/group_vars/all/pins) pins model 'tiny-pin', whose variable is gb10_pin__tiny_pin; run "
        "pin.yml -e model=tiny-pin again and remove the file that holds gb10_pin__a. gb10_pin__c "
        "(inv/group_vars/all/pins): image.repository and image.digest ('sha256:<64 hex>') are required; run pin.yml "
        "-e model=c again.")
    assert list(P.pins_from_vars({"gb10_pin__tiny_pin": good})) == ["tiny-pin"]
    folder = tmp_path / "pins"
    folder.mkdir()
    (folder / "tiny-pin.yml").write_text("gb10_pin__tiny_pin: [1, 2\n")
    with pytest.raises(P.PinError, match=r"tiny-pin.yml cannot be read \(.*\); remove it and run pin.yml -e model=tiny-pin again."):
        P.read_pin(str(folder), "tiny-pin")
    assert P.read_pin(str(tmp_path / "none"), "tiny-pin") == {}


def test_request_errors_and_notes():
    catalog = {"tiny-pin": ENTRY, "tiny-lab": ENTRY | {"weights": {"source": "controller", "dir": "/x"}}}
    assert P.request_errors("", catalog, "/inv/pins", "gx10-1") == [
        "No model given: run pin.yml -e model=<name> with one of tiny-lab, tiny-pin."]
    assert P.request_errors("nope", catalog, "/inv/pins", "gx10-1")[0].startswith("Unknown model 'nope' (-e model)")
    assert P.request_errors("tiny-pin", catalog, "/inv/pins", "gx10-1") == []
    errors = P.request_errors("tiny-lab", catalog, "", "", "repo:", "bad rev")
    assert len(errors) == 5 and "-e image='repo:'" in errors[2] and "no Hugging Face repository" in errors[4]
    record = P.pin_record("tiny-pin", IMAGE, ABSENT_PROBE, HUB)
    notes = P.pin_notes("tiny-pin", ENTRY, record)
    assert [n.split(";")[0].split(" (")[0] for n in notes] == [
        f"tiny-pin: {IMAGE['repository']}@{IMAGE['digest'][:19]} carries no vLLM",
        f"tiny-pin: {IMAGE['repository']}@{IMAGE['digest'][:19]} carries no Ray",
        f"tiny-pin: no NCCL found in {IMAGE['repository']}@{IMAGE['digest'][:19]}"]
    other = P.pin_record("tiny-pin", IMAGE, ABSENT_PROBE | {"vllm": "0.32.0", "ray": "2.58.0", "nccl": "2.27.7"}, HUB)
    assert P.pin_notes("tiny-pin", ENTRY, other) == [
        "tiny-pin: the image carries vLLM 0.32.0 but the entry says vllm_release 0.31.0; check the entry's flags "
        "against it (docs/upgrade.md, step 3) and update vllm_release."]
