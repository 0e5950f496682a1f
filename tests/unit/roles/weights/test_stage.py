"""The staging tool (roles/weights/files/gb10_stage.py): manifest, status, resume, a relay chain."""
from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from roles.weights.files import gb10_stage as stage  # the script the role copies to the nodes

CHUNK = 1000


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "model.safetensors").write_bytes(bytes(range(256)) * 20)  # 5120 bytes, 6 chunks
    (src / "sub" / "config.json").write_text('{"a": 1}')
    (src / "empty").write_bytes(b"")
    return src


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_manifest_and_status(tmp_path):
    src = _src(tmp_path)
    m = stage.make_manifest(src, CHUNK)
    assert m["total_bytes"] == 5120 + 8
    big = next(f for f in m["files"] if f["path"] == "model.safetensors")
    assert len(big["chunks"]) == 6
    dst = tmp_path / "dst"
    dst.mkdir()
    st = stage.status(dst, m)
    assert not st["complete"] and st["need_bytes"] == m["total_bytes"]
    assert stage.status(src, m)["complete"]
    # the stamp makes a second status cheap, and a change of size or mtime invalidates it
    assert stage.status(src, m)["stamped"]
    (src / "sub" / "config.json").write_text('{"a": 2}')
    st = stage.status(src, m)
    assert st["need"] == [["sub/config.json", 0]]


def _copy_down_chain(tmp_path: Path, src: Path, m: dict, a: Path, b: Path) -> dict:
    """Send every chunk from ``src`` down the chain a -> b (two relays on loopback); the source's result."""
    pa, pb = _free_port(), _free_port()

    def relay(name, root, port, nxt):
        stage.relay(root, m, f"127.0.0.1:{port}", nxt, str(tmp_path / f"{name}.json"), 30, name)

    tb = threading.Thread(target=relay, args=("b", b, pb, None))
    ta = threading.Thread(target=relay, args=("a", a, pa, f"127.0.0.1:{pb}"))
    tb.start()
    ta.start()
    need = stage.status(tmp_path / "x", m)["need"]
    res = stage.send(src, m, f"127.0.0.1:{pa}", need, str(tmp_path / "src.json"))
    ta.join(10)
    tb.join(10)
    return res


def test_chain_copies_verifies_and_resumes(tmp_path):
    src = _src(tmp_path)
    m = stage.make_manifest(src, CHUNK)
    a, b = tmp_path / "a", tmp_path / "b"
    res = _copy_down_chain(tmp_path, src, m, a, b)
    assert res["complete"] and len(res["results"]) == 2
    for root in (a, b):
        assert stage.verify(root, m)["complete"]
        assert (root / "empty").exists() and (root / "empty").stat().st_size == 0
    assert json.loads((tmp_path / "b.json").read_text())["state"] == "done"
    # damage one chunk on b: only that chunk is needed again
    with (b / "model.safetensors").open("r+b") as f:
        f.seek(2500)
        f.write(b"\xff\xff")
    st = stage.status(b, m)
    assert st["need"] == [["model.safetensors", 2]] and st["need_bytes"] == CHUNK
    bad = stage.verify(b, m)
    assert not bad["complete"] and "model.safetensors" in bad["bad"][0]


def test_manifest_rejects_unsafe_paths(tmp_path):
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"version": 1, "chunk_bytes": 1, "files": [{"path": "../etc/passwd"}]}))
    try:
        stage.load_manifest(p)
    except SystemExit as exc:
        assert "unsafe path" in str(exc)
    else:
        raise AssertionError("unsafe path accepted")


def test_a_full_disk_stops_that_node_only_and_the_rest_resumes(tmp_path, monkeypatch):
    """A node whose disk fills mid-copy says so with the sizes, the chain behind it still completes,
    and what it wrote before is kept: the next copy needs only the rest."""
    src = _src(tmp_path)
    m = stage.make_manifest(src, CHUNK)
    a, b = tmp_path / "a", tmp_path / "b"
    real_open = stage._open_for_write
    budget = {"bytes": 2 * CHUNK}  # a can hold two chunks

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def seek(self, off):
            self.fh.seek(off)

        def write(self, data):
            if budget["bytes"] < len(data):
                raise OSError(28, "No space left on device")
            budget["bytes"] -= len(data)
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    def open_for_write(root, entry, handles):
        fh = real_open(root, entry, handles)
        return Full(fh) if root == a else fh

    monkeypatch.setattr(stage, "_open_for_write", open_for_write)
    res = _copy_down_chain(tmp_path, src, m, a, b)
    assert not res["complete"]
    by_node = {r["node"]: r for r in res["results"]}
    assert by_node["b"]["complete"] and stage.verify(b, m)["complete"]
    assert not by_node["a"]["complete"]
    assert by_node["a"]["error"].startswith("No space left on device in ")
    assert "after writing 2.0 KiB of the 5.0 KiB this copy sends" in by_node["a"]["error"]
    # a kept its two chunks: the next copy needs the other four (and the small file)
    st = stage.status(a, m)
    assert st["need_bytes"] == m["total_bytes"] - 2 * CHUNK
    assert ["model.safetensors", 0] not in st["need"] and ["model.safetensors", 1] not in st["need"]
