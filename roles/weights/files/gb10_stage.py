#!/usr/bin/env python3
"""gb10-stage: copy a model folder from one node to many over the fabric, once, verified, resumable.

    gb10_stage.py manifest DIR [--chunk-bytes N] [--hash auto|xxh3_128|sha256]
                                                        write DIR/.gb10-stage/manifest.json, print a summary
    gb10_stage.py status DIR MANIFEST                   JSON: which chunks this node still needs
    gb10_stage.py verify DIR MANIFEST                   check sizes and checksums; stamp the folder when complete
    gb10_stage.py relay DIR MANIFEST --listen IP:PORT [--next IP:PORT] [--progress FILE]
    gb10_stage.py send DIR MANIFEST --next IP:PORT --need FILE [--progress FILE]

How the copy works: the nodes form a chain (source -> n1 -> n2 -> ... -> nk). The source streams every
chunk any node still needs; each relay writes the chunk into its copy and forwards it at once to the
next node. Every fabric link carries the bytes once in each direction, so staging N nodes takes about
as long as one node-to-node copy (plus one chunk of latency per hop), not N times as long.
When the stream ends, the tail verifies its folder against the manifest and acknowledges; each relay
verifies its own, and the acknowledgement travels back to the source with every node's result.

Resumable: files are written in place, chunk by chunk (64 MiB by default); a rerun asks every node
which chunks are missing or wrong (a checksum per chunk in the manifest) and sends only those. A folder
whose stamp matches the manifest (and whose sizes and mtimes did not change) counts as complete
without re-reading it. Runs with the node's python3: the standard library, and python3-xxhash for
the xxh3_128 checksums (the base role installs it).

Checksums: xxh3_128 (python3-xxhash) or sha256 (hashlib), named in the manifest. Where the bytes come
from is proven once, on the first node: gb10_hf_fetch.py checks every large file of the download
against Hugging Face's sha256. From there the checksum only has to catch corruption on the way or on
a disk, which a 128-bit checksum does as well as sha256, at a twentieth of the CPU per byte on every
node that receives the copy (bench/staging: 0.04 against 0.70 CPU s/GiB on the lab machine).
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import json
import mmap
import os
import queue
import resource
import select
import shutil
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

STAGE_DIR = ".gb10-stage"
DEFAULT_CHUNK = 64 << 20
# Bytes per frame on the wire. Every relay forwards a frame once it has it whole, so each hop of the
# chain adds one frame's transfer time: small frames keep an 8-node chain close to one copy.
FRAME_BYTES = 1 << 20
READ_BLOCK = 1 << 20
# Frames received but not hashed yet, per hashing thread (each FRAME_BYTES of memory).
HASH_DEPTH = 8
# Hashing threads per lane: up to this many, and one fewer than the node's cores.
HASH_THREADS = 8
# Writing threads per lane: writes in flight (they wait for the disk, not for a core).
WRITERS = 4


def hash_threads(cpus: int | None = None) -> int:
    """Hashing threads per lane: every core but one (the receive loop's), at most HASH_THREADS."""
    return max(1, min(HASH_THREADS, (cpus if cpus is not None else (os.cpu_count() or 2)) - 1))
# 2: one sha256 per chunk, no whole-file sha256 (version 1 read every byte through two hashes). A file
# is whole when all its chunks match; a version-1 manifest is rewritten by the next `manifest` run.
MANIFEST_VERSION = 2
# Chunk checksums a manifest may name (field "hash"; a manifest without it is sha256, as before).
HASHES = ("xxh3_128", "sha256")


def hash_available(name: str) -> bool:
    """Whether this python3 can compute the checksum ``name``."""
    if name == "sha256":
        return True
    try:
        import xxhash  # noqa: F401, PLC0415  (python3-xxhash: optional, named by the manifest)
    except ImportError:
        return False
    return name == "xxh3_128"


def new_hash(name: str) -> Any:
    """A fresh hasher for the checksum ``name`` (update(), hexdigest())."""
    if name == "sha256":
        return hashlib.sha256()
    if name == "xxh3_128":
        import xxhash  # noqa: PLC0415

        return xxhash.xxh3_128()
    raise ValueError(f"unknown checksum {name!r} (known: {', '.join(HASHES)})")


def manifest_hash(manifest: dict[str, Any]) -> str:
    return str(manifest.get("hash", "sha256"))


def choose_hash(wanted: str) -> str:
    """auto: xxh3_128 when python3-xxhash is installed here, sha256 otherwise."""
    if wanted == "auto":
        return "xxh3_128" if hash_available("xxh3_128") else "sha256"
    return wanted


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


def _hash_file(path: Path, chunk_bytes: int, algorithm: str = "sha256") -> list[str]:
    """The checksum of every chunk of the file: each byte is read and hashed once."""
    chunks: list[str] = []
    with path.open("rb") as f:
        try:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):
            pass
        offset = 0
        while True:
            sha = _chunk_sum(f, offset, chunk_bytes, algorithm, partial=True)
            if not sha:
                break
            chunks.append(sha)
            offset += chunk_bytes
    return chunks


def make_manifest(root: Path, chunk_bytes: int = DEFAULT_CHUNK, algorithm: str = "sha256") -> dict[str, Any]:
    files = []
    for path in _files(root):
        chunks = _hash_file(path, chunk_bytes, algorithm)
        files.append({"path": str(path.relative_to(root)), "size": path.stat().st_size, "chunks": chunks})
    manifest: dict[str, Any] = {"version": MANIFEST_VERSION, "chunk_bytes": chunk_bytes, "files": files,
                                "total_bytes": sum(f["size"] for f in files)}
    if algorithm != "sha256":
        manifest["hash"] = algorithm
    manifest["id"] = manifest_id(manifest)
    return manifest


def manifest_id(manifest: dict[str, Any]) -> str:
    body = {k: manifest[k] for k in ("version", "chunk_bytes", "files", "hash") if k in manifest}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def load_manifest(path: str | Path) -> dict[str, Any]:
    manifest = json.loads(Path(path).read_text())
    if manifest.get("version") != MANIFEST_VERSION or "files" not in manifest:
        raise SystemExit(f"gb10-stage: {path} is not a version-{MANIFEST_VERSION} gb10-stage manifest;"
                         " write it again with `gb10_stage.py manifest` on the source")
    for f in manifest["files"]:
        rel = Path(f["path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise SystemExit(f"gb10-stage: unsafe path in manifest: {f['path']}")
    algorithm = manifest_hash(manifest)
    if algorithm not in HASHES:
        raise SystemExit(f"gb10-stage: {path} names the checksum {algorithm!r}, which this tool does not know"
                         f" ({', '.join(HASHES)}); write it again with `gb10_stage.py manifest` on the source")
    if not hash_available(algorithm):
        raise SystemExit(f"gb10-stage: {path} checks chunks with {algorithm} and this node's python3 has no xxhash"
                         f" module ({sys.executable}): install python3-xxhash (the base role does), or write the"
                         " manifest on the source with --hash sha256")
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


def status(root: Path, manifest: dict[str, Any], known: dict[tuple[str, int], bool] | None = None,
           stamp: bool = True) -> dict[str, Any]:
    """Chunks this node lacks: {'complete', 'need': [[path, index], ...], 'need_bytes', 'have_bytes'}.

    ``known`` holds chunks already checked (by a relay, as it received them: hashed on the way in, so
    a fresh copy is verified without reading it back); only the others are read from disk. A complete
    copy gets its stamp unless ``stamp`` is false (a relay whose writes failed never stamps)."""
    if not known and stamped_complete(root, manifest):
        return {"complete": True, "need": [], "need_bytes": 0, "have_bytes": manifest["total_bytes"], "stamped": True}
    known = known or {}
    chunk_bytes = manifest["chunk_bytes"]
    algorithm = manifest_hash(manifest)
    need: list[list[Any]] = []
    need_bytes = 0
    for f in manifest["files"]:
        path = root / f["path"]
        size = path.stat().st_size if path.is_file() else -1
        sizes = chunk_sizes(f["size"], chunk_bytes)
        if f["size"] == 0:
            if size != 0:
                need.append([f["path"], -1])
            continue
        with (path.open("rb") if size >= 0 else _Null()) as fh:
            for i, want in enumerate(f["chunks"]):
                if size < (i * chunk_bytes + sizes[i]):
                    good = False
                elif (f["path"], i) in known:
                    good = known[(f["path"], i)]
                else:
                    good = _chunk_sum(fh, i * chunk_bytes, sizes[i], algorithm) == want
                if not good:
                    need.append([f["path"], i])
                    need_bytes += sizes[i]
    complete = not need and all((root / f["path"]).stat().st_size == f["size"] for f in manifest["files"])
    if complete and stamp:
        write_stamp(root, manifest)
    return {"complete": complete, "need": need, "need_bytes": need_bytes,
            "have_bytes": manifest["total_bytes"] - need_bytes, "stamped": False}


def chunk_sizes(size: int, chunk_bytes: int) -> list[int]:
    """Sizes of a file's chunks (the last one may be short; an empty file has none)."""
    return [min(chunk_bytes, size - i * chunk_bytes) for i in range(-(-size // chunk_bytes))]


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _chunk_sum(fh: BinaryIO | None, offset: int, length: int, algorithm: str = "sha256",
               partial: bool = False) -> str:
    """The checksum of ``length`` bytes at ``offset`` ('' when the file is shorter, or, with ``partial``,
    of what there is: '' only at the end of the file)."""
    if fh is None:
        return ""
    fh.seek(offset)
    h = new_hash(algorithm)
    left, got = length, 0
    while left > 0:
        block = fh.read(min(READ_BLOCK, left))
        if not block:
            if partial and got:
                break
            return ""
        h.update(block)
        left -= len(block)
        got += len(block)
    return h.hexdigest()


def verify(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Full check against the manifest (sizes and every chunk's checksum); stamps the folder when complete."""
    bad = []
    chunk_bytes = manifest["chunk_bytes"]
    algorithm = manifest_hash(manifest)
    for f in manifest["files"]:
        path = root / f["path"]
        if not path.is_file():
            bad.append(f"{f['path']}: missing")
            continue
        size = path.stat().st_size
        if size != f["size"]:
            bad.append(f"{f['path']}: {size} bytes, manifest says {f['size']}")
            continue
        with path.open("rb") as fh:
            wrong = [i for i, (want, n) in enumerate(zip(f["chunks"], chunk_sizes(f["size"], chunk_bytes)))
                     if _chunk_sum(fh, i * chunk_bytes, n, algorithm) != want]
        if wrong:
            bad.append(f"{f['path']}: {algorithm} of chunk(s) {', '.join(map(str, wrong[:5]))}"
                       f"{' ...' if len(wrong) > 5 else ''} differs from the manifest")
    if not bad:
        write_stamp(root, manifest)
    return {"complete": not bad, "bad": bad, "files": len(manifest["files"]), "bytes": manifest["total_bytes"]}


# ------------------------------------------------------------------------------------------- wire
# Frame: 4-byte big-endian header length, JSON header, then header["length"] bytes of data.
# The data never passes through Python objects it does not need to: the source hands the file to the
# kernel (os.sendfile); a relay receives a frame into one reused buffer (recv_into), hashes it there
# (the only hash of those bytes on that node: this is its verification), writes it with pwrite and
# forwards it from its own page cache with os.sendfile. Chunks are split over one TCP stream per fabric
# twin (lanes): with both twins up every link carries half of the bytes.
class StageError(Exception):
    """A copy that cannot go on: one sentence naming this node, the peer and the cause."""


# Sockets block in the kernel with SO_RCVTIMEO/SO_SNDTIMEO instead of Python's timeouts: one recv with
# MSG_WAITALL takes a whole frame in one system call (a Python timeout makes the socket non-blocking
# underneath: a poll and a partial recv per 64 KiB or so), and sendfile/sendall block until there is room.
IO_TIMEOUT = 600


def _kernel_timeouts(sock: socket.socket, seconds: float | None = None) -> None:
    seconds = IO_TIMEOUT if seconds is None else seconds
    sock.settimeout(None)
    tv = struct.pack("ll", int(seconds), int((seconds % 1) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def _why(exc: BaseException) -> str:
    if isinstance(exc, (TimeoutError, BlockingIOError)):  # BlockingIOError: SO_RCVTIMEO/SO_SNDTIMEO ran out
        return f"no data for {IO_TIMEOUT} s (timed out)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _header(header: dict[str, Any]) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack(">I", len(raw)) + raw


def _send_frame(sock: socket.socket, header: dict[str, Any], data: bytes = b"") -> None:
    sock.sendall(_header(header) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    _recv_into(sock, memoryview(buf))
    return bytes(buf)


def _recv_into(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:], 0, socket.MSG_WAITALL)  # whole frame in one call (a signal may cut it)
        if not n:
            raise ConnectionError("the peer closed the connection mid-frame")
        got += n


def _recv_header(sock: socket.socket) -> dict[str, Any]:
    (n,) = struct.unpack(">I", _recv_exact(sock, 4))
    return json.loads(_recv_exact(sock, n))


def _recv_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes]:
    header = _recv_header(sock)
    data = _recv_exact(sock, int(header.get("length", 0))) if header.get("length") else b""
    return header, data


def _sendfile(sock: socket.socket, fd: int, offset: int, length: int) -> None:
    """The kernel copies ``length`` bytes of ``fd`` at ``offset`` to the socket (no pass through Python).
    A socket with a Python timeout is non-blocking underneath: wait for room, up to that timeout (the
    chain's sockets block in the kernel instead, see _kernel_timeouts)."""
    end = offset + length
    while offset < end:
        try:
            sent = os.sendfile(sock.fileno(), fd, offset, end - offset)
        except BlockingIOError:
            if sock.gettimeout() is None or not select.select([], [sock], [], sock.gettimeout())[1]:
                raise TimeoutError("timed out") from None
            continue
        if sent == 0:
            raise OSError(0, f"the file ended at byte {offset}, before the manifest says")
        offset += sent


def _send_chunk(sock: socket.socket, header: dict[str, Any], fd: int, offset: int, length: int) -> None:
    """One chunk frame from the source: its header, then ``length`` bytes of the file by sendfile.
    MSG_MORE: the header leaves in the same segment as the data (with TCP_NODELAY it would otherwise be
    a packet of its own, one more per frame for both ends to process)."""
    sock.sendall(_header(header), socket.MSG_MORE)
    _sendfile(sock, fd, offset, length)


def _addr(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


# How long a node keeps trying to reach the next one (its relay may start a little later).
CONNECT_WAIT = 120.0


def _connect(addr: str, timeout: float | None = None) -> socket.socket:
    deadline = time.monotonic() + (CONNECT_WAIT if timeout is None else timeout)
    while True:
        try:
            sock = socket.create_connection(_addr(addr), timeout=30)
            _kernel_timeouts(sock)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def split_lanes(todo: list[tuple[str, int, int]], lanes: int) -> list[list[tuple[str, int, int]]]:
    """Chunks (path, index, size) over ``lanes`` streams: whole chunks, about the same bytes each, in file
    order within a lane (so a lane reads and writes sequentially)."""
    out: list[list[tuple[str, int, int]]] = [[] for _ in range(max(1, lanes))]
    load = [0] * len(out)
    for item in todo:
        k = load.index(min(load))
        out[k].append(item)
        load[k] += item[2]
    return out


def cpu_seconds() -> float:
    """User and system CPU seconds of this process (all its threads) so far. The results report the
    CPU of the copy itself (from the start of relay/send), not the interpreter's start-up."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return round(ru.ru_utime + ru.ru_stime, 3)


class Progress:
    def __init__(self, path: str | None, total: int, role: str) -> None:
        self.path, self.total, self.role = path, total, role
        self.done, self.t0, self.last = 0, time.monotonic(), 0.0
        self.lock = threading.Lock()

    def add(self, n: int, final: bool = False, state: str = "copying", extra: dict[str, Any] | None = None) -> None:
        with self.lock:
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


# Direct I/O: a relay writes whole aligned frames with O_DIRECT from its page-aligned receive buffers,
# so the bytes are not copied a second time (into the page cache) and fsync has nothing left to write
# back; the frame is then forwarded from the same buffer. A file system without O_DIRECT (or a frame
# that is not aligned: a file's last one, small test chunks) takes the buffered path (pwrite, page cache).
DIRECT_ALIGN = 4096


def _open_direct(path: Path) -> int | None:
    """A second descriptor of the file with O_DIRECT, or None where the file system does not have it."""
    try:
        return os.open(path, os.O_WRONLY | getattr(os, "O_DIRECT", 0)) if hasattr(os, "O_DIRECT") else None
    except OSError:
        return None


def _aligned_buffer(n: int) -> memoryview:
    """A page-aligned buffer (anonymous mmap) that O_DIRECT can write from."""
    return memoryview(mmap.mmap(-1, max(n, 1)))


def _write_at(root: Path, fh: BinaryIO, data: memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (pwrite: lanes share the file without seeking)."""
    _write_fd(fh.fileno(), data, offset)


def _write_fd(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        n = os.pwrite(fd, data[done:], offset + done)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done += n


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


class ChunkCheck:
    """The checksum of each chunk as its frames arrive (in order within a lane): the relay's verification,
    done on the bytes in memory, so a fresh copy is never read back from disk."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.files = {f["path"]: f for f in manifest["files"]}
        self.chunk_bytes = manifest["chunk_bytes"]
        self.algorithm = manifest_hash(manifest)
        self.open: dict[tuple[str, int], list[Any]] = {}
        self.result: dict[tuple[str, int], bool] = {}
        # Chunks a writer could not write: never verified, whichever of writer and hasher ends first.
        self.failed: set[tuple[str, int]] = set()
        self.lock = threading.Lock()

    def add(self, path: str, offset: int, data: memoryview) -> None:
        index = offset // self.chunk_bytes
        key = (path, index)
        entry = self.files[path]
        size = min(self.chunk_bytes, entry["size"] - index * self.chunk_bytes)
        with self.lock:
            state = self.open.get(key)
            if state is None or offset != index * self.chunk_bytes + state[1]:
                if offset != index * self.chunk_bytes:  # a frame out of order: check this chunk on disk
                    self.open.pop(key, None)
                    self.result.pop(key, None)
                    return
                state = self.open[key] = [new_hash(self.algorithm), 0]
        state[0].update(data)  # hashlib and xxhash release the GIL for large buffers: other lanes go on meanwhile
        state[1] += len(data)
        if state[1] >= size:
            with self.lock:
                self.open.pop(key, None)
                self.result[key] = (key not in self.failed and state[1] == size
                                    and state[0].hexdigest() == entry["chunks"][index])

    def bad(self, path: str, offset: int) -> None:
        """A chunk whose bytes did not reach the disk (a failed write) is not verified."""
        key = (path, offset // self.chunk_bytes)
        with self.lock:
            self.failed.add(key)
            self.result[key] = False


class _Frame:
    """A received frame on its way to the writers and the hashers; its buffer is free once both are done."""

    __slots__ = ("buf", "offset", "pending", "rel", "view")
    _lock = threading.Lock()

    def __init__(self, rel: str, offset: int, view: memoryview, buf: memoryview) -> None:
        self.rel, self.offset, self.view, self.buf, self.pending = rel, offset, view, buf, 2

    def done(self, free: queue.Queue[memoryview]) -> None:
        with self._lock:
            self.pending -= 1
            last = self.pending == 0
        if last:
            free.put(self.buf)


class _Lane:
    """One upstream -> this node -> downstream stream of a relay."""

    def __init__(self, relay: _Relay, index: int, listen: str, nxt: str | None) -> None:
        self.relay, self.index, self.listen, self.nxt = relay, index, listen, nxt
        self.up: socket.socket | None = None
        self.down: socket.socket | None = None
        self.peer = "?"
        self.error: BaseException | None = None

    def accept(self, server: socket.socket) -> None:
        r = self.relay
        try:
            self.up, addr = server.accept()
        except OSError as exc:
            raise StageError(f"{r.name}: no upstream node connected to {self.listen} within {r.timeout:.0f} s"
                             f" ({_why(exc)}); the node before it in the chain did not start or cannot reach it") from exc
        self.peer = addr[0]
        _kernel_timeouts(self.up)
        if self.nxt:
            try:
                self.down = _connect(self.nxt)
            except OSError as exc:
                r.lost_next(self, exc, "could not connect to it")

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which says it in one sentence
            self.error = exc

    def _run(self) -> None:
        # The receive loop only receives a frame into a page-aligned buffer and forwards it from there;
        # writer threads write it (O_DIRECT when aligned) and hasher threads hash it, both behind the
        # loop: pwrite and hashlib release the GIL, so on a node with free cores neither costs time on
        # the wire. WRITERS writes in flight: one O_DIRECT write at a time waits for the disk each
        # frame (measured on the lab: the disk's time then was most of the stream's). Chunks are
        # independent hashes: chunk i goes to hasher i % n (its frames stay in order), so n cores hash
        # at once, which a 200G link needs (one core hashes about 2 GB/s). A buffer goes back to the
        # free list when both its write and its hash are done.
        n = hash_threads()
        free: queue.Queue[memoryview] = queue.Queue()
        for _ in range(HASH_DEPTH * (n + WRITERS)):
            free.put(_aligned_buffer(FRAME_BYTES))
        works: list[queue.Queue[_Frame | None]] = [queue.Queue() for _ in range(n)]
        writes: queue.Queue[_Frame | None] = queue.Queue()
        threads = [threading.Thread(target=self._hash, args=(w, free), daemon=True) for w in works]
        threads += [threading.Thread(target=self._write, args=(writes, free), daemon=True) for _ in range(WRITERS)]
        for t in threads:
            t.start()
        try:
            self._loop(free, works, writes)
        finally:
            for w in works:
                w.put(None)
            for _ in range(WRITERS):
                writes.put(None)
            for t in threads:
                t.join()

    def _hash(self, work: queue.Queue[_Frame | None], free: queue.Queue[memoryview]) -> None:
        check = self.relay.check
        while True:
            frame = work.get()
            if frame is None:
                return
            check.add(frame.rel, frame.offset, frame.view)
            frame.done(free)

    def _write(self, work: queue.Queue[_Frame | None], free: queue.Queue[memoryview]) -> None:
        while True:
            frame = work.get()
            if frame is None:
                return
            if not self.relay.write(frame.rel, frame.offset, frame.view):
                self.relay.check.bad(frame.rel, frame.offset)  # its bytes are not on this node's disk
            frame.done(free)

    def _loop(self, free: queue.Queue[memoryview], works: list[queue.Queue[_Frame | None]],
              writes: queue.Queue[_Frame | None]) -> None:
        r = self.relay
        assert self.up is not None
        while True:
            try:
                header = _recv_header(self.up)
            except (OSError, ValueError, struct.error) as exc:
                raise StageError(f"{r.name}: the stream from {self.peer} (the node before it in the chain) broke"
                                 f" after {_iec(r.prog.done)} of {_iec(r.prog.total)}: {_why(exc)}") from exc
            kind = header.get("kind")
            if kind == "chunk":
                n = int(header["length"])
                buf = free.get()
                if n > len(buf):
                    buf = _aligned_buffer(n)
                view = buf[:n]
                try:
                    _recv_into(self.up, view)
                except OSError as exc:
                    raise StageError(f"{r.name}: the stream from {self.peer} (the node before it in the chain) broke"
                                     f" after {_iec(r.prog.done)} of {_iec(r.prog.total)}: {_why(exc)}") from exc
                self.forward(header, view)
                r.prog.add(n)
                offset = int(header["offset"])
                frame = _Frame(header["path"], offset, view, buf)
                writes.put(frame)
                works[(offset // r.check.chunk_bytes) % len(works)].put(frame)
            else:
                if kind == "start":
                    r.started(header)
                self.forward(header, None)
                if kind == "end":
                    return

    def forward(self, header: dict[str, Any], data: memoryview | None) -> None:
        """Send a frame on to the next node, its data from the buffer it was received into (before this
        node writes it: the next hop does not wait for this node's disk)."""
        if self.down is None:
            return
        try:
            if data is not None:  # MSG_MORE: header and data in one segment (see _send_chunk)
                self.down.sendall(_header(header), socket.MSG_MORE)
                self.down.sendall(data)
            else:
                self.down.sendall(_header(header))
        except OSError as exc:
            self.relay.lost_next(self, exc, f"forwarding failed after {_iec(self.relay.prog.done)}")


class _Relay:
    def __init__(self, root: Path, manifest: dict[str, Any], progress: str | None, timeout: float, name: str) -> None:
        self.root, self.manifest, self.timeout, self.name = root, manifest, timeout, name
        self.files = {f["path"]: f for f in manifest["files"]}
        self.prog = Progress(progress, 0, "relay")
        self.check = ChunkCheck(manifest)
        self.handles: dict[str, BinaryIO] = {}
        self.direct: dict[str, int | None] = {}  # O_DIRECT descriptor per file (None: buffered only)
        self.retired: list[int] = []  # O_DIRECT descriptors no longer used, closed by finish()
        self.write_exc: OSError | None = None
        self.lock = threading.Lock()
        self.error: str | None = None  # this node's write error (the chain goes on without its copy)
        self.next_error: str | None = None  # the next node was lost (this node's copy goes on)
        self.written = 0
        self.write_s = 0.0  # time spent in write calls (all workers): the disk's share of the stream

    def started(self, header: dict[str, Any]) -> None:
        with self.lock:
            if not self.prog.total:
                self.prog.total = int(header.get("bytes", 0))
                self.prog.add(0, final=True, state="copying")

    def lost_next(self, lane: _Lane, exc: OSError, what: str) -> None:
        with self.lock:
            if self.next_error is None:
                self.next_error = f"{self.name} lost the next node of the chain at {lane.nxt}: {what} ({_why(exc)})"
        if lane.down is not None:
            try:
                lane.down.close()
            except OSError:
                pass
        lane.down = None

    def _direct_fd(self, rel: str) -> int | None:
        with self.lock:
            if rel not in self.direct:
                self.direct[rel] = _open_direct(self.root / rel)
            return self.direct[rel]

    def _no_direct(self, rel: str) -> None:
        """This file is written buffered from now on. Its O_DIRECT descriptor stays open until finish():
        other writers may be using it (their write fails the same way and they fall back too)."""
        with self.lock:
            fd = self.direct.get(rel)
            self.direct[rel] = None
            if fd is not None:
                self.retired.append(fd)

    def write(self, rel: str, offset: int, view: memoryview) -> bool:
        """Write a frame into this node's copy; whether it got there (then it is hashed).

        ``view`` starts a page-aligned buffer: an aligned frame is written with O_DIRECT (no copy into
        the page cache, nothing left for fsync to write back); any other by a buffered pwrite. After a
        failed write (disk full) this node writes nothing more; the chain goes on."""
        if self.error is not None:
            return False
        t0 = time.monotonic()
        try:
            with self.lock:
                fh = _open_for_write(self.root, self.files[rel], self.handles)
            direct = None
            if offset % DIRECT_ALIGN == 0 and len(view) % DIRECT_ALIGN == 0:
                direct = self._direct_fd(rel)
            if direct is not None:
                try:
                    _write_fd(direct, view, offset)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:  # EINVAL: this file system refuses O_DIRECT here
                        raise
                    self._no_direct(rel)
                    direct = None
            if direct is None:
                _write_at(self.root, fh, view, offset)
            with self.lock:
                self.written += len(view)
                self.write_s += time.monotonic() - t0
            return True
        except OSError as exc:
            with self.lock:
                if self.error is None:
                    self.error = _disk_full_message(self.root, self.written, self.prog.total, exc)
                    self.write_exc = exc  # finish() says it again with what the other writers got written
            self.prog.add(0, final=True, state="write failed", extra={"error": self.error})
            return False

    def finish(self) -> dict[str, Any]:
        """Flush, set exact sizes, and check what the stream did not verify; this node's result."""
        if self.write_exc is not None:  # every writer is done now: the bytes written are final
            self.error = _disk_full_message(self.root, self.written, self.prog.total, self.write_exc)
        for fd in [*self.direct.values(), *self.retired]:
            if fd is not None:
                os.close(fd)  # the fsync below (same file) makes what it wrote durable
        self.direct.clear()
        self.retired.clear()
        for fh in self.handles.values():
            try:
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:
                self.error = self.error or _disk_full_message(self.root, self.written, self.prog.total, exc)
            finally:
                try:
                    fh.close()
                except OSError:
                    pass
        for rel, entry in self.files.items():  # files with no chunk sent (empty files), and exact sizes
            path = self.root / rel
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with (path.open("r+b") if path.exists() else path.open("w+b")) as fh:
                    fh.truncate(entry["size"])
            except OSError as exc:
                self.error = self.error or _disk_full_message(self.root, self.written, self.prog.total, exc)
        self.prog.add(0, final=True, state="verifying")
        mine = status(self.root, self.manifest, known=self.check.result, stamp=self.error is None)
        result = {"node": self.name, "complete": mine["complete"] and self.error is None,
                  "need_bytes": mine["need_bytes"], "verified_in_stream": sum(self.check.result.values())}
        if self.error is not None:
            result["error"] = self.error
        return result


def relay(root: Path, manifest: dict[str, Any], listen: str | list[str], nxt: str | list[str] | None,
          progress: str | None, timeout: float, name: str | None = None) -> dict[str, Any]:
    """Receive chunks, write them, forward them; verify on the way in; acknowledge with every node's result.

    ``listen`` (and ``nxt``) name one address per lane (fabric twin). A write that fails (disk full,
    quota, I/O error) stops this node's writing but not the chain: the frames still go on to the next
    node, and this node's result says what failed and how far it got. The chunks written before that
    are kept, so the next run sends only what is missing. A next node that is lost does not stop this
    node's copy either: the result names it and the cause. A broken upstream ends in StageError."""
    listens = [listen] if isinstance(listen, str) else list(listen)
    nexts: list[str | None] = ([nxt] if isinstance(nxt, str) else list(nxt)) if nxt else [None] * len(listens)
    if len(nexts) != len(listens):
        raise StageError(f"{name}: {len(listens)} --listen address(es) but {len(nexts)} --next: give one of each per fabric twin")
    me = name or socket.gethostname()
    cpu0 = cpu_seconds()
    root.mkdir(parents=True, exist_ok=True)
    (root / STAGE_DIR).mkdir(parents=True, exist_ok=True)
    r = _Relay(root, manifest, progress, timeout, me)
    servers = []
    try:
        for addr in listens:
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                server.bind(_addr(addr))
            except OSError as exc:
                server.close()
                raise StageError(f"{me}: cannot listen on {addr} ({_why(exc)}); is that address up on this node?") from exc
            server.listen(1)
            server.settimeout(timeout)
            servers.append(server)
        lanes = [_Lane(r, i, a, n) for i, (a, n) in enumerate(zip(listens, nexts))]
        for lane, server in zip(lanes, servers):
            lane.accept(server)
        t_stream = time.monotonic()
        threads = [threading.Thread(target=lane.run, daemon=True) for lane in lanes[1:]]
        for t in threads:
            t.start()
        lanes[0].run()
        for t in threads:
            t.join()
        for lane in lanes:
            if lane.error is not None:
                raise lane.error if isinstance(lane.error, StageError) else StageError(
                    f"{me}: the copy from {lane.peer} failed: {_why(lane.error)}")
        t_finish = time.monotonic()
        result = r.finish()
        # where this node's time went: the stream (receive, forward, write, hash) and the finish (fsync,
        # sizes, the check of what the stream did not verify); the bench reads them
        result["stream_s"] = round(t_finish - t_stream, 3)
        result["finish_s"] = round(time.monotonic() - t_finish, 3)
        result["write_s"] = round(r.write_s, 3)
        results = [result]
        head = lanes[0]
        if head.down is not None:
            try:
                ack = _recv_header(head.down)
                results += ack.get("results", [])
            except (OSError, ValueError, struct.error) as exc:
                r.next_error = r.next_error or (f"{me} lost the next node of the chain at {head.nxt}: it closed the"
                                                f" connection before acknowledging ({_why(exc)})")
        if r.next_error is not None:
            results.append({"node": str(head.nxt), "complete": False, "error": r.next_error})
        result["cpu_s"] = round(cpu_seconds() - cpu0, 3)
        try:
            assert head.up is not None
            head.up.sendall(_header({"kind": "ack", "results": results}))
        except OSError as exc:
            raise StageError(f"{me}: could not acknowledge to {head.peer} (the node before it): {_why(exc)}") from exc
        r.prog.add(0, final=True, state="done" if result["complete"] else "incomplete", extra={"results": results})
        return {"results": results}
    finally:
        for lane in locals().get("lanes", []):
            for sock in (lane.up, lane.down):
                if sock is not None:
                    sock.close()
        for server in servers:
            server.close()


def send(root: Path, manifest: dict[str, Any], nxt: str | list[str], need: list[list[Any]], progress: str | None,
         name: str | None = None) -> dict[str, Any]:
    """Stream every needed chunk down the chain: one lane (TCP stream) per address in ``nxt``; the kernel
    copies the file to the socket (os.sendfile). No hashing here: the manifest already holds the sums."""
    nexts = [nxt] if isinstance(nxt, str) else list(nxt)
    me = name or socket.gethostname()
    cpu0 = cpu_seconds()
    files = {f["path"]: f for f in manifest["files"]}
    chunk_bytes = manifest["chunk_bytes"]
    todo = []
    for rel, idx in need:
        if idx < 0:
            continue
        size = min(chunk_bytes, files[rel]["size"] - idx * chunk_bytes)
        todo.append((rel, idx, size))
    todo.sort(key=lambda t: (t[0], t[1]))
    total = sum(t[2] for t in todo)
    prog = Progress(progress, total, "source")
    socks: list[socket.socket] = []
    fds: dict[str, int] = {}
    lock = threading.Lock()
    try:
        for addr in nexts:
            try:
                socks.append(_connect(addr))
            except OSError as exc:
                raise StageError(f"{me}: cannot reach the first node of the chain at {addr} ({_why(exc)}); is its"
                                 " relay running and that address up?") from exc
        for lane, sock in enumerate(socks):
            sock.sendall(_header({"kind": "start", "bytes": total, "manifest": manifest["id"], "lane": lane,
                                  "lanes": len(socks)}))
        prog.add(0, final=True)

        def fd_of(rel: str) -> int:
            with lock:
                if rel not in fds:
                    try:
                        fds[rel] = os.open(root / rel, os.O_RDONLY)
                    except OSError as exc:
                        raise StageError(f"{me}: cannot read {root / rel} ({_why(exc)})") from exc
                    try:
                        os.posix_fadvise(fds[rel], 0, 0, os.POSIX_FADV_SEQUENTIAL)
                    except (AttributeError, OSError):
                        pass
                return fds[rel]

        errors: list[BaseException] = []

        def stream(lane: int, items: list[tuple[str, int, int]]) -> None:
            sock = socks[lane]
            try:
                for rel, idx, size in items:
                    fd = fd_of(rel)
                    sent = 0
                    while sent < size:  # frames of FRAME_BYTES keep every hop's pipeline short
                        n = min(FRAME_BYTES, size - sent)
                        offset = idx * chunk_bytes + sent
                        _send_chunk(sock, {"kind": "chunk", "path": rel, "index": idx, "offset": offset, "length": n},
                                    fd, offset, n)
                        sent += n
                        prog.add(n)
                sock.sendall(_header({"kind": "end"}))
            except StageError as exc:
                errors.append(exc)
            except OSError as exc:
                errors.append(StageError(f"{me}: sending to {nexts[lane]} failed after {_iec(prog.done)} of"
                                         f" {_iec(total)}: {_why(exc)}"))

        parts = split_lanes(todo, len(socks))
        threads = [threading.Thread(target=stream, args=(i, part), daemon=True) for i, part in enumerate(parts) if i]
        for t in threads:
            t.start()
        stream(0, parts[0])
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        prog.add(0, final=True, state="waiting for the nodes to verify")
        try:
            ack = _recv_header(socks[0])
        except (OSError, ValueError, struct.error) as exc:
            raise StageError(f"{me}: the first node of the chain at {nexts[0]} closed the connection before"
                             f" acknowledging ({_why(exc)}); its relay output says why") from exc
    finally:
        for fd in fds.values():
            os.close(fd)
        for sock in socks:
            sock.close()
    results = ack.get("results", [])
    ok = all(r.get("complete") for r in results)
    prog.add(0, final=True, state="done" if ok else "incomplete", extra={"results": results})
    return {"bytes": total, "results": results, "complete": ok, "lanes": len(socks), "cpu_s": round(cpu_seconds() - cpu0, 3),
            "elapsed_s": round(time.monotonic() - prog.t0, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("manifest")
    p.add_argument("dir")
    p.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK)
    p.add_argument("--hash", choices=("auto", *HASHES), default="auto",
                   help="chunk checksum (auto: xxh3_128 when python3-xxhash is installed, else sha256)")
    p.add_argument("--output")
    for name in ("status", "verify"):
        p = sub.add_parser(name)
        p.add_argument("dir")
        p.add_argument("manifest")
    p = sub.add_parser("relay")
    p.add_argument("dir")
    p.add_argument("manifest")
    p.add_argument("--listen", required=True, action="append", help="IP:PORT; once per fabric twin (lane)")
    p.add_argument("--next", action="append", help="IP:PORT of the next node; once per --listen")
    p.add_argument("--progress")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--name", help="this node's name in the results (default: its hostname)")
    p = sub.add_parser("send")
    p.add_argument("dir")
    p.add_argument("manifest")
    p.add_argument("--next", required=True, action="append", help="IP:PORT of the first relay; once per fabric twin")
    p.add_argument("--need", required=True, help="JSON file: [[path, chunk index], ...]")
    p.add_argument("--progress")
    p.add_argument("--name", help="this node's name in messages (default: its hostname)")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except StageError as exc:  # one sentence, no traceback: the node, the peer and the cause
        print(f"gb10-stage: {exc}", file=sys.stderr)
        print(json.dumps({"complete": False, "error": str(exc)}))
        return 2


def _run(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    if args.cmd == "manifest":
        out = Path(args.output) if args.output else root / STAGE_DIR / "manifest.json"
        old = None
        if out.exists():
            try:
                old = load_manifest(out)
            except SystemExit:
                old = None
        algorithm = choose_hash(args.hash)
        if not hash_available(algorithm):
            raise SystemExit(f"gb10-stage: --hash {algorithm} needs the xxhash module, which this node's python3"
                             f" ({sys.executable}) does not have: install python3-xxhash (the base role does)")
        # An unchanged folder is not re-read, whichever checksum its manifest has, unless one was asked for.
        same_hash = args.hash == "auto" or (old is not None and manifest_hash(old) == algorithm)
        if old is not None and old.get("chunk_bytes") == args.chunk_bytes and same_hash and stamped_complete(root, old):
            manifest, changed = old, False  # unchanged folder: do not re-read it
        else:
            manifest = make_manifest(root, args.chunk_bytes, algorithm)
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
    res = send(root, manifest, args.next, need, args.progress, args.name)
    print(json.dumps(res))
    return 0 if res["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
