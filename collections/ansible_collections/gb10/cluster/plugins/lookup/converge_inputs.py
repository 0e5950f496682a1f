"""Lookup gb10.cluster.converge_inputs: the digest of everything a role's converge depends on."""
from __future__ import annotations

DOCUMENTATION = r"""
---
name: converge_inputs
short_description: Digest of a role's inputs, for gb10.cluster.converge_stamp
description:
  - Returns one digest (hex) per term (a role's name) over what the role's converge depends on, read on
    the control machine for the host being templated.
  - The role's files (tasks, templates, defaults, handlers, meta) and the collection's plugins.
  - The inventory folder's files (operator data folders such as bench and switch-backups left out).
  - The values of the role's variables (the options of its meta/argument_specs.yml, plus O(names)),
    whatever sets them (role defaults, inventory, -e).
  - The facts named in O(facts) and the value of O(extra).
  - Any of these changing makes the role's stamp stale, and the role runs whole on the next converge.
  - A variable that cannot be templated yet (it depends on a result the role registers) is taken as
    its definition; its definition's file is part of the digest.
options:
  _terms:
    description: Role names.
    required: true
  role_path:
    description:
      - The role's folder (C(role_path) inside the role). Without it the role is looked for by name in the
        configured roles path, then in the repository's C(roles) folder (a play's task that probes the
        stamps of its roles before they run, where C(role_path) is not set).
    type: path
  names:
    description: More variables the role reads (shared inventory variables such as C(gb10_fabric_twins)).
    type: list
    elements: str
    default: []
  facts:
    description: Keys of C(ansible_facts) the role decides on.
    type: list
    elements: str
    default: []
  extra:
    description: Anything else the role decides on that is known only at run time (where the SSH session comes from).
    type: raw
    default: null
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: The digest the role's stamp is compared with
  ansible.builtin.debug:
    msg: "{{ lookup('gb10.cluster.converge_inputs', 'nccl_env', role_path=role_path, names=['gb10_fabric_twins']) }}"
"""

RETURN = r"""
_raw:
  description: One hex digest per role.
  type: list
  elements: str
"""

import os

import yaml
from ansible import constants as C
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.gb10.cluster.plugins.module_utils.converge import (
    INVENTORY_DATA_DIRS,
    inputs_digest,
    tree_digest,
)
from ansible_collections.gb10.cluster.plugins.module_utils.yaml_safe import safe_load

_PLUGINS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The repository's roles: <repo>/collections/ansible_collections/gb10/cluster/plugins -> <repo>/roles.
_REPO_ROLES = os.path.normpath(os.path.join(_PLUGINS, *[os.pardir] * 5, "roles"))


def _find_role(role: str) -> str:
    """The folder of a role by name: the configured roles path first, then the repository's roles."""
    for folder in [*(C.DEFAULT_ROLES_PATH or []), _REPO_ROLES]:
        candidate = os.path.join(os.path.expanduser(str(folder)), role)
        if os.path.isdir(os.path.join(candidate, "tasks")):
            return candidate
    raise AnsibleLookupError(f"gb10.cluster.converge_inputs: no role {role!r} in the roles path "
                             f"({C.DEFAULT_ROLES_PATH}) nor in {_REPO_ROLES}; pass role_path=role_path from inside the role")


def _spec_names(role_path: str) -> list[str]:
    """Every option name of every entry point of the role's meta/argument_specs.yml."""
    path = os.path.join(role_path, "meta", "argument_specs.yml")
    try:
        with open(path, encoding="utf-8") as handle:
            specs = (safe_load(handle) or {}).get("argument_specs") or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AnsibleLookupError(f"gb10.cluster.converge_inputs: cannot read {path}: {exc}") from exc
    names: set[str] = set()
    for entry in specs.values():
        names.update((entry or {}).get("options") or {})
    return sorted(names)


class LookupModule(LookupBase):
    def _value(self, name: str, variables: dict):
        if name not in variables:
            return "<undefined>"
        raw = variables[name]
        try:
            return self._templar.template(raw)
        except Exception:  # noqa: BLE001 - anything templating raises: the definition stands for the value
            return f"<definition> {raw!r}"

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        given_path = self.get_option("role_path")
        inventory_dir = variables.get("inventory_dir") or ""
        plugins = tree_digest(_PLUGINS)
        inventory = tree_digest(str(inventory_dir), exclude_top=INVENTORY_DATA_DIRS) if inventory_dir else "none"
        facts = variables.get("ansible_facts") or {}
        digests = []
        for role in terms:
            role_path = given_path or _find_role(role)
            names = sorted(set(_spec_names(role_path)) | set(self.get_option("names")))
            digests.append(inputs_digest({
                "role": role,
                "role_files": tree_digest(role_path),
                "plugins": plugins,
                "inventory": inventory,
                "variables": {name: self._value(name, variables) for name in names},
                "facts": {key: facts.get(key) for key in self.get_option("facts")},
                "extra": self.get_option("extra"),
            }))
        return digests
