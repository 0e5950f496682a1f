"""status.yml and logs.yml on the converged lab: one read-only screen, the last lines of a service."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NODES = int(os.environ.get("LAB_NODES", "4"))


def _play(*args: str) -> tuple[int, dict]:
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    res = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(ROOT / "inventory" / "lab"), *args],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    return res.returncode, json.JSONDecoder().raw_decode(res.stdout[res.stdout.index("{"):])[0]


def _task(out: dict, name: str) -> dict:
    for play in out["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == name:
                return task["hosts"]
    raise AssertionError(f"no task {name!r}")


def test_status_shows_every_node_and_changes_nothing() -> None:
    rc, out = _play("status.yml")
    assert rc == 0, json.dumps(out)[-2000:]
    lines = _task(out, "Status | what serves where, node by node")["localhost"]["msg"]
    assert lines[0].startswith("serving: nothing"), lines
    for i in range(1, NODES + 1):
        (line,) = [x for x in lines if x.startswith(f"gx10-{i}: ")]
        assert "MemAvailable" in line and "GiB" in line, line
        assert "enp1s0f1np1 up" in line and "enP2p1s0f1np1 up" in line and "mtu 9000" in line, line
    switch = [x for x in lines if x.startswith("switch ")]
    assert len(switch) == NODES and all(x.endswith(": OK") for x in switch), switch
    assert all(s["changed"] == 0 and s["failures"] == 0 for s in out["stats"].values()), out["stats"]


def test_logs_reads_one_service_on_one_node() -> None:
    rc, out = _play("logs.yml", "-e", "service=ssh", "-e", "lines=5", "-e", "node=gx10-2")
    assert rc == 0, json.dumps(out)[-2000:]
    shown = _task(out, "Logs | {{ service }}") if any(
        t["task"]["name"] == "Logs | {{ service }}" for p in out["plays"] for t in p["tasks"]) else _task(out, "Logs | ssh")
    assert list(shown) == ["gx10-2"]
    msg = shown["gx10-2"]["msg"]
    assert 1 <= len(msg) <= 6 and not msg[0].startswith("(gx10-2: no ssh"), msg
    assert out["stats"]["gx10-2"]["changed"] == 0


def test_logs_refuses_a_bad_request_in_one_sentence() -> None:
    rc, out = _play("logs.yml", "-e", json.dumps({"service": "ssh; rm -rf /"}))
    assert rc != 0
    msg = _task(out, "Logs | the service is a unit name")["localhost"]["msg"]
    assert msg == "-e service=ssh; rm -rf / is not a unit name: use vllm, ray or a systemd unit name such as docker."
    rc, out = _play("logs.yml", "-e", "service=ssh", "-e", "node=gx10-99")
    assert rc != 0
    assert "-e node=gx10-99 is not in group 'gx10'" in _task(out, "Logs | the node is a serving node")["localhost"]["msg"]


def _sim_phy(ports: dict) -> None:
    state = Path(os.environ.get("SWITCH_SIM_STATE_DIR", str(ROOT / "lab" / ".state" / "switch")))
    (state / "phy.json").write_text(json.dumps({"ports": ports}))


def test_power_on_names_the_port_to_reseat_and_goes_on_after_the_reseat(tmp_path: Path) -> None:
    """The cold-boot fault: gx10-2's DAC did not initialise. power_on.yml names it, waits, and goes on
    once the (simulated) reseat brought the module up; nothing served before, so nothing comes back."""
    _sim_phy({"qsfp56-dd-2-1": "module-not-initialised"})
    log = tmp_path / "power_on.log"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    try:
        with log.open("w") as out:
            proc = subprocess.Popen(
                [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(ROOT / "inventory" / "lab"), "power_on.yml",
                 "-e", "power_on_poll_seconds=3", "-e", "power_on_wait_minutes=15"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 900
            while "RESEAT NOW" not in log.read_text():
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "power_on.yml never asked for a reseat"
                time.sleep(2)
            time.sleep(2)
            text = log.read_text()
            assert "gx10-2 (qsfp56-dd-2-1): module present but not initialised" in text, text[-3000:]
            assert "reseat the DAC in qsfp56-dd-2-1" in text
            _sim_phy({"qsfp56-dd-2-1": "ok"})  # the operator reseats the cable
            rc = proc.wait(timeout=1800)
    finally:
        _sim_phy({})
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "Nothing served before the power cut" in text
    assert "PLAY [GB10 fabric | Validate the CX7 fabric]" in text  # the jumbo matrix ran after the reseat
