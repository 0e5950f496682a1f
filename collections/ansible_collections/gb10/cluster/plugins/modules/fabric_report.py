#!/usr/bin/python
"""Ansible module: merge every node's fabric checks into one JSON report on the controller."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: fabric_report
short_description: Write the fabric report (JSON) and the message that names the failed checks
description:
  - Merges the check rows of every node (from M(gb10.cluster.fabric_check) and the hardware-only checks),
    writes C(<dest_dir>/fabric-<run_id>.json) and a copy at C(<dest_dir>/latest.json).
  - Before counting, adds the verdicts drawn from the C(ib_write_bw) rows - C(ib_write_bw_twins) (each
    node's two twins compared, the slower one must reach O(twin_ratio_min) of the other) and
    C(slow_twin) (a node whose two ring links on a twin are both slow while its neighbours' other links
    pass - the slow end of those links).
  - Returns the counts, the failed rows (a node's own checks first, since they usually explain the
    failures seen from the other nodes), one sentence per failed row and one message naming node, twin
    and check.
  - Does not fail on failed checks; the playbook asserts on C(ok) so the report is always written.
  - Run it on the controller, with C(delegate_to=localhost) and C(run_once=true).
options:
  checks:
    description: Rows C({node, twin, peer, check, status, detail}); status passed, failed or skipped.
    type: list
    elements: dict
    required: true
  dest_dir:
    description: Folder of the reports (created when missing).
    type: path
    required: true
  run_id:
    description: Name part of the report file, for example a UTC timestamp.
    type: str
    required: true
  meta:
    description: Free-form run data stored with the report (nodes, thresholds, lab or hardware).
    type: dict
    default: {}
  twin_ratio_min:
    description: The slower twin's ib_write_bw as a fraction of the faster twin's, at least.
    type: float
    default: 0.9
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Write the fabric report
  gb10.cluster.fabric_report:
    checks: "{{ rows }}"
    dest_dir: "{{ playbook_dir }}/../artifacts/fabric"
    run_id: "{{ now(utc=true, fmt='%Y%m%dT%H%M%SZ') }}"
  delegate_to: localhost
  run_once: true
  register: fabric_report
"""

RETURN = r"""
path:
  description: The report written for this run.
  returned: always
  type: str
  sample: artifacts/fabric/fabric-20261127T101500Z.json
ok:
  description: True when no check failed.
  returned: always
  type: bool
counts:
  description: Rows per status.
  returned: always
  type: dict
  sample: {passed: 36, failed: 0, skipped: 8}
lines:
  description: One line per check, for example C(jumbo_ping - 24 passed) (written with a colon).
  returned: always
  type: list
  elements: str
per_check:
  description: Rows per check and status.
  returned: always
  type: dict
failed_rows:
  description: The failed rows, cause first.
  returned: always
  type: list
  elements: dict
findings:
  description: One sentence per failed row, cause first (node, twin, peer, check and why).
  returned: always
  type: list
  elements: str
message:
  description: One sentence naming node, twin and failed check (or the pass summary).
  returned: always
  type: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.fabric import (
    ROW_KEYS,
    build_report,
    derive_link_rows,
    summarize,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "checks": {"type": "list", "elements": "dict", "required": True},
            "dest_dir": {"type": "path", "required": True},
            "run_id": {"type": "str", "required": True},
            "meta": {"type": "dict", "default": {}},
            "twin_ratio_min": {"type": "float", "default": 0.9},
        },
        supports_check_mode=True,
    )
    params = module.params
    checks = []
    for row in params["checks"]:
        kept = {key: row.get(key) for key in ROW_KEYS}
        if row.get("value") is not None:
            kept["value"] = row["value"]
        checks.append(kept)
    bad = [row for row in checks if row["status"] not in ("passed", "failed", "skipped")]
    if bad:
        module.fail_json(msg=f"gb10.cluster.fabric_report: rows with an unknown status: {bad[:3]}")
    checks += derive_link_rows(checks, params["twin_ratio_min"])
    summary = summarize(checks)
    report = build_report(checks, params["meta"])
    os.makedirs(params["dest_dir"], exist_ok=True)
    path = os.path.join(params["dest_dir"], f"fabric-{params['run_id']}.json")
    text = json.dumps(report, indent=2, sort_keys=False) + "\n"
    for target in (path, os.path.join(params["dest_dir"], "latest.json")):
        tmp = f"{target}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    module.exit_json(changed=True, path=path, ok=summary["ok"], counts=summary["counts"],
                     per_check=summary["per_check"], lines=summary["lines"], failed_rows=summary["failed"],
                     findings=summary["findings"], message=summary["message"])


if __name__ == "__main__":
    main()
