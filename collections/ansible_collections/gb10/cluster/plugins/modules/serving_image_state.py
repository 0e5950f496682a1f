#!/usr/bin/python
"""Ansible module: Docker's plain-HTTP registries, the serving image and its repository's images, in one run."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: serving_image_state
short_description: Read (and fix) what a node's Docker holds for the serving image, in one run
description:
  - Merges O(insecure_registries) into the C(insecure-registries) of O(daemon_json) (other keys stay) and
    writes the file when it changed (restart Docker when C(daemon_changed) is true). Nothing is read or
    written there when O(insecure_registries) is empty.
  - Reads the ID of O(image) (empty when the node does not hold it) and the images of its repository
    (newest first), for the pull and the prune that follow.
  - Supports check mode (daemon.json is not written) and diff mode.
options:
  image:
    description: The image reference (repository@sha256:digest).
    type: str
    required: true
  insecure_registries:
    description: Registries Docker may reach over plain HTTP (host:port).
    type: list
    elements: str
    default: []
  daemon_json:
    description: Docker's daemon configuration file.
    type: path
    default: /etc/docker/daemon.json
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Docker's registries, the image, the repository's images
  gb10.cluster.serving_image_state:
    image: registry.gb10.lan:5000/gb10/vllm@sha256:0123...
    insecure_registries: [registry.gb10.lan:5000]
  register: serving_image_state

- name: Restart Docker when daemon.json changed (before a pull)
  ansible.builtin.systemd_service:
    name: docker
    state: restarted
  when: serving_image_state.daemon_changed
"""

RETURN = r"""
daemon_changed:
  description: daemon.json was (in check mode, would be) rewritten.
  returned: always
  type: bool
image_id:
  description: The image's ID (sha256:...), empty when the node does not hold it.
  returned: always
  type: str
images:
  description: The images of the repository, newest first, as C(id) and C(created).
  returned: always
  type: list
  elements: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.docker_state import (
    DaemonJsonError,
    daemon_text,
    merge_insecure,
    parse_daemon_json,
    parse_image_list,
    repository,
)
from ansible_collections.gb10.cluster.plugins.module_utils.node_files import Entry, apply, ids, plan, read_state


def _daemon(module: AnsibleModule, path: str, registries: list[str]) -> tuple[bool, dict[str, str]]:
    """Merge ``registries`` into daemon.json; rewrite it (root:root 0644, atomically: node_files' apply) only
    when the merged object differs from what the file holds, whatever the file's formatting."""
    current = read_state(path)
    try:
        before = parse_daemon_json(None if current.content is None else current.content.decode("utf-8"), path)
        merged = merge_insecure(before, registries)
    except (DaemonJsonError, UnicodeDecodeError) as exc:
        module.fail_json(msg=str(exc))
    if current.exists and before == merged:
        return False, {}
    entry = Entry(path=path, mode=0o644, content=daemon_text(merged).encode("utf-8"))
    uid, gid = ids(entry)
    step = plan(entry, current, uid, gid)
    if not module.check_mode:
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        apply(step, uid, gid)
    return True, {"before_header": path, "after_header": path, "before": step.before, "after": step.after}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "image": {"type": "str", "required": True},
            "insecure_registries": {"type": "list", "elements": "str", "default": []},
            "daemon_json": {"type": "path", "default": "/etc/docker/daemon.json"},
        },
        supports_check_mode=True,
    )
    image = module.params["image"]
    changed, diff = False, {}
    if module.params["insecure_registries"]:
        changed, diff = _daemon(module, module.params["daemon_json"], module.params["insecure_registries"])
    rc, out, _err = module.run_command(["docker", "image", "inspect", "--format", "{{.Id}}", image])
    image_id = out.strip() if rc == 0 else ""
    rc, out, err = module.run_command(["docker", "image", "ls", "--no-trunc", "--format", "{{.ID}} {{.CreatedAt}}",
                                       repository(image)])
    if rc != 0:
        module.fail_json(msg=f"docker image ls {repository(image)} failed (rc {rc}): {err.strip()}; is Docker running "
                             "(systemctl status docker)?")
    result = {"changed": changed, "daemon_changed": changed, "image_id": image_id, "images": parse_image_list(out)}
    if module._diff and diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
