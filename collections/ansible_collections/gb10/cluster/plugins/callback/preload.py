"""Callback gb10.cluster.preload: the collection's Jinja plugins loaded once, in the main process."""
from __future__ import annotations

DOCUMENTATION = r"""
---
name: preload
type: aggregate
short_description: Load the collection's filters and lookups once, before any task runs
description:
  - Ansible runs each task on each host in a worker process forked from the main process. A worker that
    templates a gb10.cluster filter loads every filter file of the collection and the module_utils they
    import, compiled from source (the collection loader keeps no bytecode). That is about 0.1 s of CPU
    for every task that uses one of them, on every host, on every run.
  - This callback loads them in the main process when it starts, so every worker inherits them already
    loaded. It prints nothing and changes nothing else; a plugin that fails to load here is left to fail
    where a task uses it, with Ansible's own error.
requirements:
  - listed in callbacks_enabled (the repository's ansible.cfg does)
author:
  - gb10-cluster
"""

import importlib
import pkgutil

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader, lookup_loader, test_loader

COLLECTION = "gb10.cluster"
PACKAGE = "ansible_collections.gb10.cluster.plugins"
LOADERS = {"filter": filter_loader, "test": test_loader, "lookup": lookup_loader}


def preload() -> list[str]:
    """Import every filter, test and lookup file of the collection and resolve one name per type through
    Ansible's loader (which then holds every file of that type): the names of the files loaded."""
    loaded: list[str] = []
    for kind, loader in LOADERS.items():
        try:
            package = importlib.import_module(f"{PACKAGE}.{kind}")
        except ImportError:
            continue
        first = ""
        for info in pkgutil.iter_modules(package.__path__):
            try:
                module = importlib.import_module(f"{PACKAGE}.{kind}.{info.name}")
            except Exception:  # noqa: BLE001 - the task that uses it reports the error
                continue
            loaded.append(f"{kind}/{info.name}")
            if not first:
                first = _a_name(kind, module, info.name)
        if first:
            try:
                loader.get(f"{COLLECTION}.{first}")
            except Exception:  # noqa: BLE001 - the task that uses it reports the error
                pass
    return loaded


def _a_name(kind: str, module: object, file_name: str) -> str:
    """One plugin name the file provides (a filter or test function, or the lookup's own name)."""
    if kind == "lookup":
        return file_name
    holder = getattr(module, "FilterModule" if kind == "filter" else "TestModule", None)
    if holder is None:
        return ""
    names = getattr(holder(), "filters" if kind == "filter" else "tests")()
    return next(iter(names), "")


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "gb10.cluster.preload"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_start(self, playbook):
        preload()
