#!/usr/bin/python
"""Ansible module: run one hardware bandwidth test (ib_write_bw client, nccl-tests) and rate it."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: gb10_fabric_perf
short_description: Run ib_write_bw or nccl-tests once and return one fabric report row
description:
  - Runs O(argv) (an C(ib_write_bw) client or an C(mpirun ... all_gather_perf) command), parses the
    bandwidth (C(ib_write_bw) average Gb/s with C(--report_gbits); nccl-tests C(Avg bus bandwidth)
    GB/s) and compares it with O(minimum).
  - With O(skip_reason) set, runs nothing and returns a C(skipped) row with that reason; hardware-only
    checks are never reported as passed without the hardware.
  - Never fails on a low result; the row goes into the report (M(gb10_fabric_report)).
  - Runs nothing in check mode (returns a skipped row).
options:
  node:
    description: Node the row is about.
    type: str
    required: true
  twin:
    description: Twin the test ran on (null for a cluster-wide test).
    type: str
  peer:
    description: The other end (node name), if any.
    type: str
  check:
    description: Which test; decides the parser and the unit.
    type: str
    required: true
    choices: [ib_write_bw, nccl_all_gather]
  argv:
    description: Command to run.
    type: list
    elements: str
    default: []
  minimum:
    description: Minimum bandwidth (Gb/s for ib_write_bw, GB/s bus bandwidth for nccl_all_gather).
    type: float
    required: true
  skip_reason:
    description: Why the test cannot run here; the row is C(skipped) with this detail.
    type: str
    default: ""
  timeout:
    description: Seconds before the command is killed (the row is then failed).
    type: int
    default: 900
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: ib_write_bw from this node to the next on twin A
  gb10_fabric_perf:
    node: gx10-1
    twin: enp1s0f1np1
    peer: gx10-2
    check: ib_write_bw
    argv: [ib_write_bw, -d, rocep1s0f1, -x, "3", -F, --report_gbits, -D, "5", 192.168.100.12]
    minimum: 90
"""

RETURN = r"""
row:
  description: The report row.
  returned: always
  type: dict
  sample:
    node: gx10-1
    twin: enp1s0f1np1
    peer: gx10-2
    check: ib_write_bw
    status: passed
    detail: 97.85 Gb/s (minimum 90 Gb/s)
output:
  description: The command's output (stdout then stderr), empty when skipped.
  returned: always
  type: str
"""

import subprocess

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.fabric import (
    parse_ib_write_bw,
    parse_nccl_busbw,
    threshold_check,
)

PARSERS = {"ib_write_bw": (parse_ib_write_bw, "Gb/s"), "nccl_all_gather": (parse_nccl_busbw, "GB/s")}


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
            "check": {"type": "str", "required": True, "choices": list(PARSERS)},
            "argv": {"type": "list", "elements": "str", "default": []},
            "minimum": {"type": "float", "required": True},
            "skip_reason": {"type": "str", "default": ""},
            "timeout": {"type": "int", "default": 900},
        },
        supports_check_mode=True,
    )
    p = module.params
    parser, unit = PARSERS[p["check"]]
    skip = p["skip_reason"] or ("check mode: nothing run" if module.check_mode else "")
    if not skip and not p["argv"]:
        module.fail_json(msg="gb10_fabric_perf: argv is empty and no skip_reason given")
    output = ""
    value = None
    if not skip:
        binary = module.get_bin_path(p["argv"][0])
        if binary is None:
            output = f"{p['argv'][0]}: command not found (install it on the node)"
        else:
            rc, out, err = run([binary] + p["argv"][1:], p["timeout"])
            output = f"{out}\n{err}".strip()
            value = parser(out) if rc == 0 else None
            if rc != 0 and value is None:
                output = f"exit code {rc}: {output}"
    row = threshold_check(p["node"], p["twin"], p["peer"], p["check"], value, p["minimum"], unit,
                          skip_reason=skip or None, output=output)
    module.exit_json(changed=False, row=row, output=output)


if __name__ == "__main__":
    main()
