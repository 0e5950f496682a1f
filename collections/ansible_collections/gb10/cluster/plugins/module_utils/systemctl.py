"""`systemctl show` output, parsed: the one reader for the modules that ask systemd about a unit."""
from __future__ import annotations


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show -p A,B unit` output (KEY=value lines) as a dict; lines without '=' are ignored."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result[key.strip()] = value.strip()
    return result
