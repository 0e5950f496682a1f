"""plan.yml's logic: input checks, the TP/PP layout rule, the console table, the JSON report, the chart."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.calibration import (
    calibration_record,
    parse_startup_log,
    store_calibration,
)
from ansible_collections.gb10.cluster.plugins.module_utils.catalog import (
    PlanInputError,
    plan_layout,
    plan_lines,
    plan_report,
    resolve_plan,
)
from tests.support.catalog import builtin_catalog
from tests.support.vllm_logs import FRACTION_TP1

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "roles" / "memory_plan" / "files" / "plan_chart.py"
GIB = 1024**3
REF = "qwen3.5-397b-a17b-fp8"


@pytest.fixture(scope="module")
def catalog() -> dict:
    return builtin_catalog()


def errors_of(inputs, catalog) -> list[str]:
    with pytest.raises(PlanInputError) as info:
        resolve_plan(inputs, catalog, str(ROOT))
    return info.value.errors


# --- layout ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("launch", "nodes", "tp", "pp", "expected"),
    [
        ({"tensor_parallel_size": 4, "pipeline_parallel_size": 1}, None, None, None, (4, 4, 1)),
        ({"tensor_parallel_size": 4, "pipeline_parallel_size": 1}, 8, None, None, (8, 8, 1)),
        ({"tensor_parallel_size": 4, "pipeline_parallel_size": 1}, 2, None, None, (2, 2, 1)),
        ({"tensor_parallel_size": 1, "pipeline_parallel_size": 1}, 4, None, None, (4, 4, 1)),
        ({"tensor_parallel_size": 2, "pipeline_parallel_size": 2}, 8, None, None, (8, 2, 4)),
        ({"tensor_parallel_size": 2, "pipeline_parallel_size": 2}, 4, None, None, (4, 2, 2)),
        ({"tensor_parallel_size": 4, "pipeline_parallel_size": 1}, 8, 4, None, (8, 4, 2)),
        ({"tensor_parallel_size": 4, "pipeline_parallel_size": 1}, 8, None, 2, (8, 4, 2)),
        ({"tensor_parallel_size": 4, "pipeline_parallel_size": 1}, None, 2, 4, (8, 2, 4)),
    ],
)
def test_layout(launch, nodes, tp, pp, expected):
    layout = plan_layout(launch, nodes, tp, pp)
    assert (layout["nodes"], layout["tp"], layout["pp"]) == expected
    assert layout["rule"]


@pytest.mark.parametrize(
    ("launch", "nodes", "tp", "pp", "needle"),
    [
        ({"tensor_parallel_size": 4, "pipeline_parallel_size": 1}, 4, 2, 4, "one GPU per node"),
        (
            {"tensor_parallel_size": 4, "pipeline_parallel_size": 1},
            6,
            4,
            None,
            "not a multiple of tensor_parallel_size",
        ),
        (
            {"tensor_parallel_size": 4, "pipeline_parallel_size": 1},
            6,
            None,
            4,
            "not a multiple of pipeline_parallel_size",
        ),
        ({"tensor_parallel_size": 4, "pipeline_parallel_size": 2}, 6, None, None, "pipeline parallelism"),
    ],
)
def test_layout_errors(launch, nodes, tp, pp, needle):
    with pytest.raises(PlanInputError) as info:
        plan_layout(launch, nodes, tp, pp)
    assert needle in info.value.errors[0]


# --- inputs ------------------------------------------------------------------------------------


def test_reference_model_defaults_to_the_catalog_layout(catalog):
    resolved = resolve_plan({"model": REF}, catalog, str(ROOT))
    params = resolved["params"]
    assert resolved["layout"] == {"nodes": 4, "tp": 4, "pp": 1, "rule": "catalog layout"}
    assert resolved["artifact_stem"] == f"plan-{REF}-4nodes"
    assert params["model_config"] == str(ROOT / "catalog" / "models" / REF / "config.json")
    assert params["weights_bytes"] == catalog[REF]["checkpoint_bytes"]
    assert params["speculative_config"] == {"method": "mtp", "num_speculative_tokens": 2}
    assert params["fail_on_no_fit"] is False
    assert params["platform"] == "cuda"
    for key in ("tool_call_parser", "reasoning_parser", "enable_auto_tool_choice"):
        assert key not in params, "serving-only settings are not planner arguments"


def test_nodes_8_sets_tp_8(catalog):
    resolved = resolve_plan({"model": REF, "nodes": "8"}, catalog, str(ROOT))
    assert (resolved["params"]["tensor_parallel_size"], resolved["params"]["pipeline_parallel_size"]) == (
        8,
        1,
    )
    assert resolved["params"]["nodes"] == 8
    assert resolved["artifact_stem"] == f"plan-{REF}-8nodes"


def test_string_overrides_are_parsed(catalog):
    resolved = resolve_plan(
        {
            "model": REF,
            "max_model_len": "131072",
            "gpu_memory_utilization": "0.85",
            "enable_prefix_caching": "false",
            "num_speculative_tokens": "0",
            "kv_cache_dtype": "auto",
            "host_floor_bytes": "0",
            "weights_bytes": "400000000000",
        },
        catalog,
        str(ROOT),
    )
    params = resolved["params"]
    assert params["max_model_len"] == 131072
    assert params["gpu_memory_utilization"] == 0.85
    assert params["enable_prefix_caching"] is False
    assert "speculative_config" not in params
    assert params["kv_cache_dtype"] == "auto"
    assert params["host_floor_bytes"] == 0
    assert params["weights_bytes"] == 400000000000


def test_model_config_mode(catalog, tmp_path):
    config = tmp_path / "my-model" / "config.json"
    config.parent.mkdir()
    shutil.copy(ROOT / "catalog" / "models" / "gpt-oss-120b" / "config.json", config)
    resolved = resolve_plan(
        {"model_config": str(config), "max_model_len": "32768", "nodes": "2"}, catalog, str(ROOT)
    )
    assert resolved["model"] == "my-model"
    assert resolved["catalog_entry"] is False
    assert resolved["params"]["tensor_parallel_size"] == 2
    assert "weights_bytes" not in resolved["params"], "the planner estimates weights from the config"


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ({}, "Nothing to plan"),
        ({"model": "nope"}, "Unknown model 'nope'"),
        ({"model": REF, "model_config": "x.json"}, "not both"),
        ({"model": REF, "nodes": "0"}, "-e nodes=0 is not a positive integer"),
        ({"model": REF, "nodes": "four"}, "-e nodes=four is not a positive integer"),
        ({"model": REF, "nodes": True}, "not a positive integer"),
        ({"model": REF, "nodes": "1000"}, "more than 64"),
        ({"model": REF, "nodes": "3"}, "does not divide the model's 32 attention heads"),
        (
            {"model": REF, "tensor_parallel_size": "2", "pipeline_parallel_size": "2", "nodes": "2"},
            "one GPU per node",
        ),
        ({"model": REF, "gpu_memory_utilization": "1.5"}, "must be a number in (0, 1]"),
        ({"model": REF, "kv_cache_dtype": "int4"}, "-e kv_cache_dtype=int4 is not valid"),
        ({"model": REF, "dtype": "fp4"}, "-e dtype=fp4 is not valid"),
        ({"model": REF, "enable_prefix_caching": "maybe"}, "must be true or false"),
        ({"model": REF, "max_model_len": "-5"}, "-e max_model_len=-5 is not a positive integer"),
        ({"model": REF, "platform": "rocm"}, "-e platform=rocm is not valid"),
        ({"model": REF, "safetensors_index": "/nonexistent/index.json"}, "no such file"),
        ({"model_config": "/nonexistent/config.json"}, "no such file"),
    ],
)
def test_input_errors(catalog, inputs, needle):
    errors = errors_of(inputs, catalog)
    assert any(needle in error for error in errors), errors
    assert all(error.rstrip().endswith(".") for error in errors), errors


def test_unknown_model_lists_the_valid_names(catalog):
    (error,) = errors_of({"model": "qwen"}, catalog)
    for name in catalog:
        assert name in error


def test_every_mistake_is_reported_at_once(catalog):
    errors = errors_of({"model": REF, "nodes": "x", "max_num_seqs": "0", "kv_cache_dtype": "q"}, catalog)
    assert len(errors) == 3


# --- output ------------------------------------------------------------------------------------


def fake_result(fits: bool = True, nodes: int = 4) -> dict:
    node = {
        "total_bytes": int(121.69 * GIB),
        "host_floor_bytes": 8 * GIB,
        "requested_bytes": int(109.52 * GIB),
        "weights_bytes": int(94.03 * GIB),
        "draft_bytes": int(1.55 * GIB),
        "activation_peak_bytes": int(1.06 * GIB),
        "non_torch_bytes": int(1.25 * GIB),
        "cudagraph_bytes": int(0.34 * GIB),
        "kv_cache_bytes": int(11.28 * GIB) if fits else 0,
        "free_bytes": int(12.17 * GIB) if fits else int(-71.14 * GIB),
    }
    return {
        "changed": False,
        "invocation": {"module_args": {}},
        "vllm_release": "0.32.0",
        "kv_cache_tokens": 1339421 if fits else 0,
        "max_concurrency": 5.11 if fits else 0.0,
        "block_size": 2112,
        "num_blocks": 700,
        "kv_bytes_per_token": 7680,
        "kv_cache_bytes": node["kv_cache_bytes"],
        "fits": fits,
        "per_node": [dict(node, node_rank=i) for i in range(nodes)],
        "max_model_len": 262144,
        "max_model_len_that_fits": 262144 if fits else 0,
        "advice": [] if fits else ["use 4 nodes (tensor_parallel_size 4)"],
        "message": "FITS." if fits else "DOES NOT FIT.",
        "checks": [] if fits else [{"name": "host floor (node 0)", "ok": False, "detail": "-71.14 GiB left"}],
    }


def test_plan_lines(catalog):
    resolved = resolve_plan({"model": REF}, catalog, str(ROOT))
    lines = plan_lines(fake_result(), resolved)
    assert lines[0].startswith(f"Memory plan for {REF} on 4 GB10 node(s): TP=4 PP=1")
    header = lines[2].split()
    assert header[:3] == ["GiB", "per", "node"]
    assert header[3:] == [
        "total",
        "floor",
        "weights",
        "draft",
        "activ",
        "other",
        "cgraph",
        "KV",
        "free",
        "request",
    ]
    rows = [line for line in lines if line.startswith("node ")]
    assert len(rows) == 4
    assert rows[0].split()[2:] == [
        "121.69",
        "8.00",
        "94.03",
        "1.55",
        "1.06",
        "1.25",
        "0.34",
        "11.28",
        "4.17",
        "109.52",
    ]
    assert any(line.startswith("KV cache: 1,339,421 tokens") for line in lines)
    assert any(line.startswith("Max concurrency: 5.11x") for line in lines)
    assert "Fits: yes (catalog min_nodes 4)" in lines


def test_plan_lines_not_fitting(catalog):
    resolved = resolve_plan({"model": REF, "nodes": "2"}, catalog, str(ROOT))
    lines = plan_lines(fake_result(fits=False, nodes=2), resolved)
    assert "Fits: NO (catalog min_nodes 4)" in lines
    assert "Advice: use 4 nodes (tensor_parallel_size 4)" in lines
    assert any(line.startswith("FAILED host floor (node 0)") for line in lines)


def test_plan_report_drops_ansible_keys(catalog):
    resolved = resolve_plan({"model": REF}, catalog, str(ROOT))
    report = plan_report(fake_result(), resolved)
    assert "invocation" not in report["plan"] and "changed" not in report["plan"]
    assert report["model"] == REF and report["nodes"] == 4
    assert report["config"] == f"catalog/models/{REF}/config.json"
    json.dumps(report)


# --- chart -------------------------------------------------------------------------------------


def run_chart(report: dict, out: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(CHART), "--out", str(out), *extra],
        input=json.dumps(report),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    return json.loads(proc.stdout)


@pytest.mark.parametrize("fits", [True, False])
def test_chart_is_written_once_and_check_mode_writes_nothing(catalog, tmp_path, fits):
    pytest.importorskip("matplotlib")
    resolved = resolve_plan({"model": REF, "nodes": "4" if fits else "2"}, catalog, str(ROOT))
    report = plan_report(fake_result(fits=fits, nodes=4 if fits else 2), resolved)
    out = tmp_path / "plan.png"
    assert run_chart(report, out, "--check") == {"changed": True, "path": str(out)}
    assert not out.exists()
    assert run_chart(report, out)["changed"] is True
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert run_chart(report, out)["changed"] is False, "same plan, same bytes"
    assert run_chart(report, out, "--check")["changed"] is False
    report["plan"]["kv_cache_tokens"] = 1
    assert run_chart(report, out, "--check")["changed"] is True
    assert out.read_bytes() == data


# --- the playbook, end to end ---------------------------------------------------------------------

PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"


def run_playbook(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1"}
    command = [str(PLAYBOOK), "plan.yml", "-e", f"memory_plan_artifacts_dir={tmp_path}", *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


# The FP8 reference's 94.9 GiB of weights per node need MemAvailable of 108.3 GiB on 4 nodes, more than the
# 101 GiB planned for an unmeasured headless node: plan it on nodes measured at 110 GiB.
MEASURED_110 = ("-e", f"node_mem_available_bytes={110 * GIB}")


def test_playbook_reference_model_fits_and_is_idempotent(tmp_path):
    first = run_playbook(tmp_path, "-e", f"model={REF}", *MEASURED_110)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Fits: yes" in first.stdout
    assert (tmp_path / f"plan-{REF}-4nodes.png").is_file()
    report = json.loads((tmp_path / f"plan-{REF}-4nodes.json").read_text(encoding="utf-8"))
    assert report["plan"]["fits"] is True
    second = run_playbook(tmp_path, "-e", f"model={REF}", *MEASURED_110)
    assert second.returncode == 0
    assert "changed=0" in second.stdout


def test_playbook_fails_after_drawing_when_it_does_not_fit(tmp_path):
    result = run_playbook(tmp_path, "-e", f"model={REF}", "-e", "nodes=2")
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "does not fit on 2 node(s)" in output
    assert "Advice" in output
    assert (tmp_path / f"plan-{REF}-2nodes.png").is_file()
    assert (tmp_path / f"plan-{REF}-2nodes.json").is_file()


def test_model_config_mode_follows_nodes_not_a_catalog_layout(catalog):
    config = str(ROOT / "catalog" / "models" / "llama-3.3-70b-instruct" / "config.json")
    resolved = resolve_plan({"model_config": config, "max_model_len": "8192"}, catalog, str(ROOT))
    assert resolved["layout"] == {"nodes": 1, "tp": 1, "pp": 1, "rule": "TP = nodes, PP = 1"}
    assert resolved["model"] == "llama-3.3-70b-instruct"


def test_other_builds_of_the_same_model_are_named(catalog):
    resolved = resolve_plan({"model": REF, "nodes": "2"}, catalog, str(ROOT))
    names = [item["name"] for item in resolved["siblings"]]
    assert names == ["qwen3.5-397b-a17b-int4-autoround", "qwen3.5-397b-a17b-nvfp4"]
    lines = plan_lines(fake_result(fits=False, nodes=2), resolved)
    assert lines[-1].startswith(
        "Catalog: other builds of this model, smallest first: qwen3.5-397b-a17b-int4-autoround"
    )
    assert resolve_plan({"model": "gpt-oss-120b"}, catalog, str(ROOT))["siblings"] == []


def test_playbook_refuses_bad_overrides_with_their_sentences(tmp_path):
    result = run_playbook(tmp_path, "-e", f"model={REF}", "-e", "kv_cache_gib=lots", "-e", "max_num_seqs=0",
                          "-e", "memory_mode=auto")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    for sentence in (
        "-e kv_cache_gib=lots is not a positive number of GiB; give the KV pool per node, e.g. 12 or 12.5.",
        "-e max_num_seqs=0 is not a positive integer; give a whole number such as 16.",
        "-e memory_mode=auto is not valid; use one of bytes, fraction.",
    ):
        assert sentence in output, output
    assert not list(tmp_path.iterdir()), "nothing is planned or written on wrong inputs"


def test_playbook_uses_the_inventorys_calibration_and_marks_overrides(tmp_path):
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  hosts: {}\n", encoding="utf-8")
    plan = {"tensor_parallel_size": 1, "pipeline_parallel_size": 1, "platform": "cuda", "max_num_seqs": 16,
            "max_num_batched_tokens": 8192, "num_speculative_tokens": 0, "memory_mode": "fraction"}
    record = calibration_record(parse_startup_log(FRACTION_TP1), model="gpt-oss-120b",
                                image_digest="sha256:" + "5" * 64, plan=plan, measured_at="2026-11-27T10:02:40Z")
    path, _ = store_calibration(str(inventory / "calibration"), record)
    artifacts = tmp_path / "artifacts"
    result = run_playbook(artifacts, "-i", str(inventory), "-e", "model=gpt-oss-120b", "-e", "max_model_len=65536")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"Calibration: {path}: used weights 60.92 GiB per rank" in output
    assert "max_model_len 65,536 (-e)" in output and "max_num_seqs 16 (catalog)" in output
    assert "MemAvailable 101.00 GiB (planning default)" in output
    report = json.loads((artifacts / "plan-gpt-oss-120b-1nodes.json").read_text(encoding="utf-8"))
    assert report["sources"]["loaded_weights_bytes"] == "calibration"
    assert report["plan"]["memory_mode"] == "bytes" and report["plan"]["vllm_memory_args"]["kv_cache_memory_bytes"] > 0
