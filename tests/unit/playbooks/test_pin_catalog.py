"""A pin in the inventory (group_vars/all/pins/<model>.yml, what pin.yml writes) makes serve.yml accept a
built-in entry it refuses without one, runs the pinned digest, and refuses the Ray executor when the pin
says the image carries no Ray (the existing sentence). No host answers: the runs stop at the preflight."""
from __future__ import annotations

from pathlib import Path

from ansible_collections.gb10.cluster.plugins.module_utils import pins
from tests.support.playbooks import offline_rack, run_playbook

API_KEY = "k" * 24
DIGEST = "sha256:" + "cd" * 32
IMAGE_ID = "sha256:" + "ef" * 32
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _inventory(tmp_path: Path) -> Path:
    """inventory/sample with its nodes on loopback ports where nothing answers."""
    return offline_rack(tmp_path, "sample", {"vllm_serve_api_key": API_KEY})


def _pin(inv: Path, model: str, ray: str) -> None:
    image = {"repository": "nvcr.io/nvidia/vllm", "tag": "26.10-py3", "digest": DIGEST, "image_id": IMAGE_ID}
    probe = {"python": "3.12.3", "vllm": "0.31.0", "ray": ray, "nccl": "2.27.7", "torch": "2.9.0"}
    hub = {"endpoint": "https://huggingface.co", "repo": "Qwen/x", "revision": COMMIT, "checkpoint_bytes": 81604378624,
           "files": [{"path": "model-00001-of-00001.safetensors", "size": 81604378624, "sha256": "1" * 64}]}
    path = Path(pins.pin_path(str(inv / "group_vars/all/pins"), model))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pins.pin_text(pins.pin_record(model, image, probe, hub, "gx10-1")))


def _msgs(result, kind: str) -> list[str]:
    return [str(e["event_data"]["res"].get("msg")) for e in result.events
            if e.get("event") == kind and not e["event_data"].get("ignore_errors")]


def test_a_pin_in_the_inventory_makes_serve_accept_the_entry(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    inv = _inventory(tmp_path)
    model = "qwen3-next-80b-a3b"  # built in with no digest and no revision
    refused = run_playbook(tmp_path, "serve.yml", inv, {"model": model})
    msg = _msgs(refused, "runner_on_failed")[-1]
    assert "is not pinned by digest" in msg  # the sample pins nvidia-vllm-26.10 with its digest pending
    assert f"gb10_catalog['{model}'].hf_revision is empty" in msg

    _pin(inv, model, "absent")
    served = run_playbook(tmp_path, "serve.yml", inv, {"model": model, "gb10_preflight_timeout": 2})
    line = next(m for m in _msgs(served, "runner_on_ok") if m.startswith(f"{model}: single on gx10-1"))
    assert f"image nvcr.io/nvidia/vllm@{DIGEST} (gb10_catalog['{model}'].image)" in line
    assert "does not answer over SSH" in _msgs(served, "runner_on_failed")[-1]  # past every refusal: the preflight

    big = "qwen3.5-397b-a17b-fp8"  # 4 nodes with the Ray executor, and the pin says the image has no Ray
    _pin(inv, big, "absent")
    no_ray = run_playbook(tmp_path, "serve.yml", inv, {"model": big, "vllm_serve_executor": "ray"})
    assert (f"{big}: the Ray executor needs Ray in the image, but nvcr.io/nvidia/vllm:26.10-py3 carries none "
            f"(gb10_catalog['{big}'].image.ray is false)") in _msgs(no_ray, "runner_on_failed")[-1]
