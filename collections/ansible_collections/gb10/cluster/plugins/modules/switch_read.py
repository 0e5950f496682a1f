#!/usr/bin/python
"""Ansible module: read several RouterOS paths over one API session (read-only)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: switch_read
short_description: Read every row of several RouterOS paths over one API session
description:
  - Reads each path in O(paths) (spelled as for C(community.routeros.api), e.g. V(interface bridge port))
    over one login, in the order given, and returns the rows as C(community.routeros.api) returns them
    (its C(msg)), keyed by path.
  - One module run instead of one C(community.routeros.api) run per path; the switch role reads the
    paths it configures once and skips a write task whose entries are already on the switch.
  - With O(compare), also says for each named set of entries whether writing it could change anything
    (False only when every entry and property is already there, as the switch prints it).
  - Read-only; runs in check mode too and always reports C(changed=false).
  - Connects like the community.routeros API modules (librouteros, TLS on 8729 by default).
extends_documentation_fragment:
  - community.routeros.api
options:
  paths:
    description: The RouterOS paths to read, words separated by spaces.
    type: list
    elements: str
    required: true
  compare:
    description:
      - Entries to compare with what was read, each C({name, path, data, keys}); C(data) is what a write
        task would send (api_modify's C(data), or api_find_and_modify's C(find) merged with its C(values)),
        C(keys) the properties that identify an entry (none for a path with a single entry).
      - A path named here is read even when it is not in O(paths).
    type: list
    elements: dict
    default: []
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Read the bridges and the bridge ports
  gb10.cluster.switch_read:
    hostname: 192.168.1.2
    username: "{{ switch_api_username }}"
    password: "{{ switch_api_password }}"
    tls: true
    paths:
      - interface bridge
      - interface bridge port
  register: switch_rows
  # switch_rows.rows['interface bridge port'] is a list of dicts (.id, interface, bridge, hw, ...)

- name: Is the MAC server already off?
  gb10.cluster.switch_read:
    hostname: 192.168.1.2
    username: "{{ switch_api_username }}"
    password: "{{ switch_api_password }}"
    tls: true
    paths: []
    compare:
      - name: mac_telnet
        path: tool mac-server
        data: [{allowed-interface-list: none}]
  register: switch_state
  # switch_state.differs.mac_telnet is false when nothing would change
"""

RETURN = r"""
rows:
  description: Path -> its rows (dicts, with C(.id) where the path has identifiers).
  returned: success
  type: dict
differs:
  description: Name -> whether writing that O(compare) entry's data could change anything.
  returned: success
  type: dict
"""


from ansible_collections.gb10.cluster.plugins.module_utils.routeros_module import connect, routeros_module
from ansible_collections.gb10.cluster.plugins.module_utils.switch_state import compare, read_paths


def main() -> None:
    spec = dict(paths=dict(type="list", elements="str", required=True),
                compare=dict(type="list", elements="dict", default=[]))
    module = routeros_module(spec, supports_check_mode=True)
    paths = list(module.params["paths"])
    for spec in module.params["compare"]:
        if not spec.get("name") or not spec.get("path"):
            module.fail_json(msg=f"a comparison needs a name, a path and data: {spec!r}")
        if str(spec["path"]) not in paths:
            paths.append(str(spec["path"]))
    api = connect(module)
    path = ""
    try:
        rows = {}
        for path in paths:
            rows.update(read_paths(api, [path]))
    except Exception as exc:  # librouteros raises its own error classes
        module.fail_json(msg=f"reading /{path.replace(' ', '/')} failed: {exc}")
    finally:
        api.close()
    try:
        differs = compare(rows, module.params["compare"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, rows=rows, differs=differs)


if __name__ == "__main__":
    main()
