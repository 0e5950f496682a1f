#!/usr/bin/python
"""Ansible module: copy a digest-pinned image into the rack's registry mirror, once."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: registry_copy
short_description: Copy a digest-pinned image from its registry into the rack's mirror, once
description:
  - Fetches the manifest of O(ref) by its digest from the image's registry, checks the manifest's sha256
    against the pin, then streams every blob the mirror lacks from upstream into the mirror, hashing each
    on the way (a blob whose sha256 differs from the manifest's is refused and not stored).
  - The image lands in the mirror as C(<mirror>/<registry>/<repository>@<digest>) with the manifest's
    bytes unchanged, so the nodes pull it by the same digest.
  - Nothing is fetched when the mirror already holds the manifest (changed=false).
  - A multi-platform index is refused with the digest of O(platform)'s manifest to pin instead.
  - Supports check mode (reports the blobs it would copy; copies nothing).
options:
  ref:
    description: The image, C(registry/repository@sha256:<64 hex>) (Docker Hub names may omit the registry).
    type: str
    required: true
  mirror:
    description: The mirror's C(host:port) as the control machine reaches it.
    type: str
    required: true
  platform:
    description: The nodes' platform, used to name the digest to pin when O(ref) is an index.
    type: str
    default: linux/arm64
  mirror_insecure:
    description: Reach the mirror over plain HTTP.
    type: bool
    default: true
  upstream_insecure:
    description: Reach the upstream registry over plain HTTP (the lab's upstream; never on the rack).
    type: bool
    default: false
  username:
    description: Upstream user (NGC C($oauthtoken)); empty pulls anonymously.
    type: str
    default: ""
  password:
    description: Upstream password or API key (from ansible-vault; never logged).
    type: str
    default: ""
    no_log: true
  log_file:
    description: File the copy's progress goes to (one line every 10 s per blob); empty for none.
    type: path
    default: ""
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Copy the serving image into the mirror
  gb10.cluster.registry_copy:
    ref: nvcr.io/nvidia/vllm@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
    mirror: 192.168.1.10:5001
"""

RETURN = r"""
mirror_ref:
  description: What the nodes pull, C(<mirror>/<registry>/<repository>@<digest>).
  returned: always
  type: str
blobs:
  description: One record per blob (C(digest), C(size), C(action) copy, present or foreign).
  returned: always
  type: list
  elements: dict
bytes_copied:
  description: Bytes fetched from upstream in this run.
  returned: always
  type: int
seconds:
  description: Duration of the copy.
  returned: always
  type: float
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.registry_mirror import MirrorError, copy_image


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "ref": {"type": "str", "required": True},
            "mirror": {"type": "str", "required": True},
            "platform": {"type": "str", "default": "linux/arm64"},
            "mirror_insecure": {"type": "bool", "default": True},
            "upstream_insecure": {"type": "bool", "default": False},
            "username": {"type": "str", "default": ""},
            "password": {"type": "str", "default": "", "no_log": True},
            "log_file": {"type": "path", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params

    def progress(line: str) -> None:
        if p["log_file"]:
            with open(p["log_file"], "a", encoding="utf-8") as log:
                log.write(line + "\n")

    try:
        result = copy_image(p["ref"], p["mirror"], platform=p["platform"], upstream_insecure=p["upstream_insecure"],
                            mirror_insecure=p["mirror_insecure"], username=p["username"], password=p["password"],
                            check=module.check_mode, progress=progress)
    except MirrorError as err:
        module.fail_json(msg=f"{p['ref']}: {err}")
    except OSError as err:
        module.fail_json(msg=f"{p['ref']}: cannot reach a registry ({err}); check that the mirror {p['mirror']} "
                             "runs (registry_mirror role) and that the control machine reaches the upstream registry.")
    module.exit_json(**result.as_dict())


if __name__ == "__main__":
    main()
