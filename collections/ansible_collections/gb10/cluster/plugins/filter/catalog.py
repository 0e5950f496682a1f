"""Filters for the model catalog and the memory plan (logic in plugins/module_utils/catalog.py and memfit.py).

- ``builtin | catalog_merge(extra, root, inventory_dir)``: ``gb10_catalog``, the built-in catalog with the
  inventory's ``gb10_catalog_extra`` entries over it (paths resolved; see ``merge_catalog``).
- ``entry | planner_args(overrides, root)``: the planner's arguments for a catalog entry plus overrides
  (the one conversion, ``catalog.planner_args``), or ``{'errors': [...]}``.
- ``catalog | serve_launch(model, overrides, root)``: serve.yml's -e overrides applied to the entry's launch
  (``{launch, sources, given}``), or ``{'errors': [...]}`` (one sentence per mistake).
- ``params | plan_memory``: the planner's answer on the controller (what ``gb10.cluster.memory_fit``
  returns, never failing for "does not fit"); fails the task with the sentences for ``{'errors': [...]}``
  or invalid arguments.
- ``names | plan_input_names``: the variable names among ``names`` that are plan.yml inputs.
- ``inputs | plan_resolve(catalog, root, image_pins, calibration_dir)``: plan.yml's planner arguments, where
  each came from and the calibration used (the file for the model, image and layout under
  ``calibration_dir``), or ``{'errors': [...]}``.
- ``result | plan_lines(resolved)``: the console table.
- ``result | plan_report(resolved)``: the JSON artifact.
- ``resolved | plan_siblings``: other quantisations of the same model in the catalog (a sentence).
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.gb10.cluster.plugins.module_utils import catalog as _H
from ansible_collections.gb10.cluster.plugins.module_utils import memfit as _M


def catalog_merge(builtin: Any, extra: Any, root: Any, inventory_dir: Any = None) -> dict[str, Any]:
    try:
        return _H.merge_catalog(builtin, extra, str(root), str(inventory_dir) if inventory_dir else None)
    except _H.CatalogMergeError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def planner_args(entry: Any, overrides: Any = None, root: Any = "") -> dict[str, Any]:
    try:
        return _H.planner_args(dict(entry), dict(overrides or {}), str(root))
    except _H.PlanInputError as exc:
        return {"errors": list(exc.errors)}


def serve_launch(catalog: Any, model: Any, overrides: Any = None, root: Any = "") -> dict[str, Any]:
    name = str(model or "")
    entry = dict(catalog or {}).get(name)
    if entry is None:
        return {"errors": [f"Unknown model '{name}' (-e model)."]}
    try:
        return _H.serve_launch(name, dict(entry), dict(overrides or {}), str(root or ""))
    except _H.PlanInputError as exc:
        return {"errors": list(exc.errors)}


def plan_memory(params: Any) -> dict[str, Any]:
    params = dict(params or {})
    if params.get("errors"):
        raise AnsibleFilterError(" ".join(str(e) for e in params["errors"]))
    try:
        return _M.plan_memory(params)
    except _M.PlanError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def plan_input_names(names: Any) -> list[str]:
    present = {str(n) for n in names or []}
    return [key for key in _H.PLAN_INPUT_KEYS if key in present]


def plan_resolve(inputs: Any, catalog: Any, root: str, image_pins: Any = None, calibration_dir: Any = "") -> dict[str, Any]:
    try:
        return _H.resolve_plan(dict(inputs), catalog, str(root), dict(image_pins or {}), str(calibration_dir or ""))
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
            "planner_args": planner_args,
            "serve_launch": serve_launch,
            "plan_memory": plan_memory,
            "plan_input_names": plan_input_names,
            "plan_resolve": plan_resolve,
            "plan_lines": plan_lines,
            "plan_report": plan_report,
            "plan_siblings": plan_siblings,
        }
