"""The callback gb10.cluster.preload loads every filter and lookup file of the collection in the main process,
so the workers Ansible forks for each task inherit them instead of compiling them again."""
from __future__ import annotations

import configparser
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
PLUGINS = ROOT / "collections" / "ansible_collections" / "gb10" / "cluster" / "plugins"

# Run in a fresh interpreter, with the collection finder installed the way ansible-playbook installs it.
SCRIPT = f"""
import json, sys
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
_AnsibleCollectionFinder(paths=[{str(ROOT / 'collections')!r}])._install()
from ansible_collections.gb10.cluster.plugins.callback import preload
loaded = preload.preload()
from ansible.plugins.loader import filter_loader, lookup_loader
print(json.dumps({{
    "loaded": loaded,
    "in_sys_modules": sorted(m for m in sys.modules if m.startswith("ansible_collections.gb10.cluster.plugins.")),
    "filter": filter_loader.get("gb10.cluster.inventory_errors") is not None,
    "lookup": lookup_loader.get("gb10.cluster.template") is not None,
}}))
"""


def test_every_filter_and_lookup_file_is_loaded_and_resolvable():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {f"{kind}/{p.stem}" for kind in ("filter", "lookup") for p in (PLUGINS / kind).glob("*.py")
                if p.stem != "__init__"}
    assert expected <= set(report["loaded"])
    for name in expected:
        kind, stem = name.split("/")
        assert f"ansible_collections.gb10.cluster.plugins.{kind}.{stem}" in report["in_sys_modules"]
    # the module_utils they import came along
    assert any(".module_utils." in m for m in report["in_sys_modules"])
    assert report["filter"] and report["lookup"]


def test_the_repository_config_enables_it():
    config = configparser.ConfigParser()
    config.read(ROOT / "ansible.cfg")
    enabled = [c.strip() for c in config["defaults"]["callbacks_enabled"].split(",")]
    assert "gb10.cluster.preload" in enabled
