#!/usr/bin/env python3
"""Draw a memory plan as one stacked bar per node (PNG), from the plan report JSON on stdin.

Run by the memory_plan role with the controller's Python (ansible_playbook_python):

    plan_chart.py --out artifacts/plan-<model>-<N>nodes.png [--check] < report.json

Writes the PNG only when its bytes differ from the file already there, and prints one JSON line:
{"changed": true|false, "path": "..."}. With --check it writes nothing and says whether it would.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GIB = 1024**3

# (label, per-node key, colour): bottom to top; they add up to the node's total.
# "host in use" is what the host holds before vLLM starts (MemTotal - MemAvailable); "slack" is vLLM's
# reservation beyond what it uses (KV rounding); "spare" is what is left after vLLM and the host floor.
SEGMENTS = (
    ("host in use (MemTotal - MemAvailable)", "host_used_bytes", "#616161"),
    ("host floor (outside vLLM)", "host_floor_bytes", "#9e9e9e"),
    ("weights", "weights_bytes", "#1f77b4"),
    ("MTP draft", "draft_bytes", "#9467bd"),
    ("activations (peak)", "activation_peak_bytes", "#ff7f0e"),
    ("NCCL / CUDA context", "non_torch_bytes", "#bcbd22"),
    ("CUDA graphs", "cudagraph_bytes", "#8c564b"),
    ("KV cache", "kv_cache_bytes", "#2ca02c"),
    ("reserved by vLLM, unused", "slack_bytes", "#c7e9c0"),
    ("free", "spare_bytes", "#ffffff"),
)


def _gib(node: dict, key: str) -> float:
    try:
        return float(node.get(key) or 0) / GIB
    except (TypeError, ValueError):
        return 0.0


def _with_derived(node: dict) -> dict:
    row = dict(node)
    used = sum(
        float(node.get(k) or 0)
        for k in (
            "weights_bytes",
            "draft_bytes",
            "activation_peak_bytes",
            "non_torch_bytes",
            "cudagraph_bytes",
            "kv_cache_bytes",
        )
    )
    total = float(node.get("total_bytes") or 0)
    available = float(node.get("mem_available_bytes") or total)
    # what vLLM reserves, and what the host still has after it (MemAvailable - reservation)
    left = float(node["host_left_bytes"]) if node.get("host_left_bytes") is not None else available - total + float(
        node.get("free_bytes") or 0
    )
    reserved = available - left
    row["host_used_bytes"] = max(total - available, 0.0)
    row["slack_bytes"] = max(reserved - used, 0.0)
    row["spare_bytes"] = left - float(node.get("host_floor_bytes") or 0)
    return row


def _memory_detail(plan: dict, args: dict) -> str:
    """The KV pool in bytes mode (with the utilization that passes admission), else the utilization."""
    flags = plan.get("vllm_memory_args") or {}
    pool = flags.get("kv_cache_memory_bytes", args.get("kv_cache_memory_bytes"))
    util = flags.get("gpu_memory_utilization", args.get("gpu_memory_utilization", "default"))
    if pool is not None:
        return f"KV pool {float(pool) / GIB:.2f} GiB/rank, util {util}"
    return f"util {util}"


def draw(report: dict) -> bytes:
    plan = report.get("plan") or {}
    nodes = [_with_derived(node) for node in plan.get("per_node") or []]
    layout = report.get("layout") or {}
    args = report.get("planner_args") or {}
    fits = bool(plan.get("fits"))
    count = max(len(nodes), 1)

    fig, ax = plt.subplots(figsize=(max(7.5, 1.3 * count + 4.5), 6.2), dpi=110)
    xs = list(range(len(nodes)))
    bottoms = [0.0] * len(nodes)
    for label, key, colour in SEGMENTS:
        heights = [max(_gib(node, key), 0.0) for node in nodes]
        if key in ("host_used_bytes", "draft_bytes", "slack_bytes", "non_torch_bytes") and max(heights, default=0.0) < 0.05:
            continue
        edge = "#555555" if key == "spare_bytes" else "white"
        ax.bar(xs, heights, 0.62, bottom=bottoms, color=colour, label=label, edgecolor=edge, linewidth=0.8)
        for x, bottom, height in zip(xs, bottoms, heights):
            if height >= 4.0:
                dark = key in (
                    "host_used_bytes",
                    "host_floor_bytes",
                    "weights_bytes",
                    "draft_bytes",
                    "cudagraph_bytes",
                    "kv_cache_bytes",
                )
                ax.text(
                    x,
                    bottom + height / 2,
                    f"{height:.1f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
        bottoms = [b + h for b, h in zip(bottoms, heights)]

    # Shortfall: what the plan asks for beyond the node's memory (drawn above the total, hatched red).
    totals = [_gib(node, "total_bytes") for node in nodes]
    over = [max(b - t, 0.0) for b, t in zip(bottoms, totals)]
    if any(o > 0.05 for o in over):
        ax.bar(
            xs,
            over,
            0.62,
            bottom=totals,
            color="none",
            edgecolor="#d62728",
            hatch="///",
            label="over the node's memory",
            linewidth=1.2,
        )
        for x, top, short in zip(xs, bottoms, over):
            if short > 0.05:
                ax.text(
                    x,
                    top,
                    f"short {short:.1f} GiB",
                    ha="center",
                    va="bottom",
                    fontsize=9,
                    color="#d62728",
                    fontweight="bold",
                )
    # vLLM's start-up check: total x utilization must fit in MemAvailable less the start-up margin, i.e.
    # host in use + margin + request must stay under the total (no check on the CPU build's fixed pool).
    no_check = args.get("kv_cache_memory_bytes") is not None and plan.get("platform", args.get("platform")) == "cpu"
    margin = float(plan.get("admission_margin_bytes") or 0) / GIB
    for x, node, total in zip(xs, nodes, totals):
        ax.hlines(total, x - 0.38, x + 0.38, colors="black", linewidth=1.6)
        requested = _gib(node, "requested_bytes")
        if requested > 0 and not no_check:
            line = _gib(node, "host_used_bytes") + margin + requested
            ax.hlines(line, x - 0.38, x + 0.38, colors="#d62728", linestyles="dashed", linewidth=1.3)
    ax.plot([], [], color="black", linewidth=1.6, label="node total (CUDA)")
    if not no_check:
        ax.plot(
            [],
            [],
            color="#d62728",
            linestyle="dashed",
            linewidth=1.3,
            label="host in use + margin + vLLM request\n(start-up check: under the total)",
        )

    ax.set_xticks(xs)
    ax.set_xticklabels([f"node {node.get('node_rank', i)}" for i, node in enumerate(nodes)])
    ax.set_ylabel("GiB")
    top = max([*bottoms, *totals, 1.0])
    ax.set_ylim(0, top * 1.08)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)

    verdict = "fits" if fits else "DOES NOT FIT"
    spec = args.get("speculative_config") or {}
    where = "GB10 node(s)" if args.get("platform", "cuda") == "cuda" else "node(s)"
    layout_text = f"TP={layout.get('tp')} PP={layout.get('pp')}"
    fig.suptitle(
        f"{report.get('model')} on {layout.get('nodes')} {where}, {layout_text}: {verdict}",
        fontsize=12,
        fontweight="bold",
        color="black" if fits else "#d62728",
        y=0.975,
    )
    tokens = plan.get("kv_cache_tokens")
    concurrency = plan.get("max_concurrency")
    details = [
        (
            f"max_model_len {args.get('max_model_len', '?'):,}"
            if isinstance(args.get("max_model_len"), int)
            else f"max_model_len {args.get('max_model_len', '?')}"
        ),
        f"KV {args.get('kv_cache_dtype', 'auto')}",
        _memory_detail(plan, args),
        f"MTP {spec.get('num_speculative_tokens')}" if spec else "no MTP",
    ]
    if isinstance(tokens, (int, float)):
        details.append(f"KV cache {int(tokens):,} tokens")
    if isinstance(concurrency, (int, float)):
        details.append(f"max concurrency {float(concurrency):.2f}x")
    fig.text(0.5, 0.915, " | ".join(details), ha="center", va="center", fontsize=9, color="#333333")
    fig.text(
        0.01, 0.01, f"planner: vLLM {plan.get('vllm_release', '?')} accounting", fontsize=7, color="#666666"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5, frameon=False)
    fig.subplots_adjust(left=0.08, right=0.78 if count < 6 else 0.84, top=0.88, bottom=0.09)

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--check", action="store_true", help="report whether the PNG would change; write nothing"
    )
    options = parser.parse_args()
    report = json.load(sys.stdin)
    data = draw(report)
    try:
        with open(options.out, "rb") as handle:
            changed = handle.read() != data
    except FileNotFoundError:
        changed = True
    if changed and not options.check:
        directory = os.path.dirname(os.path.abspath(options.out))
        os.makedirs(directory, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=directory, suffix=".png.tmp")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, options.out)
    print(json.dumps({"changed": changed, "path": options.out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
