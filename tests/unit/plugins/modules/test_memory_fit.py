"""gb10.cluster.memory_fit run as a module (patch_module_args): result, refusal and no-fit failure."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.modules import memory_fit as memory_fit_module

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "memfit"
TINY = str(FIXTURES / "tiny-qwen3.json")


def _run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        memory_fit_module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_module_returns_the_plan_in_check_mode(capsys):
    code, out = _run(capsys, {
        "model_config": TINY,
        "platform": "cpu",
        "kv_cache_memory_bytes": 1 << 30,
        "max_model_len": 512,
        "_ansible_check_mode": True,
    })
    assert code == 0
    assert out["changed"] is False and out["fits"] is True
    # the lab's logged figures: 1,048,576 tokens, 2048.00x
    assert out["kv_cache_tokens"] == 1_048_576
    assert out["max_concurrency"] == 2048.0
    assert out["vllm_release"] == "0.32.0"
    assert out["per_node"][0]["kv_cache_bytes"] == 1 << 30


def test_module_accepts_config_as_dict(capsys):
    cfg = json.loads(Path(TINY).read_text())
    code, out = _run(capsys, {"model_config": cfg, "platform": "cpu", "kv_cache_memory_bytes": 1 << 30,
                              "max_model_len": 512})
    assert code == 0 and out["num_blocks"] == 8_192


def test_module_fails_with_numbers_and_advice_when_it_does_not_fit(capsys):
    code, out = _run(capsys, {
        "model_config": TINY,
        "platform": "cpu",
        "kv_cache_memory_bytes": 1 << 20,
        "max_model_len": 4096,
    })
    assert code == 1 and out["failed"] is True
    assert out["fits"] is False
    assert "DOES NOT FIT" in out["msg"]
    assert "set max_model_len to 896" in out["msg"]
    assert out["advice"] == ["set max_model_len to 896 (the largest that fits one request)"]


def test_module_reports_without_failing_when_asked(capsys):
    code, out = _run(capsys, {
        "model_config": TINY,
        "platform": "cpu",
        "kv_cache_memory_bytes": 1 << 20,
        "max_model_len": 4096,
        "fail_on_no_fit": False,
    })
    assert code == 0 and out["fits"] is False and out["max_model_len_that_fits"] == 896


def test_module_turns_plan_errors_into_one_sentence(capsys):
    code, out = _run(capsys, {
        "model_config": str(FIXTURES / "qwen3.5-397b-a17b-fp8.json"),
        "tensor_parallel_size": 3,
    })
    assert code == 1
    assert out["msg"] == (
        "tensor_parallel_size 3 does not divide the 32 attention heads of "
        "Qwen3_5MoeForConditionalGeneration; pick a divisor of 32."
    )


def test_module_worked_gb10_example(capsys):
    code, out = _run(capsys, {
        "model_config": str(FIXTURES / "qwen3.5-397b-a17b-fp8.json"),
        "weights_bytes": 379 * (1 << 30),
        "tensor_parallel_size": 4,
        "kv_cache_dtype": "fp8",
        "max_model_len": 262144,
        "max_num_seqs": 16,
        "max_num_batched_tokens": 8192,
        "gpu_memory_utilization": 0.90,
        "speculative_config": {"method": "mtp", "num_speculative_tokens": 2},
    })
    assert code == 0 and out["fits"] is True
    assert (out["block_size"], out["blocks_per_request"]) == (2112, 137)
    assert len(out["per_node"]) == 4


@pytest.mark.parametrize("module", ["memory_fit", "memory_facts"])
def test_documentation_mirrors_the_argument_spec(module):
    import importlib

    import yaml

    mod = importlib.import_module(f"ansible_collections.gb10.cluster.plugins.modules.{module}")
    doc = yaml.safe_load(mod.DOCUMENTATION)
    yaml.safe_load(mod.EXAMPLES)
    yaml.safe_load(mod.RETURN)
    options = doc["options"]
    assert set(options) == set(mod.ARGUMENT_SPEC)
    for name, spec in mod.ARGUMENT_SPEC.items():
        opt = options[name]
        assert opt["type"] == spec["type"], name
        assert opt.get("default") == spec.get("default"), name
        assert opt.get("choices") == spec.get("choices"), name
        assert bool(opt.get("required", False)) == bool(spec.get("required", False)), name


def test_plan_keys_cover_every_planner_option():
    assert set(memory_fit_module.PLAN_KEYS) == set(memory_fit_module.ARGUMENT_SPEC) - {"fail_on_no_fit"}
