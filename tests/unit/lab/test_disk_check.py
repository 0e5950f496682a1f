"""The lab's disk guard: a serve run that would run out of disk stops before it starts, naming stale volumes."""
from __future__ import annotations

from collections import namedtuple

import pytest

from lab.serving import lab_serving as L

Usage = namedtuple("Usage", "total used free")


def _fake_docker(monkeypatch: pytest.MonkeyPatch, volumes: list[str], running: list[str]) -> list[list[str]]:
    removed: list[list[str]] = []

    def run(*cmd: str, capture: bool = False, **_: object) -> str:
        if cmd[:3] == ("docker", "volume", "ls"):
            return "\n".join(volumes)
        if cmd[:2] == ("docker", "ps"):
            return "\n".join(running)
        if cmd[:2] == ("docker", "info"):
            return "/var/lib/docker\n"
        raise AssertionError(cmd)

    monkeypatch.setattr(L, "run", run)
    monkeypatch.setattr(L.subprocess, "run", lambda cmd, **_: removed.append(cmd))
    monkeypatch.setattr(L, "CONTAINER_PREFIX", "")
    return removed


def test_stale_volumes_are_other_labs_stopped_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_docker(monkeypatch, ["gb10lab-gx10-1-docker", "gb10lab-lab1-gx10-1-docker", "gb10lab-lab2-gx10-1-docker"],
                 ["gx10-1", "lab2-gx10-1"])
    assert L.stale_volumes() == ["gb10lab-lab1-gx10-1-docker"]


def test_too_little_disk_stops_with_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_docker(monkeypatch, ["gb10lab-lab1-gx10-1-docker"], [])
    monkeypatch.setattr(L.shutil, "disk_usage", lambda _: Usage(0, 0, 20 * 2**30))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(SystemExit, match=r"20.0 GiB free under /var/lib/docker, but 4 nodes .* about 32 GiB.*"
                                         r"gb10lab-lab1-gx10-1-docker"):
        L.disk_check(4)


def test_ci_removes_stopped_labs_volumes(monkeypatch: pytest.MonkeyPatch) -> None:
    removed = _fake_docker(monkeypatch, ["gb10lab-lab1-gx10-1-docker"], [])
    frees = iter([20 * 2**30, 50 * 2**30])
    monkeypatch.setattr(L.shutil, "disk_usage", lambda _: Usage(0, 0, next(frees)))
    monkeypatch.setenv("CI", "true")
    L.disk_check(4)
    assert ["docker", "volume", "rm", "gb10lab-lab1-gx10-1-docker"] in removed
