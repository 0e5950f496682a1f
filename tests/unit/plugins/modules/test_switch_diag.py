"""gb10.cluster.switch_diag: the port classifier on recorded monitor outputs, and the module against the simulator."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.module_utils.switch_diag import (
    DISABLED,
    ERRORS_RISING,
    FEC_MISMATCH,
    NO_LINK,
    NO_MODULE,
    NOT_INITIALISED,
    OK,
    WRONG_RATE,
    baseline_problem,
    classify,
    error_deltas,
    report,
    should_bounce,
)
from ansible_collections.gb10.cluster.plugins.modules import switch_diag as switch_diag_module

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "switch" / "monitor_recordings.json"
CASES = json.loads(FIXTURES.read_text())["cases"]
EXPECTED = {"rate": "200Gbps", "fec": "fec91", "speed": "200G-baseCR4", "mode": "2x200G"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_recorded_outputs(name):
    case = CASES[name]
    v = classify(case["node"], case["port"], case["expected"], case["second"], case["monitor"],
                 case["first"], case["second"], case["interval"])
    assert v.status == case["status"]
    assert case["port"] in v.message() and case["node"] in v.message()


def test_not_initialised_says_reseat_in_plain_words():
    case = CASES["module_not_initialised"]
    v = classify("gx10-2", "qsfp56-dd-2-1", EXPECTED, case["second"], case["monitor"])
    assert v.status == NOT_INITIALISED and not v.ok and should_bounce(v)
    assert v.message() == (
        "gx10-2 (qsfp56-dd-2-1): module present but not initialised. Action: reseat the DAC in qsfp56-dd-2-1 "
        "(pull it out, wait 10 seconds, push it back until it clicks); the module is present but did not "
        "initialise after power-up")


# CLI-style spellings (yes/no, no CMIS field) as a real RouterOS might print them
def test_not_initialised_without_cmis_field():
    monitor = {"name": "qsfp56-dd-1-1", "status": "no-link", "auto-negotiation": "disabled",
               "sfp-module-present": "yes", "sfp-rx-loss": "yes", "sfp-type": "unknown"}
    assert classify("n", "qsfp56-dd-1-1", EXPECTED, {}, monitor).status == NOT_INITIALISED


def test_tx_fault_counts_as_not_initialised():
    monitor = {"status": "no-link", "sfp-module-present": True, "sfp-cmis-module-state": "module-ready",
               "sfp-tx-fault": "true", "sfp-type": "QSFP56-DD"}
    assert classify("n", "p", EXPECTED, {}, monitor).status == NOT_INITIALISED


def test_no_link_with_ready_module_points_at_the_node():
    monitor = {"status": "no-link", "sfp-module-present": "yes", "sfp-cmis-module-state": "module-ready",
               "sfp-rx-loss": "yes", "sfp-type": "QSFP56-DD"}
    v = classify("gx10-4", "qsfp56-dd-4-1", EXPECTED, {"fec-mode": "fec91", "speed": "200G-baseCR4",
                                                      "auto-negotiation": False}, monitor)
    assert v.status == NO_LINK and "check gx10-4 is powered" in v.action


def test_link_down_config_mistakes():
    monitor = {"status": "no-link", "sfp-module-present": True, "sfp-cmis-module-state": "module-ready",
               "sfp-rx-loss": False, "sfp-type": "QSFP56-DD"}
    base = {"fec-mode": "fec91", "speed": "200G-baseCR4", "auto-negotiation": False, "disabled": False}
    assert classify("n", "p", EXPECTED, dict(base, **{"fec-mode": "auto"}), monitor).status == FEC_MISMATCH
    assert classify("n", "p", EXPECTED, dict(base, speed="400G-baseCR8"), monitor).status == WRONG_RATE
    v = classify("n", "p", EXPECTED, dict(base, **{"auto-negotiation": True}), monitor)
    assert v.status == WRONG_RATE and "auto-negotiation=no" in v.action
    assert classify("n", "p", EXPECTED, dict(base, disabled="true"), monitor).status == DISABLED


def test_link_up_checks():
    up = {"status": "link-ok", "rate": "200Gbps", "fec": "fec91", "sfp-module-present": True}
    assert classify("n", "p", EXPECTED, {}, up).status == OK
    assert classify("n", "p", EXPECTED, {}, dict(up, rate="100Gbps")).status == WRONG_RATE
    assert classify("n", "p", EXPECTED, {}, dict(up, fec="off")).status == FEC_MISMATCH
    rising = classify("n", "p", EXPECTED, {}, up, {"rx-fcs-error": 10}, {"rx-fcs-error": 12}, 5, 0)
    assert rising.status == ERRORS_RISING and rising.error_delta == {"rx-fcs-error": 2}
    assert classify("n", "p", EXPECTED, {}, up, {"rx-fcs-error": 10}, {"rx-fcs-error": 12}, 5, 5).status == OK
    assert classify("n", "p", EXPECTED, {}, up, {"rx-fcs-error": 10}, {"rx-fcs-error": 10}, 5).status == OK


def test_bad_eeprom_checksum_is_noted():
    up = {"status": "link-ok", "rate": "200Gbps", "fec": "fec91", "sfp-module-present": True,
          "eeprom-checksum": "bad"}
    v = classify("n", "p", EXPECTED, {}, up)
    assert v.ok and "fec91" in v.notes[0]


def test_no_module():
    v = classify("gx10-1", "qsfp56-dd-1-1", EXPECTED, {}, {"status": "no-link", "sfp-module-present": "no"})
    assert v.status == NO_MODULE and v.action.startswith("plug the DAC for gx10-1 into qsfp56-dd-1-1")
    assert not should_bounce(v)


def test_error_deltas_ignore_missing_and_falling_counters():
    assert error_deltas({"rx-fcs-error": 5, "rs-fec-uncorrected": 9}, {"rx-fcs-error": 7}) == {"rx-fcs-error": 2}
    assert error_deltas({"rx-fcs-error": 5}, {"rx-fcs-error": 0}) == {}
    assert error_deltas(None, {"rx-fcs-error": 1}) == {}


def test_report_shape():
    ok = classify("a", "p1", EXPECTED, {}, {"status": "link-ok", "rate": "200Gbps", "fec": "fec91"})
    bad = classify("b", "p2", EXPECTED, {}, {"status": "no-link", "sfp-module-present": False})
    r = report([ok, bad])
    assert r["ok"] is False and r["summary"] == "1 of 2 fabric ports need attention"
    assert r["messages"] == [bad.message()] and r["failed_ports"][0]["port"] == "p2"
    assert "failed" not in r  # a truthy "failed" key would make Ansible fail the module
    assert report([ok])["summary"] == "all 1 fabric ports OK"


# ------------------------------------------------------------------------------- module vs simulator

@pytest.fixture()
def simulator(tmp_path):
    from lab.routeros_sim import Device, Simulator
    from lab.routeros_sim.tls import make_self_signed

    cert, key = make_self_signed(tmp_path)
    device = Device({"version": "7.25", "users": {"admin": "pw"},
                     "ports": {"qsfp56-dd-2-1": "module-not-initialised", "qsfp56-dd-3-1": "errors-rising"}})
    sim = Simulator(device, "127.0.0.1", 0, str(cert), str(key)).start()
    yield sim, cert, device
    sim.shutdown()


def _args(sim, cert, ports, **extra):
    args = {"hostname": "127.0.0.1", "port": sim.port, "username": "admin", "password": "pw", "tls": True,
            "ca_path": str(cert), "ports": ports, "sample_interval": 1}
    args.update(extra)
    return args


def _ports(*pairs):
    return [{"node": n, "port": p, "expected": EXPECTED} for n, p in pairs]


def _run(capsys, args):
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        switch_diag_module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_module_against_the_simulator(capsys, simulator):
    sim, cert, _ = simulator
    code, out = _run(capsys, _args(sim, cert, _ports(("gx10-1", "qsfp56-dd-1-1"), ("gx10-2", "qsfp56-dd-2-1"),
                                                    ("gx10-3", "qsfp56-dd-3-1")), _ansible_check_mode=True))
    assert code == 0 and out["changed"] is False and out["ok"] is False
    status = {p["port"]: p["status"] for p in out["ports"]}
    assert status == {"qsfp56-dd-1-1": OK, "qsfp56-dd-2-1": NOT_INITIALISED, "qsfp56-dd-3-1": ERRORS_RISING}
    assert out["routeros_version"] == "7.25 (stable)"
    assert out["messages"][0].startswith("gx10-2 (qsfp56-dd-2-1): module present but not initialised")


def test_module_bounce_once_then_reseat(capsys, simulator):
    sim, cert, device = simulator
    code, out = _run(capsys, _args(sim, cert, _ports(("gx10-2", "qsfp56-dd-2-1")), bounce=True, bounce_wait=0))
    assert code == 0 and out["changed"] is True and out["bounced"] == ["qsfp56-dd-2-1"]
    assert out["ports"][0]["status"] == NOT_INITIALISED
    assert out["ports"][0]["action"].endswith("(one port bounce did not help)")
    # a module that comes up after a bounce is reported OK, with a note
    device.phy["qsfp56-dd-2-1"]["recovers_on_bounce"] = True
    code, out = _run(capsys, _args(sim, cert, _ports(("gx10-2", "qsfp56-dd-2-1")), bounce=True, bounce_wait=0))
    assert out["ok"] is True and "recovered after one port bounce" in out["ports"][0]["notes"][0]


def test_module_reports_connection_errors(capsys, simulator):
    sim, cert, _ = simulator
    code, out = _run(capsys, _args(sim, cert, _ports(("gx10-1", "qsfp56-dd-1-1")), password="wrong"))
    assert code == 1 and "invalid user name or password" in out["msg"]


def test_baseline_problem_says_why_an_earlier_sample_is_not_used():
    good = {"taken_at": 1000.0, "stats": {"a": {"rx-fcs-error": 0}, "b": {"rx-fcs-error": 3}}}
    assert baseline_problem(good, ["a", "b"], 1010.0, 600) == ""
    assert baseline_problem(good, ["a", "b"], 1700.0, 600) == \
        "the earlier counter sample is 700 s old (more than 600 s)"
    assert baseline_problem(good, ["a", "b"], 990.0, 600) == "the earlier counter sample is dated in the future"
    assert baseline_problem(good, ["a", "c"], 1010.0, 600) == "the earlier counter sample has no row for c"
    assert baseline_problem({"stats": {}}, ["a"], 1010.0, 600) == "the earlier counter sample has no time"
    assert baseline_problem({"taken_at": 1000}, ["a"], 1010.0, 600) == "the earlier counter sample has no counters"


def test_module_first_sample_early_verdict_later(capsys, simulator):
    """site.yml's split: the first sample in the switch play, the verdict after the fabric check. Errors that
    rose in between count; a stale or foreign sample is replaced by a fresh one, with the reason."""
    sim, cert, _ = simulator
    ports = _ports(("gx10-1", "qsfp56-dd-1-1"), ("gx10-3", "qsfp56-dd-3-1"))
    code, out = _run(capsys, _args(sim, cert, ports, baseline_only=True))
    assert code == 0 and out["changed"] is False and "ports" not in out
    baseline = out["baseline"]
    assert sorted(baseline["stats"]) == ["qsfp56-dd-1-1", "qsfp56-dd-3-1"]
    code, out = _run(capsys, _args(sim, cert, ports, baseline=baseline))
    assert code == 0 and out["baseline_used"] is True and out["baseline_note"] == ""
    assert out["interval"] >= 1
    assert out["raw"]["stats_first"] == baseline["stats"]
    assert {p["port"]: p["status"] for p in out["ports"]} == {"qsfp56-dd-1-1": OK, "qsfp56-dd-3-1": ERRORS_RISING}
    stale = dict(baseline, taken_at=baseline["taken_at"] - 3600)
    code, out = _run(capsys, _args(sim, cert, ports, baseline=stale))
    assert out["baseline_used"] is False and out["baseline_note"].startswith("the earlier counter sample is 36")
    assert out["raw"]["stats_first"] != stale["stats"]
    assert out["ports"][1]["status"] == ERRORS_RISING
