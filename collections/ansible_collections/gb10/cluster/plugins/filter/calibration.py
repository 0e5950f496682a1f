"""Filters for calibration from real starts (logic in plugins/module_utils/calibration.py).

- ``log_text | vllm_startup``: what vLLM logged about memory at start, per rank and for the engine.
- ``parsed | calibration_record(model, image_digest, plan, measured_memory, measured_at, vllm_release)``:
  the calibration file's content (fails the task with one sentence when the log holds nothing).
- ``record | calibration_file(base_dir)``: where that record lives
  (``<base_dir>/<model>/<digest 12>-tp<T>pp<P>.json``).
- ``record | calibration_text``: the file's exact text (write it with ``ansible.builtin.copy``: same
  measurement, same bytes, changed=false).
- ``base_dir | calibration_find(model, image_digest, tp, pp)``: ``{path, record, note}`` of the file to
  plan with (record null when there is none); give ``record`` to ``planner_args`` as its ``calibration``.
- ``registered | guard_stops``: the guard's stopped.json of every node that has one, each with ``node``.
- ``stopped | guard_line``: one line for a stop of the node memory guard (roles/memory_guard's stopped.json).
"""

from __future__ import annotations

import json
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.gb10.cluster.plugins.module_utils import calibration as _C


def vllm_startup(text: Any) -> dict[str, Any]:
    return _C.parse_startup_log(str(text or ""))


def calibration_record(
    parsed: Any,
    model: Any,
    image_digest: Any,
    plan: Any,
    measured_memory: Any = None,
    measured_at: Any = "",
    vllm_release: Any = "",
) -> dict[str, Any]:
    try:
        return _C.calibration_record(
            dict(parsed or {}),
            model=str(model),
            image_digest=str(image_digest),
            plan=dict(plan or {}),
            measured_memory=list(measured_memory or []),
            measured_at=str(measured_at or ""),
            vllm_release=str(vllm_release or ""),
        )
    except (_C.CalibrationError, KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"calibration of {model}: {exc}") from exc


def calibration_file(record: Any, base_dir: Any) -> str:
    record = dict(record or {})
    try:
        return _C.calibration_path(
            str(base_dir),
            str(record["model"]),
            str(record["image_digest"]),
            int(record["tensor_parallel_size"]),
            int(record["pipeline_parallel_size"]),
        )
    except (_C.CalibrationError, KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"calibration file: {exc}") from exc


def calibration_text(record: Any) -> str:
    return _C.record_text(dict(record or {}))


def guard_stops(results: Any) -> list[dict[str, Any]]:
    """The guard's stopped.json of every node that has one (a registered loop of ``cat``), each with
    ``node``: the inventory name the file was read on."""
    out = []
    for result in (dict(results or {}).get("results") or []):
        if result.get("rc") != 0 or not str(result.get("stdout") or "").strip():
            continue
        try:
            record = json.loads(result["stdout"])
        except ValueError:
            record = {"reason": f"unreadable stopped.json ({str(result['stdout'])[:80]!r})"}
        out.append(dict(record, node=str(result.get("item"))))
    return out


def guard_line(record: Any) -> str:
    """One line for a stop of the node memory guard (its stopped.json)."""
    r = dict(record or {})
    return (
        f"Memory guard: {r.get('node', r.get('host', '?'))} stopped {r.get('container', 'gb10-vllm')} at {r.get('time', '?')}: "
        f"{r.get('reason', 'no reason recorded')} (docker stop rc {r.get('stop_rc', '?')}, "
        f"journalctl -u gb10-memory-guard on that node)."
    )


def calibration_find(base_dir: Any, model: Any, image_digest: Any, tp: Any, pp: Any) -> dict[str, Any]:
    try:
        return _C.find_calibration(str(base_dir), str(model), str(image_digest or ""), int(tp), int(pp))
    except (_C.CalibrationError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"calibration of {model}: {exc}") from exc


class FilterModule:
    """Calibration filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "vllm_startup": vllm_startup,
            "calibration_record": calibration_record,
            "calibration_file": calibration_file,
            "calibration_text": calibration_text,
            "calibration_find": calibration_find,
            "guard_line": guard_line,
            "guard_stops": guard_stops,
        }
