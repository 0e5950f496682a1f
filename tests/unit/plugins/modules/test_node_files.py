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


# --- services: a fake systemctl on PATH keeps one unit's state in a JSON file and logs every call.
FAKE_SYSTEMCTL = """#!/usr/bin/env python3
import json, os, sys
state_file = os.environ["FAKE_SYSTEMD_STATE"]
units = json.load(open(state_file))
with open(state_file + ".log", "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
verb, name = sys.argv[1], sys.argv[-1]
if verb == "daemon-reload":
    sys.exit(0)
unit = units.get(name)
if verb == "show":
    if unit is None:
        print("LoadState=not-found\\nActiveState=inactive\\nUnitFileState=")
    else:
        print(f"LoadState=loaded\\nActiveState={unit['active']}\\nUnitFileState={unit['file']}")
    sys.exit(0)
if unit is None:
    print(f"Unit {name} not found.", file=sys.stderr)
    sys.exit(5)
if unit.get("broken") and verb in ("start", "restart"):
    print(f"Job for {name} failed.", file=sys.stderr)
    sys.exit(1)
unit.update({"enable": {"file": "enabled"}, "disable": {"file": "disabled"}, "start": {"active": "active"},
             "restart": {"active": "active"}, "stop": {"active": "inactive"}}[verb])
json.dump(units, open(state_file, "w"))
"""


@pytest.fixture()
def systemd(tmp_path, monkeypatch):
    """A fake systemctl first on PATH; returns (set units, calls made)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    state = tmp_path / "units.json"
    state.write_text("{}")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMD_STATE", str(state))

    def units(value=None):
        if value is not None:
            state.write_text(json.dumps(value))
        return json.loads(state.read_text())

    def calls():
        log = tmp_path / "units.json.log"
        lines = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return [line for line in lines if not line.startswith("show ")]

    return units, calls


def _run_services(capsys, files, services, check=False):
    args = {"files": files, "services": services, "_ansible_check_mode": check}
    with patch_module_args(args), pytest.raises(SystemExit):
        node_files_module.main()
    return json.loads(capsys.readouterr().out)


GUARD = {"name": "guard.service", "state": "started", "enabled": True}


def test_service_is_started_and_enabled_then_left_alone(capsys, tmp_path, systemd):
    units, calls = systemd
    units({"guard.service": {"active": "inactive", "file": "disabled"}})
    first = _run_services(capsys, _files(tmp_path), [GUARD])
    assert first["changed"] is True
    # Written files changed, but the unit was not running: started, not restarted.
    assert first["services"] == [{"name": "guard.service", "actions": ["enable", "start"]}]
    assert calls() == ["enable guard.service", "start guard.service"]
    second = _run_services(capsys, _files(tmp_path), [GUARD])
    assert second["changed"] is False and second["services"][0]["actions"] == [] and calls() == []


def test_a_changed_file_restarts_a_running_service_and_a_unit_file_reloads_systemd(capsys, tmp_path, systemd, monkeypatch):
    units, calls = systemd
    units({"guard.service": {"active": "active", "file": "enabled"}})
    _run_services(capsys, _files(tmp_path), [{**GUARD, "restart_on_change": False}])
    assert calls() == []
    monkeypatch.setattr(node_files_module, "UNIT_DIRS", (str(tmp_path / "etc") + "/",))
    changed = _run_services(capsys, _files(tmp_path, text="a=2\n"), [GUARD])
    assert changed["daemon_reload"] is True and changed["changed_paths"] == [str(tmp_path / "etc" / "one.conf")]
    assert calls() == ["daemon-reload", "restart guard.service"]


def test_check_mode_reads_but_runs_nothing(capsys, tmp_path, systemd):
    units, calls = systemd
    units({"guard.service": {"active": "inactive", "file": "enabled"}})
    result = _run_services(capsys, _files(tmp_path), [GUARD], check=True)
    assert result["changed"] is True and result["services"][0]["actions"] == ["start"]
    assert calls() == [] and units()["guard.service"]["active"] == "inactive"


def test_stopped_and_disabled_and_an_unknown_unit_is_fine_only_when_it_should_not_run(capsys, tmp_path, systemd):
    units, calls = systemd
    units({"guard.service": {"active": "active", "file": "enabled"}})
    off = {"name": "guard.service", "state": "stopped", "enabled": False}
    assert _run_services(capsys, [], [off])["services"][0]["actions"] == ["disable", "stop"]
    assert calls() == ["disable guard.service", "stop guard.service"]
    assert _run_services(capsys, [], [{**off, "name": "never.service"}])["changed"] is False
    missing = _run_services(capsys, [], [{**GUARD, "name": "never.service"}])
    assert missing["failed"] is True and "never.service: systemd does not know this unit" in missing["msg"]


def test_a_unit_that_fails_to_start_fails_naming_it_and_where_to_look(capsys, tmp_path, systemd):
    units, _ = systemd
    units({"guard.service": {"active": "inactive", "file": "enabled", "broken": True}})
    result = _run_services(capsys, [], [GUARD])
    assert result["failed"] is True
    assert "`systemctl start guard.service` failed (rc 1): Job for guard.service failed." in result["msg"]
    assert "journalctl -u guard.service" in result["msg"]


def test_an_empty_owner_is_whoever_runs_the_module(capsys, tmp_path):
    """A report on the control machine: owned by the user running the play, whoever that is."""
    files = [{"path": str(tmp_path / "reports"), "state": "directory", "mode": "0755", "owner": "", "group": ""},
             {"path": str(tmp_path / "reports" / "latest.json"), "content": "{}\n", "mode": "0644", "owner": "", "group": ""}]
    first = _run(capsys, files)
    assert first["changed_paths"] == [str(tmp_path / "reports"), str(tmp_path / "reports" / "latest.json")]
    info = os.stat(tmp_path / "reports" / "latest.json")
    assert (info.st_uid, info.st_gid) == (os.geteuid(), os.getegid())
    assert _run(capsys, files)["changed"] is False
