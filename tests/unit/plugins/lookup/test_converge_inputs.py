"""The lookup gb10.cluster.converge_inputs finds a role by name where role_path is not set (a play's task
that probes its roles' stamps before they run, playbooks/nodes.yml), the same folder the role's own probe
passes, so both digests agree."""
from __future__ import annotations

from pathlib import Path

import pytest
from ansible.errors import AnsibleLookupError

from ansible_collections.gb10.cluster.plugins.lookup import converge_inputs

ROOT = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize("role", ["dgx_node", "cx7_fabric", "nccl_env", "firewall"])
def test_a_role_is_found_by_name_in_the_repository(role: str) -> None:
    assert Path(converge_inputs._find_role(role)).resolve() == ROOT / "roles" / role


def test_an_unknown_role_says_what_to_pass() -> None:
    with pytest.raises(AnsibleLookupError, match="pass role_path=role_path"):
        converge_inputs._find_role("no_such_role")
