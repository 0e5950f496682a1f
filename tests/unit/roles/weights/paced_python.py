"""``python3`` for the long-copy test (test_follow.py): the real interpreter, with a paced ``gb10_stage.py send``.

The test puts a ``python3`` that runs this file first on PATH, so the weights role's ``python3 <tool> send``
lands here. Every other command (relays, manifest, status) runs the real interpreter unchanged. ``send``
runs the real tool with one change: before each chunk frame (``_send_chunk``) it waits until a progress file of the chain
(any ``<dir>/.gb10-stage/progress.json`` under GB10_PACED_DIRS, colon-separated) has been opened once
more, i.e. until the progress loop has finished one more round. A copy of N chunks therefore needs at
least N rounds of the loop, however fast or slow the machine is: the test counts rounds, not seconds.
There is no fallback on time (a loaded machine may take minutes per round of a slow loop); the wait gives
up only after GB10_PACED_IDLE_S (3600) seconds without a round, and the test kills what a loop that died
left waiting. GB10_PACED_FAIL_AFTER=N makes the source exit with an error before its chunk N+1.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import select
import struct
import sys
import time
from pathlib import Path

IN_OPEN = 0x20
EVENT = struct.Struct("iIII")


class Rounds:
    """Counts the opens of the chain's progress files (inotify): one per round of the progress loop."""

    def __init__(self, dirs: list[str], idle_s: float) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        for d in dirs:
            stage_dir = Path(d) / ".gb10-stage"
            stage_dir.mkdir(parents=True, exist_ok=True)
            if self.libc.inotify_add_watch(self.fd, str(stage_dir).encode(), IN_OPEN) < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {stage_dir}")
        self.idle_s = idle_s
        self.credit = 0

    def _drain(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return
        buf = os.read(self.fd, 65536)
        pos = 0
        while pos < len(buf):
            _wd, _mask, _cookie, length = EVENT.unpack_from(buf, pos)
            name = buf[pos + EVENT.size:pos + EVENT.size + length].rstrip(b"\0")
            pos += EVENT.size + length
            if name == b"progress.json":
                self.credit += 1

    def wait(self) -> None:
        """Return once a round was seen since the last call (or after idle_s with none).

        Other files of the folders wake the wait too (the relays write progress.json.tmp every second):
        only an open of progress.json counts."""
        deadline = time.monotonic() + self.idle_s
        self._drain(0)
        while self.credit == 0 and time.monotonic() < deadline:
            self._drain(max(deadline - time.monotonic(), 0))
        self.credit = max(self.credit - 1, 0)


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) < 2 or not argv[0].endswith("gb10_stage.py") or argv[1] != "send":
        os.execv(sys.executable, [sys.executable, *argv])
    spec = importlib.util.spec_from_file_location("gb10_stage", argv[0])
    assert spec is not None and spec.loader is not None
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    rounds = Rounds([d for d in os.environ.get("GB10_PACED_DIRS", "").split(":") if d],
                    float(os.environ.get("GB10_PACED_IDLE_S", "3600")))
    fail_after = int(os.environ.get("GB10_PACED_FAIL_AFTER", "-1"))
    real_send_chunk = stage._send_chunk
    sent = 0

    def paced_send_chunk(sock, header, fd, offset, length):  # type: ignore[no-untyped-def]
        nonlocal sent
        if sent == fail_after:
            raise SystemExit("paced_python: the source fails on purpose (GB10_PACED_FAIL_AFTER)")
        rounds.wait()
        sent += 1
        real_send_chunk(sock, header, fd, offset, length)

    stage._send_chunk = paced_send_chunk
    sys.exit(stage.main(argv[1:]))


if __name__ == "__main__":
    main()
