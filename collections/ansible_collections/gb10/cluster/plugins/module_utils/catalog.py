"""The model catalog and the inputs of the memory-fit planner (`plan.yml`, `serve.yml`, `bench/memfit`).

Plain Python with no Ansible imports: the filter plugin ``plugins/filter/catalog.py`` exposes these
functions to the roles, and ``tests/unit/plugins/module_utils/test_catalog.py`` /
``tests/unit/playbooks/test_plan.py`` test them.

- :func:`merge_catalog` builds ``gb10_catalog``: the built-in catalog (``roles/gb10/defaults/main.yml``)
  with the inventory's ``gb10_catalog_extra`` entries over it, every path resolved.
- :func:`catalog_errors` checks the catalog and its config.json copies.
- :func:`planner_args` is THE conversion of a catalog entry plus overrides into the planner's arguments
  (``memfit.plan_memory``); :data:`PLANNER_SETTINGS` lists the launch settings it knows.
- :func:`resolve_plan` checks ``plan.yml``'s ``-e`` variables, picks the TP/PP layout for the node count
  and calls :func:`planner_args`; every mistake is one sentence.
- :func:`plan_lines` / :func:`plan_report` format the planner's answer for the console and the JSON file.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from typing import Any, NamedTuple

from ansible_collections.gb10.cluster.plugins.module_utils import (
    serving as _serving,  # module, not name: serving imports catalog too
)
from ansible_collections.gb10.cluster.plugins.module_utils.calibration import (
    CalibrationError,
    calibration_overrides,
    find_calibration,
    load_calibration,
)

# The one reading of a config.json's text part, shared with the planner (plain Python, no Ansible).
from ansible_collections.gb10.cluster.plugins.module_utils.memfit import PlanError, failed_lines, plan_memory
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_model import text_config
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_settings import (
    GB10_CUDA_TOTAL_BYTES,
    GB10_PLANNING_MEM_AVAILABLE_BYTES,
    KV_CACHE_DTYPES,
    MAMBA_SSM_DTYPES,
    MEMORY_MODES,
    PLATFORMS,
)
from ansible_collections.gb10.cluster.plugins.module_utils.memfit_settings import MODEL_DTYPES as DTYPES

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
SPEC_METHODS = ("mtp",)
# Where a model's files come from (an entry's optional `weights`): Hugging Face, or a folder on the
# control machine (`dir`) that the weights role stages to the nodes.
WEIGHTS_SOURCES = ("hf", "controller")
WEIGHTS_KEYS = ("source", "dir")


class Setting(NamedTuple):
    """How one launch setting is read: ``count`` (a positive integer), ``fraction`` (in (0, 1]),
    ``flag`` (true / false), ``choice`` (one of ``choices``) or ``mtp`` (the speculative config)."""

    kind: str
    choices: tuple[str, ...] = ()
    catalog: bool = True  # a catalog entry's launch may set it (vllm_serve passes it on to vLLM)
    example: str = ""  # a valid -e value, for the sentence that refuses a wrong one


# The launch settings the planner models, by vLLM's names (the planner's parameters of the same name).
# One row each: the catalog's checks, the -e overrides and planner_args all read this table, so a new
# launch setting is a row here plus its use in memfit.
PLANNER_SETTINGS: dict[str, Setting] = {
    "tensor_parallel_size": Setting("count", example="4"),
    "pipeline_parallel_size": Setting("count", example="2"),
    "max_model_len": Setting("count", example="131072"),
    "max_num_seqs": Setting("count", example="16"),
    "max_num_batched_tokens": Setting("count", example="8192"),
    "kv_cache_dtype": Setting("choice", KV_CACHE_DTYPES),
    "block_size": Setting("count", example="16"),
    "enable_prefix_caching": Setting("flag"),
    # How vLLM sizes the KV pool (the planner's memory_mode; vllm_serve passes no flag of that name):
    # bytes = --kv-cache-memory-bytes from the planner, fraction = --gpu-memory-utilization alone.
    "memory_mode": Setting("choice", MEMORY_MODES),
    "gpu_memory_utilization": Setting("fraction"),
    "kv_cache_memory_bytes": Setting("count", example="12884901888"),
    "speculative_config": Setting("mtp"),
    "dtype": Setting("choice", DTYPES),
    # vllm_serve does not pass --mamba-ssm-cache-dtype: an -e what-if and a bench/memfit setting only.
    "mamba_ssm_cache_dtype": Setting("choice", MAMBA_SSM_DTYPES, catalog=False),
}
# What is wrong with a setting's value, after "<where>.launch.<key>" (catalog) or "-e <key>=<value>".
CATALOG_REASONS = {
    "count": "must be a positive integer, not {raw!r}.",
    "fraction": "must be a number in (0, 1].",
    "flag": "must be true or false.",
    "choice": "must be one of {choices}.",
    "mtp": "must be {{method: mtp, num_speculative_tokens: N>0}}.",
}
OVERRIDE_REASONS = {
    "count": "is not a positive integer; give a whole number such as {example}.",
    "fraction": "must be a number in (0, 1], e.g. 0.85 (or leave it out: in bytes mode the planner chooses it).",
    "flag": "must be true or false.",
    "choice": "is not valid; use one of {choices}.",
}
# Launch settings the planner reads that a catalog entry may set.
PLANNER_LAUNCH_KEYS = tuple(key for key, setting in PLANNER_SETTINGS.items() if setting.catalog)
# Launch settings only the serving play reads; allowed in the catalog, ignored by the planner.
SERVE_LAUNCH_KEYS = (
    "tool_call_parser",
    "reasoning_parser",
    "enable_auto_tool_choice",
    "trust_remote_code",
    "load_format",
    "quantization",
)
POSITIVE_INT_KEYS = tuple(key for key, setting in PLANNER_SETTINGS.items() if setting.kind == "count")
# Operator -e variables that override a launch setting (same names as the launch keys; MTP by depth,
# the KV pool also in GiB).
OVERRIDE_KEYS = tuple(k for k in PLANNER_SETTINGS if k != "speculative_config") + (
    "num_speculative_tokens",
    "kv_cache_gib",
)
# Operator -e variables passed straight to the planner.
NODE_KEYS = ("node_memory_total_bytes", "node_mem_available_bytes", "host_floor_bytes")
# Everything planner_args takes as an override.
ARG_KEYS = (
    *OVERRIDE_KEYS,
    "nodes",
    "platform",
    "weights_bytes",
    "safetensors_index",
    *NODE_KEYS,
    "measured_memory",
    "calibration",
)
# plan.yml's -e inputs: the model, and every override (the TP/PP layout follows -e nodes).
PLAN_INPUT_KEYS = ("model", "model_config", "model_name", *ARG_KEYS)
# Where each planner input came from, as plan.yml shows it.
SOURCE_CATALOG, SOURCE_OVERRIDE, SOURCE_DEFAULT = "catalog", "-e", "default"
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


def as_positive_number(value: Any) -> float | None:
    """Return ``value`` as a finite float > 0 (12, 12.5, "12.5"), or None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if 0.0 < number < float("inf") else None


def as_fraction(value: Any) -> float | None:
    """Return ``value`` as a float in (0, 1], or None."""
    number = as_positive_number(value)
    return number if number is not None and number <= 1.0 else None


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


def _read_setting(setting: Setting, raw: Any, from_catalog: bool) -> Any:
    """One launch setting's value, or None when it is not valid. The catalog (YAML) gives flags and
    choices as such; an -e override may spell them as strings ("true", "fp8", "0.85")."""
    if setting.kind == "count":
        return as_positive_int(raw)
    if setting.kind == "fraction":
        return as_fraction(raw)
    if setting.kind == "flag":
        return raw if isinstance(raw, bool) else (None if from_catalog else as_bool(raw))
    if setting.kind == "choice":
        value = raw if from_catalog else str(raw)
        return value if value in setting.choices else None
    if raw is None:  # mtp: speculative_config: null is no speculative decoding
        return {}
    ok = (
        isinstance(raw, Mapping)
        and raw.get("method") in SPEC_METHODS
        and as_positive_int(raw.get("num_speculative_tokens")) is not None
    )
    return raw if ok else None


def _reason(reasons: Mapping[str, str], setting: Setting, raw: Any) -> str:
    return reasons[setting.kind].format(raw=raw, choices=", ".join(setting.choices), example=setting.example)


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
    for key in PLANNER_LAUNCH_KEYS:
        setting = PLANNER_SETTINGS[key]
        if key in launch and _read_setting(setting, launch[key], from_catalog=True) is None:
            errors.append(f"{where}.launch.{key} {_reason(CATALOG_REASONS, setting, launch[key])}")
    for key in ("tensor_parallel_size", "pipeline_parallel_size", "max_model_len"):
        if key not in launch:
            errors.append(f"{where}.launch.{key} is required.")
    for key in ("enable_auto_tool_choice", "trust_remote_code"):
        if key in launch and not isinstance(launch[key], bool):
            errors.append(f"{where}.launch.{key} must be true or false.")
    return errors


# --------------------------------------------------------------------------------------------------
# What a GB10 recipe adds to the launch settings: extra vLLM flags (an entry's optional `vllm_flags`)
# and its environment (`env`). NVIDIA's and the community's recipes pick the attention or MoE backend,
# the compilation (CUDA graph) mode, eager mode, expert parallelism and a few loader settings per model;
# these are the flags an entry may add. Everything the play derives itself (layout, memory, address,
# model name, executor) is refused here with the place it comes from.


class ExtraFlag(NamedTuple):
    """An extra vLLM flag: ``text`` (a word such as TRITON_ATTN), ``int`` (a positive integer),
    ``bool`` (true: the bare flag; false: --no-<flag>, only where vLLM has it) or ``json`` (a mapping,
    passed as compact JSON)."""

    kind: str
    negatable: bool = False


# vLLM's spelling, without the leading dashes.
VLLM_EXTRA_FLAGS: dict[str, ExtraFlag] = {
    "attention-backend": ExtraFlag("text"),
    "moe-backend": ExtraFlag("text"),
    "compilation-config": ExtraFlag("json"),
    "enforce-eager": ExtraFlag("bool"),
    "async-scheduling": ExtraFlag("bool", negatable=True),
    "enable-chunked-prefill": ExtraFlag("bool", negatable=True),
    "enable-expert-parallel": ExtraFlag("bool"),
    "disable-custom-all-reduce": ExtraFlag("bool"),
    "max-cudagraph-capture-size": ExtraFlag("int"),
    "safetensors-load-strategy": ExtraFlag("text"),
    "model-loader-extra-config": ExtraFlag("json"),
    "hf-overrides": ExtraFlag("json"),
    "override-generation-config": ExtraFlag("json"),
    "generation-config": ExtraFlag("text"),
    "default-chat-template-kwargs": ExtraFlag("json"),
    "limit-mm-per-prompt": ExtraFlag("json"),
    "mm-encoder-tp-mode": ExtraFlag("text"),
    "tokenizer-mode": ExtraFlag("text"),
    "max-logprobs": ExtraFlag("int"),
}
# Flags the serving play sets itself, and where an entry says it instead.
VLLM_PLAY_FLAGS: dict[str, str] = {
    **{key.replace("_", "-"): f"launch.{key}" for key in (*PLANNER_LAUNCH_KEYS, *SERVE_LAUNCH_KEYS)},
    "kv-cache-memory-bytes": "the memory planner (launch.memory_mode)",
    "gpu-memory-utilization": "the memory planner (launch.memory_mode)",
    "speculative-config": "launch.speculative_config",
    "served-model-name": "serve.yml (the catalog name)",
    "model": "serve.yml (the staged weights)",
    "host": "serve.yml (vllm_serve_api_host)",
    "port": "serve.yml (vllm_serve_api_port)",
    "api-key": "ansible-vault (vllm_serve_api_key)",
    "distributed-executor-backend": "serve.yml (serving.executor)",
    "nnodes": "serve.yml (the layout)",
    "node-rank": "serve.yml (the layout)",
    "master-addr": "serve.yml (the head's fabric address)",
    "master-port": "serve.yml (vllm_serve_master_port)",
    "headless": "serve.yml (the layout)",
    "data-parallel-size": "serve.yml (one GPU per node: the layout is TP x PP)",
    "mamba-ssm-cache-dtype": "the memory planner (not passed by vllm_serve; plan.yml -e mamba_ssm_cache_dtype)",
}
# Environment the serving play sets itself (the fabric's NCCL/Gloo/UCX/Ray settings come from nccl_env,
# the addresses from the inventory), by exact name or prefix.
PLAY_ENV_NAMES = {
    "VLLM_HOST_IP": "the node's fabric address",
    "RAY_ADDRESS": "the Ray head",
    "RAY_NODE_IP_ADDRESS": "the node's fabric address",
    "RAY_OVERRIDE_NODE_IP_ADDRESS": "the node's fabric address",
    "MASTER_ADDR": "the head's fabric address",
    "HF_HUB_OFFLINE": "serve.yml (the weights are staged, never fetched by vLLM)",
    "VLLM_API_KEY": "ansible-vault (vllm_serve_api_key)",
}
PLAY_ENV_PREFIXES = ("NCCL_", "GLOO_", "UCX_", "TP_SOCKET_", "OMPI_MCA_")
ENV_NAME_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
FLAG_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
TEXT_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:/+=-]{1,200}$")
# Names and values that hold a credential: secrets live in ansible-vault, never in the catalog.
SECRET_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS", "AUTH"}
SECRET_VALUE_RE = re.compile(r"(^|[^A-Za-z0-9])(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{16,}|nvapi-[A-Za-z0-9_-]{16,})")


def _secret_name(name: str) -> bool:
    return any(part in SECRET_WORDS for part in re.split(r"[_-]", name.upper()))


def _secret_value(value: Any) -> bool:
    return bool(SECRET_VALUE_RE.search(json.dumps(value) if not isinstance(value, str) else value))


def _vault_hint() -> str:
    return ("secrets live in ansible-vault (vllm_serve_api_key, gb10_hf_token) and reach the containers "
            "through env files, never through the catalog")


def _flag_value_error(flag: str, spec: ExtraFlag, value: Any) -> str | None:
    if spec.kind == "bool":
        if not isinstance(value, bool):
            return "must be true or false."
        if value is False and not spec.negatable:
            return "has no --no- form in vLLM; leave it out to keep it off."
        return None
    if spec.kind == "int":
        return None if as_positive_int(value) is not None and not isinstance(value, str) else "must be a positive integer."
    if spec.kind == "json":
        if not isinstance(value, Mapping) or not value:
            return "must be a non-empty mapping (passed to vLLM as JSON)."
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            return "must hold only strings, numbers, booleans, lists and mappings."
        return None
    if not isinstance(value, str) or not TEXT_VALUE_RE.match(value):
        return "must be one word (letters, digits and _ . : / + = -), e.g. TRITON_ATTN."
    return None


def vllm_flags_errors(where: str, flags: Any) -> list[str]:
    """What is wrong with an entry's ``vllm_flags`` (flag name -> value), one sentence each."""
    if flags is None:
        return []
    if not isinstance(flags, Mapping):
        return [f"{where}.vllm_flags must map vLLM flag names (without --) to values, e.g. {{attention-backend: TRITON_ATTN}}."]
    errors: list[str] = []
    for raw_name, value in flags.items():
        name = str(raw_name)
        flag = name[2:] if name.startswith("--") else name
        if _secret_name(flag) or _secret_value(value):
            errors.append(f"{where}.vllm_flags.{name} looks like a secret; remove it: {_vault_hint()}.")
        elif flag in VLLM_PLAY_FLAGS or flag.replace("_", "-") in VLLM_PLAY_FLAGS:
            errors.append(f"{where}.vllm_flags.{name} is set by the serving play; give it in "
                          f"{VLLM_PLAY_FLAGS.get(flag, VLLM_PLAY_FLAGS.get(flag.replace('_', '-')))} instead.")
        elif name.startswith("--") or not FLAG_NAME_RE.match(flag):
            errors.append(f"{where}.vllm_flags.{name}: write the flag as vLLM spells it without the dashes, "
                          f"e.g. {flag.lstrip('-').replace('_', '-')}.")
        elif flag not in VLLM_EXTRA_FLAGS:
            errors.append(f"{where}.vllm_flags.{name} is not a flag the catalog knows; use one of "
                          f"{', '.join(sorted(VLLM_EXTRA_FLAGS))} (docs/catalog.md, 'Recipe flags').")
        else:
            problem = _flag_value_error(flag, VLLM_EXTRA_FLAGS[flag], value)
            if problem:
                errors.append(f"{where}.vllm_flags.{name} {problem}")
    return errors


def env_errors(where: str, env: Any) -> list[str]:
    """What is wrong with an entry's ``env`` (variable name -> string), one sentence each."""
    if not (isinstance(env, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
        return [f"{where}.env must map variable names to strings (quote numbers)."]
    errors: list[str] = []
    for name, value in env.items():
        if not ENV_NAME_RE.match(name):
            errors.append(f"{where}.env.{name} is not an environment variable name; use capitals, digits and _.")
        elif _secret_name(name) or _secret_value(value):
            errors.append(f"{where}.env.{name} looks like a secret; remove it: {_vault_hint()}.")
        elif name in PLAY_ENV_NAMES:
            errors.append(f"{where}.env.{name} is set by the serving play from {PLAY_ENV_NAMES[name]}; remove it.")
        elif name.startswith(PLAY_ENV_PREFIXES):
            errors.append(f"{where}.env.{name} is fabric environment the serving play sets from the inventory "
                          "(nccl_env_* settings, docs/fabric.md); set it there, not per model.")
    return errors


def vllm_flag_args(flags: Mapping[str, Any] | None) -> list[str]:
    """An entry's ``vllm_flags`` as vLLM CLI words, in the entry's order (checked by
    :func:`vllm_flags_errors`): ``--flag value``, ``--flag`` / ``--no-flag``, or ``--flag {json}``."""
    args: list[str] = []
    for name, value in (flags or {}).items():
        if value is True:
            args.append(f"--{name}")
        elif value is False:
            args.append(f"--no-{name}")
        elif isinstance(value, Mapping):
            args += [f"--{name}", json.dumps(value, sort_keys=True, separators=(",", ":"))]
        else:
            args += [f"--{name}", str(value)]
    return args


def _memory_mode_errors(where: str, launch: Any, platform: Any) -> list[str]:
    """On CUDA the KV pool is sized in bytes by the planner unless the entry asks for the fraction mode,
    and then it names its fraction (docs/memory-planner.md, "Bytes and fraction")."""
    if not isinstance(launch, Mapping) or platform != "cuda":
        return []
    mode = launch.get("memory_mode", "bytes")
    if mode == "fraction" and "gpu_memory_utilization" not in launch:
        return [f"{where}.launch.memory_mode is fraction but gives no gpu_memory_utilization; add it, or use memory_mode bytes."]
    if mode == "bytes" and "gpu_memory_utilization" in launch:
        return [
            f"{where}.launch.gpu_memory_utilization is set but the memory mode is bytes, where the planner chooses it; "
            "remove it, or set memory_mode: fraction to let vLLM size the KV pool from it."
        ]
    if mode == "bytes" and "kv_cache_memory_bytes" in launch:
        return [
            f"{where}.launch.kv_cache_memory_bytes would fix the KV pool for every rack; leave it to the planner "
            "(it follows the nodes' measured MemAvailable) or give it at run time with -e kv_cache_gib."
        ]
    return []


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
    errors.extend(env_errors(where, entry["env"]))
    errors.extend(vllm_flags_errors(where, entry.get("vllm_flags")))
    errors.extend(_launch_errors(where, entry["launch"]))
    errors.extend(_memory_mode_errors(where, entry["launch"], entry["platform"]))
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


def _launch_overrides(
    launch: dict[str, Any], overrides: Mapping[str, Any], errors: list[str], sources: dict[str, str]
) -> None:
    """Apply the -e launch overrides (OVERRIDE_KEYS) to ``launch``; one sentence per bad value. Every
    setting taken from the command line is marked ``-e`` in ``sources``."""
    for key, setting in PLANNER_SETTINGS.items():
        raw = overrides.get(key)
        if _is_unset(raw) or setting.kind == "mtp":
            continue
        value = _read_setting(setting, raw, from_catalog=False)
        if value is None:
            errors.append(f"-e {key}={raw} {_reason(OVERRIDE_REASONS, setting, raw)}")
        else:
            launch[key] = value
            sources[key] = SOURCE_OVERRIDE
    raw = overrides.get("num_speculative_tokens")
    if not _is_unset(raw):
        depth = as_non_negative_int(raw)
        sources["speculative_config"] = SOURCE_OVERRIDE
        if depth is None:
            errors.append(f"-e num_speculative_tokens={raw} is not a whole number; give 2 for two MTP tokens, 0 for no MTP.")
        elif depth == 0:
            launch.pop("speculative_config", None)
        else:
            launch["speculative_config"] = {"method": "mtp", "num_speculative_tokens": depth}
    raw = overrides.get("kv_cache_gib")
    if not _is_unset(raw):
        gib = as_positive_number(raw)
        if gib is None:
            errors.append(f"-e kv_cache_gib={raw} is not a positive number of GiB; give the KV pool per node, e.g. 12 or 12.5.")
        elif not _is_unset(overrides.get("kv_cache_memory_bytes")):
            errors.append(
                "-e kv_cache_gib and -e kv_cache_memory_bytes both set the KV pool; give one of them."
            )
        else:
            launch["kv_cache_memory_bytes"] = int(gib * GIB)
            sources["kv_cache_memory_bytes"] = SOURCE_OVERRIDE


def _memory_mode(launch: dict[str, Any], overrides: Mapping[str, Any], platform: str, sources: dict[str, str],
                 errors: list[str]) -> None:
    """How vLLM sizes the KV pool (docs/memory-planner.md, "Bytes and fraction"):

    - a KV pool on the command line (-e kv_cache_gib / kv_cache_memory_bytes) means bytes;
    - -e gpu_memory_utilization without one means the operator asks for the fraction mode;
    - otherwise the entry's memory_mode, and on CUDA bytes when the entry says nothing.
    -e memory_mode wins over all of these; it cannot be fraction with a KV pool on the command line.
    """
    given = {key: not _is_unset(overrides.get(key)) for key in ("memory_mode", "gpu_memory_utilization")}
    kv_given = any(not _is_unset(overrides.get(key)) for key in ("kv_cache_gib", "kv_cache_memory_bytes"))
    if given["memory_mode"]:
        if launch.get("memory_mode") == "fraction" and kv_given:
            kv = "kv_cache_gib" if not _is_unset(overrides.get("kv_cache_gib")) else "kv_cache_memory_bytes"
            errors.append(
                f"-e memory_mode=fraction lets vLLM size the KV pool from gpu_memory_utilization, so -e {kv} "
                "cannot go with it; drop one of them."
            )
        return
    if kv_given:
        launch["memory_mode"] = "bytes"
        sources["memory_mode"] = "implied by the -e KV pool"
    elif given["gpu_memory_utilization"]:
        launch["memory_mode"] = "fraction"
        launch.pop("kv_cache_memory_bytes", None)
        sources["memory_mode"] = "implied by -e gpu_memory_utilization"
    elif platform == "cuda" and "memory_mode" not in launch:
        launch["memory_mode"] = "bytes"
        sources["memory_mode"] = SOURCE_DEFAULT


def _override_conflicts(
    launch: Mapping[str, Any], overrides: Mapping[str, Any], config: Mapping[str, Any] | None, sources: Mapping[str, str]
) -> list[str]:
    """Overrides that are valid alone but not with the rest of the plan: one sentence each, naming the -e."""
    errors: list[str] = []

    def where(key: str) -> str:
        return f"-e {key}" if sources.get(key) == SOURCE_OVERRIDE else f"the catalog's {key}"

    from_cli = {key for key, source in sources.items() if source == SOURCE_OVERRIDE}
    seqs, mbt = as_positive_int(launch.get("max_num_seqs")), as_positive_int(launch.get("max_num_batched_tokens"))
    if seqs and mbt and mbt < seqs and {"max_num_seqs", "max_num_batched_tokens"} & from_cli:
        errors.append(
            f"{where('max_num_batched_tokens')}={mbt} is below {where('max_num_seqs')}={seqs}; vLLM needs "
            "max_num_batched_tokens >= max_num_seqs, so raise the first or lower the second."
        )
    if config is None:
        return errors
    text = text_config(config)
    longest = as_positive_int(text.get("max_position_embeddings"))
    length = as_positive_int(launch.get("max_model_len"))
    if "max_model_len" in from_cli and longest and length and length > longest:
        errors.append(
            f"-e max_model_len={length} is more than the model's max_position_embeddings ({longest}); "
            f"give at most {longest}."
        )
    spec = launch.get("speculative_config") or {}
    depth = int(spec.get("num_speculative_tokens") or 0) if isinstance(spec, Mapping) else 0
    mtp_layers = as_non_negative_int(text.get("mtp_num_hidden_layers", text.get("num_nextn_predict_layers"))) or 0
    if "speculative_config" in from_cli and depth and not mtp_layers:
        arch = (config.get("architectures") or ["the model"])[0]
        errors.append(
            f"-e num_speculative_tokens={depth} asks for MTP, but {arch} has no MTP layers in its config; use 0."
        )
    return errors


def apply_calibration(params: dict[str, Any], record: Mapping[str, Any] | None, sources: dict[str, str]) -> dict[str, Any]:
    """Measured figures of a calibration record over the planner's estimates, where they apply to
    ``params`` (:func:`calibration.calibration_overrides`); marks them ``calibration`` in ``sources`` and
    returns what was used and skipped. Figures the operator gave stay theirs."""
    if not record:
        return {"used": [], "skipped": []}
    found = calibration_overrides(record, params)
    for key, value in found["set"].items():
        if sources.get(key) == SOURCE_OVERRIDE:
            continue
        params[key] = value
        sources[key] = "calibration"
    return {"used": found["used"], "skipped": found["skipped"]}


def _node_memory(
    params: dict[str, Any], overrides: Mapping[str, Any], platform: str, errors: list[str], sources: dict[str, str]
) -> None:
    """The node figures: measured unless given. The smallest MemAvailable (one KV pool leaves every node
    its floor). The total is measured too, never a constant: on a GB10 CUDA's total is the host's MemTotal
    byte for byte and varies with the OS image (docs/memory-planner.md); there the largest, so that the
    one utilization passes vLLM's admission check on every node (each requests utilization x its own
    total); on the CPU build the smallest node's (or its container's) memory."""
    measured = overrides.get("measured_memory")
    if not _is_unset(measured):
        try:
            params["node_mem_available_bytes"] = min(int(node["mem_available"]) for node in measured)
            sources["node_mem_available_bytes"] = "measured"
            totals = [int(node["mem_total"]) for node in measured]
            params["node_memory_total_bytes"] = min(totals) if platform == "cpu" else max(totals)
            sources["node_memory_total_bytes"] = "measured"
        except (TypeError, KeyError, ValueError):
            errors.append(
                "measured_memory must list each node's {mem_total, mem_available} in bytes "
                "(gb10.cluster.memory_facts), at least one node."
            )
    for key in NODE_KEYS:
        raw = overrides.get(key)
        if _is_unset(raw):
            continue
        value = as_non_negative_int(raw) if key == "host_floor_bytes" else as_positive_int(raw)
        if value is None:
            errors.append(f"-e {key}={raw} is not a whole number of bytes.")
        else:
            params[key] = value
            sources[key] = SOURCE_OVERRIDE


def planner_args(
    entry: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, root: str = ""
) -> dict[str, Any]:
    """A catalog entry plus overrides -> the planner's arguments: the one conversion.

    plan.yml (through :func:`resolve_plan`), serve.yml's fit check and bench/memfit all use it; the
    result goes to ``memfit.plan_memory`` (the ``gb10.cluster.plan_memory`` filter) or as the arguments
    of the ``gb10.cluster.memory_fit`` module.

    ``entry``: a catalog entry as :func:`entry_errors` accepts it (``config`` relative to ``root`` or
    absolute; ``platform``, ``launch``, ``env``, ``checkpoint_bytes`` optional). The planner's settings
    of ``launch`` are taken (:data:`PLANNER_SETTINGS`); on the CPU build the KV pool is the entry's
    ``env.VLLM_CPU_KVCACHE_SPACE`` GiB when set, as vLLM's CPU worker sizes it. On CUDA the memory mode
    is bytes unless the entry or the overrides say otherwise (:func:`_memory_mode`).

    ``overrides`` win over the entry; as -e strings or native values, '' or None = unset
    (:data:`ARG_KEYS`): the launch settings, ``num_speculative_tokens`` (MTP depth, 0 = off),
    ``kv_cache_gib`` (the KV pool per node in GiB), ``nodes``, ``platform``, ``weights_bytes`` /
    ``safetensors_index`` (instead of ``checkpoint_bytes``), ``node_memory_total_bytes``,
    ``node_mem_available_bytes``, ``host_floor_bytes``, ``measured_memory``: ``[{mem_total,
    mem_available}]`` per node (``memory_facts``), giving the smallest MemAvailable and, on the CPU
    build, the smallest total; and ``calibration``: a calibration record (``calibration.find_calibration``)
    whose measured figures replace the estimates where they apply.

    Raises PlanInputError listing every mistake.
    """
    return convert(entry, overrides, root)[0]


def convert(
    entry: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, root: str = ""
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """:func:`planner_args` with where each value came from (``catalog``, ``-e``, ``default``,
    ``measured``, ``calibration``) and what the calibration record gave (used / skipped)."""
    overrides = overrides or {}
    errors = [
        f"{key} is not a planner input; use one of {', '.join(ARG_KEYS)}."
        for key in overrides
        if key not in ARG_KEYS and not _is_unset(overrides[key])
    ]
    platform = str(entry.get("platform") or "cuda")
    if not _is_unset(overrides.get("platform")):
        platform = str(overrides["platform"]).strip()
        if platform not in PLATFORMS:
            errors.append(f"-e platform={platform} is not valid; use one of {', '.join(PLATFORMS)}.")

    launch: dict[str, Any] = {k: v for k, v in (entry.get("launch") or {}).items() if k in PLANNER_SETTINGS}
    sources = dict.fromkeys(launch, SOURCE_CATALOG)
    space = (entry.get("env") or {}).get("VLLM_CPU_KVCACHE_SPACE")
    if platform == "cpu" and not _is_unset(space):
        if as_positive_int(space) is None:
            errors.append(f"env VLLM_CPU_KVCACHE_SPACE={space} is not a whole number of GiB.")
        else:
            launch["kv_cache_memory_bytes"] = as_positive_int(space) * GIB
            sources["kv_cache_memory_bytes"] = "catalog VLLM_CPU_KVCACHE_SPACE"
    _launch_overrides(launch, overrides, errors, sources)
    _memory_mode(launch, overrides, platform, sources, errors)
    config: Mapping[str, Any] | None = None
    try:
        config = load_model_config(os.path.join(root, str(entry["config"])))
    except (ValueError, KeyError):
        config = None  # the entry's own checks say what is wrong with it
    errors.extend(_override_conflicts(launch, overrides, config, sources))

    params: dict[str, Any] = {}
    nodes = overrides.get("nodes")
    if not _is_unset(nodes):
        if as_positive_int(nodes) is None:
            errors.append(f"-e nodes={nodes} is not a positive integer; give a whole number such as 4.")
        else:
            params["nodes"] = as_positive_int(nodes)
    weights = overrides.get("weights_bytes")
    if not _is_unset(weights):
        value = as_positive_int(weights)
        if value is None:
            errors.append(f"-e weights_bytes={weights} is not a positive integer (bytes).")
        else:
            params["weights_bytes"] = value
            sources["weights_bytes"] = SOURCE_OVERRIDE
    elif as_positive_int(entry.get("checkpoint_bytes")) is not None:
        params["weights_bytes"] = as_positive_int(entry.get("checkpoint_bytes"))
        sources["weights_bytes"] = "catalog checkpoint_bytes"
    index = overrides.get("safetensors_index")
    if not _is_unset(index):
        index_path = os.path.abspath(os.path.expanduser(str(index)))
        if not os.path.isfile(index_path):
            errors.append(f"-e safetensors_index={index}: no such file; give model.safetensors.index.json.")
        else:
            params["safetensors_index"] = index_path
            sources["weights_bytes"] = "-e safetensors_index"
            if _is_unset(weights):
                params.pop("weights_bytes", None)
    _node_memory(params, overrides, platform, errors, sources)
    record = overrides.get("calibration")
    if not _is_unset(record) and record is not False and not isinstance(record, Mapping):
        errors.append("calibration must be a calibration record (gb10.cluster.calibration_record) or false.")
    if errors:
        raise PlanInputError(errors)
    params.update(launch)
    params.update({"model_config": os.path.join(root, str(entry["config"])), "platform": platform})
    report = apply_calibration(params, record if isinstance(record, Mapping) else None, sources)
    return params, sources, report


# serve.yml's -e overrides: the launch settings plan.yml takes (by the same names, checked the same way).
# The node figures are measured by serve.yml just before the start, and the layout follows -e nodes.
SERVE_OVERRIDE_KEYS = tuple(k for k in OVERRIDE_KEYS if k not in ("tensor_parallel_size", "pipeline_parallel_size"))
SERVE_REFUSED_KEYS = {
    "tensor_parallel_size": "serve.yml lays the model out by -e nodes=N (the catalog's serving.layouts); "
                            "drop -e tensor_parallel_size and give -e nodes.",
    "pipeline_parallel_size": "serve.yml lays the model out by -e nodes=N (the catalog's serving.layouts); "
                              "drop -e pipeline_parallel_size and give -e nodes.",
    "node_memory_total_bytes": "serve.yml measures MemTotal on every serving node; -e node_memory_total_bytes is "
                               "for plan.yml (set vllm_serve_node_memory_total_bytes in the inventory to force it).",
    "node_mem_available_bytes": "serve.yml measures MemAvailable on every serving node just before the start; "
                                "-e node_mem_available_bytes is for plan.yml.",
    "host_floor_bytes": "serve.yml keeps the inventory's host floor (vllm_serve_host_floor_bytes, and the guard's); "
                        "-e host_floor_bytes is for plan.yml.",
    "weights_bytes": "serve.yml serves the catalog's checkpoint; -e weights_bytes is for plan.yml.",
    "safetensors_index": "serve.yml serves the catalog's checkpoint; -e safetensors_index is for plan.yml.",
    "platform": "serve.yml serves the catalog entry's platform; -e platform is for plan.yml.",
}


def serve_launch(
    name: str, entry: Mapping[str, Any], overrides: Mapping[str, Any] | None, root: str = ""
) -> dict[str, Any]:
    """serve.yml's -e overrides applied to a catalog entry's launch: ``{launch, sources, given}``, the
    launch settings vLLM is started with (the same reading as plan.yml's: :func:`_launch_overrides`,
    :func:`_memory_mode`, :func:`_override_conflicts`). Unset values ('' or None) are ignored.
    Raises PlanInputError with one sentence per mistake."""
    overrides = {k: v for k, v in dict(overrides or {}).items() if not _is_unset(v)}
    errors = [f"-e {key}: {SERVE_REFUSED_KEYS[key]}" for key in overrides if key in SERVE_REFUSED_KEYS]
    picked = {k: v for k, v in overrides.items() if k in SERVE_OVERRIDE_KEYS}
    launch: dict[str, Any] = dict(entry.get("launch") or {})
    sources: dict[str, str] = {}
    platform = str(entry.get("platform") or "cuda")
    _launch_overrides(launch, picked, errors, sources)
    if picked:
        _memory_mode(launch, picked, platform, sources, errors)
        if platform == "cpu" and any(k in picked for k in ("kv_cache_gib", "kv_cache_memory_bytes", "memory_mode",
                                                             "gpu_memory_utilization")):
            errors.append(
                f"{name} runs vLLM's CPU build, which sizes its KV pool from VLLM_CPU_KVCACHE_SPACE (the catalog "
                "entry's env), not from the memory flags; drop the -e KV or utilization settings."
            )
    config: Mapping[str, Any] | None = None
    try:
        config = load_model_config(os.path.join(root, str(entry["config"])))
    except (ValueError, KeyError):
        config = None
    errors.extend(_override_conflicts(launch, picked, config, sources))
    if errors:
        raise PlanInputError(errors)
    return {"launch": launch, "sources": {k: v for k, v in sources.items() if v != SOURCE_DEFAULT}, "given": picked}


def resolve_plan(
    inputs: Mapping[str, Any],
    catalog: Mapping[str, Any],
    root: str,
    image_pins: Mapping[str, Any] | None = None,
    calibration_dir: str = "",
) -> dict[str, Any]:
    """Check plan.yml's inputs, choose the TP/PP layout and build the planner's arguments.

    ``inputs`` holds the play's -e variables (:data:`PLAN_INPUT_KEYS`): model or model_config (and
    model_name), nodes, and the overrides :func:`planner_args` takes, plus ``calibration`` (true by
    default: the file for the model, image and layout under ``calibration_dir``; false: none; or the
    path of a calibration file). Unset values are None or ''. ``image_pins`` is the inventory's
    ``gb10_image_pins`` (which image, hence which calibration). Nodes nobody measured are planned as a
    headless GB10 (MemTotal 121.69 GiB, MemAvailable 101 GiB).
    Raises PlanInputError listing every mistake.
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
        planned: Mapping[str, Any] = entry
    else:
        config_path = os.path.abspath(os.path.expanduser(str(model_config).strip()))
        if not os.path.isfile(config_path):
            raise PlanInputError(
                [f"-e model_config={model_config}: no such file; give the path of a config.json."]
            )
        label = str(inputs.get("model_name") or "").strip() or os.path.basename(os.path.dirname(config_path))
        planned = {"config": config_path, "platform": "cuda", "launch": {}}

    try:
        config = load_model_config(config_path)
    except ValueError as exc:
        raise PlanInputError([str(exc)]) from exc
    errors.extend(config_errors(config, config_path))

    # Node count and parallelism: the layout rule below decides TP and PP.
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

    # Everything else: the one conversion.
    skip = ("model", "model_config", "model_name", "calibration", *parsed)
    overrides = {k: v for k, v in inputs.items() if k not in skip}
    params: dict[str, Any] = {}
    sources: dict[str, str] = {}
    try:
        params, sources, _ = convert(planned, overrides, root)
    except PlanInputError as exc:
        errors.extend(exc.errors)
    calibration_wanted = _calibration_input(inputs.get("calibration"), errors)
    if entry is None and _is_unset(inputs.get("max_model_len")):
        errors.append("-e max_model_len is required with -e model_config (no catalog entry to take it from).")

    layout: dict[str, Any] | None = None
    if not errors:
        try:
            layout = plan_layout(
                planned["launch"],
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

    params.update(
        {
            "tensor_parallel_size": layout["tp"],
            "pipeline_parallel_size": layout["pp"],
            "nodes": layout["nodes"],
            "fail_on_no_fit": False,
        }
    )
    if params.get("platform") == "cuda":
        for key, default in (
            ("node_memory_total_bytes", GB10_CUDA_TOTAL_BYTES),
            ("node_mem_available_bytes", GB10_PLANNING_MEM_AVAILABLE_BYTES),
        ):
            if key not in params:
                params[key] = default
                sources[key] = "planning default"
    calibration = _plan_calibration(
        calibration_wanted, label if entry is not None else None, entry, image_pins, calibration_dir, layout
    )
    try:
        calibration.update(apply_calibration(params, calibration.pop("record", None), sources))
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanInputError([f"calibration file {calibration.get('path')} cannot be used ({exc}); delete it or "
                              "plan without it (-e calibration=false)."]) from exc
    siblings = catalog_siblings(model if entry is not None else None, config, catalog, root)
    return {
        "model": label,
        "siblings": siblings,
        "artifact_stem": f"plan-{_artifact_name(label)}-{layout['nodes']}nodes",
        "catalog_entry": entry is not None,
        "min_nodes": int(entry["min_nodes"]) if entry is not None else None,
        "vllm_release": entry["vllm_release"] if entry is not None else None,
        "config_path": config_path,
        "config": entry["config"] if entry is not None else config_path,
        "layout": layout,
        "params": params,
        "sources": sources,
        "calibration": calibration,
        "inputs": {key: inputs[key] for key in PLAN_INPUT_KEYS if not _is_unset(inputs.get(key))},
        "command": plan_command(inputs),
        "sibling_params": _sibling_params(catalog, siblings, overrides, layout, root),
    }


def _calibration_input(raw: Any, errors: list[str]) -> bool | str:
    """-e calibration: true (default), false, or the path of a calibration file."""
    if _is_unset(raw):
        return True
    flag = as_bool(raw)
    if flag is not None:
        return flag
    path = os.path.abspath(os.path.expanduser(str(raw)))
    if not os.path.isfile(path):
        errors.append(
            f"-e calibration={raw} is neither true, false nor a calibration file; give false to plan without "
            "one, or the path of a <model>/<image>-tp<T>pp<P>.json file under the inventory's calibration folder."
        )
        return False
    return path


def _plan_calibration(
    wanted: bool | str,
    model: str | None,
    entry: Mapping[str, Any] | None,
    image_pins: Mapping[str, Any] | None,
    base_dir: str,
    layout: Mapping[str, Any],
) -> dict[str, Any]:
    """Which calibration record plan.yml uses: ``{path, note, record}`` (record popped by the caller)."""
    if wanted is False:
        return {"path": None, "note": "calibration not used (-e calibration=false): estimates used."}
    try:
        if isinstance(wanted, str):
            return {"path": wanted, "note": "", "record": load_calibration(wanted)}
        if model is None or entry is None:
            return {"path": None, "note": "no catalog entry, so no calibration: estimates used."}
        if not base_dir:
            return {"path": None, "note": "no inventory folder, so no calibration: estimates used."}
        digest = _serving.image_for(model, entry, image_pins)["digest"]
        return dict(find_calibration(base_dir, model, digest, layout["tp"], layout["pp"]))
    except CalibrationError as exc:
        raise PlanInputError([str(exc)]) from exc


def _sibling_params(
    catalog: Mapping[str, Any],
    siblings: list[dict[str, Any]],
    overrides: Mapping[str, Any],
    layout: Mapping[str, Any],
    root: str,
) -> dict[str, dict[str, Any]]:
    """The planner arguments of the other builds of the model on the same nodes with the same overrides
    (for advice that names a catalog entry); builds those overrides do not suit are left out."""
    found: dict[str, dict[str, Any]] = {}
    for item in siblings:
        entry = catalog[item["name"]]
        try:
            params = planner_args(entry, overrides, root)
            other = plan_layout(entry["launch"], layout["nodes"])
        except (PlanInputError, KeyError, TypeError):
            continue
        params.update(
            tensor_parallel_size=other["tp"], pipeline_parallel_size=other["pp"], nodes=other["nodes"], fail_on_no_fit=False
        )
        found[item["name"]] = params
    return found


def plan_command(inputs: Mapping[str, Any], changes: Mapping[str, Any] | None = None) -> str:
    """``ansible-playbook plan.yml -e model=X ...``: the operator's -e inputs with ``changes`` applied
    (a value of None removes that -e)."""
    chosen = {key: inputs.get(key) for key in PLAN_INPUT_KEYS if not _is_unset(inputs.get(key))}
    chosen.pop("measured_memory", None)
    for key, value in (changes or {}).items():
        if value is None:
            chosen.pop(key, None)
        else:
            chosen[key] = value  # in place when the operator gave it, else at the end
    words = ["ansible-playbook", "plan.yml"] + [f"-e {key}={shlex.quote(str(value))}" for key, value in chosen.items()]
    return " ".join(words)


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
    """What is left on a node after vLLM's reservation AND the host floor (negative = short): of
    MemAvailable when the plan has it (host_left_bytes), else of the total."""
    left = node.get("host_left_bytes")
    return int(node.get("free_bytes") or 0 if left is None else left) - int(node.get("host_floor_bytes") or 0)


def _marked(value: str, key: str, sources: Mapping[str, str], default: str = SOURCE_DEFAULT) -> str:
    return f"{value} ({sources.get(key, default)})"


def _settings_line(result: Mapping[str, Any], resolved: Mapping[str, Any]) -> str:
    """The launch settings that decide memory, each with where it came from: (catalog), (-e) or (default)."""
    params = resolved.get("params", {})
    sources = resolved.get("sources") or {}
    spec = params.get("speculative_config") or {}
    mode = result.get("memory_mode") or params.get("memory_mode")
    parts = [
        _marked(f"max_model_len {_int(params.get('max_model_len') or result.get('max_model_len'))}", "max_model_len", sources),
        _marked(f"max_num_seqs {params.get('max_num_seqs') or result.get('max_num_seqs', 'default')}", "max_num_seqs", sources),
        _marked(
            f"max_num_batched_tokens {params.get('max_num_batched_tokens') or result.get('max_num_batched_tokens', 'default')}",
            "max_num_batched_tokens",
            sources,
        ),
        _marked(f"kv_cache_dtype {params.get('kv_cache_dtype', 'auto')}", "kv_cache_dtype", sources),
        _marked(f"MTP {spec.get('num_speculative_tokens', 0) if spec else 'off'}", "speculative_config", sources),
    ]
    if mode:
        parts.append(_marked(f"memory mode {mode}", "memory_mode", sources))
    return f"Settings: {params.get('platform', 'cuda')}, " + ", ".join(parts)


def _memory_lines(result: Mapping[str, Any], resolved: Mapping[str, Any]) -> list[str]:
    """How vLLM is to be started (memory flags), on which node figures, with which estimates."""
    sources = resolved.get("sources") or {}
    lines: list[str] = []
    args = result.get("vllm_memory_args") or {}
    node = (result.get("per_node") or [{}])[0]
    if "gpu_memory_utilization" in args:
        util = f"--gpu-memory-utilization {args['gpu_memory_utilization']:g} ({result.get('gpu_memory_utilization_source')})"
        if result.get("memory_mode") == "bytes":
            kv = args.get("kv_cache_memory_bytes")
            lines.append(
                f"vLLM memory flags: --kv-cache-memory-bytes {_int(kv)} ({_gib(kv)} GiB per rank, "
                f"{result.get('kv_cache_memory_source')}), {util}"
            )
        else:
            tolerance = result.get("kv_tokens_tolerance")
            lines.append(
                f"vLLM memory flags: {util}; vLLM sizes the KV pool itself (fraction mode), so its KV tokens "
                f"are compared within +/-{float(tolerance or 0):.0%}, never to the token"
            )
        if result.get("platform", "cuda") == "cuda":
            lines.append(
                f"Start-up admission: ceil(total x {args['gpu_memory_utilization']:g}) = "
                f"{_gib(node.get('requested_bytes'))} GiB must be <= MemAvailable {_gib(node.get('mem_available_bytes'))}"
                f" - {_gib(result.get('admission_margin_bytes'))} GiB margin"
                + (" (calibration)" if sources.get("admission_margin_bytes") == "calibration" else "")
            )
    if node:
        lines.append(
            "Nodes: "
            + _marked(f"MemTotal {_gib(node.get('total_bytes'))} GiB", "node_memory_total_bytes", sources, "planner default")
            + ", "
            + _marked(
                f"MemAvailable {_gib(node.get('mem_available_bytes'))} GiB", "node_mem_available_bytes", sources,
                "planner default",
            )
            + ", "
            + _marked(f"host floor {_gib(node.get('host_floor_bytes'))} GiB", "host_floor_bytes", sources)
            + (
                "; planning default = a headless GB10 after dropping caches, serve.yml measures the nodes"
                if "planning default" in sources.values()
                else ""
            )
        )
        estimates = result.get("estimates") or {}

        def how(key: str, label: str, value: Any) -> str:
            source = sources.get(key) or ("estimate" if estimates.get(key) == "estimated" else estimates.get(key, "-"))
            return f"{label} {_gib(value)} GiB ({source})"

        weights_key = "loaded_weights_bytes" if sources.get("loaded_weights_bytes") else "weights_bytes"
        lines.append(
            "Per rank: "
            + ", ".join(
                (
                    how(weights_key, "weights", (node.get("weights_bytes") or 0) + (node.get("draft_bytes") or 0)),
                    how("activation_peak_bytes", "activations", node.get("activation_peak_bytes")),
                    how("non_torch_bytes", "non-torch", node.get("non_torch_bytes")),
                    how("cudagraph_bytes", "CUDA graphs", node.get("cudagraph_bytes")),
                )
            )
        )
    calibration = resolved.get("calibration") or {}
    if calibration.get("path"):
        used = "; ".join(calibration.get("used") or []) or "nothing that applies"
        lines.append(f"Calibration: {calibration['path']}: used {used}")
        if calibration.get("note"):
            lines.append(f"Calibration: {calibration['note']}")
        for skipped in calibration.get("skipped") or []:
            lines.append(f"Calibration: not used: {skipped}")
    elif calibration.get("note"):
        lines.append(f"Calibration: {calibration['note']}")
    return lines


# The planner's parameters in a fix, as plan.yml's -e variables.
def _fix_overrides(fix: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, Any] | None:
    changes: dict[str, Any] = {}
    for key, value in (fix.get("set") or {}).items():
        if key == "speculative_config":
            changes["num_speculative_tokens"] = 0 if not value else value.get("num_speculative_tokens")
        elif key == "kv_cache_memory_bytes":
            changes["kv_cache_memory_bytes"] = None
            changes["kv_cache_gib"] = None if value is None else int(value * 100 // GIB) / 100
        elif key == "tensor_parallel_size":
            if (resolved.get("layout") or {}).get("pp", 1) > 1:
                changes["tensor_parallel_size"] = value
            else:
                changes["tensor_parallel_size"] = None
        elif key in PLANNER_SETTINGS or key in ("nodes",):
            changes[key] = value
        else:
            return None
    return changes


def advice_lines(result: Mapping[str, Any], resolved: Mapping[str, Any]) -> list[str]:
    """One line per piece of advice, with the command that plans it when there is one."""
    command = resolved.get("inputs") or {}
    lines: list[str] = []
    fixes = result.get("fixes")
    if fixes is None:  # an answer without fixes: the advice as text
        return [f"Advice: {advice}" for advice in result.get("advice") or []]
    if not fixes and not result.get("fits"):
        return ["Advice: no single change found that makes it fit; use more nodes or a smaller model."]
    for fix in fixes:
        text = f"Advice: {fix['advice']}"
        if fix.get("kind") == "quantisation":
            sibling = _fitting_sibling(resolved)
            if sibling:
                text += f"; the smallest build in the catalog that fits: {plan_command(command, {'model': sibling})}"
        else:
            changes = _fix_overrides(fix, resolved)
            if changes is not None:
                text += f": {plan_command(command, changes)}"
        lines.append(text)
    return lines


def _fitting_sibling(resolved: Mapping[str, Any]) -> str | None:
    """The smallest other build of the model in the catalog that fits the same nodes, if any."""
    for item in resolved.get("siblings") or []:
        params = (resolved.get("sibling_params") or {}).get(item["name"])
        if not params:
            continue
        try:
            if plan_memory(params)["fits"]:
                return str(item["name"])
        except PlanError:
            continue
    return None


def plan_lines(result: Mapping[str, Any], resolved: Mapping[str, Any]) -> list[str]:
    """The planner's answer as console lines (an Ansible debug ``msg`` list)."""
    params = resolved.get("params", {})
    layout = resolved.get("layout", {})
    bytes_pool = result.get("memory_mode") == "bytes" or params.get("kv_cache_memory_bytes") is not None
    no_admission = bytes_pool and params.get("platform", "cuda") == "cpu"
    lines = [
        f"Memory plan for {resolved.get('model')} on {layout.get('nodes')} "
        f"{'GB10 ' if params.get('platform', 'cuda') == 'cuda' else ''}node(s): "
        f"TP={layout.get('tp')} PP={layout.get('pp')} ({layout.get('rule')}); "
        f"planner reproduces vLLM {result.get('vllm_release', '?')}"
        + (f", catalog image carries {resolved['vllm_release']}" if resolved.get("vllm_release") else ""),
        _settings_line(result, resolved),
        "GiB per node " + "".join(f"{title:>9}" for title, _ in TABLE_COLUMNS),
    ]
    for node in result.get("per_node") or []:
        row = dict(node)
        row["spare_bytes"] = spare_bytes(node)
        if no_admission:
            row["requested_bytes"] = None
        lines.append(
            f"node {node.get('node_rank', '?'):<7}"
            + "".join(f"{_gib(row.get(key)):>9}" for _, key in TABLE_COLUMNS)
        )
    lines.append(
        "(other = NCCL/CUDA context/workspaces; free = MemAvailable - vLLM's reservation - host floor; "
        "request = total x gpu_memory_utilization, what vLLM asks MemAvailable for at start)"
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
    lines.extend(_memory_lines(result, resolved))
    lines.extend(failed_lines([c for c in result.get("checks") or [] if isinstance(c, Mapping)]))
    min_nodes = resolved.get("min_nodes")
    lines.append(
        f"Fits: {'yes' if result.get('fits') else 'NO'}"
        + (f" (catalog min_nodes {min_nodes})" if min_nodes else "")
    )
    needed = result.get("mem_available_needed_bytes")
    if needed and not result.get("fits"):
        lines.append(
            f"It would fit from MemAvailable {_gib(needed)} GiB per node (serve.yml measures the nodes; to plan "
            f"with a measured figure: {plan_command(resolved.get('inputs') or {}, {'node_mem_available_bytes': needed})})"
        )
    lines.extend(advice_lines(result, resolved))
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
        "sources": dict(resolved.get("sources") or {}),
        "calibration": dict(resolved.get("calibration") or {}),
        "advice_commands": advice_lines(result, resolved) if not result.get("fits") else [],
        "plan": plan,
    }
