"""dgx_node (module_utils) and dgx_node_facts (module): what the dgx_node role reads, on fixture trees."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.module_utils.dgx_node import (
    bounding_capabilities,
    dgx_facts,
    has_capability,
    present_paths,
)
from ansible_collections.gb10.cluster.plugins.module_utils.systemctl import parse_show
from ansible_collections.gb10.cluster.plugins.modules import dgx_node_facts as dgx_node_facts_module

# PID 1 of a GB10 (every capability) and of a lab node (Docker's default set: no CAP_SYS_RESOURCE).
FULL_CAPS = "000001ffffffffff"
DOCKER_DEFAULT_CAPS = "00000000a80425fb"
SHOW_RUNNING = "ActiveState=active\nUnitFileState=enabled\n"


def _tree(tmp_path: Path, *, gpu: bool, caps: str, daemon_json: str | None, chronyd: bool) -> Path:
    (tmp_path / "proc/1").mkdir(parents=True)
    (tmp_path / "proc/1/status").write_text(f"Name:\tsystemd\nCapInh:\t0000000000000000\nCapBnd:\t{caps}\n")
    if gpu:
        (tmp_path / "dev").mkdir()
        (tmp_path / "dev/nvidia0").write_text("")
        (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    if daemon_json is not None:
        (tmp_path / "etc/docker").mkdir(parents=True)
        (tmp_path / "etc/docker/daemon.json").write_text(daemon_json)
    if chronyd:
        (tmp_path / "usr/sbin").mkdir(parents=True)
        (tmp_path / "usr/sbin/chronyd").write_text("")
    return tmp_path


def _which(found: dict[str, str]):
    return lambda name: found.get(name)


def test_a_gb10_node(tmp_path):
    root = _tree(tmp_path, gpu=True, caps=FULL_CAPS, daemon_json='{"runtimes": {"nvidia": {}}}', chronyd=True)
    facts = dgx_facts(str(root), "/etc/docker/daemon.json", "graphical.target\n", SHOW_RUNNING,
                      which=_which({"dockerd": "/usr/bin/dockerd", "nvidia-ctk": "/usr/bin/nvidia-ctk"}),
                      group_names=["docker", "sudo", "docker"])
    assert facts["nvidia_paths"] == ["/dev/nvidia0", "/proc/driver/nvidia"]
    assert facts["default_target"] == "graphical.target"
    assert facts["chronyd"] is True
    assert (facts["chrony_active_state"], facts["chrony_unit_file_state"]) == ("active", "enabled")
    assert facts["groups"] == ["docker", "sudo"]
    assert (facts["dockerd"], facts["nvidia_ctk"]) == ("/usr/bin/dockerd", "/usr/bin/nvidia-ctk")
    assert facts["can_raise_limits"] is True
    assert facts["daemon_json_exists"] is True
    assert json.loads(base64.b64decode(facts["daemon_json_b64"])) == {"runtimes": {"nvidia": {}}}


def test_a_lab_node_has_no_gpu_no_cap_sys_resource_and_no_daemon_json(tmp_path):
    root = _tree(tmp_path, gpu=False, caps=DOCKER_DEFAULT_CAPS, daemon_json=None, chronyd=False)
    facts = dgx_facts(str(root), "/etc/docker/daemon.json", "", "", which=_which({"dockerd": "/usr/bin/dockerd"}),
                      group_names=[])
    assert facts["nvidia_paths"] == []
    assert facts["chronyd"] is False
    assert (facts["chrony_active_state"], facts["chrony_unit_file_state"]) == ("", "")
    assert (facts["dockerd"], facts["nvidia_ctk"]) == ("/usr/bin/dockerd", "-")
    assert facts["can_raise_limits"] is False
    assert facts["daemon_json_exists"] is False
    assert facts["daemon_json_b64"] == ""


def test_a_daemon_json_that_is_not_json_reaches_the_role_unchanged(tmp_path):
    root = _tree(tmp_path, gpu=False, caps=FULL_CAPS, daemon_json="{broken", chronyd=True)
    facts = dgx_facts(str(root), "/etc/docker/daemon.json", "multi-user.target", "", which=_which({}), group_names=[])
    assert base64.b64decode(facts["daemon_json_b64"]).decode() == "{broken"


@pytest.mark.parametrize(("caps", "expected"), [
    (FULL_CAPS, True), (DOCKER_DEFAULT_CAPS, False), ("0000000001000000", True), ("0000000000ffffff", False)])
def test_cap_sys_resource_is_bit_24(caps, expected):
    assert has_capability(bounding_capabilities(f"CapBnd:\t{caps}\n"), 24) is expected


def test_unreadable_capabilities_mean_no_capability():
    assert bounding_capabilities("Name:\tinit\n") is None
    assert bounding_capabilities("CapBnd:\tzz\n") is None
    assert has_capability(None, 24) is False


def test_systemctl_show_and_present_paths(tmp_path):
    assert parse_show("ActiveState=inactive\nnoise\nUnitFileState=masked\n") == {
        "ActiveState": "inactive", "UnitFileState": "masked"}
    (tmp_path / "b").write_text("")
    assert present_paths(str(tmp_path), ["/a", "/b"]) == ["/b"]


def test_the_module_reads_the_node_and_changes_nothing(tmp_path, capsys, monkeypatch):
    root = _tree(tmp_path, gpu=True, caps=FULL_CAPS, daemon_json="{}", chronyd=True)
    calls = []

    def run_command(self, args, **_kwargs):
        calls.append(args[1:])
        return (0, "multi-user.target\n", "") if args[1] == "get-default" else (0, SHOW_RUNNING, "")

    monkeypatch.setattr("ansible.module_utils.basic.AnsibleModule.run_command", run_command)
    monkeypatch.setattr("ansible.module_utils.basic.AnsibleModule.get_bin_path",
                        lambda self, name, *a, **k: {"systemctl": "/bin/systemctl", "dockerd": "/usr/bin/dockerd"}.get(name))
    with patch_module_args({"root": str(root), "_ansible_check_mode": True}), pytest.raises(SystemExit) as exc:
        dgx_node_facts_module.main()
    result = json.loads(capsys.readouterr().out)
    assert exc.value.code == 0
    assert result["changed"] is False
    facts = result["ansible_facts"]["gb10_dgx_node"]
    assert facts["default_target"] == "multi-user.target"
    assert facts["chrony_unit_file_state"] == "enabled"
    assert facts["dockerd"] == "/usr/bin/dockerd" and facts["nvidia_ctk"] == "-"
    assert facts["nvidia_paths"] == ["/dev/nvidia0", "/proc/driver/nvidia"]
    assert calls == [["get-default"], ["show", "-p", "ActiveState,UnitFileState", "chrony"]]
