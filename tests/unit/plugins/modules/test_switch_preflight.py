"""switch_preflight: the settings refused before any connection, then who answers, as the role runs it."""
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.modules import switch_preflight as preflight_module
from lab.routeros_sim import Device, Simulator
from lab.routeros_sim.tls import make_lab_pki


@pytest.fixture()
def switch(tmp_path):
    real = make_lab_pki(tmp_path / "real")
    impostor = make_lab_pki(tmp_path / "impostor")
    device = Device({"version": "7.25", "users": {"admin": "x", "gb10": "pw"}})
    sims = {name: Simulator(device, "127.0.0.1", 0, str(p.server_cert), str(p.server_key)).start()
            for name, p in (("real", real), ("impostor", impostor))}
    yield sims, real, device
    for sim in sims.values():
        sim.shutdown()


def _run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        preflight_module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def _args(sim, tmp_path, **extra):
    args = {"host": "crs804", "hostname": "127.0.0.1", "port": sim.port, "pin_dir": str(tmp_path / "pins"),
            "timeout": 5, "wait": 5, "settings": {"switch_api_username": "gb10"},
            "node_ports": {"gx10-1": "qsfp56-dd-1-1"}, "_ansible_check_mode": True}
    args.update(extra)
    return args


def test_the_pinned_switch_passes_in_check_mode(capsys, switch, tmp_path):
    sims, real, device = switch
    code, out = _run(capsys, _args(sims["real"], tmp_path, ca_path=str(real.trust)))
    assert code == 0 and out["changed"] is False
    assert out["mode"] == "ca" and out["ca_path"] == str(real.trust) and out["validate_certs"] is True
    assert out["presented"]["sha256"] == real.fingerprint
    assert all("last-logged-in" not in u for u in device.rows[("user",)])


def test_the_impostor_is_refused(capsys, switch, tmp_path):
    sims, real, _ = switch
    code, out = _run(capsys, _args(sims["impostor"], tmp_path, ca_path=str(real.trust)))
    assert code == 1 and out["refused"] is True
    assert out["msg"].startswith(f"The switch crs804 at 127.0.0.1:{sims['impostor'].port} presented a certificate")
    assert "did not sign" in out["msg"] and "this may not be your switch" in out["msg"]


def test_unverified_warns(capsys, switch, tmp_path, monkeypatch):
    # The warning is captured where the module gives it (AnsibleModule.warn): ansible-core keeps module
    # warnings in process-wide state that other tests in the same pytest process can leave changed.
    warned: list[str] = []
    monkeypatch.setattr(preflight_module.AnsibleModule, "warn", lambda self, msg: warned.append(str(msg)))
    sims, _, _ = switch
    code, out = _run(capsys, _args(sims["impostor"], tmp_path, allow_unverified=True))
    assert code == 0 and out["mode"] == "unverified" and out["validate_certs"] is False
    assert any("UNVERIFIED SWITCH: connecting to crs804" in w for w in warned), warned


def test_settings_are_refused_before_connecting(capsys, tmp_path):
    # nothing listens on port 1: the sentences come before any connection attempt
    code, out = _run(capsys, {"host": "crs804", "hostname": "127.0.0.1", "port": 1, "pin_dir": str(tmp_path),
                              "settings": {"switch_api_username": "admin", "switch_mgmt_interface": "ether1",
                                           "switch_api_validate_certs": False},
                              "node_ports": {"gx10-3": "ether1"}})
    assert code == 1 and out["refused"] is True
    errors = out["errors"]
    assert len(errors) == 4, errors
    assert errors[0].startswith("crs804: switch_api_validate_certs is no longer used")
    assert errors[1].startswith("crs804: nothing tells Ansible how to recognise the switch")
    assert errors[2].startswith("gx10-3: gb10_switch_port is ether1, the switch's management port")
    assert errors[3].startswith("crs804: switch_default_admin is disable but Ansible logs in as admin")
    assert out["msg"] == " ".join(errors)
