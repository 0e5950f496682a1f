#!/usr/bin/python
"""Ansible module: before the switch role talks to RouterOS, check the settings and who answers."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: switch_preflight
short_description: Check that the switch is who it says it is before anything is sent to it
description:
  - Runs first in the switch role and in the diagnosis, on the controller. Sends nothing to the switch
    but a TLS handshake; never changes anything (check mode runs it in full).
  - Refuses, one sentence per mistake, settings that would lock Ansible out or bridge the management
    port into the fabric (the default admin user disabled while Ansible logs in as it, the factory
    address removed while Ansible connects to it, the management port as a node's port or as the
    fabric bridge), and a switch with neither a pinned CA, a pinned fingerprint nor the explicit opt-out.
  - Reads the certificate the switch presents and checks it against O(ca_path) (the CA that signed it)
    and/or O(cert_sha256) (its SHA-256 fingerprint). community.routeros cannot pin a fingerprint, so
    this module compares it, then writes the certificate to O(pin_dir) and returns that file as the
    C(ca_path) every API module gets, so each later connection is verified against exactly that
    certificate (which therefore has to be self-signed).
  - With O(allow_unverified=true) and nothing pinned it connects anyway and warns on every run,
    naming the fingerprint the switch presented.
options:
  host:
    description: The switch's inventory name, used in messages.
    type: str
    required: true
  hostname:
    description: Address of the RouterOS API (switch_api_host).
    type: str
    required: true
  port:
    description: API port.
    type: int
    default: 8729
  tls:
    description: api-ssl (true) or the plain API (false, needs O(allow_unverified)).
    type: bool
    default: true
  ca_path:
    description: File on the controller with the CA that signed the switch's certificate (or the certificate itself when self-signed).
    type: str
    default: ""
  cert_sha256:
    description: SHA-256 fingerprint of the switch's certificate (64 hex digits, colons optional).
    type: str
    default: ""
  allow_unverified:
    description: Connect without checking who answers when nothing is pinned; warns on every run.
    type: bool
    default: false
  force_no_cert:
    description: Anonymous TLS (no certificate); needs O(allow_unverified).
    type: bool
    default: false
  validate_cert_hostname:
    description: Also check that the certificate names O(hostname).
    type: bool
    default: false
  timeout:
    description: Seconds per connection attempt.
    type: int
    default: 10
  wait:
    description: Seconds to keep trying when the API port does not answer.
    type: int
    default: 30
  pin_dir:
    description: Controller folder for the certificate pinned by fingerprint.
    type: path
    required: true
  settings:
    description: The switch's other role variables checked before connecting (switch_api_username,
      switch_default_admin, switch_default_admin_new_name, switch_factory_address_remove,
      switch_factory_address, switch_mgmt_interface, switch_mgmt_address, switch_bridge_name,
      switch_ports_keep_enabled, switch_api_host, ansible_host, and removed variables still set).
    type: dict
    default: {}
  node_ports:
    description: Each GB10 node's gb10_switch_port (node name to port).
    type: dict
    default: {}
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Switch | who answers is the switch
  gb10.cluster.switch_preflight:
    host: "{{ inventory_hostname }}"
    hostname: "{{ switch_api_host }}"
    port: "{{ switch_api_port | int }}"
    cert_sha256: "{{ switch_api_cert_sha256 }}"
    pin_dir: "{{ switch_api_pin_dir }}"
  register: switch_tls
"""

RETURN = r"""
mode:
  description: How the switch was recognised (ca, fingerprint, ca+fingerprint) or not (unverified, anonymous, plain).
  returned: success
  type: str
tls:
  description: Whether to use api-ssl.
  returned: success
  type: bool
validate_certs:
  description: Whether the API modules verify the certificate (false only when unverified).
  returned: success
  type: bool
force_no_cert:
  description: Anonymous TLS.
  returned: success
  type: bool
ca_path:
  description: The file the API modules trust (the pinned CA, or the certificate pinned by fingerprint); empty when none.
  returned: success
  type: str
presented:
  description: The certificate the switch presented (sha256, subject, issuer, not_after, self_signed).
  returned: success
  type: dict
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils import switch_plan, switch_tls


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", required=True),
            hostname=dict(type="str", required=True),
            port=dict(type="int", default=8729),
            tls=dict(type="bool", default=True),
            ca_path=dict(type="str", default=""),
            cert_sha256=dict(type="str", default=""),
            allow_unverified=dict(type="bool", default=False),
            force_no_cert=dict(type="bool", default=False),
            validate_cert_hostname=dict(type="bool", default=False),
            timeout=dict(type="int", default=10),
            wait=dict(type="int", default=30),
            pin_dir=dict(type="path", required=True),
            settings=dict(type="dict", default={}),
            node_ports=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    p = module.params
    settings = dict(p["settings"] or {})
    errors = switch_plan.settings_errors(p["host"], settings, p["node_ports"] or {})
    tls_settings = switch_tls.Settings(
        host=p["host"], address=p["hostname"], port=p["port"], tls=p["tls"], ca_path=p["ca_path"] or "",
        cert_sha256=p["cert_sha256"] or "", allow_unverified=p["allow_unverified"], force_no_cert=p["force_no_cert"],
        validate_cert_hostname=p["validate_cert_hostname"],
        removed={k: v for k, v in settings.items() if k in switch_tls.REMOVED_VARS})
    errors = switch_tls.settings_errors(tls_settings) + errors
    if errors:
        module.fail_json(msg=" ".join(errors), errors=errors, refused=True)
    try:
        result = switch_tls.preflight(tls_settings, Path(p["pin_dir"]), timeout=p["timeout"], wait=p["wait"])
    except switch_tls.Refused as exc:
        module.fail_json(msg=str(exc), refused=True)
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
