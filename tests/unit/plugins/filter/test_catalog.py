"""The catalog filters serve.yml's fit check uses: planner_args (the one conversion) and plan_memory.

serve.yml's "Will it fit?" task used to spell every planner argument out by hand; `todays_fit_args`
below restates what it passed, and the filters must give the same arguments and the same plan.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.gb10.cluster.plugins.filter.catalog import FilterModule
from ansible_collections.gb10.cluster.plugins.module_utils.memfit import plan_memory
from ansible_collections.gb10.cluster.plugins.modules import memory_fit as memory_fit_module
from tests.support.catalog import merged_catalog

ROOT = Path(__file__).resolve().parents[4]
GIB = 1 << 30
FILTERS = FilterModule().filters()
# gb10_catalog on the lab: the built-in entries and the lab inventory's tiny models (gb10_catalog_extra).
CATALOG = merged_catalog()
# vllm_serve_measured: per node, MemAvailable and MemTotal capped by the container's limit
MEASURED = [
    {"host": "n1", "mem_total": 121 * GIB, "mem_available": 118 * GIB, "cgroup_limit": None},
    {"host": "n2", "mem_total": 120 * GIB, "mem_available": 117 * GIB, "cgroup_limit": None},
    {"host": "n3", "mem_total": 121 * GIB, "mem_available": 119 * GIB, "cgroup_limit": None},
    {"host": "n4", "mem_total": 122 * GIB, "mem_available": 118 * GIB, "cgroup_limit": None},
]


def todays_fit_args(entry: dict, nodes: int, measured: list, total: Any, floor: Any) -> dict[str, Any]:
    """What launch.yml's gb10.cluster.memory_fit task passed (its Jinja restated)."""
    launch = entry["launch"]
    args = {
        "model_config": f"{ROOT}/{entry['config']}",
        "weights_bytes": entry["checkpoint_bytes"],
        "platform": entry["platform"],
        "nodes": nodes,
        "tensor_parallel_size": launch.get("tensor_parallel_size", 1),
        "pipeline_parallel_size": launch.get("pipeline_parallel_size", 1),
        # every launch setting that is also a module argument (the serving-only ones are not)
        **{key: value for key, value in launch.items() if key in memory_fit_module.ARGUMENT_SPEC},
        "node_mem_available_bytes": min(m["mem_available"] for m in measured),
    }
    if entry["platform"] == "cpu" and "VLLM_CPU_KVCACHE_SPACE" in entry["env"]:
        args["kv_cache_memory_bytes"] = int(entry["env"]["VLLM_CPU_KVCACHE_SPACE"]) * 2**30
    if len(str(total)) > 0:
        args["node_memory_total_bytes"] = int(total)
    else:  # measured on every platform: the CPU build's smallest, a GB10's largest MemTotal (admission)
        totals = [m["mem_total"] for m in measured]
        args["node_memory_total_bytes"] = min(totals) if entry["platform"] == "cpu" else max(totals)
    if len(str(floor)) > 0:
        args["host_floor_bytes"] = int(floor)
    return args


def serve_fit(entry: dict, nodes: int, measured: list, total: Any, floor: Any) -> dict[str, Any]:
    """The replacement task: entry | planner_args({...}, repo_root) (then | plan_memory)."""
    overrides = {
        "nodes": nodes,
        "measured_memory": measured,
        "node_memory_total_bytes": total,
        "host_floor_bytes": floor,
    }
    return FILTERS["planner_args"](entry, overrides, str(ROOT))


def _serving_nodes(entry: dict) -> int:
    launch = entry["launch"]
    layout = launch["tensor_parallel_size"] * launch["pipeline_parallel_size"]
    return int((entry.get("serving") or {}).get("nodes") or layout)


@pytest.mark.parametrize("name", sorted(CATALOG))
@pytest.mark.parametrize(("total", "floor"), [("", ""), (125 * GIB, "4294967296"), ("", 0)])
def test_serve_fit_gives_the_arguments_and_the_plan_it_gave_before(name, total, floor):
    entry = CATALOG[name]
    nodes = _serving_nodes(entry)
    measured = MEASURED[:nodes] if nodes <= len(MEASURED) else MEASURED * (nodes // len(MEASURED) + 1)
    args = serve_fit(entry, nodes, measured, total, floor)
    assert args == todays_fit_args(entry, nodes, measured, total, floor)
    assert FILTERS["plan_memory"](args) == plan_memory(todays_fit_args(entry, nodes, measured, total, floor))


def test_serve_fit_cpu_pool_and_node_total_come_from_the_lab_node():
    entry = copy.deepcopy(CATALOG["tiny-qwen3"])
    entry["env"]["VLLM_CPU_KVCACHE_SPACE"] = "2"
    lab = [{"host": "n1", "mem_total": 6 * GIB, "mem_available": 5 * GIB, "cgroup_limit": 6 * GIB},
           {"host": "n2", "mem_total": 8 * GIB, "mem_available": 3 * GIB, "cgroup_limit": None}]
    args = serve_fit(entry, 2, lab, "", "1073741824")
    assert args["kv_cache_memory_bytes"] == 2 * GIB, "VLLM_CPU_KVCACHE_SPACE GiB, not the launch's 1 GiB"
    assert (args["node_mem_available_bytes"], args["node_memory_total_bytes"]) == (3 * GIB, 6 * GIB)
    assert args["host_floor_bytes"] == GIB
    plan = FILTERS["plan_memory"](args)
    assert plan["platform"] == "cpu" and plan["per_node"][0]["mem_available_bytes"] == 3 * GIB


def test_plan_memory_reports_a_plan_that_does_not_fit_without_failing():
    entry = CATALOG["qwen3.5-397b-a17b-fp8"]
    args = FILTERS["planner_args"](entry, {"nodes": 2, "tensor_parallel_size": 2}, str(ROOT))
    plan = FILTERS["plan_memory"](args)
    assert plan["fits"] is False and "DOES NOT FIT" in plan["message"] and plan["advice"]


def test_plan_memory_fails_the_task_with_the_sentences():
    with pytest.raises(AnsibleFilterError, match="does not divide the 32 attention heads"):
        FILTERS["plan_memory"](
            FILTERS["planner_args"](
                CATALOG["qwen3.5-397b-a17b-fp8"], {"tensor_parallel_size": 3, "nodes": 3}, str(ROOT)
            )
        )
    bad = FILTERS["planner_args"](CATALOG["tiny-qwen3"], {"measured_memory": [], "host_floor_bytes": "x"}, str(ROOT))
    assert len(bad["errors"]) == 2
    with pytest.raises(AnsibleFilterError, match="measured_memory must list") as info:
        FILTERS["plan_memory"](bad)
    assert "-e host_floor_bytes=x is not a whole number of bytes." in str(info.value)


def test_plan_input_names_picks_the_plan_inputs_among_the_variables():
    names = ["groups", "model", "nodes", "max_model_len", "inventory_hostname", "mamba_ssm_cache_dtype", "vllm"]
    assert FILTERS["plan_input_names"](names) == ["model", "max_model_len", "mamba_ssm_cache_dtype", "nodes"]
