#!/usr/bin/python
"""Ansible module: the digest and image ID to pin for an image tag, read from its registry."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_resolve
short_description: Resolve an image tag to the digest to pin and its image ID, at the registry
description:
  - Reads the manifest of O(repository):O(tag) (or O(repository)@O(digest), checked) from the image's
    registry with the registry HTTP API v2, and returns its digest (the sha256 of the manifest's bytes)
    and the image ID (the manifest's config digest).
  - A multi-platform index resolves to the manifest of O(platform), the digest the nodes pull and the
    rack's mirror copies.
  - Read-only; supports check mode (the same answer).
  - Logic in C(plugins/module_utils/pins.py); used by C(pin.yml) (docs/pinning.md).
options:
  repository:
    description: C(registry/name) (Docker Hub names may omit the registry).
    type: str
    required: true
  tag:
    description: The tag to resolve; ignored when O(digest) is given.
    type: str
    default: ""
  digest:
    description: A digest to check instead of a tag, C(sha256:<64 hex>).
    type: str
    default: ""
  platform:
    description: The nodes' platform, for a multi-platform index.
    type: str
    default: linux/arm64
  insecure:
    description: Reach the registry over plain HTTP (the lab's registries; never on the rack).
    type: bool
    default: false
  username:
    description: Registry user (NGC C($oauthtoken)); empty reads anonymously.
    type: str
    default: ""
  password:
    description: Registry password or API key (from ansible-vault; never logged).
    type: str
    default: ""
    no_log: true
  timeout:
    description: Seconds per request.
    type: float
    default: 60
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: The digest of nvcr.io/nvidia/vllm:26.10-py3 for the nodes
  gb10.cluster.image_resolve:
    repository: nvcr.io/nvidia/vllm
    tag: 26.10-py3
  register: image
"""

RETURN = r"""
digest:
  description: The manifest digest to pin (the platform manifest's for an index).
  returned: success
  type: str
image_id:
  description: The image ID, the manifest's config digest.
  returned: success
  type: str
index:
  description: The digest of the multi-platform index the tag named, or empty.
  returned: success
  type: str
ref:
  description: C(repository@digest).
  returned: success
  type: str
layers:
  description: Number of layers.
  returned: success
  type: int
bytes:
  description: Sum of the layers' sizes as stored (compressed).
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.pins import PinError, resolve_image


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "repository": {"type": "str", "required": True},
            "tag": {"type": "str", "default": ""},
            "digest": {"type": "str", "default": ""},
            "platform": {"type": "str", "default": "linux/arm64"},
            "insecure": {"type": "bool", "default": False},
            "username": {"type": "str", "default": ""},
            "password": {"type": "str", "default": "", "no_log": True},
            "timeout": {"type": "float", "default": 60.0},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = resolve_image(p["repository"], p["tag"], p["digest"], platform=p["platform"], insecure=p["insecure"],
                               username=p["username"], password=p["password"], timeout=p["timeout"])
    except PinError as err:
        module.fail_json(msg=str(err))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
