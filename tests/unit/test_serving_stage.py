"""The staging tool (roles/weights/files/gb10_stage.py): manifest, status, resume, a relay chain."""
from __future__ import annotations

import importlib.util
import json
import socket
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gb10_stage", ROOT / "roles/weights/files/gb10_stage.py")
assert _spec is not None and _spec.loader is not None
stage = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stage)

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


def test_chain_copies_verifies_and_resumes(tmp_path):
    src = _src(tmp_path)
    m = stage.make_manifest(src, CHUNK)
    a, b = tmp_path / "a", tmp_path / "b"
    pa, pb = _free_port(), _free_port()
    results = {}

    def relay(name, root, port, nxt):
        results[name] = stage.relay(root, m, f"127.0.0.1:{port}", nxt, str(tmp_path / f"{name}.json"), 30)

    tb = threading.Thread(target=relay, args=("b", b, pb, None))
    ta = threading.Thread(target=relay, args=("a", a, pa, f"127.0.0.1:{pb}"))
    tb.start()
    ta.start()
    need = stage.status(tmp_path / "x", m)["need"]
    res = stage.send(src, m, f"127.0.0.1:{pa}", need, str(tmp_path / "src.json"))
    ta.join(10)
    tb.join(10)
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
