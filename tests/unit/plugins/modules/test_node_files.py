"""gb10.cluster.node_files (module) and its module_utils: write, leave alone, fix mode, check mode, diff."""
from __future__ import annotations

import grp
import json
import os
import pwd
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.module_utils.node_files import Current, Entry, parse_mode, plan
from ansible_collections.gb10.cluster.plugins.modules import node_files as node_files_module

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def _run(capsys, files, check=False, diff=False):
    args = {"files": files, "_ansible_check_mode": check, "_ansible_diff": diff}
    with patch_module_args(args), pytest.raises(SystemExit):
        node_files_module.main()
    return json.loads(capsys.readouterr().out)


def _files(tmp_path, text="a=1\n", mode="0644"):
    return [
        {"path": str(tmp_path / "etc"), "state": "directory", "mode": "0755", "owner": USER, "group": GROUP},
        {"path": str(tmp_path / "etc" / "one.conf"), "content": text, "mode": mode, "owner": USER, "group": GROUP},
        {"path": str(tmp_path / "etc" / "two.sh"), "content": "#!/bin/sh\n", "mode": "0755", "owner": USER, "group": GROUP},
    ]


def test_parse_mode():
    assert parse_mode("0644") == 0o644
    assert parse_mode(0o755) == 0o755
    for bad in ("rw-r--r--", "0999", ""):
        with pytest.raises(ValueError, match="octal"):
            parse_mode(bad)


def test_plan_reasons():
    entry = Entry(path="/x", mode=0o644, content=b"new\n")
    assert plan(entry, Current(exists=False), 0, 0).reasons == ["created"]
    step = plan(entry, Current(exists=True, content=b"old\n", mode=0o600, uid=0, gid=0), 0, 0)
    assert step.reasons == ["content", "mode 0600 -> 0644"] and step.before == "old\n" and step.after == "new\n"
    assert plan(entry, Current(exists=True, content=b"new\n", mode=0o644, uid=0, gid=0), 0, 0).reasons == []
    assert plan(entry, Current(exists=True, content=b"new\n", mode=0o644, uid=1, gid=0), 0, 0).reasons == [
        "owner root:root"]
    with pytest.raises(ValueError, match="not a regular file"):
        plan(entry, Current(exists=True, is_dir=True, mode=0o755, uid=0, gid=0), 0, 0)


def test_first_run_writes_second_run_changes_nothing(capsys, tmp_path):
    first = _run(capsys, _files(tmp_path))
    assert first["changed"] is True
    assert first["changed_paths"] == [f["path"] for f in _files(tmp_path)]
    assert (tmp_path / "etc" / "one.conf").read_text() == "a=1\n"
    assert stat.S_IMODE((tmp_path / "etc" / "two.sh").stat().st_mode) == 0o755
    second = _run(capsys, _files(tmp_path))
    assert second["changed"] is False and second["changed_paths"] == []
    assert not [p for p in os.listdir(tmp_path / "etc") if p.startswith(".gb10-")]


def test_only_the_file_that_differs_changes_and_check_mode_writes_nothing(capsys, tmp_path):
    _run(capsys, _files(tmp_path))
    checked = _run(capsys, _files(tmp_path, text="a=2\n"), check=True, diff=True)
    assert checked["changed_paths"] == [str(tmp_path / "etc" / "one.conf")]
    assert checked["diff"] == [{"before_header": str(tmp_path / "etc" / "one.conf"),
                                "after_header": str(tmp_path / "etc" / "one.conf"),
                                "before": "a=1\n", "after": "a=2\n"}]
    assert (tmp_path / "etc" / "one.conf").read_text() == "a=1\n"
    written = _run(capsys, _files(tmp_path, text="a=2\n"))
    assert written["changed_paths"] == [str(tmp_path / "etc" / "one.conf")]
    assert (tmp_path / "etc" / "one.conf").read_text() == "a=2\n"


def test_mode_drift_is_fixed(capsys, tmp_path):
    _run(capsys, _files(tmp_path))
    os.chmod(tmp_path / "etc" / "one.conf", 0o666)
    fixed = _run(capsys, _files(tmp_path))
    assert fixed["changed_paths"] == [str(tmp_path / "etc" / "one.conf")]
    assert fixed["files"][1]["reasons"] == ["mode 0666 -> 0644"]
    assert stat.S_IMODE((tmp_path / "etc" / "one.conf").stat().st_mode) == 0o644


def test_wrong_type_fails_naming_the_path(capsys, tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "one.conf").mkdir()
    out = _run(capsys, _files(tmp_path))
    assert out["failed"] is True
    assert f"{tmp_path / 'etc' / 'one.conf'} exists and is not a regular file" in out["msg"]
    assert not (tmp_path / "etc" / "two.sh").exists()


def test_unknown_owner_fails_naming_it(capsys, tmp_path):
    files = [{"path": str(tmp_path / "x"), "content": "x\n", "mode": "0644", "owner": "no-such-user-gb10"}]
    out = _run(capsys, files)
    assert out["failed"] is True and "user 'no-such-user-gb10' does not exist" in out["msg"]


def test_validate_checks_the_new_content_before_it_replaces_the_file(capsys, tmp_path):
    files = [{"path": str(tmp_path / "sudoers"), "content": "good\n", "mode": "0440", "owner": USER, "group": GROUP,
              "validate": "grep -q ^good %s"}]
    assert _run(capsys, files)["changed_paths"] == [str(tmp_path / "sudoers")]
    files[0]["content"] = "bad\n"
    out = _run(capsys, files)
    assert out["failed"] is True and "fails `grep -q ^good %s` (rc 1)" in out["msg"]
    assert (tmp_path / "sudoers").read_text() == "good\n"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".gb10-")]


def test_documentation_matches_the_argument_spec():
    from pathlib import Path  # noqa: PLC0415

    import yaml  # noqa: PLC0415

    doc = yaml.safe_load(node_files_module.DOCUMENTATION)
    yaml.safe_load(node_files_module.EXAMPLES)
    yaml.safe_load(node_files_module.RETURN)
    source = Path(node_files_module.__file__).read_text()
    assert doc["module"] == "node_files"
    for option in list(doc["options"]) + list(doc["options"]["files"]["suboptions"]):
        assert f'"{option}"' in source, f"{option} documented but not in argument_spec"
