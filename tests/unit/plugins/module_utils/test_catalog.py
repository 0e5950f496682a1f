"""The model catalog: the built-in entries (roles/gb10/defaults/main.yml) and their config.json copies,
the merge with an inventory's gb10_catalog_extra, and the lab's entries (added that way)."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.catalog import (
    HEX40_RE,
    NAME_RE,
    REQUIRED_KEYS,
    CatalogMergeError,
    catalog_errors,
    config_errors,
    entry_errors,
    load_model_config,
    merge_catalog,
    resolve_plan,
    text_config,
)
from ansible_collections.gb10.cluster.plugins.module_utils.memfit import plan_memory
from tests.support.catalog import builtin_catalog, merged_catalog

ROOT = Path(__file__).resolve().parents[4]
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
LAB = {"tiny-qwen3", "tiny-llama", "tiny-broken"}


@pytest.fixture(scope="module")
def catalog() -> dict:
    return builtin_catalog()


@pytest.fixture(scope="module")
def lab_catalog() -> dict:
    """gb10_catalog on the lab: the built-in entries and the lab inventory's gb10_catalog_extra."""
    return merged_catalog()


def test_catalog_is_valid(catalog):
    assert catalog_errors(catalog, str(ROOT)) == []


def test_catalog_has_the_expected_entries(catalog):
    assert set(catalog) >= EXPECTED


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


def test_deepseek_entry_is_mla(catalog):
    text = load_model_config(str(ROOT / catalog["deepseek-r1-awq"]["config"]))
    assert (text["kv_lora_rank"], text["qk_rope_head_dim"]) == (512, 64)
    assert catalog["deepseek-r1-awq"]["min_nodes"] <= 8


def test_tiny_lab_entry(lab_catalog):
    entry = lab_catalog["tiny-qwen3"]
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


def test_lab_entries_are_valid_and_not_built_in(catalog, lab_catalog):
    assert catalog_errors(lab_catalog, str(ROOT)) == []
    assert LAB <= set(lab_catalog)
    assert not LAB & set(catalog), "the lab's models live in the lab inventory, not in the built-in catalog"


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


def test_config_errors_on_a_broken_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"architectures": [], "hidden_size": 0}', encoding="utf-8")
    errors = config_errors(load_model_config(str(path)), "x")
    assert any("architectures" in e for e in errors)
    assert any("hidden_size" in e for e in errors)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not readable JSON"):
        load_model_config(str(path))


# --- the planner on every entry ------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXPECTED | {"tiny-qwen3"}))
def test_planner_runs_for_every_entry_on_4_nodes(lab_catalog, name):
    resolved = resolve_plan({"model": name, "nodes": "4"}, lab_catalog, str(ROOT))
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


# --- an inventory adds models: gb10_catalog_extra merged over the built-in catalog -----------------

def _extra_entry(catalog, config: str, **changes):
    entry = copy.deepcopy(catalog["gpt-oss-120b"])
    entry["config"] = config
    entry.update(changes)
    return entry


def test_extra_entry_config_is_relative_to_the_inventory(catalog, tmp_path):
    inventory = tmp_path / "inventory"
    (inventory / "models" / "my-model").mkdir(parents=True)
    shutil.copy(ROOT / "catalog" / "models" / "gpt-oss-120b" / "config.json", inventory / "models" / "my-model")
    merged = merge_catalog(catalog, {"my-model": _extra_entry(catalog, "models/my-model/config.json")},
                           str(ROOT), str(inventory))
    assert set(merged) == set(catalog) | {"my-model"}
    entry = merged["my-model"]
    # Every consumer reads config relative to the repository root: the merge makes it so.
    assert (ROOT / entry["config"]).resolve() == (inventory / "models" / "my-model" / "config.json").resolve()
    assert entry["origin"] == {"variable": "gb10_catalog_extra", "inventory": str(inventory),
                               "config": "models/my-model/config.json"}
    assert entry_errors("my-model", entry, str(ROOT)) == []
    assert merged["gpt-oss-120b"] == catalog["gpt-oss-120b"], "built-in entries are unchanged"
    resolved = resolve_plan({"model": "my-model"}, merged, str(ROOT))
    assert Path(resolved["params"]["model_config"]).resolve() == (inventory / "models" / "my-model" / "config.json").resolve()


def test_extra_entry_absolute_config_and_weights_dir(catalog, tmp_path):
    config = str(ROOT / "catalog" / "models" / "gpt-oss-120b" / "config.json")
    extra = {"local": _extra_entry(catalog, config, hf_repo="", weights={"source": "controller", "dir": "files/local"})}
    entry = merge_catalog(catalog, extra, str(ROOT), str(tmp_path))["local"]
    assert entry["config"] == "catalog/models/gpt-oss-120b/config.json"
    assert entry["weights"] == {"source": "controller", "dir": str(tmp_path / "files" / "local")}
    assert entry_errors("local", entry, str(ROOT)) == [], "files from the controller need no hf_repo"


def test_extra_entry_replaces_a_built_in_one(catalog, tmp_path):
    config = str(ROOT / "catalog" / "models" / "gpt-oss-120b" / "config.json")
    mine = _extra_entry(catalog, config, description="our own gpt-oss pins")
    mine["launch"] = {"tensor_parallel_size": 2, "pipeline_parallel_size": 1, "max_model_len": 8192}
    merged = merge_catalog(catalog, {"gpt-oss-120b": mine}, str(ROOT), str(tmp_path))
    assert merged["gpt-oss-120b"]["description"] == "our own gpt-oss pins"
    assert merged["gpt-oss-120b"]["launch"] == mine["launch"], "replaced whole, not merged key by key"
    assert len(merged) == len(catalog)


def test_extra_entry_mistakes_name_the_entry_and_the_inventory(catalog, tmp_path):
    extra = {
        "missing-config": _extra_entry(catalog, "models/nope/config.json"),
        "bad-tp": _extra_entry(catalog, str(ROOT / "catalog" / "models" / "gpt-oss-120b" / "config.json"),
                               launch={"tensor_parallel_size": 5, "pipeline_parallel_size": 1, "max_model_len": 8}),
        "bad-weights": _extra_entry(catalog, str(ROOT / "catalog" / "models" / "gpt-oss-120b" / "config.json"),
                                    weights={"source": "s3"}),
    }
    merged = merge_catalog(catalog, extra, str(ROOT), str(tmp_path))
    assert entry_errors("missing-config", merged["missing-config"], str(ROOT)) == [
        f"gb10_catalog_extra['missing-config'].config: models/nope/config.json ({tmp_path}/models/nope/config.json) "
        f"does not exist (inventory {tmp_path})."]
    (tp,) = entry_errors("bad-tp", merged["bad-tp"], str(ROOT))
    assert tp.startswith("gb10_catalog_extra['bad-tp'].launch: tensor_parallel_size 5 does not divide")
    assert tp.endswith(f"(inventory {tmp_path}).")
    assert entry_errors("bad-weights", merged["bad-weights"], str(ROOT)) == [
        f"gb10_catalog_extra['bad-weights'].weights.source must be one of hf, controller (inventory {tmp_path})."]
    # Built-in entries keep their name.
    assert entry_errors("gpt-oss-120b", _broken(catalog, platform="rocm"), str(ROOT)) == [
        "gb10_catalog['gpt-oss-120b'].platform must be one of cuda, cpu."]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["x"], "gb10_catalog_extra (inventory /inv) must be a mapping of catalog name to entry, not a list"),
        ({"x": "y"}, "gb10_catalog_extra['x'] (inventory /inv) must be a mapping of entry settings"),
    ],
)
def test_extra_that_is_not_a_mapping_is_refused(catalog, extra, needle):
    with pytest.raises(CatalogMergeError, match=re.escape(needle)):
        merge_catalog(catalog, extra, str(ROOT), "/inv")


def test_relative_extra_path_needs_the_inventory_folder(catalog):
    with pytest.raises(CatalogMergeError, match="set gb10_inventory_dir or give an absolute path"):
        merge_catalog(catalog, {"m": _extra_entry(catalog, "models/m/config.json")}, str(ROOT), None)
    assert merge_catalog(catalog, None, str(ROOT), None) == catalog
