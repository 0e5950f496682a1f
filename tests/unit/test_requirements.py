"""The collections installed with the pinned `ansible` bundle satisfy requirements.yml, offline."""
from __future__ import annotations

import json
import re
from pathlib import Path

import ansible_collections
import pytest
import yaml
from ansible.utils.version import SemanticVersion

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
USED_RE = re.compile(r"\b((?:community|ansible)\.[a-z_]+)\.[a-z_]+")


def installed_version(name: str) -> str:
    namespace, collection = name.split(".")
    for base in ansible_collections.__path__:
        manifest = Path(base) / namespace / collection / "MANIFEST.json"
        if manifest.exists():
            return json.loads(manifest.read_text())["collection_info"]["version"]
    raise AssertionError(f"collection {name} is not installed; run `make venv`")


def satisfies(version: str, spec: str) -> bool:
    v = SemanticVersion(version)
    for clause in spec.split(","):
        m = re.fullmatch(r"\s*(>=|<=|==|!=|>|<)\s*([\d.]+)\s*", clause)
        assert m, f"unsupported version clause {clause!r}"
        op, bound = m.group(1), SemanticVersion(m.group(2))
        ok = {">=": v >= bound, "<=": v <= bound, "==": v == bound, "!=": v != bound, ">": v > bound, "<": v < bound}[op]
        if not ok:
            return False
    return True


@pytest.mark.parametrize("req", REQUIRED, ids=[r["name"] for r in REQUIRED])
def test_installed_collection_satisfies_range(req: dict[str, str]) -> None:
    version = installed_version(req["name"])
    assert satisfies(version, req["version"]), f"{req['name']} {version} is outside {req['version']}"


def collections_used() -> set[str]:
    """Collections named by FQCN in the plays, roles, scenarios, ansible.cfg and the gb10.cluster plugins."""
    used: set[str] = set()
    for folder in ("roles", "playbooks", "molecule"):
        for path in (ROOT / folder).rglob("*.yml"):
            used.update(USED_RE.findall(path.read_text()))
    for path in (ROOT / "collections" / "ansible_collections" / "gb10" / "cluster" / "plugins").rglob("*.py"):
        # ansible-core's own Python packages (from ansible.utils.display import ...) are not collections
        code = "\n".join(line for line in path.read_text().splitlines()
                         if not re.match(r"\s*(from|import)\s+ansible\.(?!_collections)", line))
        used.update(USED_RE.findall(code))
    used.update(USED_RE.findall((ROOT / "ansible.cfg").read_text()))
    return used - {"ansible.builtin", "ansible.module_utils", "ansible.legacy"}


def test_every_collection_used_is_declared() -> None:
    declared = {r["name"] for r in REQUIRED}
    used = collections_used()
    assert used <= declared, f"used but not in requirements.yml: {sorted(used - declared)}"


def test_every_collection_declared_is_used() -> None:
    declared = {r["name"] for r in REQUIRED}
    assert declared <= collections_used(), f"in requirements.yml but used nowhere: {sorted(declared - collections_used())}"


def test_range_check_can_fail() -> None:
    assert not satisfies("3.14.0", ">=4.0.0,<5.0.0")
    assert satisfies("3.14.0", ">=3.10.0,<4.0.0")
