"""bench.yml through ansible-runner: a bad -e is refused in one sentence and two kept runs are compared,
both with no node contacted; with nothing answering, the run names the silent nodes."""
from __future__ import annotations

import json
from pathlib import Path

from ansible_collections.gb10.cluster.plugins.module_utils.bench import bench_record, record_text
from tests.support.playbooks import make_inventory, run_playbook

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bench"
SERVING = {"model": "tiny-qwen3", "image": "10.77.5.1:5000/gb10/vllm-cpu@sha256:" + "86" * 32,
           "nodes": ["gx10-1", "gx10-2"], "layout": "TP=2 PP=1 on 2 node(s)", "tensor_parallel_size": 2,
           "pipeline_parallel_size": 1, "settings": {"max_model_len": "4096", "VLLM_CPU_KVCACHE_SPACE": "1"}}
SETTINGS = {"concurrency": [1, 2], "input_len": [32, 96], "output_len": 8, "prompts": 4}


def _hosts(events) -> set[str]:
    """Hosts a task ran for (a skipped task touches nothing)."""
    return {e["event_data"].get("host") for e in events
            if e.get("event", "") in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable")
            and e["event_data"].get("host")}


def _stdout(run) -> str:
    return run.stdout.read()


def _keep(inv: Path, run_id: str, kv_space: str) -> None:
    results = [{"name": f"c{c}-in{n}.json", "input_len": n, "concurrency": c,
                "result": json.loads((FIXTURES / f"c{c}-in{n}.json").read_text())} for n in (32, 96) for c in (1, 2)]
    serving = {**SERVING, "settings": {**SERVING["settings"], "VLLM_CPU_KVCACHE_SPACE": kv_space}}
    record = bench_record(results, {"serving": serving, "head": "gx10-1"}, SETTINGS, run_id, "0.32.0+cpu")
    folder = inv / "bench" / "tiny-qwen3"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{run_id}.json").write_text(record_text(record))


def test_bad_e_is_refused_before_any_node(tmp_path: Path):
    inv = make_inventory(tmp_path, lambda nodes: None)
    run = run_playbook(tmp_path, "bench.yml", inv, {"concurrency": "4,4", "input_len": "big"})
    assert run.rc != 0
    out = _stdout(run)
    assert ("-e concurrency=4,4 names a value twice: give each concurrency once. -e input_len=big is not a "
            "comma-separated list of numbers from 1 to 1048576 (e.g. -e input_len=64,256).") in out
    assert _hosts(run.events) == {"localhost"}


def test_compare_two_kept_runs_without_a_node(tmp_path: Path):
    inv = make_inventory(tmp_path, lambda nodes: None)
    _keep(inv, "20261129T171500Z", "1")
    _keep(inv, "20261129T180000Z", "2")
    run = run_playbook(tmp_path, "bench.yml", inv, {"compare": "20261129T180000Z,20261129T171500Z"})
    out = _stdout(run)
    assert run.rc == 0, out[-3000:]
    assert "A = 20261129T180000Z: tiny-qwen3 | 10.77.5.1:5000/gb10/vllm-cpu@868686868686 | TP=2 PP=1 on 2 node(s)" in out
    assert "VLLM_CPU_KVCACHE_SPACE 2" in out
    assert "B = 20261129T171500Z" in out
    assert "gen B vs A" in out
    assert _hosts(run.events) == {"localhost"}

    missing = run_playbook(tmp_path, "bench.yml", inv, {"compare": "20261129T171500Z,20200101T000000Z"})
    assert missing.rc != 0
    assert "-e compare: no benchmark run 20200101T000000Z under the inventory's bench/ folder" in _stdout(missing)


def test_silent_nodes_are_named(tmp_path: Path):
    inv = make_inventory(tmp_path, lambda nodes: None)
    run = run_playbook(tmp_path, "bench.yml", inv, {})
    out = _stdout(run)
    assert run.rc != 0
    assert "gx10-1, gx10-2, gx10-3, gx10-4 did not answer over SSH while reading what serves" in out
