#!/usr/bin/env python3
"""gb10-stage: copy a model folder from one node to many over the fabric, once, verified, resumable.

    gb10_stage.py manifest DIR [--chunk-bytes N]        write DIR/.gb10-stage/manifest.json, print a summary
    gb10_stage.py status DIR MANIFEST                   JSON: which chunks this node still needs
    gb10_stage.py verify DIR MANIFEST                   check sizes and sha256; stamp the folder when complete
    gb10_stage.py relay DIR MANIFEST --listen IP:PORT [--next IP:PORT] [--progress FILE]
    gb10_stage.py send DIR MANIFEST --next IP:PORT --need FILE [--progress FILE]

How the copy works: the nodes form a chain (source -> n1 -> n2 -> ... -> nk). The source streams every
chunk any node still needs; each relay writes the chunk into its copy and forwards it at once to the
next node. Every fabric link carries the bytes once in each direction, so staging N nodes takes about
as long as one node-to-node copy (plus one chunk of latency per hop), not N times as long.
When the stream ends, the tail verifies its folder against the manifest and acknowledges; each relay
verifies its own, and the acknowledgement travels back to the source with every node's result.

Resumable: files are written in place, chunk by chunk (64 MiB by default); a rerun asks every node
which chunks are missing or wrong (sha256 per chunk in the manifest) and sends only those. A folder
whose stamp matches the manifest (and whose sizes and mtimes did not change) counts as complete
without re-reading it. Standard library only (runs with the node's python3).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

STAGE_DIR = ".gb10-stage"
DEFAULT_CHUNK = 64 << 20
# Bytes per frame on the wire. Every relay forwards a frame once it has it whole, so each hop of the
# chain adds one frame's transfer time: small frames keep an 8-node chain close to one copy.
FRAME_BYTES = 1 << 20
READ_BLOCK = 1 << 20


# ------------------------------------------------------------------------------------------- manifest
def _files(root: Path) -> list[Path]:
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts and rel.parts[0] == STAGE_DIR:
            continue
        if path.is_file() and not path.is_symlink():
            out.append(path)
    return out


def _hash_file(path: Path, chunk_bytes: int) -> tuple[str, list[str]]:
    whole = hashlib.sha256()
    chunks: list[str] = []
    with path.open("rb") as f:
        while True:
            part = hashlib.sha256()
            left = chunk_bytes
            got_any = False
            while left > 0:
                block = f.read(min(READ_BLOCK, left))
                if not block:
                    break
                got_any = True
                whole.update(block)
                part.update(block)
                left -= len(block)
            if not got_any:
                break
            chunks.append(part.hexdigest())
    return whole.hexdigest(), chunks


def make_manifest(root: Path, chunk_bytes: int = DEFAULT_CHUNK) -> dict[str, Any]:
    files = []
    for path in _files(root):
        sha, chunks = _hash_file(path, chunk_bytes)
        files.append({"path": str(path.relative_to(root)), "size": path.stat().st_size, "sha256": sha, "chunks": chunks})
    manifest = {"version": 1, "chunk_bytes": chunk_bytes, "files": files,
                "total_bytes": sum(f["size"] for f in files)}
    manifest["id"] = manifest_id(manifest)
    return manifest


def manifest_id(manifest: dict[str, Any]) -> str:
    body = {k: manifest[k] for k in ("version", "chunk_bytes", "files")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def load_manifest(path: str | Path) -> dict[str, Any]:
    manifest = json.loads(Path(path).read_text())
    if manifest.get("version") != 1 or "files" not in manifest:
        raise SystemExit(f"gb10-stage: {path} is not a gb10-stage manifest")
    for f in manifest["files"]:
        rel = Path(f["path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise SystemExit(f"gb10-stage: unsafe path in manifest: {f['path']}")
    return manifest


# ------------------------------------------------------------------------------------------- status
def _stamp_path(root: Path) -> Path:
    return root / STAGE_DIR / "complete.json"


def _stat_map(root: Path, manifest: dict[str, Any]) -> dict[str, list[int]]:
    out = {}
    for f in manifest["files"]:
        p = root / f["path"]
        try:
            st = p.stat()
            out[f["path"]] = [st.st_size, st.st_mtime_ns]
        except FileNotFoundError:
            out[f["path"]] = [-1, 0]
    return out


def stamped_complete(root: Path, manifest: dict[str, Any]) -> bool:
    try:
        stamp = json.loads(_stamp_path(root).read_text())
    except (FileNotFoundError, ValueError):
        return False
    return stamp.get("id") == manifest["id"] and stamp.get("stat") == _stat_map(root, manifest)


def write_stamp(root: Path, manifest: dict[str, Any]) -> None:
    (root / STAGE_DIR).mkdir(parents=True, exist_ok=True)
    _stamp_path(root).write_text(json.dumps({"id": manifest["id"], "stat": _stat_map(root, manifest),
                                             "time": time.time()}))


def status(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Chunks this node lacks: {'complete', 'need': [[path, index], ...], 'need_bytes', 'have_bytes'}."""
    if stamped_complete(root, manifest):
        return {"complete": True, "need": [], "need_bytes": 0, "have_bytes": manifest["total_bytes"], "stamped": True}
    chunk_bytes = manifest["chunk_bytes"]
    need: list[list[Any]] = []
    need_bytes = 0
    for f in manifest["files"]:
        path = root / f["path"]
        size = path.stat().st_size if path.is_file() else -1
        sizes = [min(chunk_bytes, f["size"] - i * chunk_bytes) for i in range(len(f["chunks"]))]
        if f["size"] == 0:
            if size != 0:
                need.append([f["path"], -1])
            continue
        with (path.open("rb") if size >= 0 else _Null()) as fh:
            for i, want in enumerate(f["chunks"]):
                if size < (i * chunk_bytes + sizes[i]) or _chunk_sha(fh, i * chunk_bytes, sizes[i]) != want:
                    need.append([f["path"], i])
                    need_bytes += sizes[i]
    complete = not need and all((root / f["path"]).stat().st_size == f["size"] for f in manifest["files"])
    if complete:
        write_stamp(root, manifest)
    return {"complete": complete, "need": need, "need_bytes": need_bytes,
            "have_bytes": manifest["total_bytes"] - need_bytes, "stamped": False}


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _chunk_sha(fh: BinaryIO | None, offset: int, length: int) -> str:
    if fh is None:
        return ""
    fh.seek(offset)
    h = hashlib.sha256()
    left = length
    while left > 0:
        block = fh.read(min(READ_BLOCK, left))
        if not block:
            return ""
        h.update(block)
        left -= len(block)
    return h.hexdigest()


def verify(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Full check against the manifest (sizes and whole-file sha256); stamps the folder when complete."""
    bad = []
    for f in manifest["files"]:
        path = root / f["path"]
        if not path.is_file():
            bad.append(f"{f['path']}: missing")
            continue
        size = path.stat().st_size
        if size != f["size"]:
            bad.append(f"{f['path']}: {size} bytes, manifest says {f['size']}")
            continue
        sha, _ = _hash_file(path, manifest["chunk_bytes"])
        if sha != f["sha256"]:
            bad.append(f"{f['path']}: sha256 {sha[:12]}..., manifest says {f['sha256'][:12]}...")
    if not bad:
        write_stamp(root, manifest)
    return {"complete": not bad, "bad": bad, "files": len(manifest["files"]), "bytes": manifest["total_bytes"]}


# ------------------------------------------------------------------------------------------- wire
# Frame: 4-byte big-endian header length, JSON header, then header["length"] bytes of data.
def _send_frame(sock: socket.socket, header: dict[str, Any], data: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    sock.sendall(struct.pack(">I", len(raw)) + raw)
    if data:
        sock.sendall(data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(min(n - len(buf), 4 << 20))
        if not part:
            raise ConnectionError("peer closed the connection mid-frame")
        buf += part
    return bytes(buf)


def _recv_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack(">I", _recv_exact(sock, 4))
    header = json.loads(_recv_exact(sock, n))
    data = _recv_exact(sock, int(header.get("length", 0))) if header.get("length") else b""
    return header, data


def _addr(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def _connect(addr: str, timeout: float = 120.0) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection(_addr(addr), timeout=30)
            sock.settimeout(600)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class Progress:
    def __init__(self, path: str | None, total: int, role: str) -> None:
        self.path, self.total, self.role = path, total, role
        self.done, self.t0, self.last = 0, time.monotonic(), 0.0

    def add(self, n: int, final: bool = False, state: str = "copying", extra: dict[str, Any] | None = None) -> None:
        self.done += n
        now = time.monotonic()
        if not self.path or (not final and now - self.last < 1.0):
            return
        self.last = now
        elapsed = max(now - self.t0, 1e-6)
        doc = {"role": self.role, "state": state, "bytes": self.done, "total": self.total,
               "elapsed_s": round(elapsed, 1), "rate_bps": round(self.done / elapsed),
               "time": time.time()} | (extra or {})
        tmp = f"{self.path}.tmp"
        try:  # best effort: a full disk must not stop the copy over a progress line
            with open(tmp, "w") as f:
                json.dump(doc, f)
            os.replace(tmp, self.path)
        except OSError:
            pass


def _open_for_write(root: Path, entry: dict[str, Any], handles: dict[str, BinaryIO]) -> BinaryIO:
    rel = entry["path"]
    if rel not in handles:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = path.open("r+b") if path.exists() else path.open("w+b")
        if path.stat().st_size > entry["size"]:
            fh.truncate(entry["size"])
        handles[rel] = fh
    return handles[rel]


def _disk_full_message(root: Path, written: int, total: int, err: OSError) -> str:
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        free = -1
    return (f"{err.strerror or err} in {root} after writing {_iec(written)} of the {_iec(total)} this copy sends"
            f" ({_iec(free) if free >= 0 else 'unknown'} free now)")


def _iec(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} TiB"


def relay(root: Path, manifest: dict[str, Any], listen: str, nxt: str | None, progress: str | None,
          timeout: float, name: str | None = None) -> dict[str, Any]:
    """Receive chunks, write them, forward them; verify at the end; acknowledge with every node's result.

    A write that fails (disk full, quota, I/O error) stops this node's writing but not the chain: the
    frames still go on to the next node, and this node's result says what failed and how far it got.
    The chunks written before that are kept, so the next run sends only what is missing."""
    files = {f["path"]: f for f in manifest["files"]}
    root.mkdir(parents=True, exist_ok=True)
    (root / STAGE_DIR).mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(_addr(listen))
    server.listen(1)
    server.settimeout(timeout)
    up, _ = server.accept()
    up.settimeout(600)
    down = _connect(nxt) if nxt else None
    handles: dict[str, BinaryIO] = {}
    prog = Progress(progress, 0, "relay")
    error: str | None = None
    written = 0
    try:
        while True:
            header, data = _recv_frame(up)
            if down is not None:
                _send_frame(down, header, data)
            kind = header.get("kind")
            if kind == "start":
                prog.total = int(header.get("bytes", 0))
                prog.add(0, final=True, state="copying")
            elif kind == "chunk":
                if error is None:
                    entry = files[header["path"]]
                    try:
                        fh = _open_for_write(root, entry, handles)
                        fh.seek(int(header["offset"]))
                        fh.write(data)
                        fh.flush()
                        written += len(data)
                    except OSError as exc:
                        error = _disk_full_message(root, written, prog.total, exc)
                        prog.add(0, final=True, state="write failed", extra={"error": error})
                prog.add(len(data))
            elif kind == "end":
                break
        for fh in handles.values():
            try:
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:
                error = error or _disk_full_message(root, written, prog.total, exc)
            finally:
                try:
                    fh.close()
                except OSError:
                    pass
        for rel, entry in files.items():  # files with no chunk sent (empty files), and exact sizes
            path = root / rel
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with (path.open("r+b") if path.exists() else path.open("w+b")) as fh:
                    fh.truncate(entry["size"])
            except OSError as exc:
                error = error or _disk_full_message(root, written, prog.total, exc)
        prog.add(0, final=True, state="verifying")
        mine = status(root, manifest)
        result = {"node": name or socket.gethostname(), "complete": mine["complete"] and error is None,
                  "need_bytes": mine["need_bytes"]}
        if error is not None:
            result["error"] = error
        results = [result]
        if down is not None:
            ack, _ = _recv_frame(down)
            results += ack.get("results", [])
            down.close()
        _send_frame(up, {"kind": "ack", "results": results})
        prog.add(0, final=True, state="done" if mine["complete"] else "incomplete", extra={"results": results})
        return {"results": results}
    finally:
        up.close()
        server.close()


def send(root: Path, manifest: dict[str, Any], nxt: str, need: list[list[Any]], progress: str | None) -> dict[str, Any]:
    files = {f["path"]: f for f in manifest["files"]}
    chunk_bytes = manifest["chunk_bytes"]
    todo = []
    for rel, idx in need:
        if idx < 0:
            continue
        size = min(chunk_bytes, files[rel]["size"] - idx * chunk_bytes)
        todo.append((rel, idx, size))
    total = sum(t[2] for t in todo)
    prog = Progress(progress, total, "source")
    down = _connect(nxt)
    _send_frame(down, {"kind": "start", "bytes": total, "manifest": manifest["id"]})
    prog.add(0, final=True)
    handles: dict[str, BinaryIO] = {}
    try:
        for rel, idx, size in todo:
            if rel not in handles:
                handles[rel] = (root / rel).open("rb")
            fh = handles[rel]
            fh.seek(idx * chunk_bytes)
            sent = 0
            while sent < size:  # frames of FRAME_BYTES keep every hop's pipeline short
                block = fh.read(min(FRAME_BYTES, size - sent))
                if not block:
                    raise SystemExit(f"gb10-stage: {rel} is shorter than the manifest says")
                _send_frame(down, {"kind": "chunk", "path": rel, "index": idx, "offset": idx * chunk_bytes + sent,
                                   "length": len(block)}, block)
                sent += len(block)
                prog.add(len(block))
        _send_frame(down, {"kind": "end"})
        prog.add(0, final=True, state="waiting for the nodes to verify")
        ack, _ = _recv_frame(down)
    finally:
        for fh in handles.values():
            fh.close()
        down.close()
    results = ack.get("results", [])
    ok = all(r.get("complete") for r in results)
    prog.add(0, final=True, state="done" if ok else "incomplete", extra={"results": results})
    return {"bytes": total, "results": results, "complete": ok, "elapsed_s": round(time.monotonic() - prog.t0, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("manifest")
    p.add_argument("dir")
    p.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK)
    p.add_argument("--output")
    for name in ("status", "verify"):
        p = sub.add_parser(name)
        p.add_argument("dir")
        p.add_argument("manifest")
    p = sub.add_parser("relay")
    p.add_argument("dir")
    p.add_argument("manifest")
    p.add_argument("--listen", required=True)
    p.add_argument("--next")
    p.add_argument("--progress")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--name", help="this node's name in the results (default: its hostname)")
    p = sub.add_parser("send")
    p.add_argument("dir")
    p.add_argument("manifest")
    p.add_argument("--next", required=True)
    p.add_argument("--need", required=True, help="JSON file: [[path, chunk index], ...]")
    p.add_argument("--progress")
    args = ap.parse_args(argv)
    root = Path(args.dir)
    if args.cmd == "manifest":
        out = Path(args.output) if args.output else root / STAGE_DIR / "manifest.json"
        old = None
        if out.exists():
            try:
                old = load_manifest(out)
            except SystemExit:
                old = None
        if old is not None and old.get("chunk_bytes") == args.chunk_bytes and stamped_complete(root, old):
            manifest, changed = old, False  # unchanged folder: do not re-read it
        else:
            manifest = make_manifest(root, args.chunk_bytes)
            changed = old is None or old.get("id") != manifest["id"]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(manifest, indent=1) + "\n")
            write_stamp(root, manifest)
        print(json.dumps({"changed": changed, "id": manifest["id"], "files": len(manifest["files"]),
                          "total_bytes": manifest["total_bytes"], "manifest": str(out)}))
        return 0
    manifest = load_manifest(args.manifest)
    if args.cmd == "status":
        print(json.dumps(status(root, manifest)))
        return 0
    if args.cmd == "verify":
        res = verify(root, manifest)
        print(json.dumps(res))
        return 0 if res["complete"] else 1
    if args.cmd == "relay":
        res = relay(root, manifest, args.listen, args.next, args.progress, args.timeout, args.name)
        print(json.dumps(res))
        return 0 if all(r["complete"] for r in res["results"]) else 1
    need = json.loads(Path(args.need).read_text())
    res = send(root, manifest, args.next, need, args.progress)
    print(json.dumps(res))
    return 0 if res["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
