"""bench.yml's logic: the request, what serves, vLLM's ``--save-result`` JSON, the record and the tables.

Plain typed Python, no Ansible imports. ``bench.yml`` runs ``vllm bench serve`` (vLLM's own serving
benchmark, from the image that serves, so the versions match) once per concurrency and context length
on the head; each run's ``--save-result`` JSON is read here into one point (prompt and generation
throughput, time to first token, inter-token latency), and the points, with the model, image, layout and
memory settings of what served, make one record kept under the operator's inventory:
``<inventory>/bench/<model>/<timestamp>.json``. ``bench_table`` renders one or more records side by side.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils.node_status import flag_value

LABEL_MODEL = "gb10.serving.model"
LABEL_ROLE = "gb10.serving.role"
RUN_ID_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z$")
# What the record keeps of the serving container's flags and environment: the layout and memory settings.
SETTING_FLAGS = ("--tensor-parallel-size", "--pipeline-parallel-size", "--max-model-len", "--max-num-seqs",
                 "--max-num-batched-tokens", "--kv-cache-dtype", "--kv-cache-memory-bytes",
                 "--gpu-memory-utilization", "--dtype", "--load-format", "--nnodes")
SETTING_ENV = ("VLLM_CPU_KVCACHE_SPACE",)
# The request's limits (-e ...): name -> (low, high).
LIMITS = {
    "concurrency": (1, 1024),
    "input_len": (1, 1048576),
    "output_len": (1, 65536),
    "prompts": (1, 100000),
    "last": (1, 1000),
}


class BenchError(ValueError):
    """A result that cannot be read; the message is one sentence for the operator."""


def _int_list(text: str) -> list[int] | None:
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not re.fullmatch(r"[0-9]+", p) for p in parts):
        return None
    return [int(p) for p in parts]


def check_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """The -e of bench.yml checked with no host contacted: ``{settings, errors}``.

    ``request`` holds the raw -e strings: concurrency and input_len (comma lists), output_len, prompts,
    last (numbers), compare (run ids ``a,b[,...]``) and model. Each mistake is one sentence saying what is
    wrong and what to give instead; ``settings`` holds the numbers when there is none.
    """
    errors: list[str] = []
    settings: dict[str, Any] = {}
    for name in ("concurrency", "input_len"):
        raw = str(request.get(name, "")).strip()
        values = _int_list(raw)
        low, high = LIMITS[name]
        if values is None or not all(low <= v <= high for v in values):
            errors.append(f"-e {name}={raw} is not a comma-separated list of numbers from {low} to {high} "
                          f"(e.g. -e {name}={'1,4' if name == 'concurrency' else '64,256'}).")
        elif len(set(values)) != len(values):
            errors.append(f"-e {name}={raw} names a value twice: give each {name} once.")
        else:
            settings[name] = values
    for name in ("output_len", "prompts", "last"):
        raw = str(request.get(name, "")).strip()
        low, high = LIMITS[name]
        if not re.fullmatch(r"[0-9]+", raw) or not low <= int(raw) <= high:
            errors.append(f"-e {name}={raw} is not a number from {low} to {high}.")
        else:
            settings[name] = int(raw)
    compare_raw = str(request.get("compare", "") or "").strip()
    settings["compare"] = []
    if compare_raw:
        ids = [p.strip() for p in compare_raw.split(",")]
        bad = [i for i in ids if not RUN_ID_RE.match(i)]
        if bad or len(ids) < 2:
            errors.append(f"-e compare={compare_raw} is not two or more run ids such as 20261129T171500Z,20261129T173000Z "
                          "(the names of the files under <inventory>/bench/<model>/, without .json).")
        else:
            settings["compare"] = ids
    model = str(request.get("model", "") or "").strip()
    if model and not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", model):
        errors.append(f"-e model={model} is not a catalog name (lower case letters, digits, '.', '_', '-').")
    settings["model"] = model
    if settings.get("concurrency") and settings.get("prompts") and settings["prompts"] < max(settings["concurrency"]):
        errors.append(f"-e prompts={settings['prompts']} is fewer than the largest concurrency "
                      f"({max(settings['concurrency'])}): give at least as many prompts as concurrent requests.")
    return {"settings": settings, "errors": errors}


_flag = flag_value  # node_status's reading of a container's argument list


def bench_target(inspected: Mapping[str, Sequence[Mapping[str, Any]]], model: str = "") -> dict[str, Any]:
    """What bench.yml measures, from ``docker inspect gb10-vllm`` on every serving node.

    ``inspected`` maps a host to its inspect output (an empty list: nothing there). Returns ``{error}``
    with one sentence when nothing (or another model than ``model``) serves, else the head, the port to
    reach on it, the model folder to take the tokenizer from, and ``serving``: model, image, image ID,
    nodes, layout and memory settings, as the record keeps them.
    """
    heads = []
    nodes: list[str] = []
    for host, items in sorted(inspected.items()):
        for c in items or []:
            labels = (c.get("Config") or {}).get("Labels") or {}
            if LABEL_ROLE not in labels:
                continue
            nodes.append(host)
            if labels[LABEL_ROLE] == "api":
                heads.append((host, c))
    if not heads:
        return {"error": "Nothing serves (no gb10 vLLM API container on the nodes): serve a model with "
                         "serve.yml -e model=<name>, then run bench.yml."}
    host, c = heads[0]
    config = c.get("Config") or {}
    labels = config.get("Labels") or {}
    served = str(labels.get(LABEL_MODEL, ""))
    if model and served != model:
        return {"error": f"-e model={model} does not serve here ({served} serves on {host}): benchmark "
                         f"{served} (leave out -e model) or serve {model} first with serve.yml -e model={model}."}
    state = c.get("State") or {}
    if str(state.get("Status", "")) != "running":
        return {"error": f"{served} is not running on {host} (container state {state.get('Status', 'unknown')}): "
                         "see logs.yml -e service=vllm, or serve it again with serve.yml."}
    args = [str(a) for a in c.get("Args") or []]
    env = dict(str(e).split("=", 1) for e in config.get("Env") or [] if "=" in str(e))
    model_dir = ""
    for m in c.get("Mounts") or []:
        if str(m.get("Destination", "")) == f"/models/{served}":
            model_dir = str(m.get("Source", ""))
    bind = _flag(args, "--host") or "0.0.0.0"
    settings = {f.lstrip("-").replace("-", "_"): _flag(args, f) for f in SETTING_FLAGS if _flag(args, f) is not None}
    settings.update({k: env[k] for k in SETTING_ENV if k in env})
    tp = int(settings.get("tensor_parallel_size", 1))
    pp = int(settings.get("pipeline_parallel_size", 1))
    return {
        "head": host,
        "host": "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind,
        "port": int(_flag(args, "--port") or 8000),
        "model_dir": model_dir,
        "serving": {
            "model": served,
            "image": str(config.get("Image", "")),
            "image_id": str(c.get("Image", "")),
            "nodes": sorted(set(nodes)),
            "layout": f"TP={tp} PP={pp} on {len(set(nodes))} node(s)",
            "tensor_parallel_size": tp,
            "pipeline_parallel_size": pp,
            "settings": dict(sorted(settings.items())),
        },
    }


def _num(result: Mapping[str, Any], key: str, where: str) -> float:
    value = result.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise BenchError(f"{where}: vLLM's result has no number '{key}' (got {value!r}); was it written by "
                         "vllm bench serve --save-result with --percentile-metrics ttft,tpot,itl,e2el?")
    return float(value)


def bench_point(result: Mapping[str, Any], where: str = "result") -> dict[str, Any]:
    """One point from vLLM's ``--save-result`` JSON: concurrency, context, throughput and latencies.

    Prompt processing is the prompt tokens per second of the run (total input tokens / duration);
    generation is vLLM's ``output_throughput``; TTFT and ITL are vLLM's mean, median and p99 in ms.
    Raises :class:`BenchError` when a figure is missing or no request completed.
    """
    completed = int(_num(result, "completed", where))
    failed = int(result.get("failed") or 0)
    if completed < 1:
        raise BenchError(f"{where}: no request completed ({failed} failed): see logs.yml -e service=vllm.")
    duration = _num(result, "duration", where)
    total_in = _num(result, "total_input_tokens", where)
    point = {
        "concurrency": int(result.get("max_concurrency") or 0),
        "input_len": int(round(total_in / completed)),
        "output_len": int(round(_num(result, "total_output_tokens", where) / completed)),
        "completed": completed,
        "failed": failed,
        "duration_s": round(duration, 3),
        "request_throughput": round(_num(result, "request_throughput", where), 3),
        "prompt_tokens_per_s": round(total_in / duration, 1) if duration > 0 else 0.0,
        "generation_tokens_per_s": round(_num(result, "output_throughput", where), 1),
        "total_tokens_per_s": round(_num(result, "total_token_throughput", where), 1),
    }
    for metric in ("ttft", "tpot", "itl", "e2el"):
        for stat in ("mean", "median", "p99"):
            point[f"{stat}_{metric}_ms"] = round(_num(result, f"{stat}_{metric}_ms", where), 2)
    return point


def bench_record(results: Sequence[Mapping[str, Any]], target: Mapping[str, Any], settings: Mapping[str, Any],
                 run_id: str, vllm_version: str = "") -> dict[str, Any]:
    """The record bench.yml keeps: the run, what served, the benchmark settings and one point per run."""
    if not RUN_ID_RE.match(run_id):
        raise BenchError(f"run id {run_id!r} is not a UTC timestamp such as 20261129T171500Z.")
    points = []
    for item in results:
        where = str(item.get("name", "result"))
        point = bench_point(item.get("result") or {}, where)
        expected = item.get("concurrency")
        if expected is not None and point["concurrency"] != int(expected):
            raise BenchError(f"{where}: vLLM ran at concurrency {point['concurrency']}, bench.yml asked {expected}.")
        point["input_len_asked"] = int(item.get("input_len") or point["input_len"])
        points.append(point)
    if not points:
        raise BenchError("no result of vllm bench serve to record.")
    return {
        "run": run_id,
        "serving": dict(target.get("serving") or {}),
        "head": str(target.get("head", "")),
        "vllm_version": vllm_version,
        "benchmark": {
            "tool": "vllm bench serve",
            "dataset": "random",
            "concurrency": list(settings.get("concurrency") or []),
            "input_len": list(settings.get("input_len") or []),
            "output_len": int(settings.get("output_len") or 0),
            "prompts": int(settings.get("prompts") or 0),
        },
        "points": sorted(points, key=lambda p: (p["input_len_asked"], p["concurrency"])),
    }


def record_text(record: Mapping[str, Any]) -> str:
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def record_path(base_dir: str, record: Mapping[str, Any]) -> str:
    return f"{base_dir.rstrip('/')}/{record['serving']['model']}/{record['run']}.json"


def _setting_line(record: Mapping[str, Any]) -> str:
    s = record.get("serving") or {}
    image = str(s.get("image", ""))
    short = image.split("@sha256:")[0] + "@" + image.split("@sha256:")[1][:12] if "@sha256:" in image else image
    settings = s.get("settings") or {}
    memory = ", ".join(f"{k} {v}" for k, v in settings.items()
                       if k not in ("tensor_parallel_size", "pipeline_parallel_size", "nnodes", "load_format"))
    return f"{record.get('run', '?')}: {s.get('model', '?')} | {short} | {s.get('layout', '?')} | {memory}"


COLUMNS = (
    ("prompt tok/s", "prompt_tokens_per_s", "{:.1f}"),
    ("gen tok/s", "generation_tokens_per_s", "{:.1f}"),
    ("TTFT ms mean/p99", ("mean_ttft_ms", "p99_ttft_ms"), "{:.1f}/{:.1f}"),
    ("ITL ms mean/p99", ("mean_itl_ms", "p99_itl_ms"), "{:.1f}/{:.1f}"),
)


def _cell(point: Mapping[str, Any] | None, key: Any, fmt: str) -> str:
    if point is None:
        return "-"
    if isinstance(key, tuple):
        return fmt.format(*(float(point[k]) for k in key))
    return fmt.format(float(point[key]))


def bench_table(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Lines of a table: one row per (context, concurrency), the runs side by side (A, B, ...).

    With two runs or more a last column gives the generation throughput of the last run against the
    first (e.g. ``+12.5 %``). Each run is described first on a line of its own: id, model, image,
    layout and memory settings.
    """
    if not records:
        return ["No benchmark run to show."]
    tags = [chr(ord("A") + i) if i < 26 else str(i) for i in range(len(records))]
    lines = [f"{tag} = {_setting_line(r)}" for tag, r in zip(tags, records)]
    keys = sorted({(int(p.get("input_len_asked", p["input_len"])), int(p["concurrency"]))
                   for r in records for p in r.get("points") or []})
    header = ["context", "conc"]
    for title, _, _ in COLUMNS:
        header += [f"{title} {tag}" if len(records) > 1 else title for tag in tags]
    if len(records) > 1:
        header.append(f"gen {tags[-1]} vs A")
    rows = [header]
    for ctx, conc in keys:
        found = [next((p for p in r.get("points") or []
                       if int(p.get("input_len_asked", p["input_len"])) == ctx and int(p["concurrency"]) == conc), None)
                 for r in records]
        row = [str(ctx), str(conc)]
        for _, key, fmt in COLUMNS:
            row += [_cell(p, key, fmt) for p in found]
        if len(records) > 1:
            first, last = found[0], found[-1]
            if first is None or last is None or float(first["generation_tokens_per_s"]) <= 0:
                row.append("-")
            else:
                change = 100.0 * (float(last["generation_tokens_per_s"]) / float(first["generation_tokens_per_s"]) - 1)
                row.append(f"{change:+.1f} %")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def pick_runs(paths: Sequence[str], compare: Sequence[str], last: int, model: str = "") -> dict[str, Any]:
    """The record files to show: ``{paths}`` or ``{error}`` (one sentence).

    ``paths`` are the record files found under ``<inventory>/bench`` (``<model>/<run id>.json``). With
    ``compare`` (run ids) those files in that order; else the ``last`` newest runs (of ``model`` when given).
    """
    runs: dict[str, list[str]] = {}
    for path in paths:
        parts = str(path).rstrip("/").split("/")
        if len(parts) < 2 or not parts[-1].endswith(".json") or not RUN_ID_RE.match(parts[-1][:-5]):
            continue
        if model and parts[-2] != model:
            continue
        runs.setdefault(parts[-1][:-5], []).append(str(path))
    where = f"of {model} " if model else ""
    if compare:
        missing = [i for i in compare if i not in runs]
        if missing:
            known = ", ".join(sorted(runs)[-5:]) or "none"
            return {"error": f"-e compare: no benchmark run {', '.join(missing)} {where}under the inventory's bench/ "
                             f"folder (newest runs: {known})."}
        ambiguous = [i for i in compare if len(runs[i]) > 1]
        if ambiguous:
            return {"error": f"-e compare: run {ambiguous[0]} exists for several models: add -e model=<name>."}
        return {"paths": [runs[i][0] for i in compare]}
    if not runs:
        return {"error": f"No benchmark run {where}under the inventory's bench/ folder yet: run bench.yml while a model serves."}
    newest = sorted(runs)[-last:]
    return {"paths": [p for i in newest for p in sorted(runs[i])]}
