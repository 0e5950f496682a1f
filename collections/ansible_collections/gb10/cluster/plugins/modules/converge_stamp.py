#!/usr/bin/python
"""Ansible module: is a role's converge on this node still current (probe), or record that it is (record)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: converge_stamp
short_description: Skip a role whose inputs and managed state have not changed since its last converge
description:
  - C(state=probe) reads the role's stamp on the node and the records of what the role manages (files,
    units, live sysctls, read-only commands) and returns C(current) true when the stamp holds the same
    inputs digest and the same records. The role then skips its tasks, which would change nothing.
    Anything else (no stamp, other inputs, a file edited by hand, a unit stopped, a sysctl set live, a
    firewall table flushed) returns C(current) false and C(reason) naming what moved; the role runs.
  - C(state=record) runs at the end of a successful converge and writes the stamp (root only,
    C(/var/lib/gb10/converge/NAME.json)). It reports changed only when the stamp's content changes.
  - C(stamps) probes several roles in one module run (a play whose roles each have a stamp, one SSH
    round per node instead of one per role) and returns C(stamps), the result of each by name.
  - Nothing a role manages is changed by this module. Check mode is supported (C(record) then writes
    nothing and reports whether it would).
options:
  name:
    description: The stamp's name, the role's name (a plain file name). Required without O(stamps).
    type: str
  inputs:
    description: The digest of the role's inputs, from C(lookup('gb10.cluster.converge_inputs', ...)) on the control machine. Required without O(stamps).
    type: str
  stamps:
    description:
      - Several stamps probed at once, each a dict with the keys of the options above (C(name), C(inputs),
        C(paths), C(units), C(sysctls), C(commands)). Only with O(state=probe); not with O(name).
    type: list
    elements: dict
  paths:
    description: Files and folders the role writes (content, mode and owner are recorded; a missing path is recorded as absent).
    type: list
    elements: path
    default: []
  units:
    description: systemd units the role manages (load, active, sub and unit-file state are recorded).
    type: list
    elements: str
    default: []
  sysctls:
    description: Kernel settings the role sets, read live from C(/proc/sys).
    type: list
    elements: str
    default: []
  commands:
    description: Read-only commands (argv lists) whose exit code and output are recorded, for state no file shows (a loaded nft table, held packages).
    type: list
    elements: list
    default: []
  state:
    description: C(probe) compares, C(record) writes.
    type: str
    choices: [probe, record]
    default: probe
  dir:
    description: Where the stamps are kept on the node.
    type: path
    default: /var/lib/gb10/converge
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Is the role's last converge still current on this node
  gb10.cluster.converge_stamp:
    name: nccl_env
    inputs: "{{ lookup('gb10.cluster.converge_inputs', 'nccl_env', role_path=role_path) }}"
    paths: [/etc/gb10/serving.env, /etc/nccl.conf]
  register: nccl_env_stamp

- name: Record the converge (last task of the role)
  gb10.cluster.converge_stamp:
    name: nccl_env
    inputs: "{{ nccl_env_stamp.inputs }}"
    paths: [/etc/gb10/serving.env, /etc/nccl.conf]
    state: record

- name: The roles of the play, probed in one module run
  gb10.cluster.converge_stamp:
    stamps:
      - name: nccl_env
        inputs: "{{ lookup('gb10.cluster.converge_inputs', 'nccl_env') }}"
        paths: [/etc/gb10/serving.env]
      - name: firewall
        inputs: "{{ lookup('gb10.cluster.converge_inputs', 'firewall') }}"
        commands: [[nft, -s, list, table, inet, gb10_firewall]]
  register: play_stamps      # play_stamps.stamps.nccl_env.current, ...
"""

RETURN = r"""
current:
  description: Whether the stamp holds these inputs and these records (probe; after record, always true).
  returned: without O(stamps)
  type: bool
reason:
  description: Why the role runs, or since when it is unchanged.
  returned: without O(stamps)
  type: str
  sample: path /etc/sysctl.d/60-gb10.conf changed since its last converge
inputs:
  description: The inputs digest, handed back for the record at the end of the role.
  returned: without O(stamps)
  type: str
records:
  description: How many records were read.
  returned: without O(stamps)
  type: int
stamp:
  description: The stamp's path on the node.
  returned: without O(stamps)
  type: str
spec:
  description: The paths, units, sysctls and commands read, handed back for the record after the role's handlers.
  returned: without O(stamps)
  type: dict
stamps:
  description: With O(stamps), each stamp's probe result by name (C(current), C(reason), C(inputs), C(records), C(stamp), C(spec)).
  returned: with O(stamps)
  type: dict
given:
  description:
    - With O(stamps), the results the play's roles can use as their turn comes, in the order given - each
      up to and including the first that is not current. That role runs and may change what a later one
      reads, so the later ones probe themselves.
  returned: with O(stamps)
  type: dict
"""

from datetime import UTC, datetime

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.converge import (
    collect,
    compare,
    read_stamp,
    same_stamp,
    stamp_document,
    stamp_params,
    stamp_path,
    usable_in_order,
    write_stamp,
)


def _one(params: dict, run) -> tuple[dict, str | None]:
    """Read one stamp's records and compare (or prepare the record): (result, error)."""
    try:
        path = stamp_path(params["dir"], params["name"])
        records = collect(params["paths"], params["units"], params["sysctls"],
                          [[str(arg) for arg in argv] for argv in params["commands"]], run=run)
    except (ValueError, OSError) as exc:
        return {}, (f"converge_stamp {params['name']}: {exc}; the role cannot tell whether it is "
                    f"current: run it with -e gb10_converge=full")
    spec = {key: params[key] for key in ("paths", "units", "sysctls", "commands")}
    result = {"inputs": params["inputs"], "records": len(records), "stamp": path, "spec": spec,
              "old": read_stamp(path), "collected": records}
    return result, None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str"},
            "inputs": {"type": "str"},
            "stamps": {"type": "list", "elements": "dict"},
            "paths": {"type": "list", "elements": "path", "default": []},
            "units": {"type": "list", "elements": "str", "default": []},
            "sysctls": {"type": "list", "elements": "str", "default": []},
            "commands": {"type": "list", "elements": "list", "default": []},
            "state": {"type": "str", "choices": ["probe", "record"], "default": "probe"},
            "dir": {"type": "path", "default": "/var/lib/gb10/converge"},
        },
        mutually_exclusive=[("stamps", "name"), ("stamps", "inputs")],
        required_one_of=[("stamps", "name")],
        required_together=[("name", "inputs")],
        required_if=[("state", "record", ("name", "inputs"))],
        supports_check_mode=True,
    )
    params = module.params

    def run(argv):
        try:
            rc, out, err = module.run_command(list(argv), handle_exceptions=False)
        except OSError as exc:  # a tool this node does not have (nmcli without NetworkManager)
            return 127, f"{argv[0]}: {exc.strerror}"
        return rc, out + err

    if params["stamps"] is not None:
        results = {}
        for item in params["stamps"]:
            one, error = stamp_params(item, params["dir"])
            if error is None:
                read, error = _one(one, run)
            if error is not None:
                module.fail_json(msg=error)
            current, reason = compare(read.pop("old"), one["inputs"], read.pop("collected"))
            results[one["name"]] = {"current": current, "reason": reason, **read}
        module.exit_json(changed=False, stamps=results, given=usable_in_order(list(results), results))

    read, error = _one(params, run)
    if error is not None:
        module.fail_json(msg=error)
    old, records = read.pop("old"), read.pop("collected")
    path = read["stamp"]
    if params["state"] == "probe":
        current, reason = compare(old, params["inputs"], records)
        module.exit_json(changed=False, current=current, reason=reason, **read)
    recorded = datetime.now(UTC).replace(microsecond=0).isoformat()
    document = stamp_document(params["inputs"], records, recorded)
    if same_stamp(old, document):
        module.exit_json(changed=False, current=True, reason="the stamp already says so", **read)
    if not module.check_mode:
        try:
            write_stamp(path, document)
        except OSError as exc:
            module.fail_json(msg=f"converge_stamp {params['name']}: cannot write {path}: {exc}; the next run "
                                 f"will converge the role again", **read)
    module.exit_json(changed=True, current=True, reason=f"recorded at {recorded}", **read)


if __name__ == "__main__":
    main()
