"""The model catalog as the plays see it, for tests: the built-in entries (roles/gb10/defaults/main.yml)
and the lab's tiny models, which are not built in but added the way any inventory adds a model
(gb10_catalog_extra, written by lab/lab.py into the lab's generated inventory)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ansible_collections.gb10.cluster.plugins.module_utils.catalog import merge_catalog
from lab.lab import lab_catalog

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = ROOT / "roles" / "gb10" / "defaults" / "main.yml"


def builtin_catalog() -> dict[str, Any]:
    """gb10_catalog_builtin, as written (config paths relative to the repository root)."""
    return yaml.safe_load(DEFAULTS.read_text(encoding="utf-8"))["gb10_catalog_builtin"]


def lab_extra() -> dict[str, Any]:
    """The lab inventory's gb10_catalog_extra (absolute paths), as lab/lab.py writes it."""
    return lab_catalog()


def merged_catalog(extra: dict[str, Any] | None = None, inventory_dir: Path | None = None) -> dict[str, Any]:
    """gb10_catalog: the built-in entries with ``extra`` (default: the lab's entries) over them."""
    return merge_catalog(builtin_catalog(), lab_extra() if extra is None else extra, str(ROOT),
                         str(inventory_dir or ROOT / "inventory" / "lab"))


def write_extra(inventory: Path, extra: dict[str, Any], name: str = "catalog.yml") -> Path:
    """Put ``gb10_catalog_extra`` into an inventory's group_vars/all."""
    path = inventory / "group_vars" / "all" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"gb10_catalog_extra": extra}, sort_keys=False), encoding="utf-8")
    return path


# The lab's image pin and four lab nodes, as the serving plan's unit tests give them.
LAB_DIGEST = "sha256:" + "ab" * 32
LAB_PINS: dict[str, Any] = {"lab-vllm-cpu": {"repository": "10.77.0.1:5000/gb10/vllm-cpu", "tag": "0.32.0-x",
                                             "digest": LAB_DIGEST, "image_id": "sha256:" + "cd" * 32}}


def lab_nodes(n: int = 4) -> list[dict[str, str]]:
    return [{"host": f"gx10-{i}", "mgmt_ip": f"10.77.0.1{i}", "fabric_ip": f"192.168.100.1{i}"} for i in range(1, n + 1)]
