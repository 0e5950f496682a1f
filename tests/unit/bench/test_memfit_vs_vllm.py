"""The planner still reproduces every number real vLLM (CPU build 0.32.0) logged in bench/memfit.

bench/memfit/run.py started vLLM for each case and recorded what it logged ("KV cache size",
"Maximum concurrency", block size, blocks, or the refusal) in results/vllm_observed.json. This test
re-runs only the planner on the same tiny models and settings and demands the same numbers, so a
change to the planner that drifts from vLLM's arithmetic fails here without starting vLLM.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.memfit import run as BENCH_RUN

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "bench" / "memfit"

OBSERVED = BENCH_RUN.load_observed()["cases"]
CASES = [c for c in BENCH_RUN.CASES if c["id"] in OBSERVED]


def test_every_case_was_observed() -> None:
    assert len(CASES) == len(BENCH_RUN.CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_planner_matches_vllm(case: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BENCH_RUN, "MODELS_DIR", tmp_path / "models")
    obs = OBSERVED[case["id"]]
    planner = BENCH_RUN.load_planner()
    plan = BENCH_RUN.run_planner(planner, case, obs)
    row = BENCH_RUN.compare(case, obs, plan)
    assert row["match"], row
