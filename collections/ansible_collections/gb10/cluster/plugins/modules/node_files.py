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
        description: Owning user.
        type: str
        default: root
      group:
        description: Owning group.
        type: str
        default: root
      validate:
        description:
          - Command that checks the new content before it replaces the file, with C(%s) for the
            temporary file (for example C(/usr/sbin/visudo -cf %s)). Runs only when the content changes.
        type: str
author:
  - gb10-cluster
"""

EXAMPLES = r"""
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
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.node_files import (
    Entry,
    apply,
    ids,
    parse_mode,
    plan,
    read_state,
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
    result = {"changed": bool(changed_paths), "changed_paths": changed_paths, "files": records}
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
