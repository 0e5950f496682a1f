"""The model catalog and the inputs of the memory-fit planner (`plan.yml`).

Plain Python with no Ansible imports: the filter plugin ``plugins/filter/gb10_catalog.py`` exposes these
functions to the ``memory_plan`` role, and ``tests/unit/test_catalog*.py`` / ``test_plan*.py`` test them.

- :func:`merge_catalog` builds ``gb10_catalog``: the built-in catalog (``roles/gb10/defaults/main.yml``)
  with the inventory's ``gb10_catalog_extra`` entries over it, every path resolved.
- :func:`catalog_errors` checks the catalog and its config.json copies.
- :func:`resolve_plan` turns the operator's ``-e`` variables and a catalog entry into the arguments of
  the ``gb10_memory_fit`` module, after checking them; every mistake is one sentence.
- :func:`plan_lines` / :func:`plan_report` format the planner's answer for the console and the JSON file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

GIB = 1024**3

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
HEX40_RE = re.compile(r"^[0-9a-f]{40}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
RELEASE_RE = re.compile(r"^\d+\.\d+(\.\d+)?([a-z0-9.+-]*)$")

REQUIRED_KEYS = (
    "description",
    "hf_repo",
    "hf_revision",
    "config",
    "checkpoint_bytes",
    "checkpoint_bytes_source",
    "platform",
    "min_nodes",
    "image",
    "vllm_release",
    "launch",
    "env",
)
IMAGE_KEYS = ("repository", "tag", "digest")
PLATFORMS = ("cuda", "cpu")
KV_CACHE_DTYPES = ("auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2")
DTYPES = ("auto", "bfloat16", "float16", "float32")
SPEC_METHODS = ("mtp",)
# Where a model's files come from (an entry's optional `weights`): Hugging Face, or a folder on the
# control machine (`dir`) that the weights role stages to the nodes.
WEIGHTS_SOURCES = ("hf", "controller")
WEIGHTS_KEYS = ("source", "dir")

# Launch settings the planner reads (module arguments of the same name).
PLANNER_LAUNCH_KEYS = (
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "max_model_len",
    "max_num_seqs",
    "max_num_batched_tokens",
    "kv_cache_dtype",
    "block_size",
    "enable_prefix_caching",
    "gpu_memory_utilization",
    "kv_cache_memory_bytes",
    "speculative_config",
    "dtype",
)
# Launch settings only the serving play reads; allowed in the catalog, ignored by the planner.
SERVE_LAUNCH_KEYS = (
    "tool_call_parser",
    "reasoning_parser",
    "enable_auto_tool_choice",
    "trust_remote_code",
    "load_format",
    "quantization",
)
POSITIVE_INT_KEYS = (
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "max_model_len",
    "max_num_seqs",
    "max_num_batched_tokens",
    "block_size",
    "kv_cache_memory_bytes",
)
# Operator -e variables that override a launch setting (same names as the catalog's launch keys).
OVERRIDE_KEYS = tuple(k for k in PLANNER_LAUNCH_KEYS if k != "speculative_config") + (
    "num_speculative_tokens",
)
# Operator -e variables passed straight to the planner.
NODE_KEYS = ("node_memory_total_bytes", "node_mem_available_bytes", "host_floor_bytes")
MAX_NODES = 64


class PlanInputError(ValueError):
    """The operator's inputs are wrong; ``errors`` holds one sentence per mistake."""

    def __init__(self, errors: list[str]):
        super().__init__(" ".join(errors))
        self.errors = errors


# --------------------------------------------------------------------------------------------------
# Small parsers: extra vars arrive as strings (-e nodes=8) or as native types (-e '{"nodes": 8}').


def _is_unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def as_positive_int(value: Any) -> int | None:
    """Return ``value`` as an int > 0, or None when it is not one (bools are not ints here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float) and value.is_integer() and value > 0:
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[0-9][0-9_]*\s*", value):
        number = int(value.strip().replace("_", ""))
        return number if number > 0 else None
    return None


def as_non_negative_int(value: Any) -> int | None:
    if isinstance(value, str) and value.strip() == "0":
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return 0
    return as_positive_int(value)


def as_fraction(value: Any) -> float | None:
    """Return ``value`` as a float in (0, 1], or None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0.0 < number <= 1.0 else None


def as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
    return None


# --------------------------------------------------------------------------------------------------
# config.json


def load_model_config(path: str) -> dict[str, Any]:
    """Read a model's config.json; raise ValueError with one sentence when it cannot be used."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as exc:
        raise ValueError(f"Model config {path} does not exist.") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"Model config {path} is not readable JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise ValueError(f"Model config {path} is not a JSON object.")
    return data


def text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language-model part of a config (multimodal models such as Qwen3.5 nest it)."""
    nested = config.get("text_config")
    return nested if isinstance(nested, Mapping) else config


def config_errors(config: Mapping[str, Any], where: str) -> list[str]:
    """Keys every planner-relevant config.json must have."""
    errors: list[str] = []
    arch = config.get("architectures")
    if not (isinstance(arch, list) and arch and all(isinstance(a, str) for a in arch)):
        errors.append(f"{where}: 'architectures' must be a non-empty list of class names.")
    if not isinstance(config.get("model_type"), str):
        errors.append(f"{where}: 'model_type' is missing.")
    text = text_config(config)
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        if as_positive_int(text.get(key)) is None:
            errors.append(f"{where}: '{key}' must be a positive integer.")
    mla = "kv_lora_rank" in text
    if not mla and as_positive_int(text.get("num_key_value_heads")) is None:
        errors.append(f"{where}: 'num_key_value_heads' must be a positive integer.")
    quant = config.get("quantization_config")
    if quant is not None and not (isinstance(quant, Mapping) and isinstance(quant.get("quant_method"), str)):
        errors.append(f"{where}: 'quantization_config' must be an object with a 'quant_method'.")
    return errors


# --------------------------------------------------------------------------------------------------
# The catalog


def _launch_errors(where: str, launch: Any) -> list[str]:
    if not isinstance(launch, Mapping):
        return [f"{where}.launch must be a mapping of vLLM settings."]
    errors: list[str] = []
    known = set(PLANNER_LAUNCH_KEYS) | set(SERVE_LAUNCH_KEYS)
    for key in launch:
        if key not in known:
            errors.append(
                f"{where}.launch.{key} is not a known setting; use one of {', '.join(sorted(known))}."
            )
    for key in POSITIVE_INT_KEYS:
        if key in launch and as_positive_int(launch[key]) is None:
            errors.append(f"{where}.launch.{key} must be a positive integer, not {launch[key]!r}.")
    for key in ("tensor_parallel_size", "pipeline_parallel_size", "max_model_len"):
        if key not in launch:
            errors.append(f"{where}.launch.{key} is required.")
    if "kv_cache_dtype" in launch and launch["kv_cache_dtype"] not in KV_CACHE_DTYPES:
        errors.append(f"{where}.launch.kv_cache_dtype must be one of {', '.join(KV_CACHE_DTYPES)}.")
    if "dtype" in launch and launch["dtype"] not in DTYPES:
        errors.append(f"{where}.launch.dtype must be one of {', '.join(DTYPES)}.")
    if "gpu_memory_utilization" in launch and as_fraction(launch["gpu_memory_utilization"]) is None:
        errors.append(f"{where}.launch.gpu_memory_utilization must be a number in (0, 1].")
    for key in ("enable_prefix_caching", "enable_auto_tool_choice", "trust_remote_code"):
        if key in launch and not isinstance(launch[key], bool):
            errors.append(f"{where}.launch.{key} must be true or false.")
    spec = launch.get("speculative_config")
    if spec is not None:
        if not (
            isinstance(spec, Mapping)
            and spec.get("method") in SPEC_METHODS
            and as_positive_int(spec.get("num_speculative_tokens")) is not None
        ):
            errors.append(
                f"{where}.launch.speculative_config must be {{method: mtp, num_speculative_tokens: N>0}}."
            )
    return errors


def entry_where(name: str, entry: Any) -> str:
    """How messages name an entry: the variable it was written in (``gb10_catalog_extra`` for the
    inventory's entries, ``gb10_catalog`` for the built-in ones) and its name."""
    origin = entry.get("origin") if isinstance(entry, Mapping) else None
    variable = origin.get("variable") if isinstance(origin, Mapping) else None
    return f"{variable or 'gb10_catalog'}['{name}']"


def _from_inventory(entry: Any) -> Mapping[str, Any] | None:
    origin = entry.get("origin") if isinstance(entry, Mapping) else None
    return origin if isinstance(origin, Mapping) and origin.get("inventory") else None


def weights_source(entry: Mapping[str, Any]) -> str:
    """Where a model's files come from: ``hf`` (Hugging Face, the default) or ``controller``."""
    weights = entry.get("weights")
    return str(weights.get("source", "hf")) if isinstance(weights, Mapping) else "hf"


def _weights_errors(where: str, weights: Any) -> list[str]:
    shape = (
        f"{where}.weights must be {{source: hf}} or {{source: controller, dir: <folder of the model's "
        "files on the control machine>}."
    )
    if weights is None:
        return []
    if not isinstance(weights, Mapping) or any(key not in WEIGHTS_KEYS for key in weights):
        return [shape]
    source = weights.get("source", "hf")
    if source not in WEIGHTS_SOURCES:
        return [f"{where}.weights.source must be one of {', '.join(WEIGHTS_SOURCES)}."]
    if source == "controller" and not (isinstance(weights.get("dir"), str) and weights["dir"].strip()):
        return [shape]
    return []


def entry_errors(name: str, entry: Any, root: str) -> list[str]:
    """Everything wrong with one catalog entry, one sentence each.

    An entry from the inventory (``gb10_catalog_extra``, see :func:`merge_catalog`) is named by that
    variable and every sentence ends with the inventory folder it came from.
    """
    errors = _entry_errors(name, entry, root)
    origin = _from_inventory(entry)
    if origin:
        errors = [f"{error[:-1]} (inventory {origin['inventory']})." for error in errors]
    return errors


def _entry_errors(name: str, entry: Any, root: str) -> list[str]:
    where = entry_where(name, entry)
    if not NAME_RE.match(str(name)):
        return [f"{where}: the name must be lower case letters, digits, '.', '_' or '-' (at most 64)."]
    if not isinstance(entry, Mapping):
        return [f"{where} must be a mapping."]
    errors = [f"{where}.{key} is missing." for key in REQUIRED_KEYS if key not in entry]
    if errors:
        return errors
    for key in ("description", "hf_repo", "hf_revision", "config", "checkpoint_bytes_source", "vllm_release"):
        if not isinstance(entry[key], str):
            errors.append(f"{where}.{key} must be a string.")
    if errors:
        return errors
    weights_problems = _weights_errors(where, entry.get("weights"))
    errors.extend(weights_problems)
    # Files staged from the control machine need no Hugging Face repository; an image pin
    # (serving.image_pin, taken from gb10_image_pins in the inventory) stands for the image.
    from_controller = not weights_problems and weights_source(entry) == "controller"
    serving = entry.get("serving")
    pinned = isinstance(serving, Mapping) and isinstance(serving.get("image_pin"), str) and bool(serving["image_pin"])
    if not entry["description"].strip():
        errors.append(f"{where}.description is empty.")
    if not from_controller and not re.fullmatch(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+", entry["hf_repo"]):
        errors.append(f"{where}.hf_repo must be 'owner/name'.")
    if entry["hf_revision"] and not HEX40_RE.match(entry["hf_revision"]):
        errors.append(f"{where}.hf_revision must be a 40-hex commit id, or '' until an operator pins it.")
    if entry["platform"] not in PLATFORMS:
        errors.append(f"{where}.platform must be one of {', '.join(PLATFORMS)}.")
    if as_positive_int(entry["checkpoint_bytes"]) is None:
        errors.append(f"{where}.checkpoint_bytes must be a positive integer (bytes on disk).")
    if as_positive_int(entry["min_nodes"]) is None:
        errors.append(f"{where}.min_nodes must be a positive integer.")
    if not RELEASE_RE.match(entry["vllm_release"]):
        errors.append(f"{where}.vllm_release must look like 0.31.0.")
    image = entry["image"]
    if not (isinstance(image, Mapping) and all(k in image for k in IMAGE_KEYS)):
        errors.append(f"{where}.image must have repository, tag and digest ('' when unknown).")
    else:
        if not all(isinstance(image[k], str) for k in IMAGE_KEYS):
            errors.append(f"{where}.image.repository, tag and digest must be strings.")
        elif not pinned and not (image["repository"] and image["tag"]):
            errors.append(f"{where}.image needs a repository and a tag (or serving.image_pin).")
        elif image["digest"] and not DIGEST_RE.match(image["digest"]):
            errors.append(f"{where}.image.digest must be 'sha256:<64 hex>', or '' until an operator pins it.")
    env = entry["env"]
    if not (
        isinstance(env, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    ):
        errors.append(f"{where}.env must map variable names to strings (quote numbers).")
    errors.extend(_launch_errors(where, entry["launch"]))
    config_rel = entry["config"]
    origin = _from_inventory(entry)
    if os.path.isabs(config_rel):
        errors.append(f"{where}.config must be relative to the repository root.")
    else:
        path = os.path.normpath(os.path.join(root, config_rel))
        if not os.path.isfile(path):
            shown = f"{origin.get('config', config_rel)} ({path})" if origin else config_rel
            errors.append(f"{where}.config: {shown} does not exist.")
        else:
            try:
                config = load_model_config(path)
            except ValueError as exc:
                errors.append(f"{where}.config: {exc}")
            else:
                errors.extend(config_errors(config, f"{where}.config ({config_rel})"))
                launch = entry["launch"]
                if not errors and isinstance(launch, Mapping):
                    errors.extend(_heads_errors(where, text_config(config), launch))
    return errors


def _heads_errors(where: str, text: Mapping[str, Any], launch: Mapping[str, Any]) -> list[str]:
    tp = as_positive_int(launch.get("tensor_parallel_size")) or 1
    heads = as_positive_int(text.get("num_attention_heads")) or 1
    if heads % tp:
        divisors = ", ".join(str(d) for d in range(1, heads + 1) if heads % d == 0 and d <= MAX_NODES)
        return [
            f"{where}.launch: tensor_parallel_size {tp} does not divide the model's {heads} attention heads; "
            f"use one of {divisors}."
        ]
    return []


def catalog_errors(catalog: Any, root: str) -> list[str]:
    """Everything wrong with the catalog; an empty list means every entry is usable."""
    if not isinstance(catalog, Mapping) or not catalog:
        return [
            "gb10_catalog must be a non-empty mapping of catalog name to entry (the built-in catalog is "
            "gb10_catalog_builtin in roles/gb10/defaults/main.yml; an inventory adds gb10_catalog_extra)."
        ]
    errors: list[str] = []
    for name in sorted(catalog, key=str):
        errors.extend(entry_errors(str(name), catalog[name], root))
    return errors


class CatalogMergeError(ValueError):
    """``gb10_catalog_extra`` cannot be merged at all (not a mapping of entries); one sentence."""


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "null" if value is None else "a " + type(value).__name__.lstrip("_")


def _resolve(path: str, base: str) -> str:
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))


def _inventory_path(name: Any, key: str, path: str, inventory_dir: str | None) -> str:
    if not os.path.isabs(path) and not inventory_dir:
        raise CatalogMergeError(
            f"gb10_catalog_extra['{name}'].{key} is relative ({path}) but the inventory folder is not known; "
            "set gb10_inventory_dir or give an absolute path."
        )
    return _resolve(path, inventory_dir or "/")


def merge_catalog(builtin: Any, extra: Any, root: str, inventory_dir: str | None = None) -> dict[str, Any]:
    """``gb10_catalog``: the built-in entries with the inventory's ``gb10_catalog_extra`` over them.

    An extra entry with a built-in's name replaces it whole. Paths are resolved so that every consumer
    reads every entry the same way:
    - ``config`` ends up relative to the repository root ``root``, the form built-in entries use. An
      extra entry's ``config`` is relative to the inventory folder ``inventory_dir`` (or absolute).
    - ``weights.dir`` (files staged from the control machine) ends up absolute: relative to the
      inventory folder for an extra entry, to the repository root for a built-in one.
    Extra entries carry ``origin`` ({variable, inventory, config as written}) so that
    :func:`entry_errors` names them and the inventory they came from. Mistakes inside an entry are left
    to :func:`entry_errors`; only an ``extra`` that is not a mapping of mappings raises
    CatalogMergeError.
    """
    where = f"gb10_catalog_extra (inventory {inventory_dir})" if inventory_dir else "gb10_catalog_extra"
    if extra is None:
        extra = {}
    if not isinstance(extra, Mapping):
        raise CatalogMergeError(
            f"{where} must be a mapping of catalog name to entry, not {_kind(extra)}; "
            "see docs/catalog.md (Adding a model from the inventory)."
        )
    real_root = os.path.realpath(root)
    merged: dict[str, Any] = {}
    for name, entry in (builtin or {}).items() if isinstance(builtin, Mapping) else ():
        item = dict(entry) if isinstance(entry, Mapping) else entry
        if isinstance(item, dict) and isinstance(item.get("weights"), Mapping):
            weights = dict(item["weights"])
            if isinstance(weights.get("dir"), str) and weights["dir"]:
                weights["dir"] = _resolve(weights["dir"], root)
            item["weights"] = weights
        merged[str(name)] = item
    for name, entry in extra.items():
        if not isinstance(entry, Mapping):
            raise CatalogMergeError(
                f"gb10_catalog_extra['{name}']"
                + (f" (inventory {inventory_dir})" if inventory_dir else "")
                + f" must be a mapping of entry settings (description, hf_repo, config, ...), not {_kind(entry)}."
            )
        item = dict(entry)
        item["origin"] = {"variable": "gb10_catalog_extra", "inventory": inventory_dir or ""}
        config = item.get("config")
        if isinstance(config, str) and config:
            item["origin"]["config"] = config
            path = os.path.realpath(_inventory_path(name, "config", config, inventory_dir))
            item["config"] = os.path.relpath(path, real_root)
        weights = item.get("weights")
        if isinstance(weights, Mapping) and isinstance(weights.get("dir"), str) and weights["dir"]:
            item["weights"] = dict(weights, dir=_inventory_path(name, "weights.dir", weights["dir"], inventory_dir))
        merged[str(name)] = item
    return merged


# --------------------------------------------------------------------------------------------------
# Layout: how tensor/pipeline parallelism follow the node count (one GPU per node).


def plan_layout(
    entry_launch: Mapping[str, Any],
    nodes: int | None,
    tensor_parallel_size: int | None = None,
    pipeline_parallel_size: int | None = None,
) -> dict[str, Any]:
    """Decide TP and PP for ``nodes`` GB10 nodes.

    - TP and PP given: nodes defaults to TP x PP and must equal it.
    - Only one of them given: the other is nodes / given (must divide).
    - Neither: the entry's layout when nodes is unset or equals it; otherwise TP = nodes and PP = 1,
      unless the entry uses pipeline parallelism (PP > 1): then TP stays the entry's and PP = nodes / TP.
    Raises PlanInputError.
    """
    entry_tp = as_positive_int(entry_launch.get("tensor_parallel_size")) or 1
    entry_pp = as_positive_int(entry_launch.get("pipeline_parallel_size")) or 1
    tp, pp = tensor_parallel_size, pipeline_parallel_size
    if tp and pp:
        if nodes is None:
            nodes = tp * pp
        if tp * pp != nodes:
            raise PlanInputError(
                [
                    f"tensor_parallel_size {tp} x pipeline_parallel_size {pp} = {tp * pp} GPUs, "
                    f"but nodes is {nodes}; GB10 has one GPU per node, so make them equal."
                ]
            )
        return {
            "nodes": nodes,
            "tp": tp,
            "pp": pp,
            "rule": "tensor_parallel_size and pipeline_parallel_size given",
        }
    if nodes is None:
        nodes = (tp or entry_tp) * (pp or entry_pp) if (tp or pp) else entry_tp * entry_pp
    if tp:
        if nodes % tp:
            raise PlanInputError(
                [f"nodes {nodes} is not a multiple of tensor_parallel_size {tp}; change one of them."]
            )
        return {"nodes": nodes, "tp": tp, "pp": nodes // tp, "rule": "PP = nodes / given TP"}
    if pp:
        if nodes % pp:
            raise PlanInputError(
                [f"nodes {nodes} is not a multiple of pipeline_parallel_size {pp}; change one of them."]
            )
        return {"nodes": nodes, "tp": nodes // pp, "pp": pp, "rule": "TP = nodes / given PP"}
    if nodes == entry_tp * entry_pp and entry_launch:
        return {"nodes": nodes, "tp": entry_tp, "pp": entry_pp, "rule": "catalog layout"}
    if entry_pp > 1:
        if nodes % entry_tp:
            raise PlanInputError(
                [
                    f"nodes {nodes} is not a multiple of the catalog's tensor_parallel_size {entry_tp} "
                    "(this entry uses pipeline parallelism); pick a multiple or set -e tensor_parallel_size."
                ]
            )
        return {
            "nodes": nodes,
            "tp": entry_tp,
            "pp": nodes // entry_tp,
            "rule": "TP from catalog, PP = nodes / TP",
        }
    return {"nodes": nodes, "tp": nodes, "pp": 1, "rule": "TP = nodes, PP = 1"}


# --------------------------------------------------------------------------------------------------
# Operator inputs -> planner arguments


def _artifact_name(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return cleaned or "model"


def _shape(config: Mapping[str, Any]) -> tuple[Any, ...]:
    text = text_config(config)
    arch = config.get("architectures") or [None]
    return (arch[0], text.get("num_hidden_layers"), text.get("hidden_size"), text.get("vocab_size"))


def catalog_siblings(
    name: str | None, config: Mapping[str, Any], catalog: Any, root: str
) -> list[dict[str, Any]]:
    """Other catalog entries of the same base model (other quantisations), smallest checkpoint first."""
    if not isinstance(catalog, Mapping):
        return []
    shape = _shape(config)
    found: list[dict[str, Any]] = []
    for other, entry in catalog.items():
        if other == name or not isinstance(entry, Mapping) or not isinstance(entry.get("config"), str):
            continue
        try:
            other_config = load_model_config(os.path.join(root, entry["config"]))
        except ValueError:
            continue
        if _shape(other_config) == shape:
            found.append(
                {"name": str(other), "checkpoint_bytes": as_positive_int(entry.get("checkpoint_bytes"))}
            )
    return sorted(found, key=lambda item: (item["checkpoint_bytes"] or 0, item["name"]))


def resolve_plan(inputs: Mapping[str, Any], catalog: Mapping[str, Any], root: str) -> dict[str, Any]:
    """Check the operator's inputs and build the planner's arguments.

    ``inputs`` holds the play's variables without the role prefix: model, model_config, model_name,
    nodes, weights_bytes, safetensors_index, platform, the launch overrides (OVERRIDE_KEYS) and the node
    overrides (NODE_KEYS). Unset values are None or ''. Raises PlanInputError listing every mistake.
    """
    errors: list[str] = []
    model = inputs.get("model")
    model_config = inputs.get("model_config")
    entry: Mapping[str, Any] | None = None
    names = ", ".join(sorted(str(n) for n in catalog)) if isinstance(catalog, Mapping) else ""

    if _is_unset(model) and _is_unset(model_config):
        raise PlanInputError(
            [
                f"Nothing to plan: set -e model=<name> (one of {names}) "
                "or -e model_config=<path to config.json>."
            ]
        )
    if not _is_unset(model) and not _is_unset(model_config):
        raise PlanInputError(
            ["Set either -e model or -e model_config, not both; use -e model alone for a catalog entry."]
        )

    if not _is_unset(model):
        model = str(model).strip()
        if not isinstance(catalog, Mapping) or model not in catalog:
            raise PlanInputError([f"Unknown model '{model}' (-e model): use one of {names}."])
        entry = catalog[model]
        entry_problems = entry_errors(model, entry, root)
        if entry_problems:
            raise PlanInputError(entry_problems)
        config_path = os.path.join(root, entry["config"])
        label = model
        platform = entry["platform"]
        entry_launch: Mapping[str, Any] = entry["launch"]
        weights_default: int | None = int(entry["checkpoint_bytes"])
    else:
        config_path = os.path.abspath(os.path.expanduser(str(model_config).strip()))
        if not os.path.isfile(config_path):
            raise PlanInputError(
                [f"-e model_config={model_config}: no such file; give the path of a config.json."]
            )
        label = str(inputs.get("model_name") or "").strip() or os.path.basename(os.path.dirname(config_path))
        platform = "cuda"
        entry_launch = {}
        weights_default = None

    try:
        config = load_model_config(config_path)
    except ValueError as exc:
        raise PlanInputError([str(exc)]) from exc
    errors.extend(config_errors(config, config_path))

    if not _is_unset(inputs.get("platform")):
        platform = str(inputs["platform"]).strip()
        if platform not in PLATFORMS:
            errors.append(f"-e platform={platform} is not valid; use one of {', '.join(PLATFORMS)}.")

    # Node count and parallelism.
    parsed: dict[str, int | None] = {}
    for key in ("nodes", "tensor_parallel_size", "pipeline_parallel_size"):
        raw = inputs.get(key)
        if _is_unset(raw):
            parsed[key] = None
            continue
        value = as_positive_int(raw)
        if value is None:
            errors.append(f"-e {key}={raw} is not a positive integer; give a whole number such as 4.")
        elif key == "nodes" and value > MAX_NODES:
            errors.append(
                f"-e nodes={value} is more than {MAX_NODES}; a GB10 rack this size is not planned for."
            )
        parsed[key] = value

    # Launch overrides.
    launch: dict[str, Any] = {k: v for k, v in entry_launch.items() if k in PLANNER_LAUNCH_KEYS}
    for key in OVERRIDE_KEYS:
        raw = inputs.get(key)
        if _is_unset(raw) or key in ("tensor_parallel_size", "pipeline_parallel_size"):
            continue
        if key in POSITIVE_INT_KEYS:
            value = as_positive_int(raw)
            if value is None:
                errors.append(f"-e {key}={raw} is not a positive integer.")
            else:
                launch[key] = value
        elif key == "num_speculative_tokens":
            value = as_non_negative_int(raw)
            if value is None:
                errors.append(f"-e num_speculative_tokens={raw} is not a whole number (0 turns MTP off).")
            elif value == 0:
                launch.pop("speculative_config", None)
            else:
                launch["speculative_config"] = {"method": "mtp", "num_speculative_tokens": value}
        elif key == "gpu_memory_utilization":
            fraction = as_fraction(raw)
            if fraction is None:
                errors.append(f"-e gpu_memory_utilization={raw} must be a number in (0, 1], e.g. 0.85.")
            else:
                launch[key] = fraction
        elif key == "enable_prefix_caching":
            flag = as_bool(raw)
            if flag is None:
                errors.append(f"-e enable_prefix_caching={raw} must be true or false.")
            else:
                launch[key] = flag
        elif key == "kv_cache_dtype":
            if str(raw) not in KV_CACHE_DTYPES:
                errors.append(
                    f"-e kv_cache_dtype={raw} is not valid; use one of {', '.join(KV_CACHE_DTYPES)}."
                )
            else:
                launch[key] = str(raw)
        elif key == "dtype":
            if str(raw) not in DTYPES:
                errors.append(f"-e dtype={raw} is not valid; use one of {', '.join(DTYPES)}.")
            else:
                launch[key] = str(raw)
    if entry is None and "max_model_len" not in launch:
        errors.append("-e max_model_len is required with -e model_config (no catalog entry to take it from).")

    params: dict[str, Any] = {}
    weights = inputs.get("weights_bytes")
    if not _is_unset(weights):
        value = as_positive_int(weights)
        if value is None:
            errors.append(f"-e weights_bytes={weights} is not a positive integer (bytes).")
        else:
            params["weights_bytes"] = value
    elif weights_default is not None:
        params["weights_bytes"] = weights_default
    index = inputs.get("safetensors_index")
    if not _is_unset(index):
        index_path = os.path.abspath(os.path.expanduser(str(index)))
        if not os.path.isfile(index_path):
            errors.append(f"-e safetensors_index={index}: no such file; give model.safetensors.index.json.")
        else:
            params["safetensors_index"] = index_path
            if _is_unset(weights):
                params.pop("weights_bytes", None)
    for key in NODE_KEYS:
        raw = inputs.get(key)
        if _is_unset(raw):
            continue
        value = as_non_negative_int(raw) if key == "host_floor_bytes" else as_positive_int(raw)
        if value is None:
            errors.append(f"-e {key}={raw} is not a whole number of bytes.")
        else:
            params[key] = value

    layout: dict[str, Any] | None = None
    if not errors:
        try:
            layout = plan_layout(
                entry_launch,
                parsed["nodes"],
                parsed["tensor_parallel_size"],
                parsed["pipeline_parallel_size"],
            )
        except PlanInputError as exc:
            errors.extend(exc.errors)
    if layout is not None:
        heads = as_positive_int(text_config(config).get("num_attention_heads")) or 1
        if heads % layout["tp"]:
            errors.append(
                f"{layout['nodes']} nodes gives tensor_parallel_size {layout['tp']}, which does not divide "
                f"the model's {heads} attention heads; plan for a node count whose TP divides {heads}."
            )
    if errors:
        raise PlanInputError(errors)
    if layout is None:  # resolve_layout either returns one or reports an error above
        raise PlanInputError(["no layout could be chosen"])

    launch["tensor_parallel_size"] = layout["tp"]
    launch["pipeline_parallel_size"] = layout["pp"]
    params.update(launch)
    params.update(
        {
            "model_config": config_path,
            "platform": platform,
            "nodes": layout["nodes"],
            "fail_on_no_fit": False,
        }
    )
    return {
        "model": label,
        "siblings": catalog_siblings(model if entry is not None else None, config, catalog, root),
        "artifact_stem": f"plan-{_artifact_name(label)}-{layout['nodes']}nodes",
        "catalog_entry": entry is not None,
        "min_nodes": int(entry["min_nodes"]) if entry is not None else None,
        "vllm_release": entry["vllm_release"] if entry is not None else None,
        "config_path": config_path,
        "config": entry["config"] if entry is not None else config_path,
        "layout": layout,
        "params": params,
    }


# --------------------------------------------------------------------------------------------------
# Output


def _gib(value: Any) -> str:
    try:
        return f"{float(value) / GIB:.2f}"
    except (TypeError, ValueError):
        return "-"


def _int(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "-"


TABLE_COLUMNS = (
    ("total", "total_bytes"),
    ("floor", "host_floor_bytes"),
    ("weights", "weights_bytes"),
    ("draft", "draft_bytes"),
    ("activ", "activation_peak_bytes"),
    ("other", "non_torch_bytes"),
    ("cgraph", "cudagraph_bytes"),
    ("KV", "kv_cache_bytes"),
    ("free", "spare_bytes"),
    ("request", "requested_bytes"),
)


def spare_bytes(node: Mapping[str, Any]) -> int:
    """What is left on a node after vLLM's reservation AND the host floor (negative = short)."""
    return int(node.get("free_bytes") or 0) - int(node.get("host_floor_bytes") or 0)


def plan_lines(result: Mapping[str, Any], resolved: Mapping[str, Any]) -> list[str]:
    """The planner's answer as console lines (an Ansible debug ``msg`` list)."""
    params = resolved.get("params", {})
    layout = resolved.get("layout", {})
    spec = params.get("speculative_config") or {}
    fixed_kv = params.get("kv_cache_memory_bytes") is not None
    lines = [
        f"Memory plan for {resolved.get('model')} on {layout.get('nodes')} "
        f"{'GB10 ' if params.get('platform', 'cuda') == 'cuda' else ''}node(s): "
        f"TP={layout.get('tp')} PP={layout.get('pp')} ({layout.get('rule')}); "
        f"planner reproduces vLLM {result.get('vllm_release', '?')}"
        + (f", catalog image carries {resolved['vllm_release']}" if resolved.get("vllm_release") else ""),
        f"Settings: {params.get('platform', 'cuda')}, max_model_len {_int(params.get('max_model_len'))}, "
        f"max_num_seqs {params.get('max_num_seqs', 'default')}, "
        f"max_num_batched_tokens {params.get('max_num_batched_tokens', 'default')}, "
        f"kv_cache_dtype {params.get('kv_cache_dtype', 'auto')}, "
        + (
            f"KV pool fixed at {_gib(params.get('kv_cache_memory_bytes'))} GiB, "
            if fixed_kv
            else f"gpu_memory_utilization {params.get('gpu_memory_utilization', 'default')}, "
        )
        + f"MTP {spec.get('num_speculative_tokens', 0) if spec else 'off'}",
        "GiB per node " + "".join(f"{title:>9}" for title, _ in TABLE_COLUMNS),
    ]
    for node in result.get("per_node") or []:
        row = dict(node)
        row["spare_bytes"] = spare_bytes(node)
        if fixed_kv:
            row["requested_bytes"] = None
        lines.append(
            f"node {node.get('node_rank', '?'):<7}"
            + "".join(f"{_gib(row.get(key)):>9}" for _, key in TABLE_COLUMNS)
        )
    lines.append(
        "(other = NCCL/CUDA context/workspaces; free = total - vLLM's reservation - host floor; "
        "request = total x gpu_memory_utilization, what vLLM asks MemAvailable for)"
    )
    lines.append(
        f"KV cache: {_int(result.get('kv_cache_tokens'))} tokens in {_int(result.get('num_blocks'))} "
        f"blocks of {_int(result.get('block_size'))} tokens; "
        f"{_int(result.get('kv_bytes_per_token'))} bytes/token per rank; "
        f"{_gib(result.get('kv_cache_bytes'))} GiB per node"
    )
    concurrency = result.get("max_concurrency")
    try:
        concurrency_text = f"{float(concurrency):.2f}x"
    except (TypeError, ValueError):
        concurrency_text = "-"
    lines.append(
        f"Max concurrency: {concurrency_text} requests of {_int(result.get('max_model_len'))} tokens; "
        f"largest max_model_len that fits: {_int(result.get('max_model_len_that_fits'))}"
    )
    for check in result.get("checks") or []:
        if isinstance(check, Mapping) and not check.get("ok", True):
            lines.append(f"FAILED {check.get('name')}: {check.get('detail')}")
    min_nodes = resolved.get("min_nodes")
    lines.append(
        f"Fits: {'yes' if result.get('fits') else 'NO'}"
        + (f" (catalog min_nodes {min_nodes})" if min_nodes else "")
    )
    for advice in result.get("advice") or []:
        lines.append(f"Advice: {advice}")
    siblings = sibling_text(resolved)
    if siblings and not result.get("fits"):
        lines.append(f"Catalog: {siblings}")
    return lines


def sibling_text(resolved: Mapping[str, Any]) -> str:
    """'other builds of this model, smallest first: a (221 GB), b (233 GB).' or ''."""
    siblings = resolved.get("siblings") or []
    if not siblings:
        return ""
    parts = [
        (
            f"{item['name']} ({item['checkpoint_bytes'] / 1e9:.0f} GB)"
            if item.get("checkpoint_bytes")
            else item["name"]
        )
        for item in siblings
    ]
    return "other builds of this model, smallest first: " + ", ".join(parts) + "."


def plan_report(result: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON artifact: inputs and the planner's answer, without Ansible's bookkeeping keys."""
    plan = {
        k: v
        for k, v in result.items()
        if k not in ("invocation", "changed", "failed", "msg", "skipped", "diff")
        and not k.startswith("_ansible")
    }
    return {
        "model": resolved.get("model"),
        "nodes": resolved.get("layout", {}).get("nodes"),
        "layout": dict(resolved.get("layout", {})),
        "catalog_entry": resolved.get("catalog_entry"),
        "min_nodes": resolved.get("min_nodes"),
        "catalog_vllm_release": resolved.get("vllm_release"),
        "config": resolved.get("config"),
        "planner_args": dict(resolved.get("params", {})),
        "plan": plan,
    }
