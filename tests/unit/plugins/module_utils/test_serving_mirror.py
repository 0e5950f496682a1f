"""Serving plan (plugins/module_utils/serving.py) with the rack's registry mirror (gb10_registry_mirror):
every container runs the mirror's reference, with the pinned digest unchanged."""
from __future__ import annotations

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.serving import serving_plan
from tests.support.catalog import LAB_DIGEST, LAB_PINS, lab_nodes, merged_catalog

DIGEST, PINS, nodes = LAB_DIGEST, LAB_PINS, lab_nodes


@pytest.fixture(scope="module")
def catalog():
    return merged_catalog()


def test_the_plan_runs_the_mirrors_ref(catalog):
    plain = serving_plan("tiny-qwen3", catalog, nodes(), PINS)
    assert plain["image_ref"] == plain["image_upstream_ref"] == f"10.77.0.1:5000/gb10/vllm-cpu@{DIGEST}"
    plan = serving_plan("tiny-qwen3", catalog, nodes(), PINS, {"registry_mirror": "10.77.0.1:5001"})
    want = f"10.77.0.1:5001/10.77.0.1-5000/gb10/vllm-cpu@{DIGEST}"
    assert plan["image_ref"] == want and plan["image_upstream_ref"] == plain["image_ref"]
    # every container of the plan runs it; nothing else changes
    assert {c["image"] for c in plan["containers"]} == {want}
