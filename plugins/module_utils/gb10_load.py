"""Load a file of plugins/module_utils from a controller-side plugin (filters), once.

Modules get their helpers as ``ansible.module_utils.<name>`` (ansible.cfg's module_utils path).
Filter plugins run in the controller and do not: they call ``helper("gb10_catalog")``, which returns
``ansible.module_utils.gb10_catalog`` when something already made it importable (the unit tests do),
and otherwise imports the file next to this one under a name of its own.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def helper(stem: str) -> ModuleType:
    try:
        return importlib.import_module(f"ansible.module_utils.{stem}")
    except ImportError:
        pass
    name = f"{stem}_module_utils"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / f"{stem}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"plugins/module_utils/{stem}.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
