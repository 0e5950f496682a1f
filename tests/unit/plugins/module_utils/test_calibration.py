"""Calibration from real starts: vLLM 0.32's start-up lines parsed per rank, stored per model, image and
layout, and turned into planner inputs that say what they replaced. The log excerpts (CUDA in vLLM
0.32's exact formats, the lab's real CPU lines) are in tests/support/vllm_logs.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.calibration import (
    CalibrationError,
    calibration_overrides,
    calibration_path,
    calibration_record,
    find_calibration,
    load_calibration,
    parse_startup_log,
    store_calibration,
)
from ansible_collections.gb10.cluster.plugins.module_utils.memfit import plan_memory
from tests.support.vllm_logs import BYTES_TP4, CPU_AUTO, CPU_LAB, FRACTION_TP1, REFUSED

GIB = 1 << 30
MIB = 1 << 20
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "memfit"
DIGEST = "sha256:" + "0123456789ab" + "c" * 52
OTHER = "sha256:" + "fedcba987654" + "d" * 52


def gib(text: str) -> int:
    return round(float(text) * GIB)


# --- the parser ----------------------------------------------------------------------------------------


def test_fraction_mode_lines_of_a_single_process_engine():
    parsed = parse_startup_log(FRACTION_TP1)
    assert parsed["found"] is True
    assert list(parsed["ranks"]) == ["pp0_tp0"]
    rank = parsed["ranks"]["pp0_tp0"]
    assert rank == {
        "weights_bytes": gib("60.92"),
        "load_seconds": 95.123456,
        "cudagraph_estimate_bytes": gib("0.52"),
        "kv_cache_memory_bytes": gib("33.57"),
        "cudagraph_bytes": gib("0.48"),
        "free_at_start_bytes": gib("99.81"),
        "total_bytes": gib("121.69"),
        "gpu_memory_utilization": 0.8,
        "requested_bytes": gib("97.35"),
        "consumed_bytes": gib("61.73"),
        "peak_activation_bytes": gib("2.05"),
        "kv_suggested_bytes": 35_372_830_556,
    }
    assert (parsed["pool"], parsed["kv_cache_tokens"], parsed["request_tokens"], parsed["max_concurrency"]) == (
        "GPU", 3_889_968, 131_072, 29.68
    )


def test_bytes_mode_lines_of_four_ray_workers():
    parsed = parse_startup_log(BYTES_TP4)
    assert list(parsed["ranks"]) == ["pp0_tp0", "pp0_tp1", "pp0_tp2", "pp0_tp3"]
    assert parsed["ranks"]["pp0_tp1"] == {
        "weights_bytes": gib("54.29"),
        "load_seconds": 301.554321,
        "free_at_start_bytes": gib("99.02"),
        "kv_cache_memory_bytes": gib("35.38"),
        "cudagraph_bytes": gib("0.37"),
    }
    assert parsed["kv_cache_tokens"] == 4_200_044 and parsed["max_concurrency"] == 16.02


def test_pipeline_ranks_and_the_refusal():
    line = "(Worker_PP1_TP0 pid=9) INFO 11-27 10:00:00 [gpu_model_runner.py:5149] Model loading took 40.0 GiB memory and 1.000000 seconds"
    assert list(parse_startup_log(line)["ranks"]) == ["pp1_tp0"]
    refused = parse_startup_log(REFUSED)["ranks"]["pp0_tp0"]["refused"]
    assert refused == {"free_bytes": gib("97.07"), "total_bytes": gib("121.69"), "gpu_memory_utilization": 0.8,
                       "requested_bytes": gib("97.35")}


def test_cpu_build_lines():
    lab = parse_startup_log(CPU_LAB)
    assert lab["ranks"] == {"pp0_tp0": {"kv_cache_memory_bytes": GIB, "total_bytes": gib("10.96")}}
    assert (lab["pool"], lab["kv_cache_tokens"], lab["max_concurrency"], lab["request_tokens"]) == ("CPU", 262_144, 128.0, 2048)
    auto = parse_startup_log(CPU_AUTO)
    assert auto["ranks"]["pp0_tp1"] == {
        "kv_cache_memory_bytes": gib("3.2"), "total_bytes": gib("10.96"), "consumed_bytes": gib("1.3")
    }
    assert (auto["kv_cache_tokens"], auto["max_concurrency"], auto["request_tokens"]) == (2_097_152, 4096.0, 512)


def test_nothing_logged():
    assert parse_startup_log("Uvicorn running on http://0.0.0.0:8000")["found"] is False
    assert parse_startup_log("")["ranks"] == {}


# --- record, store, find ---------------------------------------------------------------------------------


def gpt_oss_plan(**params) -> dict:
    return plan_memory({"model_config": str(FIXTURES / "gpt-oss-120b.json"), "max_model_len": 131072,
                        "gpu_memory_utilization": 0.8, **params})


def record_tp1(**kwargs) -> dict:
    return calibration_record(
        parse_startup_log(FRACTION_TP1), model="gpt-oss-120b", image_digest=DIGEST, plan=gpt_oss_plan(),
        measured_at="2026-11-27T10:02:40Z", vllm_release="0.32.0", **kwargs,
    )


def test_record_keeps_the_layout_settings_and_the_start_up_use():
    record = record_tp1(measured_memory=[{"host": "n1", "mem_total": 130_663_006_208, "mem_available": gib("102.3")}])
    assert (record["tensor_parallel_size"], record["pipeline_parallel_size"], record["platform"]) == (1, 1, "cuda")
    assert record["settings"]["memory_mode"] == "fraction"
    assert record["settings"]["max_num_batched_tokens"] == 2048
    assert record["logged"]["kv_cache_tokens"] == 3_889_968
    rank = record["ranks"][0]
    assert (rank["rank"], rank["pp_rank"], rank["tp_rank"]) == (0, 0, 0)
    # MemAvailable before the start less vLLM's snapshot: what its own processes took first
    assert rank["startup_consumed_bytes"] == gib("102.3") - gib("99.81")
    with pytest.raises(CalibrationError, match="holds no memory line"):
        calibration_record(parse_startup_log("nothing"), model="m", image_digest=DIGEST, plan=gpt_oss_plan())


def test_store_is_idempotent_and_find_prefers_the_pinned_image(tmp_path):
    record = record_tp1()
    path, changed = store_calibration(str(tmp_path), record)
    assert path == str(tmp_path / "gpt-oss-120b" / "0123456789ab-tp1pp1.json") and changed
    assert store_calibration(str(tmp_path), record) == (path, False)
    assert load_calibration(path) == json.loads(json.dumps(record))
    found = find_calibration(str(tmp_path), "gpt-oss-120b", DIGEST, 1, 1)
    assert found["path"] == path and found["note"] == ""
    other = find_calibration(str(tmp_path), "gpt-oss-120b", OTHER, 1, 1)
    assert other["record"] is None and "exists for image(s) 0123456789ab, not for the pinned fedcba987654" in other["note"]
    unpinned = find_calibration(str(tmp_path), "gpt-oss-120b", "", 1, 1)
    assert unpinned["path"] == path and "not pinned: using the newest calibration, image 0123456789ab" in unpinned["note"]
    none = find_calibration(str(tmp_path), "gpt-oss-120b", DIGEST, 2, 1)
    assert none["record"] is None and none["note"].startswith("no calibration for gpt-oss-120b tp2pp1")


def test_unpinned_images_take_the_newest_measurement(tmp_path):
    store_calibration(str(tmp_path), record_tp1())
    newer = {**record_tp1(), "image_digest": OTHER, "measured_at": "2026-12-01T08:00:00Z"}
    store_calibration(str(tmp_path), newer)
    assert find_calibration(str(tmp_path), "gpt-oss-120b", "", 1, 1)["record"]["image_digest"] == OTHER


def test_bad_files_and_digests_are_one_sentence(tmp_path):
    with pytest.raises(CalibrationError, match="not a pinned sha256 digest"):
        calibration_path(str(tmp_path), "m", "", 1, 1)
    bad = tmp_path / "gpt-oss-120b" / "0123456789ab-tp1pp1.json"
    bad.parent.mkdir()
    bad.write_text("{oops")
    with pytest.raises(CalibrationError, match=r"is not valid JSON .*-e calibration=false"):
        find_calibration(str(tmp_path), "gpt-oss-120b", DIGEST, 1, 1)
    bad.write_text(json.dumps({"schema": 99}))
    with pytest.raises(CalibrationError, match="is not a schema-1 calibration record"):
        load_calibration(str(bad))


# --- measured over estimated ----------------------------------------------------------------------------


def test_fraction_mode_start_gives_every_figure():
    record = record_tp1(measured_memory=[{"host": "n1", "mem_total": 1, "mem_available": gib("102.3")}])
    params = {"tensor_parallel_size": 1, "max_model_len": 131072}
    got = calibration_overrides(record, params)
    startup = gib("102.3") - gib("99.81")
    assert got["set"] == {
        "loaded_weights_bytes": [gib("60.92")],
        # vLLM's peak activation includes its graph estimate: 2.05 - 0.52 GiB
        "activation_peak_bytes": gib("2.05") - gib("0.52"),
        "cudagraph_bytes": gib("0.48"),
        # consumed less weights (0.81 GiB), plus what vLLM's processes took before its snapshot
        "non_torch_bytes": gib("61.73") - gib("60.92") + startup,
        "admission_margin_bytes": math.ceil((startup + 512 * MIB) / MIB) * MIB,
    }
    assert len(got["used"]) == 5 and got["skipped"] == []
    plan = plan_memory({"model_config": str(FIXTURES / "gpt-oss-120b.json"), **params, **got["set"],
                        "memory_mode": "bytes"})
    assert plan["per_rank"][0]["weights_bytes"] == gib("60.92")
    assert plan["estimates"]["activation_peak_bytes"] == "given"


def test_bytes_mode_start_gives_weights_and_graphs_only():
    plan = {"tensor_parallel_size": 4, "pipeline_parallel_size": 1, "platform": "cuda", "memory_mode": "bytes",
            "max_num_seqs": 16, "max_num_batched_tokens": 8192, "num_speculative_tokens": 2}
    record = calibration_record(parse_startup_log(BYTES_TP4), model="qwen3.5-397b-a17b-nvfp4", image_digest=DIGEST,
                                plan=plan)
    params = {"tensor_parallel_size": 4, "max_num_seqs": 16, "max_num_batched_tokens": 8192,
              "speculative_config": {"method": "mtp", "num_speculative_tokens": 2}}
    got = calibration_overrides(record, params)
    assert got["set"] == {
        "loaded_weights_bytes": [gib("54.31"), gib("54.29"), gib("54.29"), gib("54.33")],
        "cudagraph_bytes": gib("0.38"),
    }
    # the profiling run is skipped in bytes mode: activations and non-torch stay estimates


def test_figures_measured_with_other_settings_are_not_used():
    record = record_tp1()
    got = calibration_overrides(record, {"tensor_parallel_size": 1, "max_num_batched_tokens": 8192,
                                         "max_num_seqs": 16, "enforce_eager": True})
    assert "activation_peak_bytes" not in got["set"] and "cudagraph_bytes" not in got["set"]
    assert "activations: measured at max_num_batched_tokens 2048 (plan: 8192), max_num_seqs 256 (plan: 16)" in got["skipped"]
    assert any(s.startswith("CUDA graphs: captured at max_num_seqs 256 (plan: 16), enforce_eager") for s in got["skipped"])
    assert "loaded_weights_bytes" in got["set"], "the weights do not depend on the batch"
    mtp = calibration_overrides(record, {"tensor_parallel_size": 1,
                                         "speculative_config": {"method": "mtp", "num_speculative_tokens": 1}})
    assert "loaded_weights_bytes" not in mtp["set"] and "weights: measured with the MTP draft off" in mtp["skipped"]
    layout = calibration_overrides(record, {"tensor_parallel_size": 2})
    assert layout["set"] == {} and "the plan is tp2pp1" in layout["skipped"][0]
