"""The lab's Hub-like endpoint (lab/hub.py) served on loopback for a test, with its "CDN" pair."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lab import hub as labhub


@contextlib.contextmanager
def served_hub(folder: Path, repo: str, token: str, mib: int = 1) -> Iterator[tuple[int, dict[str, Any], Any]]:
    """Serve one ``mib`` MiB repository; yields (port, the repository's info, the Hub server)."""
    info = labhub.make_repo(folder / "repos", repo, mib)
    server, cdn = labhub.pair(("127.0.0.1", 0), labhub.load_repos(folder / "repos"), token, 0, str(folder / "hub.log"))
    for s in (server, cdn):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], info, server
    finally:
        server.shutdown()
        cdn.shutdown()
