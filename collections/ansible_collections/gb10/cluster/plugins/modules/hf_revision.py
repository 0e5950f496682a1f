#!/usr/bin/python
"""Ansible module: the commit, files, sizes and checksums of a Hugging Face revision."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: hf_revision
short_description: Read the commit, file sizes and checksums of a Hugging Face model revision
description:
  - Asks the Hub (or a Hub-like endpoint) C(GET /api/models/<repo>/revision/<revision>?blobs=true), the
    route the weights role's download reads, and returns the commit the revision names, every file with
    its size and checksum (sha256 for LFS files, the git blob sha1 for the others) and the checkpoint's
    exact size (the sum of the C(.safetensors) files).
  - The token goes to the endpoint only, in the Authorization header, never across a redirect.
  - Read-only; supports check mode (the same answer).
  - Logic in C(plugins/module_utils/pins.py); used by C(pin.yml) (docs/pinning.md).
options:
  endpoint:
    description: The Hub, as HF_ENDPOINT names it.
    type: str
    default: https://huggingface.co
  repo:
    description: C(owner/name).
    type: str
    required: true
  revision:
    description: A branch, tag or 40-hex commit.
    type: str
    default: main
  token:
    description: The Hugging Face token (from ansible-vault; never logged); empty for public models.
    type: str
    default: ""
    no_log: true
  exclude:
    description: fnmatch patterns of files the download leaves out (weights_hf_exclude).
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds for the request.
    type: float
    default: 30
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: The commit of main and the files of Qwen/Qwen3.5-397B-A17B-FP8
  gb10.cluster.hf_revision:
    repo: Qwen/Qwen3.5-397B-A17B-FP8
    revision: main
    token: "{{ gb10_hf_token }}"
    exclude: ["original/*"]
  register: hub
"""

RETURN = r"""
revision:
  description: The 40-hex commit.
  returned: success
  type: str
files:
  description: C(path), C(size) and C(sha256) (LFS) or C(git_sha1) of every file the download fetches.
  returned: success
  type: list
  elements: dict
checkpoint_bytes:
  description: Sum of the sizes of the C(.safetensors) files.
  returned: success
  type: int
weight_files:
  description: Number of C(.safetensors) files.
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.pins import PinError, hub_revision


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "endpoint": {"type": "str", "default": "https://huggingface.co"},
            "repo": {"type": "str", "required": True},
            "revision": {"type": "str", "default": "main"},
            "token": {"type": "str", "default": "", "no_log": True},
            "exclude": {"type": "list", "elements": "str", "default": []},
            "timeout": {"type": "float", "default": 30.0},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = hub_revision(p["endpoint"], p["repo"], p["revision"], p["token"], p["exclude"], p["timeout"])
    except PinError as err:
        module.fail_json(msg=str(err))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
