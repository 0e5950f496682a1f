"""Filters for the model catalog and the memory plan (logic in plugins/module_utils/gb10_catalog.py).

- ``gb10_catalog | gb10_catalog_errors(root)``: list of one-sentence problems in the catalog.
- ``inputs | gb10_plan_resolve(gb10_catalog, root)``: planner arguments, or ``{'errors': [...]}``.
- ``result | gb10_plan_lines(resolved)``: the console table.
- ``result | gb10_plan_report(resolved)``: the JSON artifact.
- ``resolved | gb10_plan_siblings``: other quantisations of the same model in the catalog (a sentence).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1] / "module_utils"))  # only for gb10_load
from gb10_load import helper  # noqa: E402  pylint: disable=wrong-import-position

_H = helper("gb10_catalog")


def gb10_catalog_errors(catalog: Any, root: str) -> list[str]:
    return _H.catalog_errors(catalog, str(root))


def gb10_plan_resolve(inputs: Any, catalog: Any, root: str) -> dict[str, Any]:
    try:
        return _H.resolve_plan(dict(inputs), catalog, str(root))
    except _H.PlanInputError as exc:
        return {"errors": list(exc.errors)}


def gb10_plan_lines(result: Any, resolved: Any) -> list[str]:
    return _H.plan_lines(result, resolved)


def gb10_plan_report(result: Any, resolved: Any) -> dict[str, Any]:
    return _H.plan_report(result, resolved)


def gb10_plan_siblings(resolved: Any) -> str:
    return _H.sibling_text(resolved)


class FilterModule:
    """Catalog and memory-plan filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "gb10_catalog_errors": gb10_catalog_errors,
            "gb10_plan_resolve": gb10_plan_resolve,
            "gb10_plan_lines": gb10_plan_lines,
            "gb10_plan_report": gb10_plan_report,
            "gb10_plan_siblings": gb10_plan_siblings,
        }
