#!/usr/bin/env python3
"""bench/staging/plain.py: the baselines the relay is measured against, run on the lab nodes.

    plain.py recv --listen IP:PORT --out FILE [--count N]   receive N plain copies (read + write, fsync), then exit
    plain.py send FILE --to IP:PORT [--to IP:PORT ...]       plain copies one after another (os.sendfile)
    plain.py rsync FILE --to IP [--to IP ...]                rsync fan-out: one rsync per target, all at once

A plain copy is what any copy tool does with the same bytes: the sender hands the file to the kernel
(os.sendfile), the receiver reads the socket into one buffer and writes it to the file, then fsyncs
(the relay fsyncs too), and answers one byte so the sender's clock includes the receiver's fsync.
Every command prints one JSON line with its wall time and the CPU seconds of the copy (getrusage:
user + system of the process from the start of the copy, not the interpreter's start-up; for rsync,
of its children, start-up included). Standard library only.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time

BUF = 1 << 20


def cpu(who: int = resource.RUSAGE_SELF) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def addr(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def connect(target: str) -> socket.socket:
    """The receiver may still be starting: try for up to 30 s."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return socket.create_connection(addr(target), timeout=600)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def recv(listen: str, out: str, count: int) -> dict[str, object]:
    cpu0 = cpu()
    server = socket.create_server(addr(listen))
    server.settimeout(600)
    buf = memoryview(bytearray(BUF))
    total = 0
    t0 = time.monotonic()
    for _ in range(count):
        conn, _ = server.accept()
        with conn:
            (size,) = struct.unpack(">Q", conn.recv(8, socket.MSG_WAITALL))
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            got = 0
            while got < size:
                n = conn.recv_into(buf, min(BUF, size - got))
                if not n:
                    raise SystemExit(f"plain recv: sender closed after {got} of {size} bytes")
                view = buf[:n]
                done = 0
                while done < n:
                    done += os.write(fd, view[done:])
                got += n
            os.fsync(fd)
            os.close(fd)
            conn.sendall(b"k")
            total += got
    return {"bytes": total, "wall_s": round(time.monotonic() - t0, 3), "cpu_s": round(cpu() - cpu0, 3)}


def send(path: str, targets: list[str]) -> dict[str, object]:
    cpu0 = cpu()
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    each = []
    t0 = time.monotonic()
    for target in targets:
        t1 = time.monotonic()
        with connect(target) as sock:
            sock.sendall(struct.pack(">Q", size))
            off = 0
            sock.setblocking(True)  # os.sendfile on a blocking socket: the kernel waits for room
            while off < size:
                off += os.sendfile(sock.fileno(), fd, off, size - off)
            if sock.recv(1) != b"k":
                raise SystemExit(f"plain send: {target} did not confirm the copy")
        each.append(round(time.monotonic() - t1, 3))
    os.close(fd)
    return {"bytes": size * len(targets), "wall_s": round(time.monotonic() - t0, 3), "each_s": each,
            "cpu_s": round(cpu() - cpu0, 3)}


def rsync(path: str, targets: list[str], port: int) -> dict[str, object]:
    t0 = time.monotonic()
    procs = [subprocess.Popen(["rsync", "-a", "--whole-file", path, f"rsync://{t}:{port}/bench/"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for t in targets]
    errs = [p.communicate()[1].decode().strip() for p in procs]
    wall = time.monotonic() - t0
    if any(p.returncode for p in procs):
        raise SystemExit(f"rsync failed: {errs}")
    return {"bytes": os.path.getsize(path) * len(targets), "wall_s": round(wall, 3),
            "cpu_s": round(cpu(resource.RUSAGE_CHILDREN), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("recv")
    p.add_argument("--listen", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--count", type=int, default=1)
    p = sub.add_parser("send")
    p.add_argument("file")
    p.add_argument("--to", action="append", required=True)
    p = sub.add_parser("rsync")
    p.add_argument("file")
    p.add_argument("--to", action="append", required=True)
    p.add_argument("--port", type=int, default=29651)
    args = ap.parse_args()
    if args.cmd == "recv":
        res = recv(args.listen, args.out, args.count)
    elif args.cmd == "send":
        res = send(args.file, args.to)
    else:
        res = rsync(args.file, args.to, args.port)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
