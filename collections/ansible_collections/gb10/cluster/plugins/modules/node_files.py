#!/usr/bin/python
"""Ansible module: write a role's small files and folders in one call (content, mode, owner)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_files
short_description: Write several small files and folders on a node in one call
description:
  - Makes every listed path match its entry, in order; a folder listed before its files is created
    first. A file whose content differs (or that is missing) is written to a temporary file beside
    it and renamed over it; a file or folder whose mode or owner differ gets them fixed.
  - One module run for all entries, where one C(ansible.builtin.template) or C(ansible.builtin.copy)
    task per file costs two (a stat, then the file module). Render templates on the controller with
    C(lookup('ansible.builtin.template', ...)).
  - Supports check mode (nothing is written) and diff mode (one diff per path that changes).
  - A path that exists with the wrong type (a folder where a file belongs) fails naming it; nothing
    after it is written.
options:
  files:
    description: The paths to manage, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      state:
        description: C(file) (with C(content)) or C(directory).
        type: str
        choices: [file, directory]
        default: file
      content:
        description: The whole content of the file (UTF-8 text).
        type: str
      mode:
        description: Octal mode, for example C('0644').
        type: raw
        required: true
      owner:
        description: Owning user; empty, the user the module runs as (a file written on the control machine).
        type: str
        default: root
      group:
        description: Owning group; empty, the group the module runs as.
        type: str
        default: root
      validate:
        description:
          - Command that checks the new content before it replaces the file, with C(%s) for the
            temporary file (for example C(/usr/sbin/visudo -cf %s)). Runs only when the content changes.
        type: str
  services:
    description:
      - systemd units to bring to a state after the files are written, in the same module run (a
        C(ansible.builtin.systemd_service) task per unit costs one more remote module run each).
      - When a written path is under C(/etc/systemd/), C(/lib/systemd/) or C(/usr/lib/systemd/), systemd
        re-reads its units first (C(daemon-reload)), once.
      - A unit that should be stopped or disabled and that systemd does not know is fine; one that should
        run fails naming it.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The unit, for example C(gb10-memory-guard.service).
        type: str
        required: true
      state:
        description: C(started) or C(stopped); omitted, the unit's running state is left alone.
        type: str
        choices: [started, stopped]
      enabled:
        description: Whether the unit starts at boot; omitted, left alone.
        type: bool
      restart_on_change:
        description: Restart the unit (when it should run and already runs) when any path of this call changed.
        type: bool
        default: true
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: A small service, its script and its unit; restarted when one of them changed
  gb10.cluster.node_files:
    files:
      - path: /usr/local/bin/gb10-example
        content: "{{ lookup('ansible.builtin.file', 'gb10-example.py') }}"
        mode: "0755"
      - path: /etc/systemd/system/gb10-example.service
        content: "{{ lookup('ansible.builtin.template', 'gb10-example.service.j2') }}"
        mode: "0644"
    services:
      - {name: gb10-example.service, state: started, enabled: true}

- name: The NCCL environment files
  gb10.cluster.node_files:
    files:
      - {path: /etc/gb10, state: directory, mode: "0755"}
      - path: /etc/gb10/serving.env
        content: "{{ lookup('ansible.builtin.template', 'serving.env.j2') }}"
        mode: "0644"
  register: nccl_env_files
"""

RETURN = r"""
changed_paths:
  description: The paths that were (check mode, would be) written or fixed.
  returned: always
  type: list
  elements: str
  sample: [/etc/gb10/serving.env]
files:
  description: One record per path with C(path), C(changed) and C(reasons) (created, content, mode, owner).
  returned: always
  type: list
  elements: dict
services:
  description: One record per unit of C(services) with C(name) and C(actions), the systemctl verbs run (check mode, that would run).
  returned: always
  type: list
  elements: dict
  sample: [{name: gb10-memory-guard.service, actions: [restart]}]
daemon_reload:
  description: Whether systemd re-read its units (check mode, would have).
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.node_files import (
    UNIT_DIRS,
    Entry,
    apply,
    ids,
    parse_mode,
    plan,
    read_state,
)
from ansible_collections.gb10.cluster.plugins.module_utils.systemctl import (
    SHOW_PROPERTIES,
    parse_show,
    service_actions,
)


def _run(module: AnsibleModule, cmd: str) -> tuple[int, str]:
    rc, out, err = module.run_command(cmd, use_unsafe_shell=False)
    return rc, (out + err)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "files": {
                "type": "list", "elements": "dict", "required": True,
                "options": {
                    "path": {"type": "path", "required": True},
                    "state": {"type": "str", "choices": ["file", "directory"], "default": "file"},
                    "content": {"type": "str"},
                    "mode": {"type": "raw", "required": True},
                    "owner": {"type": "str", "default": "root"},
                    "group": {"type": "str", "default": "root"},
                    "validate": {"type": "str"},
                },
            },
            "services": {
                "type": "list", "elements": "dict", "default": [],
                "options": {
                    "name": {"type": "str", "required": True},
                    "state": {"type": "str", "choices": ["started", "stopped"]},
                    "enabled": {"type": "bool"},
                    "restart_on_change": {"type": "bool", "default": True},
                },
            },
        },
        supports_check_mode=True,
    )
    records = []
    diffs = []
    changed_paths = []
    for spec in module.params["files"]:
        try:
            if spec["state"] == "file" and spec["content"] is None:
                raise ValueError(f"{spec['path']}: a file entry needs content")
            entry = Entry(path=spec["path"], mode=parse_mode(spec["mode"]), owner=spec["owner"], group=spec["group"],
                          state=spec["state"], validate=spec["validate"],
                          content=None if spec["content"] is None else spec["content"].encode("utf-8"))
            uid, gid = ids(entry)
            step = plan(entry, read_state(entry.path), uid, gid)
            if step.reasons and not module.check_mode:
                apply(step, uid, gid, run=lambda cmd: _run(module, cmd))
        except (ValueError, KeyError, OSError) as exc:
            module.fail_json(msg=f"node_files: {exc}", changed=bool(changed_paths), changed_paths=changed_paths,
                             files=records)
        records.append({"path": entry.path, "changed": bool(step.reasons), "reasons": step.reasons})
        if step.reasons:
            changed_paths.append(entry.path)
            if step.before != step.after:
                diffs.append({"before_header": entry.path, "after_header": entry.path,
                              "before": step.before, "after": step.after})
    reload, services = _services(module, changed_paths)
    changed = bool(changed_paths) or reload or any(svc["actions"] for svc in services)
    result = {"changed": changed, "changed_paths": changed_paths, "files": records,
              "services": services, "daemon_reload": reload}
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


def _systemctl(module: AnsibleModule, *args: str) -> str:
    rc, out, err = module.run_command(["systemctl", *args])
    if rc != 0:
        module.fail_json(msg=f"node_files: `systemctl {' '.join(args)}` failed (rc {rc}): {(err or out).strip()}; "
                             f"see `journalctl -u {args[-1]}` on the node")
    return out


def _services(module: AnsibleModule, changed_paths: list[str]) -> tuple[bool, list[dict]]:
    """Bring each unit of `services` to its state: one daemon-reload when a unit file changed, then
    the verbs service_actions names for each. Check mode runs only the reads."""
    specs = module.params["services"]
    if not specs:
        return False, []
    reload = any(p.startswith(UNIT_DIRS) for p in changed_paths)
    if reload and not module.check_mode:
        _systemctl(module, "daemon-reload")
    records = []
    for spec in specs:
        name = spec["name"]
        show = parse_show(_systemctl(module, "show", "-p", SHOW_PROPERTIES, name))
        if module.check_mode and show.get("LoadState") == "not-found" and reload:
            # The unit file is new and systemd has not re-read it (check mode): as a fresh unit would be.
            show = {"LoadState": "loaded", "ActiveState": "inactive", "UnitFileState": "disabled"}
        try:
            actions = service_actions(show, spec["state"], spec["enabled"],
                                      spec["restart_on_change"] and bool(changed_paths))
        except ValueError as exc:
            module.fail_json(msg=f"node_files: {name}: {exc}; check the unit's name and that its file is written")
        if not module.check_mode:
            for verb in actions:
                _systemctl(module, verb, name)
        records.append({"name": name, "actions": actions})
    return reload, records


if __name__ == "__main__":
    main()
