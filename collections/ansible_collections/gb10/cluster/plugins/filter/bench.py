"""Filters for bench.yml (logic in plugins/module_utils/bench.py).

- ``request | bench_request``: the -e checked, ``{settings, errors}`` (one sentence per mistake).
- ``inspected | bench_target(model)``: what serves (head, port, model folder, model, image, layout, memory
  settings) from ``docker inspect`` of every node, or ``{error}``.
- ``results | bench_record(target, settings, run_id, vllm_version)``: the record of a run from vLLM's
  ``--save-result`` JSON files (``[{name, concurrency, input_len, result}]``).
- ``record | bench_file(base_dir)``: ``<base_dir>/<model>/<run id>.json``; ``record | bench_text``: its text.
- ``records | bench_table``: the table lines, runs side by side.
- ``paths | bench_pick(compare, last, model)``: the record files to show, or ``{error}``.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.gb10.cluster.plugins.module_utils import bench as _B


def bench_request(request: Any) -> dict[str, Any]:
    return _B.check_request(dict(request or {}))


def bench_target(inspected: Any, model: Any = "") -> dict[str, Any]:
    return _B.bench_target({str(k): list(v or []) for k, v in dict(inspected or {}).items()}, str(model or ""))


def bench_record(results: Any, target: Any, settings: Any, run_id: Any, vllm_version: Any = "") -> dict[str, Any]:
    try:
        return _B.bench_record(list(results or []), dict(target or {}), dict(settings or {}), str(run_id),
                               str(vllm_version or ""))
    except (_B.BenchError, KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"bench: {exc}") from exc


def bench_file(record: Any, base_dir: Any) -> str:
    return _B.record_path(str(base_dir), dict(record or {}))


def bench_text(record: Any) -> str:
    return _B.record_text(dict(record or {}))


def bench_table(records: Any) -> list[str]:
    try:
        return _B.bench_table([dict(r) for r in records or []])
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"bench: a record under the inventory's bench/ folder is not one bench.yml wrote: {exc}") from exc


def bench_pick(paths: Any, compare: Any = None, last: Any = 5, model: Any = "") -> dict[str, Any]:
    return _B.pick_runs([str(p) for p in paths or []], [str(c) for c in compare or []], int(last), str(model or ""))


class FilterModule:
    """bench.yml filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "bench_request": bench_request,
            "bench_target": bench_target,
            "bench_record": bench_record,
            "bench_file": bench_file,
            "bench_text": bench_text,
            "bench_table": bench_table,
            "bench_pick": bench_pick,
        }
