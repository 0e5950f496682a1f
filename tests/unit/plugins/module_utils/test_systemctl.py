"""module_utils/systemctl.py: `systemctl show` parsing and the verbs that bring a unit to its state."""
from __future__ import annotations

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.systemctl import parse_show, service_actions


def _show(active="active", file="enabled", load="loaded"):
    return {"LoadState": load, "ActiveState": active, "UnitFileState": file}


def test_parse_show_keeps_key_value_lines_only():
    assert parse_show("ActiveState=active\nnoise\nUnitFileState = enabled\n") == {
        "ActiveState": "active", "UnitFileState": "enabled"}


@pytest.mark.parametrize(("show", "state", "enabled", "restart", "verbs"), [
    (_show("inactive", "disabled"), "started", True, False, ["enable", "start"]),
    (_show("inactive", "disabled"), "started", True, True, ["enable", "start"]),
    (_show(), "started", True, False, []),
    (_show(), "started", True, True, ["restart"]),
    (_show("activating"), "started", True, False, []),
    (_show("failed"), "started", True, False, ["start"]),
    (_show(file="static"), "started", True, False, []),
    (_show(), "stopped", False, True, ["disable", "stop"]),
    (_show("inactive", "disabled"), "stopped", False, False, []),
    (_show(), None, None, True, []),
    (_show(file="disabled"), None, True, False, ["enable"]),
    (_show(load="not-found", active="inactive", file=""), "stopped", False, False, []),
])
def test_service_actions(show, state, enabled, restart, verbs):
    assert service_actions(show, state, enabled, restart) == verbs


def test_a_unit_systemd_does_not_know_cannot_be_started():
    with pytest.raises(ValueError, match="not-found"):
        service_actions(_show(load="not-found", active="inactive", file=""), "started", True, False)
