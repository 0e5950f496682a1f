"""The lookup gb10.cluster.template renders exactly what ansible.builtin.template's lookup renders (the roles
swapped one for the other to save the control machine a copy of every variable per template)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"

TEMPLATE = """\
# {{ ansible_managed }}
{% for x in numbers %}
item {{ x }}
{% endfor %}
name={{ name }} file={{ template_path | basename }} host={{ inventory_hostname }}
{% include 'part.j2' %}
"""

PLAY = """\
- name: Both lookups
  hosts: localhost
  gather_facts: false
  vars:
    numbers: [1, 2]
    name: abc
    other: {name: zz}
  tasks:
    - name: The same text, with and without template_vars
      ansible.builtin.assert:
        that:
          - lookup('gb10.cluster.template', 'page.j2') == lookup('ansible.builtin.template', 'page.j2')
          - lookup('gb10.cluster.template', 'page.j2', template_vars=other) == lookup('ansible.builtin.template', 'page.j2', template_vars=other)
          - lookup('gb10.cluster.template', 'page.j2', template_vars=other) is search('name=zz file=page.j2 host=localhost')
          - lookup('gb10.cluster.template', 'page.j2') is search('included ABC')
          - name == 'abc'
    - name: Show it
      ansible.builtin.debug:
        msg: "{{ lookup('gb10.cluster.template', 'page.j2') }}"
    - name: A template that is not there
      ansible.builtin.debug:
        msg: "{{ lookup('gb10.cluster.template', 'missing.j2') }}"
"""


def run(tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "page.j2").write_text(TEMPLATE)
    (tmp_path / "templates" / "part.j2").write_text("included {{ name | upper }}\n")
    (tmp_path / "play.yml").write_text(PLAY)
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
           "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections")}
    return subprocess.run([str(PLAYBOOK), "-i", "localhost,", "play.yml"], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=300)


def test_the_same_text_as_ansible_builtin_template_and_a_missing_one_is_named(tmp_path):
    result = run(tmp_path)
    out = result.stdout + result.stderr
    assert "All assertions passed" in out, out
    assert "item 1" in out and "item 2" in out
    # the third task fails: the template's name and where to look
    assert result.returncode != 0
    assert "the template missing.j2 could not be found" in out, out
