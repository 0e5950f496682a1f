"""Lookup gb10.cluster.template: ansible.builtin.template without a deep copy of every variable."""
from __future__ import annotations

DOCUMENTATION = r"""
---
name: template
short_description: A template file rendered with the task's variables (ansible.builtin.template, lighter)
description:
  - Renders each template as C(ansible.builtin.template) does, found the same way (the role's
    C(templates/) folder first), with the same variables, the same C(ansible_managed) and
    C(template_*) variables and the same Jinja settings (trim_blocks on).
  - The difference is cost. ansible-core's lookup makes a deep copy of all of the task's variables
    for each template (the inventory's, the roles', the cached facts), about 0.1 to 0.2 s of the control
    machine's CPU per template per host. This lookup puts its few added variables in a layer over the
    task's variables instead. The template reads them and cannot change them, so the copy is not needed.
  - The roles use it in every task that renders a file's content on each run.
options:
  _terms:
    description: Template files (relative paths are searched as ansible.builtin.template searches them).
    required: true
  template_vars:
    description: Extra variables for the template; they win over the task's.
    type: dict
    default: {}
  trim_blocks:
    description: Remove the first newline after a block tag (as ansible.builtin.template).
    type: bool
    default: true
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: The proxy's site, rendered on the control machine
  ansible.builtin.set_fact:
    site_conf: "{{ lookup('gb10.cluster.template', 'vllm-proxy.conf.j2') }}"
"""

RETURN = r"""
_raw:
  description: The rendered text of each template.
  type: list
  elements: str
"""

import os
from collections import ChainMap

from ansible._internal._templating import _template_vars
from ansible._internal._templating._engine import TemplateOptions, TemplateOverrides
from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase
from ansible.template import trust_as_template


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables if variables is not None else {}
        extra_vars = self.get_option("template_vars")
        overrides = TemplateOverrides.from_kwargs({"trim_blocks": self.get_option("trim_blocks")})
        rendered = []
        for term in terms:
            path = self.find_file_in_search_path(variables, "templates", term)
            if not path:
                raise AnsibleError(f"gb10.cluster.template: the template {term} could not be found for the lookup; "
                                   "check its name and the role's templates/ folder")
            data = trust_as_template(self._loader.get_text_file_contents(path))
            # Jinja's own search path for includes: each of Ansible's search paths and its templates/ folder.
            searchpath = [os.path.dirname(path)]
            for base in variables.get("ansible_search_path", []):
                searchpath += [os.path.join(base, "templates"), base]
            added = _template_vars.generate_ansible_template_vars(
                path=term, fullpath=path, include_ansible_managed="ansible_managed" not in variables)
            layered = ChainMap(dict(extra_vars), added, variables)
            templar = self._templar.copy_with_new_env(available_variables=layered, searchpath=searchpath)
            rendered.append(templar._engine.template(data, options=TemplateOptions(escape_backslashes=False,
                                                                                  overrides=overrides)))
        return rendered
