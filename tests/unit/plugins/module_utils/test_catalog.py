"""The model catalog: the built-in entries (roles/gb10/defaults/main.yml) and their config.json copies,
the merge with an inventory's gb10_catalog_extra, and the lab's entries (added that way)."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.calibration import (
    calibration_record,
    parse_startup_log,
    store_calibration,
)
from ansible_collections.gb10.cluster.plugins.module_utils.catalog import (
    HEX40_RE,
    NAME_RE,
    PLANNER_SETTINGS,
    REQUIRED_KEYS,
    CatalogMergeError,
    PlanInputError,
    catalog_errors,
    config_errors,
    entry_errors,
    load_model_config,
    merge_catalog,
    plan_lines,
    plan_report,
    planner_args,
    resolve_plan,
    serve_launch,
    text_config,
    vllm_flag_args,
    vllm_flags_errors,
)
from ansible_collections.gb10.cluster.plugins.module_utils.memfit import plan_memory
from tests.support.catalog import builtin_catalog, merged_catalog
from tests.support.vllm_logs import FRACTION_TP1

ROOT = Path(__file__).resolve().parents[4]
GIB = 1 << 30
EXPECTED = {
    "qwen3.5-397b-a17b-fp8",
    "qwen3.5-397b-a17b-nvfp4",
    "qwen3.5-397b-a17b-int4-autoround",
    "qwen3-next-80b-a3b",
    "qwen3-235b-a22b-fp8",
    "gpt-oss-120b",
    "llama-3.3-70b-instruct",
    "deepseek-r1-awq",
}
LAB_MODELS = {"tiny-qwen3", "tiny-llama", "tiny-broken"}


@pytest.fixture(scope="module")
def builtin() -> dict:
    """gb10_catalog_builtin, as written in roles/gb10/defaults/main.yml."""
    return builtin_catalog()


@pytest.fixture(scope="module")
def catalog() -> dict:
    """gb10_catalog as the plays see it on the lab: the built-in entries and the lab inventory's
    gb10_catalog_extra (the tiny CPU models)."""
    return merged_catalog()


def test_catalog_is_valid(catalog):
    assert catalog_errors(catalog, str(ROOT)) == []


def test_catalog_has_the_expected_entries(builtin, catalog):
    assert set(builtin) >= EXPECTED
    assert not LAB_MODELS & set(builtin), "the lab's models live in the lab inventory, not in the built-in catalog"
    assert set(catalog) == set(builtin) | LAB_MODELS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entry_shape(catalog, name):
    entry = catalog[name]
    assert NAME_RE.match(name)
    for key in REQUIRED_KEYS:
        assert key in entry, key
    assert entry["hf_revision"] == "" or HEX40_RE.match(entry["hf_revision"])
    path = ROOT / entry["config"]
    assert path.is_file()
    assert path.parent.name == name, "config lives in catalog/models/<name>/"
    config = load_model_config(str(path))
    assert config_errors(config, name) == []
    assert isinstance(entry["checkpoint_bytes"], int) and entry["checkpoint_bytes"] > 0
    launch = entry["launch"]
    assert launch["tensor_parallel_size"] * launch["pipeline_parallel_size"] >= 1
    assert entry["min_nodes"] <= launch["tensor_parallel_size"] * launch["pipeline_parallel_size"]


def test_every_config_json_in_catalog_dir_belongs_to_an_entry(catalog):
    used = {str(ROOT / entry["config"]) for entry in catalog.values()}
    for path in (ROOT / "catalog" / "models").glob("*/config.json"):
        assert str(path) in used, f"{path} is not referenced by any catalog entry"
        json.loads(path.read_text(encoding="utf-8"))


def test_mtp_entries(catalog):
    for name in ("qwen3.5-397b-a17b-fp8", "qwen3.5-397b-a17b-nvfp4", "qwen3.5-397b-a17b-int4-autoround"):
        spec = catalog[name]["launch"]["speculative_config"]
        assert spec["method"] == "mtp"
        assert 1 <= spec["num_speculative_tokens"] <= 3, "MTP deeper than 2-3 tokens crashed on GB10"
        assert (
            text_config(load_model_config(str(ROOT / catalog[name]["config"])))["mtp_num_hidden_layers"] == 1
        )


def test_reference_model_launch(catalog):
    entry = catalog["qwen3.5-397b-a17b-fp8"]
    launch = entry["launch"]
    assert (launch["tensor_parallel_size"], launch["max_model_len"], launch["kv_cache_dtype"]) == (
        4,
        262144,
        "fp8",
    )
    assert (launch["max_num_seqs"], launch["max_num_batched_tokens"]) == (16, 8192)
    text = text_config(load_model_config(str(ROOT / entry["config"])))
    assert (
        text["num_hidden_layers"],
        text["hidden_size"],
        text["num_key_value_heads"],
        text["head_dim"],
    ) == (
        60,
        4096,
        2,
        256,
    )
    assert text["layer_types"].count("full_attention") == 15
    assert text["vocab_size"] == 248320
    assert entry["min_nodes"] == 4


def test_quantization_configs(catalog):
    methods = {
        name: load_model_config(str(ROOT / entry["config"]))
        .get("quantization_config", {})
        .get("quant_method")
        for name, entry in catalog.items()
    }
    assert methods["qwen3.5-397b-a17b-fp8"] == "fp8"
    assert methods["qwen3.5-397b-a17b-nvfp4"] == "modelopt"
    assert methods["qwen3.5-397b-a17b-int4-autoround"] == "auto-round"
    assert methods["gpt-oss-120b"] == "mxfp4"
    assert methods["deepseek-r1-awq"] == "awq"
    assert methods["tiny-qwen3"] is None


def test_deepseek_entry_is_mla(catalog):
    text = load_model_config(str(ROOT / catalog["deepseek-r1-awq"]["config"]))
    assert (text["kv_lora_rank"], text["qk_rope_head_dim"]) == (512, 64)
    assert catalog["deepseek-r1-awq"]["min_nodes"] <= 8


def test_tiny_lab_entry(catalog):
    entry = catalog["tiny-qwen3"]
    assert entry["platform"] == "cpu"
    assert entry["weights"] == {"source": "controller", "dir": str(ROOT / "lab" / ".state" / "serving" / "models" / "tiny-qwen3")}
    assert entry["origin"]["variable"] == "gb10_catalog_extra"
    assert entry["launch"]["load_format"] == "dummy"
    assert entry["config"] == "lab/models/tiny-qwen3/config.json"
    config = load_model_config(str(ROOT / entry["config"]))
    assert config["architectures"] == ["Qwen3ForCausalLM"]
    assert (
        config["hidden_size"],
        config["num_hidden_layers"],
        config["num_attention_heads"],
        config["num_key_value_heads"],
        config["head_dim"],
        config["vocab_size"],
    ) == (128, 4, 4, 2, 32, 512)


def test_production_catalog_holds_no_lab_data():
    """No lab model, lab path or lab pin in the production roles, plays, collection or sample inventories."""
    needles = ("tiny-", "lab-vllm-cpu", "lab/.state")
    places = [ROOT / "roles", ROOT / "playbooks", ROOT / "collections" / "ansible_collections" / "gb10" / "cluster" / "plugins",
              *ROOT.glob("inventory/sample*"), *ROOT.glob("*.yml")]
    found = []
    for place in places:
        for path in [place] if place.is_file() else sorted(p for p in place.rglob("*") if p.is_file()):
            if path.suffix not in (".yml", ".yaml", ".py", ".json", ".j2", ".sh"):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            found += [f"{path.relative_to(ROOT)}: {n}" for n in needles if n in text]
    assert found == []


def test_gpu_entries_name_an_nvidia_image(catalog):
    for name, entry in catalog.items():
        if entry["platform"] != "cuda":
            continue
        assert entry["image"]["repository"] == "nvcr.io/nvidia/vllm", name
        assert entry["image"]["tag"].endswith("-py3"), name
        assert entry["image"]["digest"] == "" or entry["image"]["digest"].startswith("sha256:"), name


# --- negative cases: one sentence per mistake --------------------------------------------------


def _broken(catalog, **changes):
    entry = copy.deepcopy(catalog["gpt-oss-120b"])
    for key, value in changes.items():
        if value is None:
            entry.pop(key)
        else:
            entry[key] = value
    return entry


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"config": "catalog/models/nope/config.json"}, "does not exist"),
        ({"hf_revision": "main"}, "40-hex"),
        ({"platform": "rocm"}, "platform must be one of"),
        ({"checkpoint_bytes": "big"}, "checkpoint_bytes must be a positive integer"),
        ({"image": {"repository": "x", "tag": "y"}}, "image must have repository, tag and digest"),
        ({"image": {"repository": "x", "tag": "y", "digest": "latest"}}, "sha256"),
        ({"env": {"A": 1}}, "quote numbers"),
        ({"min_nodes": None}, "min_nodes is missing"),
        (
            {"launch": {"tensor_parallel_size": 3, "pipeline_parallel_size": 1, "max_model_len": 8}},
            "does not divide",
        ),
        (
            {
                "launch": {
                    "tensor_parallel_size": 1,
                    "pipeline_parallel_size": 1,
                    "max_model_len": 8,
                    "kv_cache_dtype": "int8",
                }
            },
            "kv_cache_dtype must be one of",
        ),
        (
            {
                "launch": {
                    "tensor_parallel_size": 1,
                    "pipeline_parallel_size": 1,
                    "max_model_len": 8,
                    "foo": 1,
                }
            },
            "not a known setting",
        ),
        (
            {
                "launch": {
                    "tensor_parallel_size": 1,
                    "pipeline_parallel_size": 1,
                    "max_model_len": 8,
                    "speculative_config": {"method": "eagle"},
                }
            },
            "speculative_config",
        ),
    ],
)
def test_entry_errors(catalog, changes, needle):
    errors = entry_errors("gpt-oss-120b", _broken(catalog, **changes), str(ROOT))
    assert errors, changes
    assert any(needle in error for error in errors), errors
    assert all(error.endswith(".") for error in errors)


def test_bad_names_are_refused(catalog):
    assert "name must be lower case" in entry_errors("GPT OSS", catalog["gpt-oss-120b"], str(ROOT))[0]
    assert catalog_errors({}, str(ROOT))


def test_heads_sentence_says_what_to_use(catalog):
    entry = copy.deepcopy(catalog["tiny-qwen3"])
    entry["launch"]["tensor_parallel_size"] = 3
    # tiny-qwen3 is a lab model: it comes from the lab inventory's gb10_catalog_extra, and says so
    assert entry_errors("tiny-qwen3", entry, str(ROOT)) == [
        "gb10_catalog_extra['tiny-qwen3'].launch: tensor_parallel_size 3 does not divide the model's "
        f"4 attention heads; use one of 1, 2, 4 (inventory {ROOT}/inventory/lab)."]


def test_config_errors_on_a_broken_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"architectures": [], "hidden_size": 0}', encoding="utf-8")
    errors = config_errors(load_model_config(str(path)), "x")
    assert any("architectures" in e for e in errors)
    assert any("hidden_size" in e for e in errors)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not readable JSON"):
        load_model_config(str(path))


def test_catalog_and_planner_read_the_same_text_part_of_a_multimodal_config():
    """A multimodal config.json whose text_config leaves fields to the top level: the catalog's checks
    and the planner must read the same text part (they used two helpers that disagreed: the planner
    let top-level keys fill what text_config leaves out, the catalog did not, so the catalog refused a
    config the planner plans)."""
    cfg = json.loads((ROOT / "tests" / "unit" / "fixtures" / "memfit" / "tiny-qwen3.5-moe.json").read_text())
    text = cfg["text_config"]
    cfg["num_attention_heads"] = text.pop("num_attention_heads")
    cfg["vocab_size"] = text.pop("vocab_size")
    assert (text_config(cfg)["num_attention_heads"], text_config(cfg)["vocab_size"]) == (4, 512)
    assert text_config(cfg)["num_hidden_layers"] == 8, "text_config's own keys still come first"
    assert config_errors(cfg, "x") == []
    plan = plan_memory(
        {"model_config": cfg, "platform": "cpu", "kv_cache_memory_bytes": 1 << 30, "max_model_len": 1024}
    )
    assert plan["fits"] is True


# --- the planner on every entry ------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXPECTED | {"tiny-qwen3"}))
def test_planner_runs_for_every_entry_on_4_nodes(catalog, name):
    resolved = resolve_plan({"model": name, "nodes": "4"}, catalog, str(ROOT))
    assert resolved["layout"]["nodes"] == 4
    result = plan_memory(dict(resolved["params"]))
    for key in (
        "fits",
        "per_node",
        "kv_cache_tokens",
        "max_concurrency",
        "advice",
        "message",
        "vllm_release",
    ):
        assert key in result, key
    assert len(result["per_node"]) == 4
    assert isinstance(result["fits"], bool)


# --- planner_args: the one conversion from a catalog entry plus overrides ----------------------------

LAB = "tiny-qwen3"
REF = "qwen3.5-397b-a17b-fp8"


def test_planner_args_takes_the_planner_settings_of_the_entry(catalog):
    params = planner_args(catalog[REF], {}, str(ROOT))
    launch = catalog[REF]["launch"]
    assert params["model_config"] == str(ROOT / catalog[REF]["config"])
    assert params["platform"] == "cuda"
    assert params["weights_bytes"] == catalog[REF]["checkpoint_bytes"]
    for key in ("tensor_parallel_size", "max_model_len", "max_num_seqs", "kv_cache_dtype", "speculative_config"):
        assert params[key] == launch[key], key
    for key in ("tool_call_parser", "reasoning_parser", "enable_auto_tool_choice"):
        assert key not in params, "serving-only settings are not planner arguments"
    for key in ("nodes", "node_mem_available_bytes", "node_memory_total_bytes", "host_floor_bytes"):
        assert key not in params, "unset: the planner's defaults apply"


def test_planner_args_cpu_kv_pool_is_vllm_cpu_kvcache_space(catalog):
    entry = copy.deepcopy(catalog[LAB])
    entry["env"]["VLLM_CPU_KVCACHE_SPACE"] = "3"
    assert entry["launch"]["kv_cache_memory_bytes"] == 1 << 30
    assert planner_args(entry, {}, str(ROOT))["kv_cache_memory_bytes"] == 3 << 30
    # not on CUDA, and an explicit override still wins
    assert planner_args(entry, {"platform": "cuda"}, str(ROOT))["kv_cache_memory_bytes"] == 1 << 30
    assert planner_args(entry, {"kv_cache_memory_bytes": "2147483648"}, str(ROOT))["kv_cache_memory_bytes"] == 2 << 30
    del entry["env"]["VLLM_CPU_KVCACHE_SPACE"]
    assert planner_args(entry, {}, str(ROOT))["kv_cache_memory_bytes"] == 1 << 30


MEASURED = [
    {"host": "a", "mem_total": 64 * GIB, "mem_available": 60 * GIB, "cgroup_limit": None},
    {"host": "b", "mem_total": 62 * GIB, "mem_available": 58 * GIB, "cgroup_limit": None},
]


def test_planner_args_measured_memory(catalog):
    cpu = planner_args(catalog[LAB], {"measured_memory": MEASURED}, str(ROOT))
    assert (cpu["node_mem_available_bytes"], cpu["node_memory_total_bytes"]) == (58 * GIB, 62 * GIB)
    cuda = planner_args(catalog[REF], {"measured_memory": MEASURED}, str(ROOT))
    assert cuda["node_mem_available_bytes"] == 58 * GIB
    # on a GB10 CUDA's total is MemTotal, measured: the largest, so one utilization passes every node's admission
    assert cuda["node_memory_total_bytes"] == 64 * GIB
    given = planner_args(
        catalog[LAB],
        {"measured_memory": MEASURED, "node_memory_total_bytes": 100 * GIB, "host_floor_bytes": "0"},
        str(ROOT),
    )
    assert (given["node_memory_total_bytes"], given["host_floor_bytes"]) == (100 * GIB, 0)


@pytest.mark.parametrize(
    ("changes", "overrides", "needle"),
    [
        ({"env": {"VLLM_CPU_KVCACHE_SPACE": "lots"}}, {}, "VLLM_CPU_KVCACHE_SPACE=lots is not a whole number of GiB"),
        ({}, {"measured_memory": []}, "measured_memory must list each node's"),
        ({}, {"measured_memory": [{"mem_total": 1}]}, "measured_memory must list each node's"),
        ({}, {"nodes": "two"}, "-e nodes=two is not a positive integer"),
        ({}, {"mamba_ssm_cache_dtype": "int8"}, "-e mamba_ssm_cache_dtype=int8 is not valid"),
        ({}, {"max_num_seq": "8"}, "max_num_seq is not a planner input"),
    ],
)
def test_planner_args_errors(catalog, changes, overrides, needle):
    entry = {**copy.deepcopy(catalog[LAB]), **changes}
    with pytest.raises(PlanInputError) as info:
        planner_args(entry, overrides, str(ROOT))
    assert any(needle in error for error in info.value.errors), info.value.errors
    assert all(error.endswith(".") for error in info.value.errors)


def test_a_setting_the_planner_models_but_serving_does_not_is_an_override_only(catalog):
    assert PLANNER_SETTINGS["mamba_ssm_cache_dtype"].catalog is False
    broken = _broken(catalog, launch={**catalog["gpt-oss-120b"]["launch"], "mamba_ssm_cache_dtype": "float32"})
    assert any("not a known setting" in e for e in entry_errors("gpt-oss-120b", broken, str(ROOT)))
    base = plan_memory(planner_args(catalog["qwen3-next-80b-a3b"], {}, str(ROOT)))
    wide = plan_memory(planner_args(catalog["qwen3-next-80b-a3b"], {"mamba_ssm_cache_dtype": "float32"}, str(ROOT)))
    # the DeltaNet SSM state in float32 instead of the model's bfloat16: a larger mamba page
    assert wide["mamba_page_bytes"] > base["mamba_page_bytes"]


# --- memory mode, -e overrides, sources, advice commands, calibration (plan.yml) ---------------------

GPT = "gpt-oss-120b"


def test_cuda_entries_are_sized_in_bytes_and_pass_admission_on_a_headless_node(catalog):
    for name, entry in catalog.items():
        if entry["platform"] != "cuda":
            continue
        assert entry["launch"]["memory_mode"] == "bytes" and "gpu_memory_utilization" not in entry["launch"], name
        resolved = resolve_plan({"model": name}, catalog, str(ROOT), {}, "")
        plan = plan_memory(resolved["params"])
        node = plan["per_node"][0]
        assert node["mem_available_bytes"] == 101 * GIB and resolved["sources"]["node_mem_available_bytes"] == "planning default"
        # the chosen utilization passes vLLM's start-up check at 101 GiB with the 2 GiB margin
        assert node["requested_bytes"] <= 99 * GIB, name
        # the FP8 reference alone needs more MemAvailable than a headless node has (94.9 GiB of weights)
        assert plan["fits"] is (name != REF), (name, plan["message"])


def test_fp8_reference_fits_four_nodes_with_the_memavailable_it_names(catalog):
    plan = plan_memory(resolve_plan({"model": REF}, catalog, str(ROOT), {}, "")["params"])
    needed = plan["mem_available_needed_bytes"]
    assert 108 * GIB < needed < 109 * GIB
    measured = plan_memory(
        resolve_plan({"model": REF, "node_mem_available_bytes": str(needed)}, catalog, str(ROOT), {}, "")["params"]
    )
    assert measured["fits"] is True and measured["max_concurrency"] >= 1


def test_memory_mode_follows_the_command_line(catalog):
    util = resolve_plan({"model": GPT, "gpu_memory_utilization": "0.75"}, catalog, str(ROOT), {}, "")
    assert (util["params"]["memory_mode"], util["sources"]["memory_mode"]) == (
        "fraction", "implied by -e gpu_memory_utilization"
    )
    pool = resolve_plan({"model": GPT, "kv_cache_gib": "12.5"}, catalog, str(ROOT), {}, "")
    assert pool["params"]["kv_cache_memory_bytes"] == int(12.5 * GIB) and pool["params"]["memory_mode"] == "bytes"
    plan = plan_memory(pool["params"])
    assert plan["kv_cache_memory_source"] == "given" and plan["gpu_memory_utilization_source"] == "planner"
    forced = resolve_plan({"model": GPT, "memory_mode": "fraction", "gpu_memory_utilization": "0.8"}, catalog,
                          str(ROOT), {}, "")
    assert forced["sources"]["memory_mode"] == "-e"


@pytest.mark.parametrize(
    ("inputs", "sentence"),
    [
        ({"max_model_len": "long"}, "-e max_model_len=long is not a positive integer; give a whole number such as 131072."),
        ({"max_num_seqs": "0"}, "-e max_num_seqs=0 is not a positive integer; give a whole number such as 16."),
        ({"max_num_batched_tokens": "-1"}, "-e max_num_batched_tokens=-1 is not a positive integer; give a whole number such as 8192."),
        ({"kv_cache_dtype": "int4"}, "-e kv_cache_dtype=int4 is not valid; use one of auto, bfloat16, float16, fp8, fp8_e4m3, fp8_e5m2."),
        ({"num_speculative_tokens": "two"}, "-e num_speculative_tokens=two is not a whole number; give 2 for two MTP tokens, 0 for no MTP."),
        ({"kv_cache_gib": "lots"}, "-e kv_cache_gib=lots is not a positive number of GiB; give the KV pool per node, e.g. 12 or 12.5."),
        ({"kv_cache_gib": "-3"}, "-e kv_cache_gib=-3 is not a positive number of GiB; give the KV pool per node, e.g. 12 or 12.5."),
        ({"gpu_memory_utilization": "1.2"}, "-e gpu_memory_utilization=1.2 must be a number in (0, 1], e.g. 0.85 (or leave it out: in bytes mode the planner chooses it)."),
        ({"memory_mode": "auto"}, "-e memory_mode=auto is not valid; use one of bytes, fraction."),
        ({"nodes": "many"}, "-e nodes=many is not a positive integer; give a whole number such as 4."),
        ({"tensor_parallel_size": "x"}, "-e tensor_parallel_size=x is not a positive integer; give a whole number such as 4."),
        ({"pipeline_parallel_size": "0"}, "-e pipeline_parallel_size=0 is not a positive integer; give a whole number such as 4."),
        ({"kv_cache_memory_bytes": "1e9"}, "-e kv_cache_memory_bytes=1e9 is not a positive integer; give a whole number such as 12884901888."),
        ({"kv_cache_gib": "12", "kv_cache_memory_bytes": "1073741824"},
         "-e kv_cache_gib and -e kv_cache_memory_bytes both set the KV pool; give one of them."),
        ({"memory_mode": "fraction", "kv_cache_gib": "12"},
         "-e memory_mode=fraction lets vLLM size the KV pool from gpu_memory_utilization, so -e kv_cache_gib cannot go with it; drop one of them."),
        ({"max_num_batched_tokens": "8"},
         "-e max_num_batched_tokens=8 is below the catalog's max_num_seqs=16; vLLM needs max_num_batched_tokens >= max_num_seqs, so raise the first or lower the second."),
        ({"max_model_len": "200000"},
         "-e max_model_len=200000 is more than the model's max_position_embeddings (131072); give at most 131072."),
        ({"num_speculative_tokens": "2"},
         "-e num_speculative_tokens=2 asks for MTP, but GptOssForCausalLM has no MTP layers in its config; use 0."),
        ({"calibration": "/nonexistent/cal.json"},
         "-e calibration=/nonexistent/cal.json is neither true, false nor a calibration file; give false to plan without one, or the path of a <model>/<image>-tp<T>pp<P>.json file under the inventory's calibration folder."),
    ],
)
def test_each_bad_override_is_refused_with_one_sentence(catalog, inputs, sentence):
    with pytest.raises(PlanInputError) as info:
        resolve_plan({"model": GPT, **inputs}, catalog, str(ROOT), {}, "")
    assert sentence in info.value.errors, info.value.errors
    assert sentence.count(". ") == 0 or "e.g." in sentence, "one sentence"


def test_the_plan_marks_where_each_value_came_from(catalog):
    resolved = resolve_plan({"model": GPT, "max_model_len": "65536", "kv_cache_dtype": "fp8"}, catalog, str(ROOT), {}, "")
    sources = resolved["sources"]
    assert (sources["max_model_len"], sources["kv_cache_dtype"], sources["max_num_seqs"]) == ("-e", "-e", "catalog")
    lines = plan_lines(plan_memory(resolved["params"]), resolved)
    settings = lines[1]
    for marked in ("max_model_len 65,536 (-e)", "kv_cache_dtype fp8 (-e)", "max_num_seqs 16 (catalog)",
                   "MTP off (default)", "memory mode bytes (catalog)"):
        assert marked in settings, settings
    text = "\n".join(lines)
    assert "--gpu-memory-utilization 0.77 (planner)" in text
    assert "MemAvailable 101.00 GiB (planning default)" in text
    assert "activations 1.40 GiB (estimate)" in text and "weights 60.77 GiB (catalog checkpoint_bytes)" in text


def _replan(command: str, catalog) -> dict:
    """Plan what an advice command asks for (its -e pairs)."""
    words = shlex.split(command)
    assert words[:2] == ["ansible-playbook", "plan.yml"]
    inputs = dict(words[i + 1].split("=", 1) for i in range(2, len(words), 2))
    return plan_memory(resolve_plan(inputs, catalog, str(ROOT), {}, "")["params"])


def test_advice_is_a_command_to_paste_that_fits(catalog):
    resolved = resolve_plan({"model": REF, "max_num_seqs": "8"}, catalog, str(ROOT), {}, "")
    result = plan_memory(resolved["params"])
    lines = [line for line in plan_lines(result, resolved) if line.startswith("Advice: ")]
    nodes = [line for line in lines if line.startswith("Advice: use 8 nodes (tensor_parallel_size 8): ")]
    assert nodes == [
        "Advice: use 8 nodes (tensor_parallel_size 8): "
        f"ansible-playbook plan.yml -e model={REF} -e max_num_seqs=8 -e nodes=8"
    ]
    quant = [line for line in lines if line.startswith("Advice: use a smaller quantisation")]
    assert quant and quant[0].endswith(
        "the smallest build in the catalog that fits: ansible-playbook plan.yml -e model=qwen3.5-397b-a17b-int4-autoround "
        "-e max_num_seqs=8"
    )
    for line in nodes + quant:
        assert _replan(line.rsplit(": ", 1)[1], catalog)["fits"] is True
    report = plan_report(result, resolved)
    assert report["advice_commands"] == lines and report["sources"]["max_num_seqs"] == "-e"


def test_fraction_mode_advice_drops_the_utilization_or_lowers_it(catalog):
    resolved = resolve_plan({"model": GPT, "gpu_memory_utilization": "0.9"}, catalog, str(ROOT), {}, "")
    result = plan_memory(resolved["params"])
    assert result["fits"] is False, "0.9 x 121.69 GiB is refused with 101 GiB available"
    lines = [line for line in plan_lines(result, resolved) if line.startswith("Advice: ")]
    commands = [line.rsplit(": ", 1)[1] for line in lines]
    assert f"ansible-playbook plan.yml -e model={GPT} -e gpu_memory_utilization=0.76" in commands
    assert f"ansible-playbook plan.yml -e model={GPT} -e memory_mode=bytes" in commands
    for command in commands:
        assert _replan(command, catalog)["fits"] is True, command


# --- calibration in plan.yml ---------------------------------------------------------------------------

DIGEST = "sha256:" + "5" * 64


def _calibrate(tmp_path, catalog, **settings):
    params = resolve_plan({"model": GPT, "calibration": "false"}, catalog, str(ROOT), {}, "")["params"]
    plan = plan_memory(params)
    record = calibration_record(
        parse_startup_log(FRACTION_TP1), model=GPT, image_digest=DIGEST, plan={**plan, **settings},
        measured_at="2026-11-27T10:02:40Z",
    )
    return store_calibration(str(tmp_path), record)[0]


def test_plan_uses_the_calibration_of_the_model_image_and_layout(tmp_path, catalog):
    path = _calibrate(tmp_path, catalog, max_num_batched_tokens=8192, max_num_seqs=16)
    pins = {GPT: {"repository": "nvcr.io/nvidia/vllm", "tag": "26.10-py3", "digest": DIGEST}}
    resolved = resolve_plan({"model": GPT}, catalog, str(ROOT), pins, str(tmp_path))
    params, sources = resolved["params"], resolved["sources"]
    assert params["loaded_weights_bytes"] == [round(60.92 * GIB)]
    assert params["activation_peak_bytes"] == round(2.05 * GIB) - round(0.52 * GIB)
    assert {sources[k] for k in ("loaded_weights_bytes", "activation_peak_bytes", "cudagraph_bytes", "non_torch_bytes")} == {
        "calibration"
    }
    lines = plan_lines(plan_memory(params), resolved)
    assert f"Calibration: {path}: used weights 60.92 GiB per rank (vLLM's 'Model loading took')" in " ".join(lines)
    assert any(line.startswith("Per rank: weights 60.92 GiB (calibration), activations 1.53 GiB (calibration)") for line in lines)
    # -e calibration=false: the estimates
    off = resolve_plan({"model": GPT, "calibration": "false"}, catalog, str(ROOT), pins, str(tmp_path))
    assert "loaded_weights_bytes" not in off["params"]
    assert "Calibration: calibration not used (-e calibration=false): estimates used." in plan_lines(
        plan_memory(off["params"]), off
    )
    # -e calibration=<file>: that file
    given = resolve_plan({"model": GPT, "calibration": path}, catalog, str(ROOT), {}, "")
    assert given["calibration"]["path"] == path and "loaded_weights_bytes" in given["params"]


def test_plan_says_which_calibration_it_did_not_use(tmp_path, catalog):
    _calibrate(tmp_path, catalog, max_num_batched_tokens=2048, max_num_seqs=256)  # vLLM's defaults
    resolved = resolve_plan({"model": GPT}, catalog, str(ROOT), {}, str(tmp_path))
    assert resolved["calibration"]["note"].startswith("the image of gpt-oss-120b is not pinned: using the newest")
    text = "\n".join(plan_lines(plan_memory(resolved["params"]), resolved))
    assert "Calibration: not used: activations: measured at max_num_batched_tokens 2048 (plan: 8192)" in text
    other = {GPT: {"repository": "r", "tag": "t", "digest": "sha256:" + "6" * 64}}
    pinned = resolve_plan({"model": GPT}, catalog, str(ROOT), other, str(tmp_path))
    assert "not for the pinned 666666666666: not used" in pinned["calibration"]["note"]
    assert "loaded_weights_bytes" not in pinned["params"]


def test_catalog_entries_say_how_the_kv_pool_is_sized(catalog):
    entry = catalog[GPT]
    fixed = _broken(catalog, launch={**entry["launch"], "gpu_memory_utilization": 0.8})
    assert any("gpu_memory_utilization is set but the memory mode is bytes" in e for e in entry_errors(GPT, fixed, str(ROOT)))
    fraction = _broken(catalog, launch={**entry["launch"], "memory_mode": "fraction"})
    assert any("memory_mode is fraction but gives no gpu_memory_utilization" in e
               for e in entry_errors(GPT, fraction, str(ROOT)))
    ok = _broken(catalog, launch={**entry["launch"], "memory_mode": "fraction", "gpu_memory_utilization": 0.8})
    assert entry_errors(GPT, ok, str(ROOT)) == []


def test_planner_args_takes_a_calibration_record_for_serve(tmp_path, catalog):
    """serve.yml's conversion: the record found for the model, image and layout (calibration_find)."""
    path = _calibrate(tmp_path, catalog, max_num_batched_tokens=8192, max_num_seqs=16)
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    params = planner_args(catalog[GPT], {"calibration": record, "measured_memory": MEASURED[:1]}, str(ROOT))
    assert params["loaded_weights_bytes"] == [round(60.92 * GIB)] and params["cudagraph_bytes"] == round(0.48 * GIB)
    assert "loaded_weights_bytes" not in planner_args(catalog[GPT], {"calibration": False}, str(ROOT))
    with pytest.raises(PlanInputError, match="calibration must be a calibration record"):
        planner_args(catalog[GPT], {"calibration": "yes"}, str(ROOT))


# --- an inventory adds models: gb10_catalog_extra merged over the built-in catalog -----------------

def _extra_entry(builtin, config: str, **changes):
    entry = copy.deepcopy(builtin["gpt-oss-120b"])
    entry["config"] = config
    entry.update(changes)
    return entry


def test_extra_entry_config_is_relative_to_the_inventory(builtin, tmp_path):
    inventory = tmp_path / "inventory"
    (inventory / "models" / "my-model").mkdir(parents=True)
    shutil.copy(ROOT / "catalog" / "models" / "gpt-oss-120b" / "config.json", inventory / "models" / "my-model")
    merged = merge_catalog(builtin, {"my-model": _extra_entry(builtin, "models/my-model/config.json")},
                           str(ROOT), str(inventory))
    assert set(merged) == set(builtin) | {"my-model"}
    entry = merged["my-model"]
    # Every consumer reads config relative to the repository root: the merge makes it so.
    assert (ROOT / entry["config"]).resolve() == (inventory / "models" / "my-model" / "config.json").resolve()
    assert entry["origin"] == {"variable": "gb10_catalog_extra", "inventory": str(inventory),
                               "config": "models/my-model/config.json"}
    assert entry_errors("my-model", entry, str(ROOT)) == []
    assert merged["gpt-oss-120b"] == builtin["gpt-oss-120b"], "built-in entries are unchanged"
    resolved = resolve_plan({"model": "my-model"}, merged, str(ROOT))
    assert Path(resolved["params"]["model_config"]).resolve() == (inventory / "models" / "my-model" / "config.json").resolve()


def test_extra_entry_absolute_config_and_weights_dir(builtin, tmp_path):
    config = str(ROOT / "catalog" / "models" / "gpt-oss-120b" / "config.json")
    extra = {"local": _extra_entry(builtin, config, hf_repo="", weights={"source": "controller", "dir": "files/local"})}
    entry = merge_catalog(builtin, extra, str(ROOT), str(tmp_path))["local"]
    assert entry["config"] == "catalog/models/gpt-oss-120b/config.json"
    assert entry["weights"] == {"source": "controller", "dir": str(tmp_path / "files" / "local")}
    assert entry_errors("local", entry, str(ROOT)) == [], "files from the controller need no hf_repo"


def test_extra_entry_replaces_a_built_in_one(builtin, tmp_path):
    config = str(ROOT / "catalog" / "models" / "gpt-oss-120b" / "config.json")
    mine = _extra_entry(builtin, config, description="our own gpt-oss pins")
    mine["launch"] = {**builtin["gpt-oss-120b"]["launch"], "max_model_len": 8192}
    merged = merge_catalog(builtin, {"gpt-oss-120b": mine}, str(ROOT), str(tmp_path))
    assert merged["gpt-oss-120b"]["description"] == "our own gpt-oss pins"
    assert merged["gpt-oss-120b"]["launch"] == mine["launch"], "replaced whole, not merged key by key"
    assert len(merged) == len(builtin)


def test_extra_entry_mistakes_name_the_entry_and_the_inventory(builtin, tmp_path):
    config = str(ROOT / "catalog" / "models" / "gpt-oss-120b" / "config.json")
    extra = {
        "missing-config": _extra_entry(builtin, "models/nope/config.json"),
        "bad-tp": _extra_entry(builtin, config, launch={**builtin["gpt-oss-120b"]["launch"], "tensor_parallel_size": 5}),
        "bad-weights": _extra_entry(builtin, config, weights={"source": "s3"}),
    }
    merged = merge_catalog(builtin, extra, str(ROOT), str(tmp_path))
    assert entry_errors("missing-config", merged["missing-config"], str(ROOT)) == [
        f"gb10_catalog_extra['missing-config'].config: models/nope/config.json ({tmp_path}/models/nope/config.json) "
        f"does not exist (inventory {tmp_path})."]
    (tp,) = entry_errors("bad-tp", merged["bad-tp"], str(ROOT))
    assert tp.startswith("gb10_catalog_extra['bad-tp'].launch: tensor_parallel_size 5 does not divide")
    assert tp.endswith(f"(inventory {tmp_path}).")
    assert entry_errors("bad-weights", merged["bad-weights"], str(ROOT)) == [
        f"gb10_catalog_extra['bad-weights'].weights.source must be one of hf, controller (inventory {tmp_path})."]
    # Built-in entries keep their name.
    assert entry_errors("gpt-oss-120b", _broken(builtin, platform="rocm"), str(ROOT)) == [
        "gb10_catalog['gpt-oss-120b'].platform must be one of cuda, cpu."]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["x"], "gb10_catalog_extra (inventory /inv) must be a mapping of catalog name to entry, not a list"),
        ({"x": "y"}, "gb10_catalog_extra['x'] (inventory /inv) must be a mapping of entry settings"),
    ],
)
def test_extra_that_is_not_a_mapping_is_refused(builtin, extra, needle):
    with pytest.raises(CatalogMergeError, match=re.escape(needle)):
        merge_catalog(builtin, extra, str(ROOT), "/inv")


def test_relative_extra_path_needs_the_inventory_folder(builtin):
    with pytest.raises(CatalogMergeError, match="set gb10_inventory_dir or give an absolute path"):
        merge_catalog(builtin, {"m": _extra_entry(builtin, "models/m/config.json")}, str(ROOT), None)
    assert merge_catalog(builtin, None, str(ROOT), None) == builtin


# --- recipe flags and environment (issue 16, item 7) -------------------------------------------


def test_the_int4_entry_carries_its_recipe_flag(catalog):
    entry = catalog["qwen3.5-397b-a17b-int4-autoround"]
    assert entry["vllm_flags"] == {"compilation-config": {"cudagraph_mode": "piecewise"}}
    assert entry_errors("qwen3.5-397b-a17b-int4-autoround", entry, str(ROOT)) == []
    assert vllm_flag_args(entry["vllm_flags"]) == ["--compilation-config", '{"cudagraph_mode":"piecewise"}']


def test_recipe_flags_render_in_order():
    flags = {"attention-backend": "TRITON_ATTN", "moe-backend": "cutlass", "enforce-eager": True,
             "async-scheduling": False, "max-cudagraph-capture-size": 512,
             "hf-overrides": {"rope_scaling": {"type": "yarn", "factor": 4.0}}}
    assert vllm_flag_args(flags) == [
        "--attention-backend", "TRITON_ATTN", "--moe-backend", "cutlass", "--enforce-eager",
        "--no-async-scheduling", "--max-cudagraph-capture-size", "512",
        "--hf-overrides", '{"rope_scaling":{"factor":4.0,"type":"yarn"}}',
    ]
    assert vllm_flags_errors("e", flags) == []


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--enforce-eager"], "must map vLLM flag names"),
        ({"tensor-parallel-size": 2}, "is set by the serving play; give it in launch.tensor_parallel_size instead."),
        ({"load-format": "fastsafetensors"}, "give it in launch.load_format instead."),
        ({"gpu-memory-utilization": 0.8}, "the memory planner (launch.memory_mode)"),
        ({"port": 9000}, "serve.yml (vllm_serve_api_port)"),
        ({"api-key": "x"}, "looks like a secret"),
        ({"hf-overrides": {"token": "hf_" + "a" * 34}}, "looks like a secret"),
        ({"--attention-backend": "FLASHINFER"}, "without the dashes, e.g. attention-backend"),
        ({"attention_backend": "FLASHINFER"}, "without the dashes, e.g. attention-backend"),
        ({"enable-lora": True}, "is not a flag the catalog knows; use one of"),
        ({"enforce-eager": "yes"}, "must be true or false."),
        ({"enforce-eager": False}, "has no --no- form in vLLM; leave it out"),
        ({"max-cudagraph-capture-size": "512"}, "must be a positive integer."),
        ({"compilation-config": "piecewise"}, "must be a non-empty mapping (passed to vLLM as JSON)."),
        ({"attention-backend": "FLASH ATTN; rm -rf /"}, "must be one word"),
    ],
)
def test_recipe_flags_mistakes(catalog, flags, needle):
    entry = dict(copy.deepcopy(catalog["gpt-oss-120b"]), vllm_flags=flags)
    errors = entry_errors("gpt-oss-120b", entry, str(ROOT))
    assert len(errors) == 1 and needle in errors[0], errors
    assert errors[0].startswith("gb10_catalog['gpt-oss-120b'].vllm_flags"), errors


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"HF_TOKEN": "x"}, "env.HF_TOKEN looks like a secret; remove it: secrets live in ansible-vault"),
        ({"OPENAI_API_KEY": "x"}, "looks like a secret"),
        ({"SOME_SETTING": "sk-" + "b" * 30}, "looks like a secret"),
        ({"NCCL_IB_HCA": "mlx5_0"}, "fabric environment the serving play sets from the inventory"),
        ({"VLLM_HOST_IP": "10.0.0.1"}, "set by the serving play from the node's fabric address; remove it."),
        ({"HF_HUB_OFFLINE": "0"}, "set by the serving play"),
        ({"lower": "1"}, "is not an environment variable name"),
    ],
)
def test_recipe_env_mistakes(catalog, env, needle):
    entry = dict(copy.deepcopy(catalog["gpt-oss-120b"]), env=env)
    errors = entry_errors("gpt-oss-120b", entry, str(ROOT))
    assert len(errors) == 1 and needle in errors[0], errors


def test_recipe_env_that_is_fine(catalog):
    env = {"VLLM_MARLIN_USE_ATOMIC_ADD": "1", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
           "TOKENIZERS_PARALLELISM": "false", "FLA_USE_TMA": "0", "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"}
    entry = dict(copy.deepcopy(catalog["gpt-oss-120b"]), env=env)
    assert entry_errors("gpt-oss-120b", entry, str(ROOT)) == []
# ------------------------------------------------------------------------ serve.yml's -e overrides
def test_serve_launch_applies_plan_ymls_overrides(catalog):
    entry = catalog[REF]
    out = serve_launch(REF, entry, {"max_model_len": "32768", "kv_cache_gib": "12", "num_speculative_tokens": "0",
                                    "max_num_seqs": ""}, str(ROOT))
    assert out["launch"]["max_model_len"] == 32768 and out["launch"]["kv_cache_memory_bytes"] == 12 * GIB
    assert out["launch"]["memory_mode"] == "bytes" and "speculative_config" not in out["launch"]
    assert out["launch"]["max_num_seqs"] == entry["launch"]["max_num_seqs"], "'' leaves the catalog's value"
    assert out["sources"]["max_model_len"] == "-e" and out["given"] == {
        "max_model_len": "32768", "kv_cache_gib": "12", "num_speculative_tokens": "0"}
    # the planner reads the same launch: planner_args on the entry with it gives the overrides' values
    params = planner_args(dict(entry, launch=out["launch"]), {}, str(ROOT))
    assert params["max_model_len"] == 32768 and params["kv_cache_memory_bytes"] == 12 * GIB
    fraction = serve_launch(REF, entry, {"gpu_memory_utilization": "0.8"}, str(ROOT))["launch"]
    assert fraction["memory_mode"] == "fraction" and fraction["gpu_memory_utilization"] == 0.8
    assert serve_launch(REF, entry, {}, str(ROOT))["launch"] == dict(entry["launch"])


@pytest.mark.parametrize(
    ("name", "overrides", "needle"),
    [
        (REF, {"max_model_len": "lots"}, "-e max_model_len=lots is not a positive integer"),
        (REF, {"tensor_parallel_size": "2"}, "-e tensor_parallel_size: serve.yml lays the model out by -e nodes=N"),
        (REF, {"node_mem_available_bytes": "1"}, "serve.yml measures MemAvailable on every serving node"),
        (REF, {"max_model_len": "10000000"}, "is more than the model's max_position_embeddings"),
        (REF, {"kv_cache_gib": "x"}, "-e kv_cache_gib=x is not a positive number of GiB"),
        (LAB, {"kv_cache_gib": "2"}, "sizes its KV pool from VLLM_CPU_KVCACHE_SPACE"),
    ],
)
def test_serve_launch_refuses_with_one_sentence(catalog, name, overrides, needle):
    with pytest.raises(PlanInputError) as info:
        serve_launch(name, catalog[name], overrides, str(ROOT))
    assert len(info.value.errors) == 1 and needle in info.value.errors[0], info.value.errors
