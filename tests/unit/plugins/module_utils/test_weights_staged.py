"""module_utils/weights_staged (the weights role's no-op check) against the records the real tools write."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.weights_staged import staged, stat_map, tree_stat
from roles.weights.files import gb10_stage as stage  # the staging tool that writes manifest.json and complete.json

CHUNK = 1000


def _model(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "model.safetensors").write_bytes(bytes(range(256)) * 20)
    (root / "sub" / "config.json").write_text('{"a": 1}')
    return root


def _staged_by_the_tool(tmp_path: Path) -> Path:
    """A folder as `gb10_stage.py manifest` leaves it on the first node (manifest + stamp)."""
    root = _model(tmp_path / "m")
    assert stage.main([ "manifest", str(root), "--chunk-bytes", str(CHUNK)]) == 0
    return root


def test_tree_stat_lists_files_not_the_staging_folder_or_symlinks(tmp_path):
    root = _model(tmp_path / "m")
    (root / ".gb10-stage").mkdir()
    (root / ".gb10-stage" / "manifest.json").write_text("{}")
    (root / "link").symlink_to(root / "model.safetensors")
    got = tree_stat(root)
    assert sorted(got) == ["model.safetensors", "sub/config.json"]
    assert got["model.safetensors"] == [5120, (root / "model.safetensors").stat().st_mtime_ns]
    with pytest.raises(ValueError, match="not a folder"):
        tree_stat(root / "missing")


def test_the_stamp_format_is_the_staging_tools(tmp_path):
    root = _staged_by_the_tool(tmp_path)
    manifest = stage.load_manifest(root / ".gb10-stage" / "manifest.json")
    assert stat_map(root, manifest) == stage._stat_map(root, manifest)
    assert stage.stamped_complete(root, manifest)


def test_staged_when_the_records_match(tmp_path):
    root = _staged_by_the_tool(tmp_path)
    res = staged(root)
    manifest = json.loads((root / ".gb10-stage" / "manifest.json").read_text())
    assert res == {"staged": True, "reason": "", "id": manifest["id"], "files": 2, "total_bytes": 5128}


def test_a_target_node_verified_by_status_is_staged(tmp_path):
    src = _staged_by_the_tool(tmp_path)
    manifest = stage.load_manifest(src / ".gb10-stage" / "manifest.json")
    dst = _model(tmp_path / "node2")
    (dst / ".gb10-stage").mkdir()
    (dst / ".gb10-stage" / "manifest.json").write_text(json.dumps(manifest))
    assert staged(dst)["reason"] == "not verified against its manifest yet"
    assert stage.status(dst, manifest)["complete"]  # what the role's "Verified on every node" runs
    assert staged(dst)["staged"]


def test_no_manifest_or_another_version(tmp_path):
    root = _model(tmp_path / "m")
    assert staged(root) == {"staged": False, "reason": "no manifest from an earlier staging"}
    assert staged(tmp_path / "missing")["staged"] is False
    (root / ".gb10-stage").mkdir()
    (root / ".gb10-stage" / "manifest.json").write_text(json.dumps({"version": 1, "files": []}))
    assert staged(root)["reason"] == "no manifest from an earlier staging"


@pytest.mark.parametrize("change", ["rewrite", "truncate", "remove", "touch"])
def test_a_file_changed_since_it_was_verified(tmp_path, change):
    root = _staged_by_the_tool(tmp_path)
    f = root / "model.safetensors"
    if change == "rewrite":
        f.write_bytes(b"x" * 5120)
    elif change == "truncate":
        os.truncate(f, 100)
    elif change == "remove":
        f.unlink()
    else:
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert staged(root) == {"staged": False, "reason": "a file changed since it was verified"}


def test_the_stamp_of_another_manifest(tmp_path):
    root = _staged_by_the_tool(tmp_path)
    stamp = root / ".gb10-stage" / "complete.json"
    stamp.write_text(json.dumps(json.loads(stamp.read_text()) | {"id": "0" * 16}))
    assert staged(root)["reason"] == "not verified against its manifest yet"


def test_the_source_on_the_control_machine(tmp_path):
    controller = _model(tmp_path / "controller")
    root = _staged_by_the_tool(tmp_path)
    record = root / ".gb10-stage" / "source.json"
    assert staged(root, source=tree_stat(controller))["reason"] == "no record of the last copy from the control machine"
    record.write_text(json.dumps(tree_stat(controller)) + "\n")  # what the role writes after the copy
    assert staged(root, source=tree_stat(controller))["staged"]
    (controller / "sub" / "config.json").write_text('{"a": 2}')
    assert staged(root, source=tree_stat(controller))["reason"] == "the folder on the control machine changed since the last copy"
    (controller / "sub" / "config.json").unlink()
    (controller / "new.safetensors").write_bytes(b"1")
    assert not staged(root, source=tree_stat(controller))["staged"]


def test_the_hugging_face_download(tmp_path):
    root = _staged_by_the_tool(tmp_path)
    pin = {"repo": "Qwen/Qwen3-0.6B", "revision": "a" * 40}
    assert staged(root, hf=pin)["reason"] == f"not downloaded at Qwen/Qwen3-0.6B@{'a' * 12}"
    (root / ".gb10-stage" / "hf-complete.json").write_text(json.dumps({**pin, "files": {"model.safetensors": 5120}}))
    assert staged(root, hf=pin)["staged"]
    assert not staged(root, hf=pin | {"revision": "b" * 40})["staged"]


def test_the_download_stamp_is_the_download_tools():
    from ansible_collections.gb10.cluster.plugins.module_utils import weights_staged
    from roles.weights.files import gb10_hf_fetch
    assert (gb10_hf_fetch.STAGE_DIR, gb10_hf_fetch.COMPLETE) == (weights_staged.STAGE_DIR, weights_staged.HF_COMPLETE)
    assert (stage.STAGE_DIR, stage.MANIFEST_VERSION) == (weights_staged.STAGE_DIR, weights_staged.MANIFEST_VERSION)
