"""Is a model already staged on a node? The weights role's no-op path (issue 15 item 5).

A staged folder is proven by the records the staging tools leave in ``<model dir>/.gb10-stage/``,
without reading the weights again:

- ``manifest.json`` (``gb10_stage.py manifest``): every file's size and the sha256 of its chunks, and
  ``complete.json`` (``gb10_stage.py status``/``verify``/``manifest``, written only once every chunk
  matched the manifest): the manifest's id and every file's size and mtime at that moment. A file
  rewritten, truncated, removed or touched since then no longer matches its stamp.
- On the first node, what it was staged from: ``source.json`` (a folder on the control machine: each
  file's size and mtime there when it was copied, written by the role after the copy) or
  ``hf-complete.json`` (``gb10_hf_fetch.py``: the repository, the revision and each file's size).

The stamp format is gb10_stage.py's (``_stat_map``, ``stamped_complete``): tests/unit check both agree.
Plain logic, no Ansible imports: the module gb10.cluster.weights_staged runs it on the node, the lookup
gb10.cluster.tree_stat runs ``tree_stat`` on the control machine.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STAGE_DIR = ".gb10-stage"
MANIFEST_VERSION = 2
SOURCE_RECORD = "source.json"
HF_COMPLETE = "hf-complete.json"


def tree_stat(root: str | Path) -> dict[str, list[int]]:
    """Every regular file under ``root`` (symlinks and the staging folder left out, as the manifest
    does): relative path -> [size, mtime in ns]."""
    base = Path(root)
    if not base.is_dir():
        raise ValueError(f"{root} is not a folder")
    out: dict[str, list[int]] = {}
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base)
        if rel.parts and rel.parts[0] == STAGE_DIR:
            continue
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            out[str(rel)] = [st.st_size, st.st_mtime_ns]
    return out


def stat_map(root: Path, manifest: dict[str, Any]) -> dict[str, list[int]]:
    """The manifest's files as they are now: path -> [size, mtime in ns] ([-1, 0] when missing)."""
    out = {}
    for f in manifest["files"]:
        try:
            st = (root / f["path"]).stat()
            out[f["path"]] = [st.st_size, st.st_mtime_ns]
        except FileNotFoundError:
            out[f["path"]] = [-1, 0]
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None


def staged(root: str | Path, source: dict[str, Any] | None = None, hf: dict[str, Any] | None = None) -> dict[str, Any]:
    """Whether ``root`` holds the staged model, by its records alone.

    ``source``: the control machine's folder as ``tree_stat`` saw it (first node, source 'controller');
    ``hf``: {'repo', 'revision'} (first node, source 'hf'). Returns {'staged', 'reason', and when
    staged 'id', 'files', 'total_bytes'}; 'reason' says what is missing or changed in one phrase."""
    base = Path(root)
    stage = base / STAGE_DIR
    manifest = _read_json(stage / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION or "files" not in manifest:
        return {"staged": False, "reason": "no manifest from an earlier staging"}
    stamp = _read_json(stage / "complete.json")
    if not isinstance(stamp, dict) or stamp.get("id") != manifest.get("id"):
        return {"staged": False, "reason": "not verified against its manifest yet"}
    if stamp.get("stat") != stat_map(base, manifest):
        return {"staged": False, "reason": "a file changed since it was verified"}
    if source is not None:
        record = _read_json(stage / SOURCE_RECORD)
        if record != source:
            return {"staged": False, "reason": ("the folder on the control machine changed since the last copy"
                                                if record is not None else "no record of the last copy from the control machine")}
    if hf is not None:
        done = _read_json(stage / HF_COMPLETE)
        if not isinstance(done, dict) or done.get("repo") != hf.get("repo") or done.get("revision") != hf.get("revision"):
            return {"staged": False, "reason": f"not downloaded at {hf.get('repo')}@{str(hf.get('revision'))[:12]}"}
    return {"staged": True, "reason": "", "id": manifest["id"], "files": len(manifest["files"]),
            "total_bytes": int(manifest.get("total_bytes", sum(f["size"] for f in manifest["files"])))}
