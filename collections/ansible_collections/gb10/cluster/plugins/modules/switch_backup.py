#!/usr/bin/python
"""Ansible module: back up the CRS804's configuration over one RouterOS API session."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: switch_backup
short_description: Export the RouterOS configuration, keep a binary backup on the switch, prune old ones
description:
  - Over one API login, the steps the switch role used to send one module run each
    C(/export file=<name>), find C(<name>.rsc) in C(/file), read it back in 32 KiB chunks
    (C(/file/read)), remove it from the switch, C(/system/backup/save name=<name>) (with O(binary)),
    then remove the binary backups C(gb10-backup-<UTC stamp>.backup) beyond the newest O(keep).
  - Returns the export text; the caller writes it on the controller.
  - Reported as unchanged (the backups are a by-product, not configuration). Not run in check mode.
  - Connects like the community.routeros API modules (librouteros, TLS on 8729 by default).
extends_documentation_fragment:
  - community.routeros.api
options:
  name:
    description: The backup's name, C(gb10-backup-<UTC stamp>); the export is C(<name>.rsc) on the switch.
    type: str
    required: true
  binary:
    description: Also save a binary C(/system/backup) named O(name) on the switch.
    type: bool
    default: true
  binary_password:
    description: The binary backup's password.
    type: str
    default: ""
  keep:
    description: How many binary backups C(gb10-backup-*.backup) to keep on the switch (the newest).
    type: int
    default: 10
  host:
    description: The switch's inventory name, for the messages.
    type: str
    default: the switch
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Back up the switch
  gb10.cluster.switch_backup:
    hostname: 192.168.1.2
    username: "{{ switch_api_username }}"
    password: "{{ switch_api_password }}"
    tls: true
    name: gb10-backup-20260101T000000Z
    binary_password: "{{ switch_backup_password }}"
    keep: 10
  register: backup
  no_log: true
"""

RETURN = r"""
export:
  description: The C(/export) text.
  returned: success
  type: str
removed:
  description: The binary backups removed from the switch (names).
  returned: success
  type: list
  elements: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.switch_state import (
    BACKUP_CHUNK,
    backups_beyond,
    export_offsets,
)

try:
    from ansible_collections.community.routeros.plugins.module_utils.api import (
        api_argument_spec,
        check_has_library,
        create_api,
    )
    HAS_COLLECTION = True
    COLLECTION_ERR = ""
except ImportError:  # pragma: no cover - the ansible bundle ships community.routeros
    HAS_COLLECTION = False
    COLLECTION_ERR = traceback.format_exc()

    def api_argument_spec():  # type: ignore[no-redef]
        return {}


def main() -> None:
    spec = dict(
        name=dict(type="str", required=True),
        binary=dict(type="bool", default=True),
        binary_password=dict(type="str", default="", no_log=True),
        keep=dict(type="int", default=10),
        host=dict(type="str", default="the switch"),
    )
    spec.update(api_argument_spec())
    module = AnsibleModule(argument_spec=spec, supports_check_mode=False)
    if not HAS_COLLECTION:
        module.fail_json(msg="community.routeros is not installed (it comes with the ansible bundle)",
                         exception=COLLECTION_ERR)
    check_has_library(module)
    p = module.params
    if p["keep"] < 1:
        module.fail_json(msg=f"keep is {p['keep']} for {p['host']}; keep at least 1 backup.")
    name, host = p["name"], p["host"]
    api = create_api(module)
    step = "/export"
    try:
        tuple(api.path()("export", file=name))
        step = "/file"
        files = [dict(r) for r in api.path("file") if r.get("name") == f"{name}.rsc"]
        if len(files) != 1:
            module.fail_json(msg=f"/export on {host} did not create {name}.rsc; nothing was changed.")
        step = "/file/read"
        chunks = []
        for offset in export_offsets(files[0].get("size")):
            rows = list(api.path("file")("read", file=f"{name}.rsc", offset=str(offset),
                                         **{"chunk-size": str(BACKUP_CHUNK)}))
            chunks.append(str(rows[0].get("data", "")) if rows else "")
        step = "/file/remove"
        api.path("file").remove(files[0][".id"])
        if p["binary"]:
            step = "/system/backup/save"
            tuple(api.path("system", "backup")("save", name=name, password=p["binary_password"]))
        step = "/file (old backups)"
        old = backups_beyond(api.path("file"), p["keep"])
        for row in old:
            api.path("file").remove(row[".id"])
    except Exception as exc:  # librouteros raises its own error classes
        module.fail_json(msg=f"backing up {host} failed at {step}: {exc}")
    finally:
        api.close()
    module.exit_json(changed=False, export="".join(chunks), removed=[str(r["name"]) for r in old])


if __name__ == "__main__":
    main()
