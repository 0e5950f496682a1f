#!/usr/bin/python
"""Ansible module: diagnose the CRS804 fabric ports over the RouterOS API (read-only unless bouncing)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: switch_diag
short_description: Diagnose the CRS804-4DDQ fabric ports and say what to do (reseat, plug, fix FEC)
description:
  - For every fabric port, reads C(/interface/ethernet/monitor <port> once) (link, rate, FEC, module
    presence, CMIS state, rx-loss, EEPROM checksum) and samples the error counters of
    C(/interface/ethernet/print stats) twice, O(sample_interval) seconds apart.
  - With O(baseline_only=true) it only takes the first counter sample and returns it as RV(baseline).
    Handing that to a later call as O(baseline) makes the time between the two calls the sampling
    window, so the wait overlaps other work (site.yml takes the first sample when the switch play
    changed nothing, then checks the fabric with jumbo pings across the switch, then diagnoses). The
    later call sleeps only what is left of O(sample_interval).
  - Classifies each port as OK, port disabled, no module, module present but not initialised, module
    ready but no link, wrong rate, FEC mismatch or errors rising, each with the action in plain words.
  - With O(bounce=true), ports that are not initialised or have no link get one automatic bounce
    (disable, enable, wait O(bounce_wait) seconds) before the verdict asks for a physical reseat.
  - Does not fail on unhealthy ports; the playbook writes the report and then fails naming them.
  - Connects like the community.routeros API modules (librouteros, TLS on 8729 by default).
extends_documentation_fragment:
  - community.routeros.api
options:
  ports:
    description: C({node, port, expected}) per fabric port; C(expected) has rate, fec, speed and mode.
    type: list
    elements: dict
    required: true
  sample_interval:
    description: Seconds between the two counter samples.
    type: int
    default: 5
  error_threshold:
    description: Errors tolerated between the two samples before a port counts as errors rising.
    type: int
    default: 0
  bounce:
    description: Try one port bounce (disable/enable) before asking for a reseat. Skipped in check mode.
    type: bool
    default: false
  bounce_wait:
    description: Seconds to wait after re-enabling a bounced port.
    type: int
    default: 10
  baseline_only:
    description: Take only the first counter sample and return it as RV(baseline); no verdicts.
    type: bool
    default: false
  baseline:
    description:
      - The RV(baseline) of an earlier call (C(taken_at), seconds since the epoch on this machine, and
        C(stats), the counter rows by port) to use as the first sample.
      - Ignored, and a first sample taken now, when it is older than O(baseline_max_age), comes from
        the future, or lacks one of the O(ports).
    type: dict
  baseline_max_age:
    description: Seconds after which a O(baseline) is too old to be the first sample.
    type: int
    default: 600
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Diagnose the fabric ports
  gb10.cluster.switch_diag:
    hostname: 192.168.1.2
    username: "{{ switch_api_username }}"
    password: "{{ switch_api_password }}"
    tls: true
    ports:
      - node: gx10-2
        port: qsfp56-dd-2-1
        expected: {rate: 200Gbps, fec: fec91, speed: 200G-baseCR4, mode: 2x200G}
  register: diag

- name: First counter sample now, the verdict later (the wait overlaps other tasks)
  gb10.cluster.switch_diag:
    hostname: 192.168.1.2
    username: "{{ switch_api_username }}"
    password: "{{ switch_api_password }}"
    ports: "{{ fabric_ports }}"
    baseline_only: true
  register: diag_baseline

- name: Diagnose, counting errors since that sample
  gb10.cluster.switch_diag:
    hostname: 192.168.1.2
    username: "{{ switch_api_username }}"
    password: "{{ switch_api_password }}"
    ports: "{{ fabric_ports }}"
    baseline: "{{ diag_baseline.baseline }}"
  register: diag
"""

RETURN = r"""
ok:
  description: True when every fabric port is OK.
  returned: success
  type: bool
ports:
  description: One verdict per port (node, port, status, summary, action, link, rate, fec, module_present,
    cmis_state, rx_loss, eeprom_checksum, error_delta, notes, bounced, ok, message).
  returned: success
  type: list
  elements: dict
failed_ports:
  description: The verdicts that are not OK.
  returned: success
  type: list
  elements: dict
messages:
  description: One line per unhealthy port, naming node and port and the action.
  returned: success
  type: list
  elements: str
summary:
  description: One line for the whole fabric.
  returned: success
  type: str
routeros_version:
  description: The switch's RouterOS version.
  returned: success
  type: str
raw:
  description: The monitor outputs and counter samples the verdicts were made from.
  returned: unless O(baseline_only)
  type: dict
interval:
  description: Seconds between the two counter samples the verdicts used.
  returned: unless O(baseline_only)
  type: float
baseline_used:
  description: >-
    Whether the first sample was the O(baseline) handed in (false: taken by this call, with the
    reason in RV(baseline_note)).
  returned: unless O(baseline_only)
  type: bool
baseline_note:
  description: Why a O(baseline) handed in was not used (empty when it was, or when none was given).
  returned: unless O(baseline_only)
  type: str
baseline:
  description: The first counter sample, C({taken_at, stats}), for a later call's O(baseline).
  returned: when O(baseline_only)
  type: dict
"""

import time

from ansible_collections.gb10.cluster.plugins.module_utils.routeros_module import connect, routeros_module
from ansible_collections.gb10.cluster.plugins.module_utils.switch_diag import (
    baseline_problem,
    classify,
    report,
    should_bounce,
)


def _rows_by_name(rows):
    return {str(r.get("name")): r for r in rows}


def _stats(api):
    path = api.path("interface", "ethernet")
    return _rows_by_name(path("print", stats=""))


def _monitor(api, port):
    rows = list(api.path("interface", "ethernet")("monitor", numbers=port, once=""))
    return rows[0] if rows else {}


def main() -> None:
    spec = dict(
        ports=dict(type="list", elements="dict", required=True),
        sample_interval=dict(type="int", default=5),
        error_threshold=dict(type="int", default=0),
        bounce=dict(type="bool", default=False),
        bounce_wait=dict(type="int", default=10),
        baseline_only=dict(type="bool", default=False),
        baseline=dict(type="dict"),
        baseline_max_age=dict(type="int", default=600),
    )
    module = routeros_module(spec, supports_check_mode=True)
    api = connect(module)
    p = module.params
    names = [e["port"] for e in p["ports"]]
    if p["baseline_only"]:
        try:
            taken_at = time.time()
            stats = _stats(api)
        except Exception as exc:  # librouteros raises its own error classes
            module.fail_json(msg=f"reading the switch's error counters failed: {exc}")
        module.exit_json(changed=False, baseline={"taken_at": taken_at,
                                                  "stats": {n: stats.get(n, {}) for n in names}})
    note = ""
    if p["baseline"] is not None:
        note = baseline_problem(p["baseline"], names, time.time(), p["baseline_max_age"])
    try:
        version = str(list(api.path("system", "resource"))[0].get("version", ""))
        if p["baseline"] is not None and not note:
            taken_at, first = float(p["baseline"]["taken_at"]), p["baseline"]["stats"]
        else:
            taken_at, first = time.time(), _stats(api)
        monitors = {e["port"]: _monitor(api, e["port"]) for e in p["ports"]}
        time.sleep(max(0.0, p["sample_interval"] - (time.time() - taken_at)))
        second = _stats(api)
        interval = round(time.time() - taken_at, 1)
    except Exception as exc:  # librouteros raises its own error classes
        module.fail_json(msg=f"reading the switch failed: {exc}")

    verdicts = []
    bounced = []
    for entry in p["ports"]:
        port = entry["port"]
        node = entry.get("node", "?")
        expected = entry.get("expected") or {}
        v = classify(node, port, expected, second.get(port), monitors[port], first.get(port),
                     second.get(port), interval, p["error_threshold"])
        if p["bounce"] and should_bounce(v) and not module.check_mode:
            eth = api.path("interface", "ethernet")
            try:
                tuple(eth("disable", numbers=port))
                time.sleep(1)
                tuple(eth("enable", numbers=port))
                time.sleep(max(0, p["bounce_wait"]))
                monitors[port] = _monitor(api, port)
                after = _stats(api)
            except Exception as exc:
                module.fail_json(msg=f"bouncing {port} failed: {exc}")
            v2 = classify(node, port, expected, after.get(port), monitors[port])
            v2.bounced = True
            if v2.ok:
                v2.notes.append(f"{port} recovered after one port bounce (disable/enable)")
            else:
                v2.action = f"{v2.action} (one port bounce did not help)"
            v = v2
            bounced.append(port)
        verdicts.append(v)
    result = report(verdicts)
    raw = {"monitor": monitors,
           "stats_first": {e["port"]: first.get(e["port"], {}) for e in p["ports"]},
           "stats_second": {e["port"]: second.get(e["port"], {}) for e in p["ports"]}}
    module.exit_json(changed=bool(bounced), routeros_version=version, raw=raw, bounced=bounced, interval=interval,
                     baseline_used=p["baseline"] is not None and not note, baseline_note=note, **result)


if __name__ == "__main__":
    main()
