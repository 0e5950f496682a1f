"""Serving plan (plugins/module_utils/serving.py) with the rack's registry mirror (gb10_registry_mirror):
every container runs the mirror's reference, with the pinned digest unchanged."""
from __future__ import annotations

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.serving import serving_plan
from tests.support.catalog import merged_catalog

DIGEST = "sha256:" + "ab" * 32
PINS = {"lab-vllm-cpu": {"repository": "10.77.0.1:5000/gb10/vllm-cpu", "tag": "0.32.0-x", "digest": DIGEST,
                         "image_id": "sha256:" + "cd" * 32}}


@pytest.fixture(scope="module")
def catalog():
    return merged_catalog()


def nodes(n=4):
    return [{"host": f"gx10-{i}", "mgmt_ip": f"10.77.0.1{i}", "fabric_ip": f"192.168.100.1{i}"} for i in range(1, n + 1)]


def test_the_plan_runs_the_mirrors_ref(catalog):
    plain = serving_plan("tiny-qwen3", catalog, nodes(), PINS)
    assert plain["image_ref"] == plain["image_upstream_ref"] == f"10.77.0.1:5000/gb10/vllm-cpu@{DIGEST}"
    plan = serving_plan("tiny-qwen3", catalog, nodes(), PINS, {"registry_mirror": "10.77.0.1:5001"})
    want = f"10.77.0.1:5001/10.77.0.1-5000/gb10/vllm-cpu@{DIGEST}"
    assert plan["image_ref"] == want and plan["image_upstream_ref"] == plain["image_ref"]
    # every container of the plan runs it; nothing else changes
    assert {c["image"] for c in plan["containers"]} == {want}
