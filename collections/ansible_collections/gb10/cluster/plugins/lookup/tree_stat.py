"""Lookup gb10.cluster.tree_stat: a folder on the control machine, file by file (size, mtime)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
name: tree_stat
short_description: Size and mtime of every file of a folder on the control machine
description:
  - Returns one dict per term (a folder on the control machine) mapping each regular file's path,
    relative to the folder, to C([size, mtime in ns]). Symlinks and the staging folder C(.gb10-stage)
    are left out, as the weights role's manifest leaves them out.
  - The weights role records it on the first node after a copy from the control machine and compares
    it on the next run (M(gb10.cluster.weights_staged)); an unchanged folder is not copied again.
options:
  _terms:
    description: Folders on the control machine.
    required: true
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: The folder as it is now
  ansible.builtin.debug:
    msg: "{{ lookup('gb10.cluster.tree_stat', '/srv/models/gpt-oss-120b') }}"
"""

RETURN = r"""
_raw:
  description: One dict per folder, relative path -> [size, mtime in ns].
  type: list
  elements: dict
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.gb10.cluster.plugins.module_utils.weights_staged import tree_stat


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        try:
            return [tree_stat(term) for term in terms]
        except (ValueError, OSError) as exc:
            raise AnsibleLookupError(f"gb10.cluster.tree_stat: {exc}; check the weights' folder on the control machine") from exc
