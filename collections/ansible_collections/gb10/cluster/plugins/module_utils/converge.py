"""Converge stamps: a role that nothing changed for since its last converge is not run again.

A role records, at the end of a successful converge on a node, a stamp: the digest of its inputs (its
role files, the collection's plugins, the inventory files, the values of its variables, the facts it
decides on; computed on the control machine) and one short record per thing it manages on the node
(a file's content, mode and owner; a unit's state; a live sysctl; a read-only command's output). The
next run reads the same records on the node first: inputs and records unchanged, the role is skipped
(it would change nothing); anything different, the role runs whole and the reason names what moved.

Plain logic with no Ansible imports: the module (gb10.cluster.converge_stamp) runs it on the node,
the lookup (gb10.cluster.converge_inputs) on the control machine.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils.systemctl import parse_show

STAMP_VERSION = 1
STAMP_DIR = "/var/lib/gb10/converge"

# Folders of an inventory that hold operator data, not inventory: a new benchmark record or switch
# backup does not change what a role converges (ansible.cfg leaves them out of the inventory too).
INVENTORY_DATA_DIRS = ("switch-backups", "calibration", "bench", "agents")

_SKIP_NAMES = ("__pycache__", ".git", ".pytest_cache")
_SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", "~", ".retry")

Runner = Callable[[Sequence[str]], tuple[int, str]]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_digest(root: str, exclude_top: Iterable[str] = ()) -> str:
    """Digest of every file under `root` (relative path and content), in sorted order. Symlinks are
    followed (an inventory whose group_vars is a link to another folder has that folder's content),
    each real folder once; caches and editor leftovers are left out, and so are the top-level names in
    `exclude_top`. A missing root has the digest of nothing; a dangling link counts as its target."""
    excluded = set(exclude_top)
    lines: list[str] = []
    if not os.path.isdir(root):
        return _sha(b"absent")
    seen: set[str] = set()
    for current, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        rel_dir = os.path.relpath(current, root)
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_NAMES
                         and not (rel_dir == "." and d in excluded))
        for name in sorted(files):
            if name.endswith(_SKIP_SUFFIXES) or (rel_dir == "." and name in excluded):
                continue
            path = os.path.join(current, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if os.path.isfile(path):
                with open(path, "rb") as handle:
                    lines.append(f"{rel} {_sha(handle.read())}")
            else:
                lines.append(f"{rel} -> {os.readlink(path) if os.path.islink(path) else 'not a file'}")
    return _sha("\n".join(lines).encode())


def inputs_digest(parts: Mapping[str, Any]) -> str:
    """One digest for a role's inputs; values that JSON cannot hold are taken as their text."""
    return _sha(json.dumps(parts, sort_keys=True, default=str).encode())


def path_record(path: str) -> str:
    """What a path is: absent, a folder (mode, owner), a file (mode, owner, content digest) or a link."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    owner = f"{info.st_uid}:{info.st_gid}"
    mode = f"{stat.S_IMODE(info.st_mode):04o}"
    if stat.S_ISLNK(info.st_mode):
        return f"link {os.readlink(path)}"
    if stat.S_ISDIR(info.st_mode):
        return f"dir {mode} {owner}"
    if stat.S_ISREG(info.st_mode):
        with open(path, "rb") as handle:
            return f"file {mode} {owner} {_sha(handle.read())[:32]}"
    return f"other {stat.S_IFMT(info.st_mode):o} {mode} {owner}"


def sysctl_record(key: str, proc: str = "/proc/sys") -> str:
    """A sysctl's live value, whitespace-normalised; absent when the kernel has no such key."""
    path = os.path.join(proc, *key.split("."))
    try:
        with open(path, encoding="utf-8") as handle:
            return " ".join(handle.read().split())
    except OSError:
        return "absent"


UNIT_PROPERTIES = "Id,LoadState,ActiveState,SubState,UnitFileState"


def unit_records(units: Sequence[str], run: Runner) -> dict[str, str]:
    """Each unit's load, active, sub and unit-file state, from one `systemctl show` for all of them."""
    if not units:
        return {}
    rc, out = run(["systemctl", "show", "--no-pager", "-p", UNIT_PROPERTIES, "--", *units])
    blocks = out.strip().split("\n\n") if rc == 0 else []
    records: dict[str, str] = {}
    for unit, block in zip(units, blocks + [""] * (len(units) - len(blocks))):
        values = parse_show(block)
        if not values:
            records[unit] = f"unreadable (systemctl rc {rc})"
            continue
        records[unit] = " ".join(values.get(key, "") for key in UNIT_PROPERTIES.split(",")[1:])
    return records


def command_record(argv: Sequence[str], run: Runner) -> str:
    """A read-only command's exit code and the digest of what it printed."""
    rc, out = run(list(argv))
    return f"rc {rc} {_sha(out.encode())[:32]}"


def collect(paths: Sequence[str] = (), units: Sequence[str] = (), sysctls: Sequence[str] = (),
            commands: Sequence[Sequence[str]] = (), run: Runner | None = None,
            proc: str = "/proc/sys") -> dict[str, str]:
    """The records of everything a role manages on this node, keyed by what they describe."""
    records: dict[str, str] = {}
    for path in paths:
        records[f"path {path}"] = path_record(path)
    for key in sysctls:
        records[f"sysctl {key}"] = sysctl_record(key, proc)
    if run is None:
        if units or commands:
            raise ValueError("units and commands need a runner")
        return records
    for unit, record in unit_records(units, run).items():
        records[f"unit {unit}"] = record
    for argv in commands:
        records["command " + " ".join(argv)] = command_record(argv, run)
    return records


def describe_change(old: Mapping[str, str], new: Mapping[str, str], limit: int = 3) -> str:
    """Which records differ, named (at most `limit`, then how many more)."""
    moved = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    if not moved:
        return ""
    named = ", ".join(moved[:limit])
    more = f" and {len(moved) - limit} more" if len(moved) > limit else ""
    return f"{named}{more} changed since its last converge"


def compare(stamp: Mapping[str, Any] | None, inputs: str, records: Mapping[str, str]) -> tuple[bool, str]:
    """(current, reason): current when the stamp holds these inputs and these records."""
    if not stamp:
        return False, "no converge recorded on this node yet"
    if stamp.get("version") != STAMP_VERSION:
        return False, f"the stamp is version {stamp.get('version')}, this code writes {STAMP_VERSION}"
    if stamp.get("inputs") != inputs:
        return False, "its inputs changed (inventory, variables, role files or facts)"
    change = describe_change(stamp.get("records") or {}, records)
    if change:
        return False, change
    return True, f"unchanged since its converge at {stamp.get('recorded', 'an unknown time')}"


def stamp_document(inputs: str, records: Mapping[str, str], recorded: str) -> dict[str, Any]:
    return {"version": STAMP_VERSION, "inputs": inputs, "records": dict(records), "recorded": recorded}


def same_stamp(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether writing `new` would change what the stamp says (the time it was recorded aside)."""
    if not old:
        return False
    keep = ("version", "inputs", "records")
    return all(old.get(key) == new.get(key) for key in keep)


def stamp_path(directory: str, name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"converge stamp name {name!r} must be a plain file name, like the role's name")
    return os.path.join(directory, f"{name}.json")


def read_stamp(path: str) -> dict[str, Any] | None:
    """The stamp at `path`; None when there is none or it cannot be read (the role then runs)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_stamp(path: str, document: Mapping[str, Any]) -> None:
    """Write the stamp atomically (a temporary file renamed over it), readable by root only."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    temporary = f"{path}.tmp"
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(temporary, path)


# The keys of one entry of converge_stamp's `stamps` (several roles probed in one module run).
STAMP_KEYS: dict[str, type] = {"name": str, "inputs": str, "paths": list, "units": list, "sysctls": list,
                               "commands": list}


def stamp_params(item: object, stamp_dir: str) -> tuple[dict[str, Any], str | None]:
    """One entry of `stamps` as the module's own parameters (defaults filled in), or why it cannot be."""
    if not isinstance(item, dict):
        return {}, f"converge_stamp: each entry of stamps must be a dict, got {item!r}"
    name = item.get("name")
    unknown = sorted(set(item) - set(STAMP_KEYS))
    if unknown:
        return {}, f"converge_stamp: stamps entry {name!r} has unknown keys {unknown}; use {sorted(STAMP_KEYS)}"
    params: dict[str, Any] = {"dir": stamp_dir, "paths": [], "units": [], "sysctls": [], "commands": []}
    for key, kind in STAMP_KEYS.items():
        value = item.get(key)
        if value is None:
            continue
        if not isinstance(value, kind):
            return {}, f"converge_stamp: stamps entry {name!r}: {key} must be a {kind.__name__}, got {value!r}"
        params[key] = value
    if not params.get("name") or not params.get("inputs"):
        return {}, f"converge_stamp: every stamps entry needs a name and inputs, got the keys {sorted(item)}"
    params["paths"] = [os.path.expanduser(str(p)) for p in params["paths"]]
    params["units"] = [str(u) for u in params["units"]]
    params["sysctls"] = [str(k) for k in params["sysctls"]]
    return params, None


def usable_in_order(names: Sequence[str], results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The probe results a play's roles can use as they come, in play order: each up to and including
    the first that is not current. That role runs and may change what the later ones read, so those
    probe themselves when their turn comes."""
    usable: dict[str, Any] = {}
    for name in names:
        usable[name] = results[name]
        if not results[name].get("current"):
            break
    return usable
