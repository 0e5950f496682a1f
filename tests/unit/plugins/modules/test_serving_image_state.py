"""gb10.cluster.serving_image_state (module) and module_utils/docker_state: daemon.json merge, image reads."""
from __future__ import annotations

import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.module_utils.docker_state import (
    DaemonJsonError,
    merge_insecure,
    parse_daemon_json,
    parse_image_list,
    repository,
)
from ansible_collections.gb10.cluster.plugins.modules import serving_image_state as module

REF = "10.77.1.1:5000/gb10/vllm-cpu@sha256:" + "a" * 64


def test_merge_keeps_other_keys_and_order():
    daemon = {"log-driver": "json-file", "insecure-registries": ["b:5000"]}
    assert merge_insecure(daemon, ["a:5000", "b:5000"]) == {"log-driver": "json-file",
                                                             "insecure-registries": ["b:5000", "a:5000"]}
    assert merge_insecure({}, ["a:5000"]) == {"insecure-registries": ["a:5000"]}


def test_daemon_json_errors_name_the_file():
    assert parse_daemon_json(None, "/d.json") == {} and parse_daemon_json(" \n", "/d.json") == {}
    with pytest.raises(DaemonJsonError, match=r"/d.json is not valid JSON"):
        parse_daemon_json("{", "/d.json")
    with pytest.raises(DaemonJsonError, match=r"/d.json holds a JSON list"):
        parse_daemon_json("[]", "/d.json")


def test_image_list_newest_first_one_per_id_and_repository():
    out = ("sha256:old 2026-01-01 10:00:00 +0000 UTC\nsha256:new 2026-03-01 10:00:00 +0000 UTC\n"
           "sha256:new 2026-03-01 10:00:00 +0000 UTC\n\n")
    assert [i["id"] for i in parse_image_list(out)] == ["sha256:new", "sha256:old"]
    assert repository(REF) == "10.77.1.1:5000/gb10/vllm-cpu"
    assert repository("reg:5000/gb10/vllm:0.32.0") == "reg:5000/gb10/vllm"


@pytest.fixture
def docker(monkeypatch):
    calls = []

    def run_command(self, argv, **_kw):
        calls.append(argv)
        if argv[:3] == ["docker", "image", "inspect"]:
            return (0, "sha256:abc\n", "") if docker.has_image else (1, "", "No such image")
        if argv[:3] == ["docker", "image", "ls"]:
            return 0, "sha256:abc 2026-03-01 10:00:00 +0000 UTC\n", ""
        raise AssertionError(argv)

    monkeypatch.setattr(module.AnsibleModule, "run_command", run_command)
    docker.has_image = True
    docker.calls = calls
    return docker


def _run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_merges_once_then_changes_nothing(capsys, tmp_path, docker):
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"log-opts": {"max-size": "100m"}}))
    args = {"image": REF, "insecure_registries": ["10.77.1.1:5000"], "daemon_json": str(path), "_ansible_diff": True}
    first = _run(capsys, args)
    assert first["changed"] and first["daemon_changed"] and first["diff"]["after"].endswith("\n")
    assert json.loads(path.read_text()) == {"log-opts": {"max-size": "100m"}, "insecure-registries": ["10.77.1.1:5000"]}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    second = _run(capsys, args)
    assert not second["changed"] and second["image_id"] == "sha256:abc"
    assert second["images"] == [{"id": "sha256:abc", "created": "2026-03-01 10:00:00 +0000 UTC"}]


def test_check_mode_writes_nothing_and_a_missing_image_is_empty(capsys, tmp_path, docker):
    docker.has_image = False
    path = tmp_path / "daemon.json"
    result = _run(capsys, {"image": REF, "insecure_registries": ["r:5000"], "daemon_json": str(path),
                           "_ansible_check_mode": True})
    assert result["changed"] and not path.exists() and result["image_id"] == ""


def test_no_registries_leaves_daemon_json_alone(capsys, tmp_path, docker):
    path = tmp_path / "daemon.json"
    path.write_text("{ not json")
    result = _run(capsys, {"image": REF, "daemon_json": str(path)})
    assert not result["changed"] and path.read_text() == "{ not json"


def test_bad_daemon_json_fails_with_one_sentence(capsys, tmp_path, docker):
    path = tmp_path / "daemon.json"
    path.write_text("{ not json")
    result = _run(capsys, {"image": REF, "insecure_registries": ["r:5000"], "daemon_json": str(path)})
    assert result["failed"] and f"{path} is not valid JSON" in result["msg"]


def test_written_as_to_nice_json_writes_it():
    from ansible.plugins.filter.core import to_nice_json

    from ansible_collections.gb10.cluster.plugins.module_utils.docker_state import daemon_text

    daemon = {"log-opts": {"max-size": "100m", "max-file": "3"}, "insecure-registries": ["r:5000"], "a": [1, "é"]}
    assert daemon_text(daemon) == to_nice_json(daemon, indent=2) + "\n"


def test_documentation_matches_the_argument_spec():
    from pathlib import Path

    import yaml

    doc = yaml.safe_load(module.DOCUMENTATION)
    yaml.safe_load(module.EXAMPLES)
    returned = yaml.safe_load(module.RETURN)
    source = Path(module.__file__).read_text()
    assert doc["module"] == "serving_image_state"
    for option in doc["options"]:
        assert f'"{option}"' in source, f"{option} documented but not in argument_spec"
    assert set(returned) == {"daemon_changed", "image_id", "images"}
