"""PyYAML's safe loading with the C loader when PyYAML has it: the same data, several times faster than
the pure-Python loader (the inventory check reads every role's argument specs on each run)."""
from __future__ import annotations

from typing import IO, Any

import yaml

SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(stream: str | IO[str]) -> Any:
    """yaml.safe_load, through SAFE_LOADER."""
    return yaml.load(stream, Loader=SAFE_LOADER)  # noqa: S506 - SAFE_LOADER is a safe loader
