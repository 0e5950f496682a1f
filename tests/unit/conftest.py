"""Make the repository's plugins importable the way Ansible imports them.

Modules import their helpers as ``ansible.module_utils.<name>``; Ansible finds them there because
``ansible.cfg`` sets ``module_utils = plugins/module_utils``. Under pytest we alias every file in
``plugins/module_utils`` into that namespace, and put ``plugins/modules`` on ``sys.path`` so a test can
``import gb10_memory_fit``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import ansible.module_utils

ROOT = Path(__file__).resolve().parents[2]
MODULE_UTILS = ROOT / "plugins" / "module_utils"
MODULES = ROOT / "plugins" / "modules"

for _path in sorted(MODULE_UTILS.glob("*.py")):
    _name = f"ansible.module_utils.{_path.stem}"
    if _name in sys.modules:
        continue
    _spec = importlib.util.spec_from_file_location(_name, _path)
    assert _spec is not None and _spec.loader is not None
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules[_name] = _mod
    setattr(ansible.module_utils, _path.stem, _mod)
    _spec.loader.exec_module(_mod)

for _p in (MODULE_UTILS, MODULES):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
