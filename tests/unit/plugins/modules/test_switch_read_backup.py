"""gb10.cluster.switch_read and gb10.cluster.switch_backup against the RouterOS API simulator."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.modules import switch_backup as switch_backup_module
from ansible_collections.gb10.cluster.plugins.modules import switch_read as switch_read_module


@pytest.fixture()
def simulator(tmp_path):
    from lab.routeros_sim import Device, Simulator
    from lab.routeros_sim.tls import make_self_signed

    cert, key = make_self_signed(tmp_path)
    device = Device({"version": "7.25", "users": {"admin": "pw"}})
    sim = Simulator(device, "127.0.0.1", 0, str(cert), str(key)).start()
    yield sim, cert, device
    sim.shutdown()


def _run(capsys, module, sim, cert, **extra):
    args = {"hostname": "127.0.0.1", "port": sim.port, "username": "admin", "password": "pw", "tls": True,
            "ca_path": str(cert)}
    args.update(extra)
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_read_several_paths_in_one_session(capsys, simulator):
    sim, cert, _ = simulator
    code, out = _run(capsys, switch_read_module, sim, cert, _ansible_check_mode=True,
                     paths=["system resource", "interface bridge port", "tool mac-server", "user"])
    assert code == 0 and out["changed"] is False
    rows = out["rows"]
    assert list(rows) == ["system resource", "interface bridge port", "tool mac-server", "user"]
    assert rows["system resource"][0]["version"] == "7.25 (stable)"
    assert len(rows["tool mac-server"]) == 1
    assert "admin" in [u["name"] for u in rows["user"]]


def test_read_compares_what_a_write_task_would_send(capsys, simulator):
    sim, cert, _ = simulator
    code, out = _run(capsys, switch_read_module, sim, cert, paths=[], compare=[
        {"name": "admin", "path": "user", "keys": ["name"], "data": [{"name": "admin", "group": "full"}]},
        {"name": "admin_disabled", "path": "user", "keys": ["name"], "data": [{"name": "admin", "disabled": True}]},
        {"name": "nobody", "path": "user", "keys": ["name"], "data": [{"name": "nobody"}]},
    ])
    assert code == 0 and out["differs"] == {"admin": False, "admin_disabled": True, "nobody": True}
    assert list(out["rows"]) == ["user"]
    code, out = _run(capsys, switch_read_module, sim, cert, paths=[], compare=[{"name": "x", "data": []}])
    assert code == 1 and out["msg"].startswith("a comparison needs a name, a path and data")


def test_read_names_the_path_that_failed(capsys, simulator):
    sim, cert, _ = simulator
    code, out = _run(capsys, switch_read_module, sim, cert, paths=["user", "no such path"])
    assert code == 1 and out["msg"].startswith("reading /no/such/path failed: ")


def test_read_reports_connection_errors(capsys, simulator):
    sim, cert, _ = simulator
    code, out = _run(capsys, switch_read_module, sim, cert, paths=["user"], password="wrong")
    assert code == 1 and "invalid user name or password" in out["msg"]


def _files(capsys, sim, cert):
    _, out = _run(capsys, switch_read_module, sim, cert, paths=["file"])
    return sorted(f["name"] for f in out["rows"]["file"])


def test_backup_exports_saves_and_keeps_the_newest(capsys, simulator, tmp_path):
    sim, cert, _ = simulator
    dest = tmp_path / "backups"
    names = [f"gb10-backup-2026010{d}T000000Z" for d in (1, 2, 3)]
    removed, removed_exports = [], []
    for name in names:
        code, out = _run(capsys, switch_backup_module, sim, cert, name=name, binary_password="secret", keep=2,
                         host="crs804", dest_dir=str(dest))
        assert code == 0 and out["changed"] is False, out
        export = (dest / f"crs804-{name[len('gb10-backup-'):]}.rsc")
        assert out["export_path"] == str(export)
        assert "by RouterOS 7.25" in export.read_text() and "model = CRS804-4DDQ" in export.read_text()
        assert export.stat().st_mode & 0o777 == 0o600
        removed += out["removed"]
        removed_exports += out["removed_exports"]
    assert removed == [f"{names[0]}.backup"]
    assert removed_exports == [str(dest / "crs804-20260101T000000Z.rsc")]
    assert sorted(p.name for p in dest.iterdir()) == ["crs804-20260102T000000Z.rsc", "crs804-20260103T000000Z.rsc"]
    assert dest.stat().st_mode & 0o777 == 0o700
    # the export file is gone again; the two newest binary backups stay
    assert _files(capsys, sim, cert) == [f"{names[1]}.backup", f"{names[2]}.backup"]
    assert "secret" not in json.dumps(out)


def test_backup_without_binary(capsys, simulator, tmp_path):
    sim, cert, _ = simulator
    code, out = _run(capsys, switch_backup_module, sim, cert, name="gb10-backup-20260101T000000Z", binary=False,
                     host="crs804", dest_dir=str(tmp_path))
    assert code == 0 and out["removed"] == [] and (tmp_path / "crs804-20260101T000000Z.rsc").read_text()
    assert _files(capsys, sim, cert) == []


def test_backup_refuses_keep_below_one(capsys, simulator):
    sim, cert, _ = simulator
    code, out = _run(capsys, switch_backup_module, sim, cert, name="x", keep=0, host="crs804", dest_dir="/tmp")
    assert code == 1 and out["msg"] == "keep is 0 for crs804; keep at least 1 backup."


def test_backup_refuses_a_folder_it_cannot_use_before_touching_the_switch(capsys, simulator, tmp_path):
    sim, cert, _ = simulator
    (tmp_path / "file").write_text("")
    code, out = _run(capsys, switch_backup_module, sim, cert, name="gb10-backup-20260101T000000Z", host="crs804",
                     dest_dir=str(tmp_path / "file" / "backups"))
    assert code == 1 and out["msg"].startswith(f"the backup folder {tmp_path}/file/backups for crs804 cannot be used")
    assert _files(capsys, sim, cert) == []
