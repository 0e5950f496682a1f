"""The switch as read once over the RouterOS API, and whether a write task has anything to do.

The switch role reads every RouterOS path it configures in one API session (the module
gb10.cluster.switch_read, ``read_paths`` below) and runs a write task (community.routeros.api_modify or
api_find_and_modify) only when ``differs`` (through ``compare``, in the same module run) says the
entries it would write are not already on the switch. ``differs`` is conservative: whatever it cannot prove equal (a missing entry, a missing
property, two candidate entries, a value in another form) counts as different, and the write task then
runs and decides for itself exactly as before. A no-op converge skips the module runs; a real change
still goes through community.routeros.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_TRUE = {"true", "yes"}
_FALSE = {"false", "no"}


def normalise(value: Any) -> str:
    """One text form for a RouterOS value as librouteros returns it and as the role writes it.

    librouteros turns ``true``/``yes`` into True, ``false``/``no`` into False and digit strings into
    int; the role's data holds bools, ints and strings. Anything else is compared as its text.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    text = str(value)
    low = text.lower()
    if low in _TRUE:
        return "true"
    if low in _FALSE:
        return "false"
    return text


def _keys(keys: str | Sequence[str] | None) -> list[str]:
    if keys is None:
        return []
    if isinstance(keys, str):
        return [keys] if keys else []
    return [str(k) for k in keys]


def differs(rows: Any, data: Any, keys: str | Sequence[str] | None = None) -> bool:
    """Whether writing ``data`` to a path whose entries are ``rows`` could change anything.

    ``data``: the entries as the role writes them (api_modify's ``data``, or ``find`` merged with
    ``values`` of api_find_and_modify). ``keys``: the properties that identify an entry (e.g.
    ``default-name``, ``interface``, ``name``); none for a path with a single entry (``tool
    mac-server``), where ``rows`` must hold exactly one. False only when every wanted entry matches
    exactly one row and every wanted property is on that row with the same value.
    """
    if rows is None or not isinstance(rows, Iterable) or isinstance(rows, (str, bytes, Mapping)):
        return True
    table = [r for r in rows if isinstance(r, Mapping)]
    ident = _keys(keys)
    wanted = [data] if isinstance(data, Mapping) else list(data or [])
    for want in wanted:
        if not isinstance(want, Mapping):
            return True
        if ident:
            if any(k not in want for k in ident):
                return True
            found = [r for r in table
                     if all(k in r and normalise(r[k]) == normalise(want[k]) for k in ident)]
        else:
            found = table
        if len(found) != 1:
            return True
        row = found[0]
        for key, value in want.items():
            if key not in row or normalise(row[key]) != normalise(value):
                return True
    return False


def compare(rows: Mapping[str, Any], specs: Iterable[Any]) -> dict[str, bool]:
    """``differs`` for each spec ``{name, path, data, keys}`` against ``rows`` (path -> rows): name -> bool.

    A spec whose path was not read counts as different.
    """
    out: dict[str, bool] = {}
    for spec in specs:
        if not isinstance(spec, Mapping) or not spec.get("name"):
            raise ValueError(f"a comparison needs a name, a path and data: {spec!r}")
        out[str(spec["name"])] = differs(rows.get(str(spec.get("path", ""))), spec.get("data"), spec.get("keys"))
    return out


def read_paths(api: Any, paths: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Every row of each path over one API session (``api``: a librouteros connection).

    Paths are given as the `api` module spells them ("interface bridge port"); the rows are the
    dicts librouteros returns, exactly what community.routeros.api registers as ``msg``.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for path in paths:
        words = [w for w in str(path).split(" ") if w]
        out[str(path)] = [dict(row) for row in api.path(*words)]
    return out


# ---------------------------------------------------------------- backups (gb10.cluster.switch_backup)
BACKUP_CHUNK = 32768
BACKUP_BINARY_PATTERN = r"(^|/)gb10-backup-[0-9]{8}T[0-9]{6}Z[.]backup$"


def export_offsets(size: Any, chunk: int = BACKUP_CHUNK) -> list[int]:
    """The offsets to read an export file of ``size`` bytes with ``/file/read`` (at least one read)."""
    try:
        total = int(size)
    except (TypeError, ValueError):
        total = 0
    return list(range(0, max(total, 1), chunk))


def backups_beyond(files: Iterable[Any], keep: int) -> list[dict[str, Any]]:
    """The binary backups the role made (gb10-backup-<UTC stamp>.backup) beyond the newest ``keep``.

    ``files``: the ``/file`` rows. Oldest first; other files are never returned.
    """
    pattern = re.compile(BACKUP_BINARY_PATTERN)
    ours = sorted((dict(f) for f in files if isinstance(f, Mapping) and pattern.search(str(f.get("name", "")))),
                  key=lambda f: str(f["name"]))
    if keep < 1:
        raise ValueError("keep must be at least 1")
    return ours[:-keep] if len(ours) > keep else []


def export_name(host: str, backup_name: str) -> str:
    """The export's file name on the controller: ``<host>-<UTC stamp>.rsc`` for ``gb10-backup-<UTC stamp>``."""
    return f"{host}-{re.sub(r'^gb10-backup-', '', backup_name)}.rsc"


def exports_beyond(names: Iterable[str], host: str, keep: int) -> list[str]:
    """The exports of ``host`` on the controller (``<host>-<UTC stamp>.rsc``) beyond the newest ``keep``."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    pattern = re.compile(rf"^{re.escape(host)}-[0-9]{{8}}T[0-9]{{6}}Z[.]rsc$")
    ours = sorted(n for n in names if pattern.match(str(n)))
    return ours[:-keep] if len(ours) > keep else []
