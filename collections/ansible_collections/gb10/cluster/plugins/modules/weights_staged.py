#!/usr/bin/python
"""Ansible module: is a model already staged on this node (the weights role's no-op path)?"""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: weights_staged
short_description: Whether a model folder is staged and unchanged, from the staging records alone
description:
  - Reads the records the weights role's tools leave in O(dir)C(/.gb10-stage/) and says whether the
    folder still holds what was staged, in one module run and without reading the weights again.
  - Staged means the manifest (sizes and the checksum of every chunk) was verified on this node
    (C(complete.json) names the manifest's id) and no file of the manifest changed size or mtime since;
    and, on the first node, that the source did not change since (O(source) equals the record of the
    last copy from the control machine (C(source.json)), or O(hf) names the repository and revision of
    the last complete download (C(hf-complete.json))).
  - Anything else (no record, a file touched, another source) reads as not staged, with the reason; the
    role then runs its full staging path, which hashes what it has to.
  - Read-only; supports check mode.
options:
  dir:
    description: The model's folder on the node (C(weights_dir)/C(model)).
    type: path
    required: true
  source:
    description:
      - The folder on the control machine as C(lookup('gb10.cluster.tree_stat', dir)) reads it (relative
        path -> [size, mtime in ns]); given on the first node when the weights come from the control machine.
    type: dict
  hf:
    description: C(repo) and C(revision) of the download; given on the first node when the weights come from Hugging Face.
    type: dict
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Staged already?
  gb10.cluster.weights_staged:
    dir: /srv/gb10/models/gpt-oss-120b
    source: "{{ lookup('gb10.cluster.tree_stat', '/srv/models/gpt-oss-120b') if inventory_hostname == ansible_play_hosts[0] else omit }}"
  register: weights_staged_state
"""

RETURN = r"""
staged:
  description: True when the folder holds the staged model, unchanged.
  type: bool
  returned: always
reason:
  description: Why it is not staged (empty when it is).
  type: str
  returned: always
id:
  description: The manifest's id.
  type: str
  returned: when staged
files:
  description: How many files the manifest lists.
  type: int
  returned: when staged
total_bytes:
  description: The model's size in bytes.
  type: int
  returned: when staged
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.weights_staged import staged


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dir": {"type": "path", "required": True},
            "source": {"type": "dict"},
            "hf": {"type": "dict"},
        },
        supports_check_mode=True,
    )
    result = staged(module.params["dir"], module.params["source"], module.params["hf"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
