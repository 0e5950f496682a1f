"""module_utils/stage_follow.py: the rounds of the weights role's progress loop (action plugin stage_follow)."""
from __future__ import annotations

import json
import subprocess

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.stage_follow import (
    FINISHED,
    GRACE_S,
    LINE_FORMATS,
    MISSING,
    RUNNING,
    TIMEOUT,
    follow,
    job_state,
    parse_progress,
    progress_line,
    pull_line,
    round_command,
    split_round,
    vllm_phase,
    vllm_start_line,
)
from tests.support.vllm_logs import FRACTION_TP1

LABEL = "m -> 3 node(s)"
STARTED = json.dumps({"started": True, "finished": False, "ansible_job_id": "j1"})
DONE = json.dumps({"changed": True, "rc": 0, "stdout": '{"complete": true}', "stderr": ""})


def _progress(state: str, done: int, total: int = 4 << 30) -> str:
    return json.dumps({"role": "source", "state": state, "bytes": done, "total": total, "elapsed_s": 12.5,
                       "rate_bps": 250_000_000, "time": 1.0})


def _round(job: str, progress: str = "") -> str:
    """What round_command prints (see test_round_command_reads_both_files for the real thing)."""
    return f"{job}\n--- gb10 stage_follow: progress ---\n{progress}"


class Clock:
    """A clock that only moves when the loop sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, s: float) -> None:
        self.now += s

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("text", "state"), [
    (STARTED, RUNNING),
    ("", RUNNING),  # the wrapper is writing it
    ('{"started": 1', RUNNING),
    ("[]", RUNNING),
    (json.dumps({"started": True, "finished": True}), FINISHED),
    (DONE, FINISHED),  # the module's result replaced the wrapper's note
    (json.dumps({"msg": "Timeout exceeded", "failed": True, "child_pid": 7}), FINISHED),
    ("--- gb10 stage_follow: no job file ---", MISSING),
    # sudo's warning before the file on a node that cannot resolve its own name (seen after a lab reboot)
    ("sudo: unable to resolve host gx10-2: Temporary failure in name resolution\r\n" + DONE, FINISHED),
    ("sudo: unable to resolve host gx10-2: Temporary failure in name resolution\n" + STARTED, RUNNING),
    ("sudo: unable to resolve host gx10-2\n--- gb10 stage_follow: no job file ---", MISSING),
])
def test_job_state_reads_the_job_file_as_async_status_does(text, state):
    assert job_state(text) == state


def test_round_command_reads_both_files(tmp_path):
    job, progress = tmp_path / "job 1", tmp_path / "it's" / "progress.json"

    def run() -> tuple[str, str]:
        out = subprocess.run(["sh", "-c", round_command(str(job), str(progress))], capture_output=True, text=True,
                             check=True).stdout
        return split_round(out)

    assert job_state(run()[0]) == MISSING and run()[1] == ""
    job.write_text(STARTED)
    assert run() == (STARTED, "")
    progress.parent.mkdir()
    progress.write_text(_progress("copying", 1 << 30))
    job.write_text(DONE)
    job_text, progress_text = run()
    assert job_state(job_text) == FINISHED and parse_progress(progress_text)["bytes"] == 1 << 30


def test_split_round_reads_the_crlf_of_a_terminal():
    """become over SSH runs the command on a tty: every line ends in CRLF (seen on the lab)."""
    out = _round(DONE, _progress("done", 4 << 30)).replace("\n", "\r\n") + "\r\n"
    job_text, progress_text = split_round(out)
    assert job_state(job_text) == FINISHED and parse_progress(progress_text)["state"] == "done"


def test_a_round_not_understood_asks_async_status():
    assert split_round("sh: 1: cannot fork") is None
    outputs = iter(["garbage", "garbage", _round(STARTED, _progress("copying", 1 << 30)), "garbage"])
    states = iter([RUNNING, RUNNING, FINISHED])
    lines: list[str] = []
    out = follow(lambda: next(outputs), lines.append, LABEL, 1, 60, job_status=lambda: next(states),
                 sleep=lambda _: None)
    assert (out.state, out.rounds) == (FINISHED, 4)
    assert lines == ["m -> 3 node(s): running (progress not readable this round)",
                     "m -> 3 node(s): running (progress not readable this round)",
                     "m -> 3 node(s): copying 25.0% (1.00 / 4.00 GiB) at 250.0 MB/s, 12.5 s",
                     "m -> 3 node(s): ended (progress not readable this round)"]


def test_progress_line_has_the_fields_of_the_old_line():
    assert progress_line(LABEL, parse_progress(_progress("copying", 1 << 30))) == (
        "m -> 3 node(s): copying 25.0% (1.00 / 4.00 GiB) at 250.0 MB/s, 12.5 s")
    assert progress_line(LABEL, {}) == "m -> 3 node(s): starting"
    assert progress_line(LABEL, parse_progress("{not json")) == "m -> 3 node(s): starting"
    assert progress_line(LABEL, {"state": "copying", "bytes": 0, "total": 0, "elapsed_s": 0.1, "rate_bps": 0}) == (
        "m -> 3 node(s): copying 0.0% (0.00 / 0.00 GiB) at 0.0 MB/s, 0.1 s")


def test_one_line_per_round_and_a_copy_that_ends_between_two_rounds():
    rounds = iter([_round(STARTED), _round(STARTED, _progress("copying", 1 << 30)),
                   _round(STARTED, _progress("copying", 3 << 30)),
                   # between this round and the one before, the copy ended: the job file has the result
                   _round(DONE, _progress("done", 4 << 30))])
    lines: list[str] = []
    clock = Clock()
    out = follow(lambda: next(rounds), lines.append, LABEL, 5, 3600, sleep=clock.sleep, clock=clock)
    assert (out.state, out.rounds) == (FINISHED, 4)
    assert lines == ["m -> 3 node(s): starting",
                     "m -> 3 node(s): copying 25.0% (1.00 / 4.00 GiB) at 250.0 MB/s, 12.5 s",
                     "m -> 3 node(s): copying 75.0% (3.00 / 4.00 GiB) at 250.0 MB/s, 12.5 s",
                     "m -> 3 node(s): done 100.0% (4.00 / 4.00 GiB) at 250.0 MB/s, 12.5 s"]
    assert out.line == lines[-1]
    assert clock.now == 20  # one interval before each round, none after the last


def test_a_job_that_failed_or_vanished_ends_the_rounds():
    failed = json.dumps({"failed": True, "rc": 1, "stdout": "", "stderr": "gb10-stage: boom"})
    out = follow(lambda: _round(failed), lambda _: None, LABEL, 1, 60, sleep=lambda _: None)
    assert (out.state, out.rounds) == (FINISHED, 1)
    out = follow(lambda: _round("--- gb10 stage_follow: no job file ---"), lambda _: None, LABEL, 1, 60,
                 sleep=lambda _: None)
    assert (out.state, out.rounds) == (MISSING, 1)


def test_tens_of_thousands_of_rounds_do_not_grow_the_stack():
    """A day of 5-second rounds (17280) and more: a loop, where an include per round hit the recursion limit."""
    n = 20_000
    seen = {"rounds": 0}

    def read() -> str:
        seen["rounds"] += 1
        return _round(DONE if seen["rounds"] == n else STARTED, _progress("copying", seen["rounds"]))

    emitted = []
    clock = Clock()
    out = follow(read, emitted.append, LABEL, 5, n * 5 + GRACE_S, sleep=clock.sleep, clock=clock)
    assert (out.state, out.rounds, len(emitted)) == (FINISHED, n, n)


def test_a_job_that_never_ends_stops_at_the_limit():
    clock = Clock()
    lines: list[str] = []
    out = follow(lambda: _round(STARTED), lines.append, LABEL, 5, 60, sleep=clock.sleep, clock=clock)
    assert (out.state, out.rounds, len(lines)) == (TIMEOUT, 12, 12)


# `docker pull` as Docker 20.10+ prints it without a terminal (recorded on the lab's nodes).
PULL_MIDWAY = """0.32.0-x: Pulling from gb10/vllm-cpu
3f4ca61aafcd: Already exists
8a1b2c3d4e5f: Pulling fs layer
9b8c7d6e5f4a: Pulling fs layer
8a1b2c3d4e5f: Verifying Checksum
8a1b2c3d4e5f: Download complete
9b8c7d6e5f4a: Downloading
"""
PULL_DONE = PULL_MIDWAY + """8a1b2c3d4e5f: Pull complete
9b8c7d6e5f4a: Download complete
9b8c7d6e5f4a: Pull complete
Digest: sha256:abababababababababababababababababababababababababababababababab
Status: Downloaded newer image for 10.77.0.1:5000/gb10/vllm-cpu@sha256:abab
"""


def test_pull_lines_count_layers_and_say_how_the_pull_ended():
    assert pull_line("gx10-1 pull", "") == "gx10-1 pull: resolving the manifest"
    assert pull_line("gx10-1 pull", PULL_MIDWAY) == "gx10-1 pull: 1/3 layers in place, 2 downloaded"
    assert pull_line("gx10-1 pull", PULL_DONE.replace("\n", "\r\n")) == (
        "gx10-1 pull: Downloaded newer image for 10.77.0.1:5000/gb10/vllm-cpu@sha256:abab (3 layers)")
    denied = "Error response from daemon: pull access denied for gb10/nope, repository does not exist\n"
    assert pull_line("gx10-1 pull", denied) == "gx10-1 pull: " + denied.strip()


def test_follow_prints_the_pulls_layers_round_by_round():
    outputs = iter([_round(STARTED, PULL_MIDWAY), _round(DONE, PULL_DONE)])
    lines: list[str] = []
    outcome = follow(lambda: next(outputs), lines.append, "gx10-1 pull", 0, 60, sleep=lambda _: None,
                     line_for=LINE_FORMATS["docker_pull"])
    assert outcome.state == FINISHED and outcome.rounds == 2
    assert lines == ["gx10-1 pull: 1/3 layers in place, 2 downloaded",
                     "gx10-1 pull: Downloaded newer image for 10.77.0.1:5000/gb10/vllm-cpu@sha256:abab (3 layers)"]


def test_vllm_phases_from_the_end_of_its_log():
    assert vllm_start_line("m on gx10-1", "") == "m on gx10-1: starting the container"
    head = ("(APIServer pid=1) INFO 11-29 17:39:00 [api_utils.py:286] non-default args: {'model': '/models/m'}\n"
            "(APIServer pid=1) INFO 11-29 17:40:44 [model.py:733] Resolved architecture: Qwen3ForCausalLM\n")
    assert vllm_phase(head) == "resolving the model (Qwen3ForCausalLM)"
    # tqdm's bar arrives as carriage-return-separated updates on one line of `docker logs`
    shards = head + ("Loading safetensors checkpoint shards:   0% Completed | 0/40 [00:00<?, ?it/s]\r"
                     "Loading safetensors checkpoint shards:  28% Completed | 11/40 [01:02<02:40,  5.5s/it]\n")
    assert vllm_phase(shards) == "loading weights: shard 11/40 (28 %)"
    ray = head + "(EngineCore pid=9) INFO 11-29 17:41:00 [ray_utils.py:468] Waiting for creating a placement group of specs for 10 seconds.\n"
    assert vllm_phase(ray) == "waiting for Ray to place the workers"
    # the CUDA excerpts of the calibration tests, in vLLM 0.32.0's formats, in the order vLLM logs them
    assert vllm_phase(FRACTION_TP1.split("Available KV")[0]) == "weights loaded (60.92 GiB)"
    assert vllm_phase(FRACTION_TP1.split("GPU KV cache size")[0]) == "profiling memory"
    assert vllm_phase(FRACTION_TP1.split("Graph capturing")[0]) == "KV cache of 3,889,968 tokens on GPU"
    assert vllm_phase(FRACTION_TP1) == "CUDA graphs captured in 21 s"
    api = FRACTION_TP1 + "(APIServer pid=1) INFO 11-27 10:02:40 [api_server.py:1] Starting vLLM server on http://0.0.0.0:8000\n"
    assert vllm_start_line("m on gx10-1", api) == "m on gx10-1: API up, waiting for /health"


def test_follow_prints_vllm_phases_round_by_round():
    logs = ["", FRACTION_TP1.split("Available KV")[0], FRACTION_TP1]
    outputs = iter([_round(STARTED, logs[0]), _round(STARTED, logs[1]), _round(DONE, logs[2])])
    lines: list[str] = []
    outcome = follow(lambda: next(outputs), lines.append, "m", 0, 60, sleep=lambda _: None,
                     line_for=LINE_FORMATS["vllm_start"])
    assert outcome.state == FINISHED
    assert lines == ["m: starting the container", "m: weights loaded (60.92 GiB)", "m: CUDA graphs captured in 21 s"]
