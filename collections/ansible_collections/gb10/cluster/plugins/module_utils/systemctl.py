"""`systemctl show` output, parsed: the one reader for the modules that ask systemd about a unit."""
from __future__ import annotations


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show -p A,B unit` output (KEY=value lines) as a dict; lines without '=' are ignored."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result[key.strip()] = value.strip()
    return result


# What `systemctl show -p` asks for to decide on a unit (service_actions).
SHOW_PROPERTIES = "LoadState,ActiveState,UnitFileState"

# UnitFileState values that start the unit at boot, or that `systemctl enable` cannot change.
_ENABLED_STATES = {"enabled", "enabled-runtime", "static", "alias", "indirect", "generated", "transient"}
_RUNNING_STATES = {"active", "activating", "reloading", "refreshing"}


def service_actions(show: dict[str, str], state: str | None, enabled: bool | None, restart: bool) -> list[str]:
    """The `systemctl` verbs that bring a unit to `state` ('started', 'stopped' or None: leave it) and
    `enabled` (True, False or None: leave it), in order; `restart` asks for a restart of a unit that
    should run and already does (its files changed). A unit systemd does not know (LoadState
    not-found) needs nothing when it should be stopped or disabled, and raises ValueError when it
    should run."""
    unit_state = show.get("UnitFileState", "")
    active = show.get("ActiveState", "") in _RUNNING_STATES
    if show.get("LoadState", "") == "not-found":
        if state == "started" or enabled is True:
            raise ValueError("systemd does not know this unit (LoadState not-found)")
        return []
    actions: list[str] = []
    if enabled is True and unit_state not in _ENABLED_STATES:
        actions.append("enable")
    elif enabled is False and unit_state in {"enabled", "enabled-runtime"}:
        actions.append("disable")
    if state == "started" and (restart or not active):
        actions.append("restart" if active else "start")
    elif state == "stopped" and active:
        actions.append("stop")
    return actions
