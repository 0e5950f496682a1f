"""Converge stamps (module_utils/converge.py, the converge_stamp module): a role is skipped only when its
inputs and every record of what it manages are unchanged, and the reason names what moved."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.module_utils import converge
from ansible_collections.gb10.cluster.plugins.modules import converge_stamp as converge_stamp_module


def _module(capsys, tmp_path: Path, state: str = "probe", check: bool = False, **params):
    args = {"name": "dgx_node", "inputs": "i1", "dir": str(tmp_path / "stamps"), "state": state,
            "_ansible_check_mode": check, **params}
    with patch_module_args(args), pytest.raises(SystemExit):
        converge_stamp_module.main()
    return json.loads(capsys.readouterr().out)


def test_tree_digest_follows_content_and_leaves_caches_and_data_out(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "main.yml").write_text("a\n")
    first = converge.tree_digest(str(tmp_path), exclude_top=["bench"])
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_text("junk")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "run.json").write_text("{}")
    (tmp_path / "tasks" / "main.yml~").write_text("editor")
    assert converge.tree_digest(str(tmp_path), exclude_top=["bench"]) == first
    (tmp_path / "tasks" / "main.yml").write_text("b\n")
    assert converge.tree_digest(str(tmp_path), exclude_top=["bench"]) != first
    os.rename(tmp_path / "tasks" / "main.yml", tmp_path / "tasks" / "other.yml")
    (tmp_path / "tasks" / "other.yml").write_text("a\n")
    assert converge.tree_digest(str(tmp_path), exclude_top=["bench"]) != first, "a renamed file is a change"
    assert converge.tree_digest(str(tmp_path / "missing")) == converge.tree_digest(str(tmp_path / "gone"))


def test_path_records_tell_absent_file_folder_and_link_apart(tmp_path: Path) -> None:
    target = tmp_path / "f.conf"
    assert converge.path_record(str(target)) == "absent"
    target.write_text("x=1\n")
    os.chmod(target, 0o644)
    record = converge.path_record(str(target))
    assert record.startswith("file 0644 ")
    os.chmod(target, 0o600)
    assert converge.path_record(str(target)) != record, "a mode change is a change"
    os.chmod(target, 0o644)
    target.write_text("x=2\n")
    assert converge.path_record(str(target)) != record, "a content change is a change"
    assert converge.path_record(str(tmp_path)).startswith("dir ")
    (tmp_path / "link").symlink_to("f.conf")
    assert converge.path_record(str(tmp_path / "link")) == "link f.conf"


def test_sysctl_records_read_proc(tmp_path: Path) -> None:
    (tmp_path / "vm").mkdir()
    (tmp_path / "vm" / "swappiness").write_text("1\n")
    assert converge.sysctl_record("vm.swappiness", proc=str(tmp_path)) == "1"
    assert converge.sysctl_record("vm.nope", proc=str(tmp_path)) == "absent"


def test_unit_records_come_from_one_systemctl_show() -> None:
    calls = []

    def run(argv):
        calls.append(argv)
        return 0, ("Id=chrony.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\n\n"
                   "Id=docker.service\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nUnitFileState=enabled\n")

    records = converge.unit_records(["chrony.service", "docker.service"], run)
    assert len(calls) == 1
    assert records == {"chrony.service": "loaded active running enabled",
                       "docker.service": "loaded inactive dead enabled"}
    assert converge.unit_records(["x.service"], lambda argv: (1, "boom")) == {"x.service": "unreadable (systemctl rc 1)"}


def test_compare_names_what_moved() -> None:
    records = {"path /etc/a": "file 0644 0:0 aa", "unit chrony.service": "loaded active running enabled"}
    stamp = converge.stamp_document("i1", records, "2026-11-30T20:00:00+00:00")
    assert converge.compare(None, "i1", records) == (False, "no converge recorded on this node yet")
    assert converge.compare(stamp, "i1", records) == (True, "unchanged since its converge at 2026-11-30T20:00:00+00:00")
    current, reason = converge.compare(stamp, "i2", records)
    assert not current and "inputs changed" in reason
    moved = dict(records, **{"unit chrony.service": "loaded inactive dead enabled"})
    assert converge.compare(stamp, "i1", moved) == (False, "unit chrony.service changed since its last converge")
    more = {f"path /etc/{n}": "absent" for n in "bcdef"}
    current, reason = converge.compare(stamp, "i1", dict(records, **more))
    assert reason == "path /etc/b, path /etc/c, path /etc/d and 2 more changed since its last converge"
    assert not converge.compare(dict(stamp, version=0), "i1", records)[0]


def test_same_stamp_ignores_only_the_time() -> None:
    one = converge.stamp_document("i1", {"a": "1"}, "t1")
    assert converge.same_stamp(one, converge.stamp_document("i1", {"a": "1"}, "t2"))
    assert not converge.same_stamp(one, converge.stamp_document("i1", {"a": "2"}, "t1"))
    assert not converge.same_stamp(None, one)


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden"])
def test_a_stamp_name_must_be_a_plain_file_name(name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        converge.stamp_path("/var/lib/gb10/converge", name)


def test_probe_record_probe_then_drift(capsys, tmp_path: Path) -> None:
    managed = tmp_path / "60-gb10.conf"
    managed.write_text("vm.swappiness = 1\n")
    spec = {"paths": [str(managed)], "commands": [["echo", "table"]]}
    first = _module(capsys, tmp_path, **spec)
    assert first["current"] is False and first["changed"] is False
    assert first["reason"] == "no converge recorded on this node yet"
    assert first["spec"]["paths"] == [str(managed)] and first["inputs"] == "i1"
    checked = _module(capsys, tmp_path, state="record", check=True, **spec)
    assert checked["changed"] is True and not (tmp_path / "stamps" / "dgx_node.json").exists()
    recorded = _module(capsys, tmp_path, state="record", **spec)
    assert recorded["changed"] is True
    stamp = json.loads((tmp_path / "stamps" / "dgx_node.json").read_text())
    assert stamp["inputs"] == "i1" and set(stamp["records"]) == {f"path {managed}", "command echo table"}
    assert (os.stat(tmp_path / "stamps" / "dgx_node.json").st_mode & 0o777) == 0o600
    again = _module(capsys, tmp_path, state="record", **spec)
    assert again["changed"] is False, "recording the same stamp again is not a change (idempotence)"
    assert _module(capsys, tmp_path, **spec)["current"] is True
    other_inputs = _module(capsys, tmp_path, inputs="i2", **spec)
    assert other_inputs["current"] is False and "inputs changed" in other_inputs["reason"]
    managed.write_text("vm.swappiness = 60\n")
    drifted = _module(capsys, tmp_path, **spec)
    assert drifted["current"] is False
    assert drifted["reason"] == f"path {managed} changed since its last converge"
    other_output = _module(capsys, tmp_path, paths=[str(managed)], commands=[["echo", "flushed"]])
    assert "command echo" in other_output["reason"]


def test_a_missing_tool_is_a_record_not_a_crash(capsys, tmp_path: Path) -> None:
    out = _module(capsys, tmp_path, commands=[["gb10-no-such-tool", "x"]])
    assert out["current"] is False and out["records"] == 1


def test_a_bad_name_fails_in_one_sentence(capsys, tmp_path: Path) -> None:
    out = _module(capsys, tmp_path, name="../etc")
    assert out["failed"] is True
    assert "must be a plain file name" in out["msg"] and "-e gb10_converge=full" in out["msg"]


def test_tree_digest_follows_a_linked_group_vars(tmp_path: Path) -> None:
    """An inventory whose group_vars is a link (molecule's, or an operator's shared one): an edit in the
    linked folder is a change of the inventory."""
    shared = tmp_path / "shared" / "group_vars" / "all"
    shared.mkdir(parents=True)
    (shared / "main.yml").write_text("gb10_mgmt_subnet: 10.0.0.0/24\n")
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text("all: {}\n")
    (inventory / "group_vars").symlink_to(tmp_path / "shared" / "group_vars")
    (inventory / "loop").symlink_to(inventory)
    first = converge.tree_digest(str(inventory))
    (shared / "main.yml").write_text("gb10_mgmt_subnet: 10.0.1.0/24\n")
    assert converge.tree_digest(str(inventory)) != first


def _probe_all(capsys, tmp_path: Path, stamps: list) -> dict:
    args = {"stamps": stamps, "dir": str(tmp_path / "stamps"), "_ansible_check_mode": False}
    with patch_module_args(args), pytest.raises(SystemExit):
        converge_stamp_module.main()
    return json.loads(capsys.readouterr().out)


def test_one_probe_for_the_roles_of_a_play_gives_each_up_to_the_first_that_runs(capsys, tmp_path: Path) -> None:
    """playbooks/nodes.yml probes its roles in one module run. Each role takes its result from `given`
    while every role before it is current; the first that is not current runs, and may change what the
    later ones read, so those are not given (they probe themselves when their turn comes)."""
    files = {name: tmp_path / f"{name}.conf" for name in ("a", "b", "c")}
    for path in files.values():
        path.write_text("x\n")
    stamps = [{"name": name, "inputs": f"i-{name}", "paths": [str(path)]} for name, path in files.items()]
    first = _probe_all(capsys, tmp_path, stamps)
    assert first["changed"] is False and set(first["stamps"]) == {"a", "b", "c"}
    assert list(first["given"]) == ["a"], "nothing recorded yet: a runs, b and c probe themselves after it"
    for entry in stamps:
        _module(capsys, tmp_path, state="record", name=entry["name"], inputs=entry["inputs"], paths=entry["paths"])
    current = _probe_all(capsys, tmp_path, stamps)
    assert list(current["given"]) == ["a", "b", "c"] and all(r["current"] for r in current["given"].values())
    assert current["given"]["b"]["spec"]["paths"] == [str(files["b"])] and current["given"]["b"]["inputs"] == "i-b"
    # The same result as the role's own probe, so the record after the handlers can take it from here.
    own = _module(capsys, tmp_path, name="b", inputs="i-b", paths=[str(files["b"])])
    assert {k: own[k] for k in ("current", "reason", "inputs", "spec", "stamp")} == \
        {k: current["stamps"]["b"][k] for k in ("current", "reason", "inputs", "spec", "stamp")}
    files["b"].write_text("edited by hand\n")
    drifted = _probe_all(capsys, tmp_path, stamps)
    assert list(drifted["given"]) == ["a", "b"]
    assert drifted["given"]["b"]["reason"] == f"path {files['b']} changed since its last converge"
    assert drifted["stamps"]["c"]["current"] is True, "c's own result is still returned, only not given"


@pytest.mark.parametrize(("stamps", "message"), [
    ([{"name": "a"}], "needs a name and inputs"),
    ([{"name": "a", "inputs": "i", "files": []}], "unknown keys ['files']"),
    ([{"name": "a", "inputs": "i", "paths": "/etc/x"}], "paths must be a list"),
    ([{"name": "../a", "inputs": "i"}], "must be a plain file name"),
])
def test_a_bad_stamps_entry_fails_in_one_sentence(capsys, tmp_path: Path, stamps: list, message: str) -> None:
    out = _probe_all(capsys, tmp_path, stamps)
    assert out["failed"] is True and message in out["msg"], out["msg"]


def test_stamps_and_name_do_not_go_together(capsys, tmp_path: Path) -> None:
    out = _module(capsys, tmp_path, stamps=[{"name": "a", "inputs": "i"}])
    assert out["failed"] is True and "mutually exclusive" in out["msg"]


def test_usable_in_order_stops_after_the_first_role_that_runs() -> None:
    results = {"a": {"current": True}, "b": {"current": False}, "c": {"current": True}}
    assert list(converge.usable_in_order(["a", "b", "c"], results)) == ["a", "b"]
    assert list(converge.usable_in_order(["c", "a"], results)) == ["c", "a"]
    assert converge.usable_in_order([], results) == {}
