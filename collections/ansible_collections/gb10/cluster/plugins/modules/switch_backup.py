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
  - Writes the export on the controller (where the module runs, as every RouterOS API module does) as
    O(dest_dir)/C(<host>-<UTC stamp>.rsc), mode 0600, in a folder of mode 0700, and removes the
    exports of O(host) there beyond the newest O(keep).
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
    description: The switch's inventory name, in the export's file name and the messages.
    type: str
    required: true
  dest_dir:
    description: The folder on the controller for the exports (created with mode 0700).
    type: path
    required: true
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
    host: crs804
    dest_dir: /srv/gb10/inventory/switch-backups
  register: backup
  no_log: true
"""

RETURN = r"""
export_path:
  description: Where the export was written on the controller.
  returned: success
  type: str
removed_exports:
  description: The exports removed from O(dest_dir) (paths).
  returned: success
  type: list
  elements: str
removed:
  description: The binary backups removed from the switch (names).
  returned: success
  type: list
  elements: str
"""

import os

from ansible_collections.gb10.cluster.plugins.module_utils.routeros_module import connect, routeros_module
from ansible_collections.gb10.cluster.plugins.module_utils.switch_state import (
    BACKUP_CHUNK,
    backups_beyond,
    export_name,
    export_offsets,
    exports_beyond,
)


def main() -> None:
    spec = dict(
        name=dict(type="str", required=True),
        binary=dict(type="bool", default=True),
        binary_password=dict(type="str", default="", no_log=True),
        keep=dict(type="int", default=10),
        host=dict(type="str", required=True),
        dest_dir=dict(type="path", required=True),
    )
    module = routeros_module(spec, supports_check_mode=False)
    p = module.params
    if p["keep"] < 1:
        module.fail_json(msg=f"keep is {p['keep']} for {p['host']}; keep at least 1 backup.")
    name, host, dest_dir = p["name"], p["host"], p["dest_dir"]
    writable = "; check that the folder is writable (switch_backup_dir)."
    try:  # before anything is sent to the switch
        os.makedirs(dest_dir, mode=0o700, exist_ok=True)
        os.chmod(dest_dir, 0o700)
    except OSError as exc:
        module.fail_json(msg=f"the backup folder {dest_dir} for {host} cannot be used: {exc}{writable}")
    api = connect(module)
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
    path = os.path.join(dest_dir, export_name(host, name))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("".join(chunks))
        os.chmod(path, 0o600)
        gone = [os.path.join(dest_dir, n) for n in exports_beyond(os.listdir(dest_dir), host, p["keep"])]
        for old_path in gone:
            os.remove(old_path)
    except OSError as exc:
        module.fail_json(msg=f"keeping the export of {host} in {dest_dir} failed: {exc}{writable}")
    module.exit_json(changed=False, export_path=path, removed=[str(r["name"]) for r in old], removed_exports=gone)


if __name__ == "__main__":
    main()
