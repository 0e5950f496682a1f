#!/usr/bin/python
"""Ansible module: run hardware bandwidth tests (ib_write_bw clients, nccl-tests) and judge them."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: fabric_perf
short_description: Run ib_write_bw or nccl-tests and return one fabric report row per run
description:
  - Runs O(argv) (one run) or every entry of O(runs) at the same time (for example the ib_write_bw
    clients of both twins of a node, as NVIDIA measures a 200G cable), and judges each output.
  - C(ib_write_bw) - the average Gb/s of the result table (C(--report_gbits)) against O(minimum), or the
    error line when there is no result.
  - C(nccl_all_gather) - the nccl-tests C(Avg bus bandwidth) GB/s against O(minimum), after the
    failure lines (naming the host), launch errors (ssh, mpirun; the node is found from O(addresses)),
    NCCL on sockets instead of RoCE or without a twin's device (O(ib_devices), needs NCCL_DEBUG=INFO),
    missing ranks (O(nodes)) and data errors.
  - With O(skip_reason) set, runs nothing and returns C(skipped) rows with that reason; hardware-only
    checks are never reported as passed without the hardware.
  - Never fails on a low or failed result; the rows go into the report (M(gb10.cluster.fabric_report)).
  - Runs nothing in check mode (returns skipped rows).
options:
  node:
    description: Node the rows are about (the client, or the launcher of mpirun).
    type: str
    required: true
  twin:
    description: Twin of the single run (null for a cluster-wide test).
    type: str
  peer:
    description: The other end of the single run (node name, or C(all)).
    type: str
  check:
    description: Which test; decides the judge and the unit.
    type: str
    required: true
    choices: [ib_write_bw, nccl_all_gather]
  argv:
    description: Command of the single run.
    type: list
    elements: str
    default: []
  runs:
    description: Several runs started together; each gives its own row. Used instead of O(argv).
    type: list
    elements: dict
    default: []
    suboptions:
      twin:
        description: Twin of this run.
        type: str
      peer:
        description: Other end of this run.
        type: str
      argv:
        description: Command of this run (empty when O(runs[].error) is set).
        type: list
        elements: str
      error:
        description: Why this run cannot start (for example no RoCE v2 GID); the row is C(failed) with it.
        type: str
  minimum:
    description: Minimum bandwidth (Gb/s for ib_write_bw, GB/s bus bandwidth for nccl_all_gather).
    type: float
    required: true
  nodes:
    description: Inventory names of every node that must hold a rank (nccl_all_gather).
    type: list
    elements: str
    default: []
  hostnames:
    description: The nodes' own host names (what nccl-tests and NCCL print) mapped to inventory names.
    type: dict
    default: {}
  addresses:
    description: The addresses mpirun used, mapped to inventory names (names the node of an ssh error).
    type: dict
    default: {}
  ib_devices:
    description: RoCE devices NCCL must use on every node (NCCL_IB_HCA); checked when NCCL logged them.
    type: list
    elements: str
    default: []
  skip_reason:
    description: Why the test cannot run here; the rows are C(skipped) with this detail.
    type: str
    default: ""
  timeout:
    description: Seconds before a command is killed (its row is then failed).
    type: int
    default: 900
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: ib_write_bw from this node to the next, both twins at once
  gb10.cluster.fabric_perf:
    node: gx10-1
    check: ib_write_bw
    minimum: 90
    runs:
      - twin: enp1s0f1np1
        peer: gx10-2
        argv: [ib_write_bw, -d, rocep1s0f1, -x, "3", -p, "18515", -F, --report_gbits, -D, "5", 192.168.100.12]
      - twin: enP2p1s0f1np1
        peer: gx10-2
        argv: [ib_write_bw, -d, roceP2p1s0f1, -x, "3", -p, "18516", -F, --report_gbits, -D, "5", 192.168.101.12]
"""

RETURN = r"""
row:
  description: The report row of the single run (the first row with O(runs)).
  returned: always
  type: dict
  sample:
    node: gx10-1
    twin: enp1s0f1np1
    peer: gx10-2
    check: ib_write_bw
    status: passed
    detail: 97.85 Gb/s (minimum 90 Gb/s), GID index 3
    value: 97.85
rows:
  description: One report row per run.
  returned: always
  type: list
  elements: dict
output:
  description: The commands' output (stdout then stderr), empty when skipped.
  returned: always
  type: str
"""

import subprocess
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.fabric import (
    FAILED,
    SKIPPED,
    check,
    judge_ib_write_bw,
    judge_nccl,
)

CHECKS = ("ib_write_bw", "nccl_all_gather")


def run(argv: list[str], timeout: int) -> tuple[int, str, str]:
    """Run to completion and keep all output (the summary line comes last)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]}: timed out after {timeout} s"
    return done.returncode, done.stdout, done.stderr


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "node": {"type": "str", "required": True},
            "twin": {"type": "str"},
            "peer": {"type": "str"},
            "check": {"type": "str", "required": True, "choices": list(CHECKS)},
            "argv": {"type": "list", "elements": "str", "default": []},
            "runs": {"type": "list", "elements": "dict", "default": [], "options": {
                "twin": {"type": "str"},
                "peer": {"type": "str"},
                "argv": {"type": "list", "elements": "str"},
                "error": {"type": "str"},
            }},
            "minimum": {"type": "float", "required": True},
            "nodes": {"type": "list", "elements": "str", "default": []},
            "hostnames": {"type": "dict", "default": {}},
            "addresses": {"type": "dict", "default": {}},
            "ib_devices": {"type": "list", "elements": "str", "default": []},
            "skip_reason": {"type": "str", "default": ""},
            "timeout": {"type": "int", "default": 900},
        },
        supports_check_mode=True,
    )
    p = module.params
    runs = p["runs"] or [{"twin": p["twin"], "peer": p["peer"], "argv": p["argv"], "error": None}]
    skip = p["skip_reason"] or ("check mode: nothing run" if module.check_mode else "")
    if skip:
        rows = [check(p["node"], r["twin"], r["peer"], p["check"], SKIPPED, skip) for r in runs]
        module.exit_json(changed=False, row=rows[0], rows=rows, output="")
    if any(not r["argv"] and not r["error"] for r in runs):
        module.fail_json(msg="gb10.cluster.fabric_perf: a run has neither argv nor error, and no skip_reason is given")

    def one(item: dict) -> tuple[dict, str]:
        if item["error"]:
            return check(p["node"], item["twin"], item["peer"], p["check"], FAILED, item["error"]), ""
        binary = module.get_bin_path(item["argv"][0])
        if binary is None:
            output = f"{item['argv'][0]}: command not found (install it on the node)"
            return check(p["node"], item["twin"], item["peer"], p["check"], FAILED, output), output
        rc, out, err = run([binary] + item["argv"][1:], p["timeout"])
        output = f"{out}\n{err}".strip()
        if p["check"] == "ib_write_bw":
            row = judge_ib_write_bw(p["node"], item["twin"], item["peer"], rc, output, p["minimum"])
        else:
            row = judge_nccl(p["node"], rc, output, p["minimum"], p["nodes"] or [p["node"]],
                             {str(k): str(v) for k, v in p["hostnames"].items()},
                             {str(k): str(v) for k, v in p["addresses"].items()}, p["ib_devices"] or None)
            if item["peer"]:
                row["peer"] = item["peer"]
        return row, output

    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        results = list(pool.map(one, runs))
    rows = [row for row, _ in results]
    module.exit_json(changed=False, row=rows[0], rows=rows,
                     output="\n".join(out for _, out in results if out))


if __name__ == "__main__":
    main()
