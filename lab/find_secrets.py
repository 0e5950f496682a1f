#!/usr/bin/env python3
"""Look for secret values in files and process command lines; print what was found as JSON.

The secrets come in on standard input, one per line (never on the command line, where `ps` would
show them). Arguments are the folders to walk. For every regular file that contains one of the
secrets the result names the file, its mode, and whether any user on the machine can read it
(world-readable file in folders everyone may enter). Every process's command line (world-readable
through /proc) is checked too. The secret values themselves are never printed: a finding names the
secret by its position in the input (0, 1, ...).

    printf '%s\\n' "$KEY" | python3 find_secrets.py /etc /var /home /root /tmp /opt /srv

Used by molecule/serve/secrets.yml on every lab node and on the control machine's logs.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

# Never walked: kernel views, device nodes, and the read-only image layers Docker unpacks (content
# that came from the image, not written by this project). Container configs (/var/lib/docker/containers)
# are walked.
DEFAULT_SKIP = ("/proc", "/sys", "/dev", "/run/docker/netns", "/var/lib/docker/overlay2", "/var/lib/docker/image",
                "/var/lib/docker/buildkit", "/var/lib/docker/volumes")
MAX_FILE_BYTES = 256 * 1024 * 1024
CHUNK = 4 * 1024 * 1024


def world_reachable(path: Path) -> bool:
    """True when any local user can read ``path``: the file is o+r and every parent folder is o+x."""
    try:
        if not os.stat(path).st_mode & stat.S_IROTH:
            return False
        for parent in path.parents:
            if not os.stat(parent).st_mode & stat.S_IXOTH:
                return False
    except OSError:
        return False
    return True


def file_hits(path: Path, needles: list[bytes]) -> list[int]:
    """Indexes of the needles found in the file (read in overlapping chunks)."""
    overlap = max((len(n) for n in needles), default=1) - 1
    found: set[int] = set()
    tail = b""
    try:
        with path.open("rb") as handle:
            while True:
                chunk = handle.read(CHUNK)
                if not chunk:
                    break
                window = tail + chunk
                for i, needle in enumerate(needles):
                    if i not in found and needle in window:
                        found.add(i)
                if len(found) == len(needles):
                    break
                tail = window[-overlap:] if overlap else b""
    except OSError:
        return []
    return sorted(found)


def walk(roots: list[str], needles: list[bytes], skip: tuple[str, ...] = DEFAULT_SKIP) -> list[dict[str, object]]:
    findings: list[dict[str, object]] = []
    seen: set[tuple[int, int]] = set()
    for root in roots:
        for folder, dirs, files in os.walk(root, followlinks=False):
            dirs[:] = [d for d in dirs if not os.path.join(folder, d).startswith(skip)]
            for name in files:
                path = Path(folder) / name
                try:
                    info = path.lstat()
                except OSError:
                    continue
                if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES or info.st_size == 0:
                    continue
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
                hits = file_hits(path, needles)
                if hits:
                    findings.append({"path": str(path), "mode": f"{stat.S_IMODE(info.st_mode):04o}",
                                     "owner_uid": info.st_uid, "world_readable": world_reachable(path),
                                     "secrets": hits})
    return findings


def cmdline_hits(needles: list[bytes], proc: Path = Path("/proc")) -> list[dict[str, object]]:
    """Processes whose command line (readable by every user) carries a secret."""
    hits: list[dict[str, object]] = []
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        found = [i for i, needle in enumerate(needles) if needle in cmd]
        if found:
            argv0 = cmd.split(b"\0", 1)[0].decode(errors="replace")
            hits.append({"pid": int(entry.name), "argv0": argv0, "secrets": found})
    return hits


def main(argv: list[str]) -> int:
    needles = [line.encode() for line in sys.stdin.read().splitlines() if line.strip()]
    if not needles:
        print(json.dumps({"error": "no secrets on standard input"}))
        return 2
    short = [i for i, n in enumerate(needles) if len(n) < 8]
    if short:
        print(json.dumps({"error": f"secrets {short} are shorter than 8 characters: too likely to match by chance"}))
        return 2
    roots = [r for r in argv if os.path.exists(r)] or ["/"]
    result = {"files": walk(roots, needles), "cmdlines": cmdline_hits(needles), "roots": roots,
              "secrets": len(needles)}
    result["world_readable"] = [f["path"] for f in result["files"] if f["world_readable"]]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
