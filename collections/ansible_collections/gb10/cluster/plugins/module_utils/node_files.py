"""Which of a node's managed files and folders differ from what they should be (gb10.cluster.node_files).

Plain logic, no Ansible imports: `read_state` reads what is on disk, `plan` says what differs,
`apply` makes it so. One module call covers every small file a role writes, instead of one
template/copy/file task (two remote module runs each) per file.
"""
from __future__ import annotations

import grp
import os
import pwd
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

# Where systemd reads unit files from: a written path under one of these needs a daemon-reload.
UNIT_DIRS = ("/etc/systemd/", "/lib/systemd/", "/usr/lib/systemd/")


@dataclass
class Entry:
    """One managed path: a file with its content, or a folder."""

    path: str
    mode: int
    owner: str = "root"
    group: str = "root"
    state: str = "file"
    content: bytes | None = None
    validate: str | None = None


@dataclass
class Current:
    """What is at a path now."""

    exists: bool
    is_dir: bool = False
    content: bytes | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@dataclass
class Step:
    """What differs at one path and the before/after text for --diff."""

    entry: Entry
    reasons: list[str] = field(default_factory=list)
    before: str = ""
    after: str = ""


def parse_mode(mode: str | int) -> int:
    """'0644' or 0o644 -> 0o644; anything else raises ValueError with the value in the message."""
    if isinstance(mode, int):
        return mode
    text = str(mode).strip()
    if not text or any(c not in "01234567" for c in text) or len(text) > 4:
        raise ValueError(f"mode {mode!r} is not an octal mode such as '0644'")
    return int(text, 8)


def read_state(path: str) -> Current:
    """Read what is at `path` (no symlink following for the type check)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Current(exists=False)
    is_dir = stat.S_ISDIR(st.st_mode)
    content = None
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as fh:
            content = fh.read()
    return Current(exists=True, is_dir=is_dir, content=content, mode=stat.S_IMODE(st.st_mode),
                   uid=st.st_uid, gid=st.st_gid)


def ids(entry: Entry) -> tuple[int, int]:
    """The numeric owner and group of an entry (KeyError names the missing user or group); an empty
    owner or group is the user or group this process runs as (a report written on the control machine)."""
    try:
        uid = pwd.getpwnam(entry.owner).pw_uid if entry.owner else os.geteuid()
    except KeyError as exc:
        raise KeyError(f"{entry.path}: user {entry.owner!r} does not exist") from exc
    try:
        gid = grp.getgrnam(entry.group).gr_gid if entry.group else os.getegid()
    except KeyError as exc:
        raise KeyError(f"{entry.path}: group {entry.group!r} does not exist") from exc
    return uid, gid


def plan(entry: Entry, current: Current, uid: int, gid: int) -> Step:
    """What must change at `entry.path` so that it matches `entry`."""
    step = Step(entry=entry)
    if entry.state == "directory":
        if not current.exists:
            step.reasons.append("created")
            step.before, step.after = f"(absent {entry.path})\n", f"(folder {entry.path})\n"
            return step
        if not current.is_dir:
            raise ValueError(f"{entry.path} exists and is not a folder; move it away and re-run")
    else:
        if current.exists and current.content is None:
            raise ValueError(f"{entry.path} exists and is not a regular file; move it away and re-run")
        if not current.exists:
            step.reasons.append("created")
            step.after = (entry.content or b"").decode("utf-8", "replace")
            return step
        if current.content != entry.content:
            step.reasons.append("content")
            step.before = current.content.decode("utf-8", "replace") if current.content is not None else ""
            step.after = (entry.content or b"").decode("utf-8", "replace")
    if current.mode != entry.mode:
        step.reasons.append(f"mode {current.mode:04o} -> {entry.mode:04o}" if current.mode is not None else "mode")
    if (current.uid, current.gid) != (uid, gid):
        step.reasons.append(f"owner {entry.owner}:{entry.group}")
    return step


def apply(step: Step, uid: int, gid: int, run: Callable[[str], tuple[int, str]] | None = None) -> None:
    """Make the path match: a new file is written to a temporary file beside it, then renamed.

    With `entry.validate` (a command with %s), the temporary file is checked first with `run`
    (returns rc and output); a failed check raises ValueError and leaves the old file in place.
    """
    entry = step.entry
    if not step.reasons:
        return
    if entry.state == "directory":
        if "created" in step.reasons:
            os.makedirs(entry.path, mode=entry.mode, exist_ok=True)
        os.chown(entry.path, uid, gid)
        os.chmod(entry.path, entry.mode)
        return
    if "created" in step.reasons or "content" in step.reasons:
        folder = os.path.dirname(entry.path) or "."
        fd, tmp = tempfile.mkstemp(prefix=".gb10-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(entry.content or b"")
            os.chown(tmp, uid, gid)
            os.chmod(tmp, entry.mode)
            if entry.validate:
                if "%s" not in entry.validate or run is None:
                    raise ValueError(f"{entry.path}: validate must contain %s (got {entry.validate!r})")
                rc, out = run(entry.validate.replace("%s", tmp))
                if rc != 0:
                    raise ValueError(f"{entry.path}: the new content fails `{entry.validate}` (rc {rc}): "
                                     f"{out.strip()}; the file is left as it was")
            os.replace(tmp, entry.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return
    os.chown(entry.path, uid, gid)
    os.chmod(entry.path, entry.mode)
