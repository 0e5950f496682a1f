"""Filters for the model catalog and the memory plan (logic in plugins/module_utils/catalog.py).

- ``builtin | catalog_merge(extra, root, inventory_dir)``: ``gb10_catalog``, the built-in catalog with the
  inventory's ``gb10_catalog_extra`` entries over it (paths resolved; see ``merge_catalog``).
- ``catalog | catalog_errors(root)``: list of one-sentence problems in the catalog.
- ``inputs | plan_resolve(catalog, root)``: planner arguments, or ``{'errors': [...]}``.
- ``result | plan_lines(resolved)``: the console table.
- ``result | plan_report(resolved)``: the JSON artifact.
- ``resolved | plan_siblings``: other quantisations of the same model in the catalog (a sentence).
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.gb10.cluster.plugins.module_utils import catalog as _H


def catalog_merge(builtin: Any, extra: Any, root: Any, inventory_dir: Any = None) -> dict[str, Any]:
    try:
        return _H.merge_catalog(builtin, extra, str(root), str(inventory_dir) if inventory_dir else None)
    except _H.CatalogMergeError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def catalog_errors(catalog: Any, root: str) -> list[str]:
    return _H.catalog_errors(catalog, str(root))


def plan_resolve(inputs: Any, catalog: Any, root: str) -> dict[str, Any]:
    try:
        return _H.resolve_plan(dict(inputs), catalog, str(root))
    except _H.PlanInputError as exc:
        return {"errors": list(exc.errors)}


def plan_lines(result: Any, resolved: Any) -> list[str]:
    return _H.plan_lines(result, resolved)


def plan_report(result: Any, resolved: Any) -> dict[str, Any]:
    return _H.plan_report(result, resolved)


def plan_siblings(resolved: Any) -> str:
    return _H.sibling_text(resolved)


class FilterModule:
    """Catalog and memory-plan filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "catalog_merge": catalog_merge,
            "catalog_errors": catalog_errors,
            "plan_resolve": plan_resolve,
            "plan_lines": plan_lines,
            "plan_report": plan_report,
            "plan_siblings": plan_siblings,
        }
