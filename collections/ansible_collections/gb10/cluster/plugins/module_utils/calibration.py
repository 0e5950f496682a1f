"""Calibration from real starts: what vLLM logged about memory on every rank, stored per model, image and
layout under the operator's inventory, and turned into planner inputs for the next plan.

Plain typed Python, no Ansible imports (``plugins/module_utils`` convention). Used by ``plan.yml``
(``catalog.resolve_plan`` reads the file) and by the serving side, which writes it after a start
(``plugins/filter/calibration.py``). Documented in docs/memory-planner.md ("Calibration").

The log lines are vLLM 0.32.0's (``memfit_base.VLLM_RELEASE``), read in its source:

- ``v1/worker/gpu_model_runner.py``: "Model loading took %s GiB memory and %.6f seconds" (weights, MTP
  draft included), "Estimated CUDA graph memory: %.2f GiB total" (profiling estimate, fraction mode),
  "Graph capturing finished in %.0f secs, took %.2f GiB" (the graphs as captured).
- ``v1/worker/gpu_worker.py``: "Available KV cache memory: %s GiB" (fraction mode); "Initial free memory
  F GiB, reserved K GiB memory for KV Cache as specified by kv_cache_memory_bytes config and skipped
  memory profiling." (bytes mode); after the graphs, in fraction mode, "Free memory on device (F/T GiB)
  on startup. Desired GPU memory utilization is (u, R GiB). Actual usage is C GiB for consumed memory
  (weights + non-torch), P GiB for peak activation, and G GiB for CUDAGraph memory. Replace ... Current
  kv cache memory in use is K GiB."
- ``v1/worker/utils.py``: the refusal "Free memory on device cuda:0 (F/T GiB) on startup is less than
  desired GPU memory utilization (u, R GiB)."
- ``v1/worker/cpu_worker.py`` (the CPU build): "Explicitly set (K/T) GiB for KV cache on node N." or
  "Auto set (K/T) GiB for KV cache on node N, with R GiB requested memory for the worker. C GiB memory
  was consumed by non-kv usages."
- ``v1/core/kv_cache_utils.py`` (engine): "GPU KV cache size: N tokens, Maximum concurrency for L tokens
  per request: X.XXx" ("CPU KV cache size" on the CPU build; older builds put the two on two lines).

Every line carries vLLM's prefix "(<process> pid=N) LEVEL MM-DD HH:MM:SS [file.py:line]"; a worker's
process is "Worker", "Worker_TP1", "Worker_PP1_TP0", ... (``multiproc_executor``; Ray prepends its own
"(RayWorkerProc pid=N, ip=...)"); lines of a single-process engine say "EngineCore" and are rank 0. GiB
figures are vLLM's ``format_gib``, rounded to 0.01 GiB (about 10 MiB), so measured bytes are good to
5 MiB.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils.memfit_base import GIB, MIB, PlanError, load_json
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_estimates import (
    NON_TORCH_BASE_BYTES,
    NON_TORCH_DISTRIBUTED_BYTES,
)
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_settings import (
    CUDA_GB10_DEFAULT_MAX_NUM_BATCHED_TOKENS,
    CUDA_GB10_DEFAULT_MAX_NUM_SEQS,
)

SCHEMA = 1
DRIFT_BYTES = 512 * MIB
"""Added to the measured start-up consumption to give the admission margin (MemAvailable moves)."""

_NUM = r"(-?[\d.]+)"
_WORKER_RE = re.compile(r"\((Worker(?:_[A-Z]+\d+)*|EngineCore(?:_DP\d+)?) pid=\d+\)")
_PART_RE = re.compile(r"_(PP|TP)(\d+)")
_RANK_LINES: dict[str, re.Pattern[str]] = {
    "loading": re.compile(rf"Model loading took {_NUM} GiB memory and {_NUM} seconds"),
    "available_kv": re.compile(rf"Available KV cache memory: {_NUM} GiB"),
    "reserved_kv": re.compile(
        rf"Initial free memory {_NUM} GiB, reserved {_NUM} GiB memory for KV Cache as specified by "
        r"kv_cache_memory_bytes"
    ),
    "profile": re.compile(
        rf"Free memory on device \({_NUM}/{_NUM} GiB\) on startup\. Desired GPU memory utilization is "
        rf"\({_NUM}, {_NUM} GiB\)\. Actual usage is {_NUM} GiB for consumed memory \(weights \+ non-torch\), "
        rf"{_NUM} GiB for peak activation, and {_NUM} GiB for CUDAGraph memory\..*?"
        rf"`--kv-cache-memory=(-?\d+)` \({_NUM} GiB\) to fit into requested memory.*?"
        rf"Current kv cache memory in use is {_NUM} GiB"
    ),
    "refused": re.compile(
        rf"Free memory on device \S+ \({_NUM}/{_NUM} GiB\) on startup is less than desired GPU memory "
        rf"utilization \({_NUM}, {_NUM} GiB\)"
    ),
    "graph_estimate": re.compile(rf"Estimated CUDA graph memory: {_NUM} GiB total"),
    "graph_captured": re.compile(rf"Graph capturing finished in {_NUM} secs, took {_NUM} GiB"),
    "cpu_kv": re.compile(rf"(Explicitly|Auto) set \({_NUM}/{_NUM}\) GiB for KV cache on node \d+"),
    "cpu_consumed": re.compile(rf"{_NUM} GiB memory was consumed by non-kv usages"),
}
_KV_SIZE_RE = re.compile(r"(GPU|CPU|[A-Z]+(?: \+ host)?) KV cache size: ([\d,]+) tokens")
_CONCURRENCY_RE = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")


class CalibrationError(ValueError):
    """A calibration file or record that cannot be used; the message is one sentence."""


def _bytes(gib_text: str) -> int:
    return round(float(gib_text) * GIB)


def _rank_of(line: str) -> tuple[int, int]:
    """(pp_rank, tp_rank) from the line's worker tag; rank 0 for "Worker" and "EngineCore"."""
    found = _WORKER_RE.search(line)
    parts = dict(_PART_RE.findall(found.group(1))) if found else {}
    return int(parts.get("PP", 0)), int(parts.get("TP", 0))


def _read_rank_line(kind: str, m: re.Match[str], rank: dict[str, Any]) -> None:
    g = m.groups()
    if kind == "loading":
        rank["weights_bytes"], rank["load_seconds"] = _bytes(g[0]), float(g[1])
    elif kind == "available_kv":
        rank["kv_cache_memory_bytes"] = _bytes(g[0])
    elif kind == "reserved_kv":
        rank["free_at_start_bytes"], rank["kv_cache_memory_bytes"] = _bytes(g[0]), _bytes(g[1])
    elif kind == "profile":
        rank.update(
            free_at_start_bytes=_bytes(g[0]),
            total_bytes=_bytes(g[1]),
            gpu_memory_utilization=float(g[2]),
            requested_bytes=_bytes(g[3]),
            consumed_bytes=_bytes(g[4]),
            peak_activation_bytes=_bytes(g[5]),
            cudagraph_bytes=_bytes(g[6]),
            kv_suggested_bytes=int(g[7]),
            kv_cache_memory_bytes=_bytes(g[9]),
        )
    elif kind == "refused":
        rank["refused"] = {
            "free_bytes": _bytes(g[0]),
            "total_bytes": _bytes(g[1]),
            "gpu_memory_utilization": float(g[2]),
            "requested_bytes": _bytes(g[3]),
        }
    elif kind == "graph_estimate":
        rank["cudagraph_estimate_bytes"] = _bytes(g[0])
    elif kind == "graph_captured":
        rank["cudagraph_bytes"] = _bytes(g[1])
    elif kind == "cpu_kv":
        rank["kv_cache_memory_bytes"], rank["total_bytes"] = _bytes(g[1]), _bytes(g[2])
    elif kind == "cpu_consumed":
        rank["consumed_bytes"] = _bytes(g[0])


def parse_startup_log(text: str) -> dict[str, Any]:
    """What vLLM logged at start, per rank ("pp<P>_tp<T>") and for the engine.

    Per rank (each key only when logged): ``weights_bytes`` and ``load_seconds``,
    ``kv_cache_memory_bytes`` (available KV in fraction mode, the reserved pool in bytes mode, the KV
    space on the CPU build), ``free_at_start_bytes`` (vLLM's free-memory snapshot: MemAvailable on
    GB10), ``total_bytes``, ``gpu_memory_utilization`` and ``requested_bytes``, ``consumed_bytes``
    (weights + non-torch, measured from the snapshot), ``peak_activation_bytes`` (vLLM's figure, which
    includes the CUDA-graph estimate), ``cudagraph_estimate_bytes``, ``cudagraph_bytes`` (captured),
    ``kv_suggested_bytes`` (the --kv-cache-memory vLLM suggests to fit the requested memory), and
    ``refused`` (the start-up refusal's figures). Engine: ``kv_cache_tokens``, ``max_concurrency``,
    ``request_tokens`` and ``pool`` (GPU / CPU), the last occurrence. ``found`` is false when no memory
    line was seen.
    """
    ranks: dict[tuple[int, int], dict[str, Any]] = {}
    out: dict[str, Any] = {"kv_cache_tokens": None, "max_concurrency": None, "request_tokens": None, "pool": None}
    for line in (text or "").splitlines():
        for kind, pattern in _RANK_LINES.items():
            m = pattern.search(line)
            if m:
                _read_rank_line(kind, m, ranks.setdefault(_rank_of(line), {}))
        size = _KV_SIZE_RE.search(line)
        if size:
            out["pool"], out["kv_cache_tokens"] = size.group(1), int(size.group(2).replace(",", ""))
        conc = _CONCURRENCY_RE.search(line)
        if conc:
            out["request_tokens"], out["max_concurrency"] = int(conc.group(1).replace(",", "")), float(conc.group(2))
    out["ranks"] = {f"pp{pp}_tp{tp}": ranks[(pp, tp)] for pp, tp in sorted(ranks)}
    out["found"] = bool(ranks) or out["kv_cache_tokens"] is not None
    return out


# --------------------------------------------------------------------------------------------------
# The record and where it lives


def digest_short(digest: str) -> str:
    """'sha256:0123456789abcdef...' -> '0123456789ab'; '' stays ''."""
    return str(digest or "").removeprefix("sha256:")[:12]


def calibration_path(base_dir: str, model: str, image_digest: str, tp: int, pp: int) -> str:
    """<base_dir>/<model>/<first 12 hex of the image digest>-tp<T>pp<P>.json"""
    short = digest_short(image_digest)
    if not re.fullmatch(r"[0-9a-f]{12}", short):
        raise CalibrationError(f"image digest {image_digest!r} is not a pinned sha256 digest; calibration is kept per image.")
    return os.path.join(base_dir, model, f"{short}-tp{int(tp)}pp{int(pp)}.json")


# The launch settings a measurement depends on, from the planner's answer (plan_memory's result).
SETTING_KEYS = (
    "memory_mode",
    "gpu_memory_utilization",
    "kv_cache_memory_bytes_per_rank",
    "max_model_len",
    "max_num_seqs",
    "max_num_batched_tokens",
    "kv_cache_dtype",
    "num_speculative_tokens",
    "kv_cache_tokens",
    "max_concurrency",
)


def calibration_record(
    parsed: Mapping[str, Any],
    *,
    model: str,
    image_digest: str,
    plan: Mapping[str, Any],
    measured_memory: list[Mapping[str, Any]] | None = None,
    measured_at: str = "",
    vllm_release: str = "",
) -> dict[str, Any]:
    """The calibration file's content: ``parsed`` (:func:`parse_startup_log` over every rank's log),
    the plan the start used (``plan_memory``'s answer: layout and settings) and, when given, the
    MemAvailable each node had just before the start (``measured_memory``: the serving play's
    ``[{host, mem_total, mem_available}]`` in node-rank order). Raises CalibrationError when the log
    holds nothing to keep."""
    if not parsed.get("found"):
        raise CalibrationError(f"the start-up log of {model} holds no memory line of vLLM; nothing to calibrate.")
    tp, pp = int(plan["tensor_parallel_size"]), int(plan["pipeline_parallel_size"])
    before = [int(node["mem_available"]) for node in measured_memory or []]
    ranks: list[dict[str, Any]] = []
    for key, figures in parsed.get("ranks", {}).items():
        pp_rank, tp_rank = (int(x) for x in re.findall(r"\d+", key))
        rank = pp_rank * tp + tp_rank
        entry = {"rank": rank, "pp_rank": pp_rank, "tp_rank": tp_rank, **figures}
        if before and "free_at_start_bytes" in figures:
            # one rank per node, nodes in rank order; otherwise the largest MemAvailable (a larger margin)
            entry["mem_available_before_bytes"] = before[rank] if len(before) == tp * pp else max(before)
            entry["startup_consumed_bytes"] = entry["mem_available_before_bytes"] - int(figures["free_at_start_bytes"])
        ranks.append(entry)
    return {
        "schema": SCHEMA,
        "model": model,
        "image_digest": image_digest,
        "vllm_release": vllm_release,
        "platform": plan.get("platform"),
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "measured_at": measured_at,
        "settings": {key: plan.get(key) for key in SETTING_KEYS},
        "logged": {key: parsed.get(key) for key in ("kv_cache_tokens", "max_concurrency", "request_tokens", "pool")},
        "ranks": sorted(ranks, key=lambda r: r["rank"]),
    }


def record_text(record: Mapping[str, Any]) -> str:
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def store_calibration(base_dir: str, record: Mapping[str, Any]) -> tuple[str, bool]:
    """Write the record to its place under ``base_dir``; returns (path, changed). Same content, no write."""
    path = calibration_path(
        base_dir, str(record["model"]), str(record["image_digest"]),
        int(record["tensor_parallel_size"]), int(record["pipeline_parallel_size"]),
    )
    text = record_text(record)
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return path, False
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path, True


def load_calibration(path: str) -> dict[str, Any]:
    try:
        data = load_json(path, "calibration")
    except PlanError as exc:
        raise CalibrationError(f"{str(exc).rstrip('.')}; delete it or plan without it (-e calibration=false).") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("ranks"), list):
        raise CalibrationError(
            f"calibration file {path} is not a schema-{SCHEMA} calibration record; delete it or plan without it "
            "(-e calibration=false)."
        )
    return data


def find_calibration(base_dir: str, model: str, image_digest: str, tp: int, pp: int) -> dict[str, Any]:
    """The calibration for a model, image and layout: ``{path, record, note}``; path and record are None
    when there is none to use, and ``note`` says why (one sentence).

    With the image pinned only its own file is used (a measurement of another vLLM build does not carry
    over); unpinned, the newest measurement of that layout, named in the note."""
    folder = os.path.join(base_dir, model)
    suffix = f"-tp{int(tp)}pp{int(pp)}.json"
    others = sorted(name for name in os.listdir(folder) if name.endswith(suffix)) if os.path.isdir(folder) else []
    if digest_short(image_digest):
        path = calibration_path(base_dir, model, image_digest, tp, pp)
        if os.path.isfile(path):
            return {"path": path, "record": load_calibration(path), "note": ""}
        if others:
            images = ", ".join(name.removesuffix(suffix) for name in others)
            note = (
                f"calibration for {model} tp{tp}pp{pp} exists for image(s) {images}, not for the pinned "
                f"{digest_short(image_digest)}: not used (another vLLM build measures differently)."
            )
        else:
            note = f"no calibration for {model} tp{tp}pp{pp} in {base_dir}: estimates used."
        return {"path": None, "record": None, "note": note}
    if not others:
        return {"path": None, "record": None, "note": f"no calibration for {model} tp{tp}pp{pp} in {base_dir}: estimates used."}
    records = [(load_calibration(os.path.join(folder, name)), os.path.join(folder, name)) for name in others]
    record, path = max(records, key=lambda item: str(item[0].get("measured_at") or ""))
    note = (
        f"the image of {model} is not pinned: using the newest calibration, image "
        f"{digest_short(str(record.get('image_digest')))} measured {record.get('measured_at') or '(no date)'}."
    )
    return {"path": path, "record": record, "note": note}


# --------------------------------------------------------------------------------------------------
# Measured values over estimates


def _effective(params: Mapping[str, Any], key: str, default: Any) -> Any:
    value = params.get(key)
    return default if value is None else value


def _spec_tokens(params: Mapping[str, Any]) -> int:
    spec = params.get("speculative_config") or {}
    return int(spec.get("num_speculative_tokens") or 0) if isinstance(spec, Mapping) else 0


def calibration_overrides(record: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """What a calibration record gives the planner for a plan with ``params`` (the planner's arguments).

    Returns ``{"set": {planner parameter: value}, "used": [sentence], "skipped": [sentence]}``. A figure
    is used only when the settings it depends on are the plan's: weights on the layout and on whether the
    MTP draft loads; activations on max_num_batched_tokens and max_num_seqs (the profiling batch and
    the sampler); CUDA graphs on max_num_seqs, the speculative depth and enforce_eager (the captured
    sizes); non-torch memory and the admission margin on the layout only. Ranks missing a figure leave
    that estimate alone.
    """
    ranks = [r for r in record.get("ranks") or [] if isinstance(r, Mapping)]
    settings = record.get("settings") or {}
    tp, pp = int(params.get("tensor_parallel_size") or 1), int(params.get("pipeline_parallel_size") or 1)
    out: dict[str, Any] = {"set": {}, "used": [], "skipped": []}
    if (int(record.get("tensor_parallel_size") or 0), int(record.get("pipeline_parallel_size") or 0)) != (tp, pp):
        out["skipped"].append(
            f"the calibration was measured at tp{record.get('tensor_parallel_size')}pp"
            f"{record.get('pipeline_parallel_size')}, the plan is tp{tp}pp{pp}"
        )
        return out
    world = tp * pp

    def every(key: str) -> list[int] | None:
        values = {int(r["rank"]): int(r[key]) for r in ranks if key in r}
        return [values[i] for i in range(world)] if len(values) == world else None

    def differs(key: str, default: Any) -> str:
        planned, measured = _effective(params, key, default), settings.get(key)
        return "" if measured is None or int(measured) == int(planned) else f"{key} {measured} (plan: {planned})"

    weights = every("weights_bytes")
    spec_then, spec_now = int(settings.get("num_speculative_tokens") or 0), _spec_tokens(params)
    if weights and (spec_then > 0) == (spec_now > 0):
        out["set"]["loaded_weights_bytes"] = weights
        out["used"].append(f"weights {max(weights) / GIB:.2f} GiB per rank (vLLM's 'Model loading took')")
    elif weights:
        out["skipped"].append("weights: measured with the MTP draft " + ("loaded" if spec_then else "off"))

    activation = [
        max(0, int(r["peak_activation_bytes"]) - max(0, int(r.get("cudagraph_estimate_bytes", 0))))
        for r in ranks
        if "peak_activation_bytes" in r
    ]
    moved = [
        d for d in (
            differs("max_num_batched_tokens", CUDA_GB10_DEFAULT_MAX_NUM_BATCHED_TOKENS),
            differs("max_num_seqs", CUDA_GB10_DEFAULT_MAX_NUM_SEQS),
        ) if d
    ]
    if activation and not moved:
        out["set"]["activation_peak_bytes"] = max(activation)
        out["used"].append(f"activations {max(activation) / GIB:.2f} GiB (peak activation less the graph estimate)")
    elif activation:
        out["skipped"].append("activations: measured at " + ", ".join(moved))

    graphs = [max(0, int(r["cudagraph_bytes"])) for r in ranks if "cudagraph_bytes" in r]
    spec_moved = "" if spec_then == spec_now else f"num_speculative_tokens {spec_then} (plan: {spec_now})"
    moved = [d for d in (differs("max_num_seqs", CUDA_GB10_DEFAULT_MAX_NUM_SEQS), spec_moved) if d]
    if params.get("enforce_eager"):
        moved.append("enforce_eager (no graphs now)")
    if graphs and not moved:
        out["set"]["cudagraph_bytes"] = max(graphs)
        out["used"].append(f"CUDA graphs {max(graphs) / GIB:.2f} GiB (as captured)")
    elif graphs:
        out["skipped"].append("CUDA graphs: captured at " + ", ".join(moved))

    startup = [int(r["startup_consumed_bytes"]) for r in ranks if "startup_consumed_bytes" in r]
    after = [int(r["consumed_bytes"]) - int(r["weights_bytes"]) for r in ranks if "consumed_bytes" in r and "weights_bytes" in r]
    if after:
        # vLLM counts from its snapshot; what its processes took before it is measured or estimated
        before = max(startup) if startup else NON_TORCH_BASE_BYTES + (NON_TORCH_DISTRIBUTED_BYTES if world > 1 else 0)
        out["set"]["non_torch_bytes"] = max(0, max(after)) + max(0, before)
        out["used"].append(
            f"non-torch {out['set']['non_torch_bytes'] / GIB:.2f} GiB (consumed less weights, plus "
            + ("the measured start-up use)" if startup else "the estimated CUDA context and NCCL)")
        )
    if startup:
        margin = -(-(max(0, max(startup)) + DRIFT_BYTES) // MIB) * MIB
        out["set"]["admission_margin_bytes"] = margin
        out["used"].append(
            f"admission margin {margin / GIB:.2f} GiB (MemAvailable before the start less vLLM's snapshot, + 0.5 GiB)"
        )
    return out
