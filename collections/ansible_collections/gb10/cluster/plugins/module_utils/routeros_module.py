"""The RouterOS API session of the gb10.cluster switch modules (switch_read, switch_backup, switch_diag):
community.routeros' connection options, its library check and its connection, behind one call.

Module plumbing, not logic: the one module_utils file here that imports Ansible (the modules' own
decisions live in switch_state.py and switch_diag.py, plain and unit-tested).
"""
from __future__ import annotations

import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule

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

    def api_argument_spec() -> dict[str, Any]:  # type: ignore[misc]
        return {}


def routeros_module(spec: dict[str, Any], supports_check_mode: bool) -> AnsibleModule:
    """The AnsibleModule for ``spec`` plus community.routeros' connection options (hostname, username,
    password (no_log), tls, validate_certs, ca_path ...), failing in one sentence without the collection
    or its librouteros library."""
    module = AnsibleModule(argument_spec={**spec, **api_argument_spec()}, supports_check_mode=supports_check_mode)
    if not HAS_COLLECTION:
        module.fail_json(msg="community.routeros is not installed (it comes with the ansible bundle)",
                         exception=COLLECTION_ERR)
    check_has_library(module)
    return module


def connect(module: AnsibleModule) -> Any:
    """The API session for the module's connection options (community.routeros' create_api)."""
    return create_api(module)
