"""The calibration filters the serving side uses after a start: parse, record, where, exact text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.gb10.cluster.plugins.filter.calibration import FilterModule
from ansible_collections.gb10.cluster.plugins.module_utils.calibration import find_calibration
from tests.support.vllm_logs import BYTES_TP4

FILTERS = FilterModule().filters()
DIGEST = "sha256:" + "ab" * 32
PLAN = {"tensor_parallel_size": 4, "pipeline_parallel_size": 1, "platform": "cuda", "memory_mode": "bytes",
        "max_num_seqs": 16, "max_num_batched_tokens": 8192, "num_speculative_tokens": 2}


def test_parse_record_path_and_text_round_trip(tmp_path: Path):
    parsed = FILTERS["vllm_startup"](BYTES_TP4)
    measured = [{"host": f"n{i}", "mem_total": 130_663_006_208, "mem_available": 101 << 30} for i in range(4)]
    record = FILTERS["calibration_record"](parsed, "qwen3.5-397b-a17b-nvfp4", DIGEST, PLAN, measured,
                                           "2026-11-27T10:05:00Z", "0.32.0")
    path = FILTERS["calibration_file"](record, str(tmp_path))
    assert path == str(tmp_path / "qwen3.5-397b-a17b-nvfp4" / "abababababab-tp4pp1.json")
    Path(path).parent.mkdir()
    Path(path).write_text(FILTERS["calibration_text"](record))
    found = FILTERS["calibration_find"](str(tmp_path), "qwen3.5-397b-a17b-nvfp4", DIGEST, "4", 1)
    assert found == find_calibration(str(tmp_path), "qwen3.5-397b-a17b-nvfp4", DIGEST, 4, 1)
    assert found["record"] == json.loads(json.dumps(record))
    assert [r["startup_consumed_bytes"] for r in record["ranks"]][0] == (101 << 30) - round(98.84 * (1 << 30))


def test_a_log_without_memory_lines_fails_the_task_with_a_sentence():
    with pytest.raises(AnsibleFilterError, match="calibration of m: the start-up log of m holds no memory line"):
        FILTERS["calibration_record"](FILTERS["vllm_startup"]("nothing"), "m", DIGEST, PLAN)
    broken = Path("/tmp") / "nonexistent-calibration-dir"
    assert FILTERS["calibration_find"](str(broken), "m", DIGEST, 1, 1)["record"] is None
    with pytest.raises(AnsibleFilterError, match="is not a pinned sha256 digest"):
        FILTERS["calibration_file"]({"model": "m", "image_digest": "", "tensor_parallel_size": 1,
                                     "pipeline_parallel_size": 1}, "/tmp")


def test_guard_stops_and_line():
    record = {"time": "2026-11-29T14:00:00Z", "host": "spark-7", "container": "gb10-vllm", "model": "tiny-qwen3",
              "reason": "MemAvailable 0.90 GiB fell below the host floor 1.00 GiB: stopped gb10-vllm", "stop_rc": 0}
    registered = {"results": [
        {"item": "gx10-1", "rc": 1, "stdout": "", "stderr": "cat: no such file"},
        {"item": "gx10-2", "rc": 0, "stdout": json.dumps(record)},
        {"item": "gx10-3", "unreachable": True},
        {"item": "gx10-4", "rc": 0, "stdout": "{broken"},
    ]}
    stops = FILTERS["guard_stops"](registered)
    assert [s["node"] for s in stops] == ["gx10-2", "gx10-4"]
    assert stops[0]["host"] == "spark-7", "the node's own hostname is kept; node is the inventory name"
    assert "unreadable stopped.json" in stops[1]["reason"]
    line = FILTERS["guard_line"](stops[0])
    assert line.startswith("Memory guard: gx10-2 stopped gb10-vllm at 2026-11-29T14:00:00Z: MemAvailable 0.90 GiB")
    assert "journalctl -u gb10-memory-guard" in line
