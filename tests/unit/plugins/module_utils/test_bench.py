"""bench.yml's logic: the -e check, what serves, vLLM's --save-result JSON, the record, the table, the pick."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.gb10.cluster.plugins.filter.bench import FilterModule
from ansible_collections.gb10.cluster.plugins.module_utils.bench import (
    BenchError,
    bench_point,
    bench_record,
    bench_table,
    bench_target,
    check_request,
    pick_runs,
    record_path,
    record_text,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "bench"
FILTERS = FilterModule().filters()
OK = {"concurrency": "1,4", "input_len": "64,256", "output_len": "32", "prompts": "16", "last": "5", "compare": "",
      "model": ""}
# What molecule/serve/tasks/bench.yml asks for on the lab (the fixtures are that run's --save-result files).
SMALL = {**OK, "concurrency": "1,2", "input_len": "32,96", "output_len": "8", "prompts": "4"}


def lab_result(name: str) -> dict:
    """A --save-result file that vllm bench serve wrote on the lab (tiny-qwen3, TP=2 over two nodes)."""
    return json.loads((FIXTURES / name).read_text())


# ------------------------------------------------------------------------------------------- request
def test_defaults_pass():
    out = check_request(OK)
    assert out["errors"] == []
    assert out["settings"] == {"concurrency": [1, 4], "input_len": [64, 256], "output_len": 32, "prompts": 16,
                               "last": 5, "compare": [], "model": ""}


@pytest.mark.parametrize(("key", "value", "sentence"), [
    ("concurrency", "1,x", "-e concurrency=1,x is not a comma-separated list of numbers from 1 to 1024 (e.g. -e concurrency=1,4)."),
    ("concurrency", "0", "-e concurrency=0 is not a comma-separated list of numbers from 1 to 1024 (e.g. -e concurrency=1,4)."),
    ("concurrency", "2,2", "-e concurrency=2,2 names a value twice: give each concurrency once."),
    ("input_len", "", "-e input_len= is not a comma-separated list of numbers from 1 to 1048576 (e.g. -e input_len=64,256)."),
    ("output_len", "-3", "-e output_len=-3 is not a number from 1 to 65536."),
    ("prompts", "many", "-e prompts=many is not a number from 1 to 100000."),
    ("last", "0", "-e last=0 is not a number from 1 to 1000."),
    ("compare", "20261129T171500Z", "-e compare=20261129T171500Z is not two or more run ids such as"),
    ("compare", "a,b", "-e compare=a,b is not two or more run ids such as"),
    ("model", "Tiny Qwen", "-e model=Tiny Qwen is not a catalog name"),
])
def test_each_mistake_is_one_sentence(key, value, sentence):
    errors = check_request({**OK, key: value})["errors"]
    assert len(errors) == 1
    assert errors[0].startswith(sentence)
    assert errors[0].count(". ") == 0 or "e.g." in errors[0] or "such as" in errors[0]


def test_fewer_prompts_than_concurrency_is_refused():
    errors = check_request({**OK, "concurrency": "1,8", "prompts": "4"})["errors"]
    assert errors == ["-e prompts=4 is fewer than the largest concurrency (8): give at least as many prompts as "
                      "concurrent requests."]


def test_compare_ids_are_kept_in_order():
    out = check_request({**OK, "compare": "20261129T180000Z, 20261129T171500Z"})
    assert out["errors"] == []
    assert out["settings"]["compare"] == ["20261129T180000Z", "20261129T171500Z"]


# ------------------------------------------------------------------------------------------- target
def inspected(role: str = "api", model: str = "tiny-qwen3", status: str = "running", args: list | None = None):
    return {
        "Name": "/gb10-vllm", "Image": "sha256:e232d94e9b64",
        "Args": args if args is not None else [
            "serve", "/models/tiny-qwen3", "--served-model-name", "tiny-qwen3", "--tensor-parallel-size", "2",
            "--max-model-len", "4096", "--max-num-seqs", "8", "--load-format", "dummy", "--nnodes", "2",
            "--host", "0.0.0.0", "--port", "8000"],
        "State": {"Status": status},
        "Mounts": [{"Source": "/srv/gb10/models/tiny-qwen3", "Destination": "/models/tiny-qwen3"},
                   {"Source": "/srv/gb10/cache", "Destination": "/root/.cache"}],
        "Config": {"Image": "10.77.5.1:5000/gb10/vllm-cpu@sha256:" + "86" * 32, "Env": ["VLLM_CPU_KVCACHE_SPACE=1"],
                   "Labels": {"gb10.serving.model": model, "gb10.serving.role": role, "gb10.serving.hash": "h"}},
    }


def test_target_from_head_and_follower():
    t = bench_target({"gx10-1": [inspected()], "gx10-2": [inspected(role="follower")], "gx10-3": []})
    assert t["head"] == "gx10-1"
    assert (t["host"], t["port"], t["model_dir"]) == ("127.0.0.1", 8000, "/srv/gb10/models/tiny-qwen3")
    s = t["serving"]
    assert s["model"] == "tiny-qwen3"
    assert s["image"].endswith("@sha256:" + "86" * 32)
    assert s["nodes"] == ["gx10-1", "gx10-2"]
    assert s["layout"] == "TP=2 PP=1 on 2 node(s)"
    assert s["settings"] == {"load_format": "dummy", "max_model_len": "4096", "max_num_seqs": "8", "nnodes": "2",
                             "tensor_parallel_size": "2", "VLLM_CPU_KVCACHE_SPACE": "1"}


def test_target_bound_to_one_address_is_reached_there():
    args = ["serve", "/models/m", "--host=10.77.0.11", "--port=8001"]
    t = bench_target({"gx10-1": [inspected(args=args)]})
    assert (t["host"], t["port"]) == ("10.77.0.11", 8001)


def test_nothing_serves():
    assert bench_target({"gx10-1": [], "gx10-2": []})["error"].startswith(
        "Nothing serves (no gb10 vLLM API container on the nodes): serve a model with serve.yml -e model=<name>")


def test_another_model_serves():
    assert bench_target({"gx10-1": [inspected()]}, "tiny-llama")["error"] == (
        "-e model=tiny-llama does not serve here (tiny-qwen3 serves on gx10-1): benchmark tiny-qwen3 (leave out "
        "-e model) or serve tiny-llama first with serve.yml -e model=tiny-llama.")


def test_head_not_running():
    assert "is not running on gx10-1 (container state restarting)" in bench_target(
        {"gx10-1": [inspected(status="restarting")]})["error"]


# ------------------------------------------------------------------------------------------- results
def test_point_from_the_lab_result():
    p = bench_point(lab_result("c2-in32.json"))
    assert p["concurrency"] == 2
    assert (p["completed"], p["failed"]) == (4, 0)
    assert p["input_len"] == 33  # 32 random tokens asked; the tiny tokenizer's count of the prompt
    assert p["output_len"] == 8
    assert p["prompt_tokens_per_s"] > 0
    assert p["generation_tokens_per_s"] > 0
    assert p["mean_ttft_ms"] > 0 and p["p99_ttft_ms"] >= p["median_ttft_ms"]
    assert p["mean_itl_ms"] > 0


def test_point_missing_figure_is_one_sentence():
    result = lab_result("c2-in32.json")
    del result["p99_ttft_ms"]
    with pytest.raises(BenchError, match=r"^c2-in32.json: vLLM's result has no number 'p99_ttft_ms' \(got None\)"):
        bench_point(result, "c2-in32.json")


def test_point_nothing_completed():
    result = {**lab_result("c2-in32.json"), "completed": 0, "failed": 16}
    with pytest.raises(BenchError, match="no request completed"):
        bench_point(result, "x")


def record(run: str = "20261129T171500Z", scale: float = 1.0) -> dict:
    results = []
    for n in (32, 96):
        for c in (1, 2):
            r = lab_result(f"c{c}-in{n}.json")
            r["output_throughput"] *= scale
            results.append({"name": f"c{c}-in{n}.json", "input_len": n, "concurrency": c, "result": r})
    target = bench_target({"gx10-1": [inspected()], "gx10-2": [inspected(role="follower")]})
    return bench_record(results, target, check_request(SMALL)["settings"], run, "0.32.0+cpu")


def test_record_and_its_file(tmp_path: Path):
    rec = record()
    assert rec["run"] == "20261129T171500Z"
    assert rec["serving"]["layout"] == "TP=2 PP=1 on 2 node(s)"
    assert rec["benchmark"] == {"tool": "vllm bench serve", "dataset": "random", "concurrency": [1, 2],
                                "input_len": [32, 96], "output_len": 8, "prompts": 4}
    assert [(p["input_len_asked"], p["concurrency"]) for p in rec["points"]] == [(32, 1), (32, 2), (96, 1), (96, 2)]
    path = record_path(str(tmp_path), rec)
    assert path == f"{tmp_path}/tiny-qwen3/20261129T171500Z.json"
    assert json.loads(record_text(rec)) == rec
    assert record_text(rec) == record_text(json.loads(record_text(rec)))


def test_record_refuses_a_wrong_concurrency():
    results = [{"name": "c2-in32.json", "input_len": 32, "concurrency": 8, "result": lab_result("c2-in32.json")}]
    with pytest.raises(BenchError, match="vLLM ran at concurrency 2, bench.yml asked 8"):
        bench_record(results, {}, {}, "20261129T171500Z")


def test_record_refuses_a_bad_run_id():
    with pytest.raises(BenchError, match="not a UTC timestamp"):
        bench_record([], {}, {}, "yesterday")


# ------------------------------------------------------------------------------------------- table
def test_table_of_one_run():
    lines = bench_table([record()])
    assert lines[0].startswith("A = 20261129T171500Z: tiny-qwen3 | 10.77.5.1:5000/gb10/vllm-cpu@868686868686 | TP=2 PP=1")
    assert "max_model_len 4096" in lines[0]
    assert lines[1].split() [:4] == ["context", "conc", "prompt", "tok/s"]
    assert len(lines) == 2 + 4
    assert lines[2].split()[:2] == ["32", "1"]


def test_table_side_by_side_with_the_change():
    lines = bench_table([record(), record("20261129T180000Z", scale=1.5)])
    assert lines[0].startswith("A = 20261129T171500Z")
    assert lines[1].startswith("B = 20261129T180000Z")
    assert "gen B vs A" in lines[2]
    # +50 % up to the rounding of the throughputs to 0.1 token/s
    assert all(line.endswith(" %") and float(line.split()[-2]) == pytest.approx(50, abs=2.5) for line in lines[3:])


def test_table_point_missing_in_one_run():
    a, b = record(), record("20261129T180000Z")
    b["points"] = b["points"][:1]
    lines = bench_table([a, b])
    assert lines[-1].endswith("-")


def test_table_of_nothing():
    assert bench_table([]) == ["No benchmark run to show."]


# ------------------------------------------------------------------------------------------- pick
PATHS = ["/inv/bench/tiny-qwen3/20261129T171500Z.json", "/inv/bench/tiny-qwen3/20261129T180000Z.json",
         "/inv/bench/tiny-llama/20261129T172000Z.json", "/inv/bench/tiny-qwen3/notes.json"]


def test_pick_compare_in_the_order_given():
    assert pick_runs(PATHS, ["20261129T180000Z", "20261129T171500Z"], 5)["paths"] == [PATHS[1], PATHS[0]]


def test_pick_last_of_a_model():
    assert pick_runs(PATHS, [], 1, "tiny-qwen3")["paths"] == [PATHS[1]]
    assert pick_runs(PATHS, [], 5)["paths"] == [PATHS[0], PATHS[2], PATHS[1]]


def test_pick_unknown_run():
    assert pick_runs(PATHS, ["20261129T171500Z", "20200101T000000Z"], 5)["error"] == (
        "-e compare: no benchmark run 20200101T000000Z under the inventory's bench/ folder (newest runs: "
        "20261129T171500Z, 20261129T172000Z, 20261129T180000Z).")


def test_pick_nothing_yet():
    assert pick_runs([], [], 5, "tiny-qwen3")["error"] == (
        "No benchmark run of tiny-qwen3 under the inventory's bench/ folder yet: run bench.yml while a model serves.")


# ------------------------------------------------------------------------------------------- filters
def test_filters_wrap_the_logic(tmp_path: Path):
    assert FILTERS["bench_request"](OK)["errors"] == []
    rec = record()
    assert FILTERS["bench_file"](rec, str(tmp_path)).endswith("/tiny-qwen3/20261129T171500Z.json")
    assert FILTERS["bench_table"]([rec]) == bench_table([rec])
    assert FILTERS["bench_pick"](PATHS, [], "1", "tiny-llama") == {"paths": [PATHS[2]]}
    assert FILTERS["bench_target"]({"gx10-1": [inspected()]}, "")["head"] == "gx10-1"
