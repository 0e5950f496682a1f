"""Memory-fit planner, shared vocabulary: the vLLM release, units, dtype sizes, the error type and
the small arithmetic every other ``memfit_*`` file uses.

Plain typed Python, no Ansible imports (``plugins/module_utils`` convention).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

VLLM_RELEASE = "0.32.0"

GIB = 1 << 30
MIB = 1 << 20

DTYPE_BYTES: dict[str, int] = {
    "float32": 4,
    "float": 4,
    "float16": 2,
    "half": 2,
    "bfloat16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}


class PlanError(ValueError):
    """Invalid planner input; the message is one sentence an operator can act on."""


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def human(n: float) -> str:
    """Bytes in the largest unit that keeps the number readable."""
    if abs(n) >= GIB:
        return f"{n / GIB:.2f} GiB"
    if abs(n) >= MIB:
        return f"{n / MIB:.2f} MiB"
    if n == 0:
        return "0"
    return f"{n / 1024:.2f} KiB"


def pp_partition(num_layers: int, pp_size: int) -> list[int]:
    """vLLM's get_pp_indices: remainders go to the partitions before the last one."""
    per = num_layers // pp_size
    parts = [per] * pp_size
    remaining = num_layers % pp_size
    for i in range(2, remaining + 2):
        parts[-i] += 1
    return parts


def load_json(value: Any, what: str) -> dict[str, Any]:
    """A dict given as such, or read from a JSON file (a model folder means its config.json)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        path = value
        if what == "model_config" and os.path.isdir(path):
            path = os.path.join(path, "config.json")
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except OSError as exc:
            raise PlanError(f"{what} file {path} cannot be read ({exc.strerror}).") from exc
        except json.JSONDecodeError as exc:
            raise PlanError(f"{what} file {path} is not valid JSON ({exc.msg} at line {exc.lineno}).") from exc
        if not isinstance(data, dict):
            raise PlanError(f"{what} file {path} does not hold a JSON object.")
        return data
    raise PlanError(f"{what} must be a dict or the path of a JSON file, not {type(value).__name__}.")


def int_param(params: Mapping[str, Any], key: str, default: int | None, minimum: int = 1) -> int | None:
    """``params[key]`` as an int of at least ``minimum``; ``default`` when unset."""
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PlanError(f"{key} must be an integer, not {value!r}.")
    try:
        number = int(value)
    except ValueError as exc:
        raise PlanError(f"{key} must be an integer, not {value!r}.") from exc
    if isinstance(value, float) and number != value:
        raise PlanError(f"{key} must be an integer, not {value!r}.")
    if number < minimum:
        raise PlanError(f"{key} must be at least {minimum}, not {number}.")
    return number
