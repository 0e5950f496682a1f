"""Follow a long job on a node (a staging stream, a download, an image pull): one progress line per
round until the job has ended.

Plain typed Python, no Ansible imports. The action plugin gb10.cluster.stage_follow supplies the I/O
(one shell command per round on the node that runs the stream, Display for the lines); this module
builds that command, reads its output and runs the rounds. The rounds are a plain loop bounded by a
deadline: their number does not grow any stack (issue #15: a task file that included itself once per
round ended long copies with a RecursionError after about 250 rounds).
"""
from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The stream's async job: still running, ended (its result is in the job file), or no job file at all.
RUNNING = "running"
FINISHED = "finished"
MISSING = "missing"
TIMEOUT = "timeout"

SEPARATOR = "--- gb10 stage_follow: progress ---"
NO_JOB_FILE = "--- gb10 stage_follow: no job file ---"
# Followed this long after the job's own limit (async: the async wrapper kills the job at that limit and
# writes the result), the job file still says "running": the node rebooted or the wrapper was killed.
GRACE_S = 120.0


def round_command(job_path: str, progress_path: str) -> str:
    """One shell command for a round: the async job file (or NO_JOB_FILE), SEPARATOR, the progress file.

    Both files are replaced atomically by their writers (rename), so a read sees an old or a new copy,
    never half of one. A progress file not written yet prints nothing."""
    job, progress = shlex.quote(job_path), shlex.quote(progress_path)
    return (f"if [ -e {job} ]; then cat {job}; else printf '%s' {shlex.quote(NO_JOB_FILE)}; fi; "
            f"printf '\\n%s\\n' {shlex.quote(SEPARATOR)}; cat {progress} 2>/dev/null; true")


def split_round(stdout: str) -> tuple[str, str] | None:
    """The output of round_command as (job file text, progress file text); None when it is not that.

    Lines may end in CRLF: with become over SSH the command runs on a terminal (sudo wants a tty)."""
    job, sep, progress = stdout.replace("\r\n", "\n").partition(f"\n{SEPARATOR}\n")
    if not sep:
        return None
    return job, progress


def job_state(text: str) -> str:
    """RUNNING, FINISHED or MISSING, read from the async job file as ansible's async_status reads it.

    The wrapper writes {"started": true, "finished": false} first and the module's result (which has
    no "started") at the end; an empty or unreadable file is a job still being written."""
    if text.strip().splitlines()[-1:] == [NO_JOB_FILE]:
        return MISSING
    try:
        data = json.loads(text)
    except ValueError:
        # With become over SSH the read runs on a terminal: a warning of sudo's ("unable to resolve host
        # ...") can come before the file's JSON. The file itself is one JSON object.
        start = text.find("{")
        try:
            data = json.loads(text[start:]) if start > 0 else None
        except ValueError:
            data = None
        if data is None:
            return RUNNING
    if not isinstance(data, dict):
        return RUNNING
    return FINISHED if "started" not in data or bool(data.get("finished")) else RUNNING


def parse_progress(text: str) -> dict[str, Any]:
    """The progress file written by gb10_stage.py ({} when absent or unreadable)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def progress_line(label: str, progress: dict[str, Any]) -> str:
    """'<label>: <state> <percent>% (<done> / <total> GiB) at <rate> MB/s, <elapsed> s', or '<label>: starting'."""
    try:
        done = float(progress["bytes"])
        total = float(progress["total"])
        rate = float(progress.get("rate_bps", 0))
    except (KeyError, TypeError, ValueError):
        return f"{label}: starting"
    percent = 100.0 * done / max(total, 1.0)
    return (f"{label}: {progress.get('state', 'copying')} {percent:.1f}% "
            f"({done / 2**30:.2f} / {total / 2**30:.2f} GiB) at {rate / 1e6:.1f} MB/s, {progress.get('elapsed_s', 0)} s")


# `docker pull` without a terminal prints one line per layer event ("<layer>: Pull complete") and no
# byte counts: a layer is in place once it says "Pull complete" or "Already exists", downloaded once
# it got past "Download complete".
_LAYER_LINE = re.compile(r"^([0-9a-f]{12,64}): (.+?)\s*$")
_IN_PLACE = ("Pull complete", "Already exists")
_DOWNLOADED = ("Download complete", "Verifying Checksum", "Extracting") + _IN_PLACE


def pull_progress(text: str) -> dict[str, Any]:
    """Layers seen, downloaded and in place in the output of `docker pull` so far, and how it ended
    ("Status: ..." line) or the last error line."""
    layers: dict[str, str] = {}
    status = error = ""
    for raw in text.replace("\r\n", "\n").splitlines():
        line = raw.strip()
        m = _LAYER_LINE.match(line)
        if m:
            layers[m.group(1)] = m.group(2)
        elif line.startswith("Status: "):
            status = line[len("Status: "):]
        elif line.startswith(("Error", "error")) or "denied" in line or "manifest unknown" in line:
            error = line
    states = list(layers.values())
    return {"layers": len(states),
            "downloaded": sum(1 for st in states if st.startswith(_DOWNLOADED)),
            "in_place": sum(1 for st in states if st.startswith(_IN_PLACE)),
            "status": status, "error": error}


def pull_line(label: str, text: str) -> str:
    """'<label>: <in place>/<layers> layers in place, <downloaded> downloaded', or how the pull ended."""
    got = pull_progress(text)
    if got["error"]:
        return f"{label}: {got['error']}"
    if got["status"]:
        return f"{label}: {got['status']} ({got['layers']} layers)"
    if not got["layers"]:
        return f"{label}: resolving the manifest"
    return f"{label}: {got['in_place']}/{got['layers']} layers in place, {got['downloaded']} downloaded"


# vLLM's start, phase by phase, from the last lines of its log (vLLM 0.32.0's own messages; progress
# bars come as carriage-return-separated updates). The last line that names a phase wins.
_VLLM_PHASES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(rx), text) for rx, text in (
    (r"non-default args:", "reading its arguments"),
    (r"Resolved architecture: (\S+)", "resolving the model ({0})"),
    (r"Waiting for creating a placement group", "waiting for Ray to place the workers"),
    (r"Loading safetensors checkpoint shards:\s*(\d+)% Completed \| (\d+)/(\d+)", "loading weights: shard {1}/{2} ({0} %)"),
    (r"Loading weights took ([0-9.]+) seconds", "weights loaded in {0} s"),
    (r"Model loading took ([0-9.]+) GiB", "weights loaded ({0} GiB)"),
    (r"Dynamo bytecode transform time|torch\.compile takes", "compiling the model (torch.compile)"),
    (r"Initial free memory|Memory profiling|Available KV cache memory", "profiling memory"),
    (r"(\w+) KV cache size: ([0-9,]+) tokens", "KV cache of {1} tokens on {0}"),
    (r"Capturing CUDA graphs[^|\r\n]*\|\s*(\d+)/(\d+)", "capturing CUDA graphs {0}/{1}"),
    (r"Graph capturing finished in ([0-9.]+) secs", "CUDA graphs captured in {0} s"),
    (r"init engine \(profile, create kv cache, warmup model\) took ([0-9.]+)", "engine ready after {0} s, starting the API"),
    (r"Starting vLLM (?:API|server)|Application startup complete", "API up, waiting for /health"),
))


def vllm_phase(text: str) -> str:
    """The phase vLLM's start is in, read from the end of its log ("" when no line names one yet)."""
    phase = ""
    for line in re.split(r"[\r\n]+", text):
        for pattern, template in _VLLM_PHASES:
            m = pattern.search(line)
            if m:
                phase = template.format(*m.groups())
    return phase


def vllm_start_line(label: str, text: str) -> str:
    """'<label>: <phase>' for a round of the health wait (the progress file is the log's last lines)."""
    return f"{label}: {vllm_phase(text) or 'starting the container'}"


def staging_line(label: str, text: str) -> str:
    return progress_line(label, parse_progress(text))


# What a round's progress text is, by the follower's ``format`` argument.
LINE_FORMATS: dict[str, Callable[[str, str], str]] = {"staging": staging_line, "docker_pull": pull_line,
                                                      "vllm_start": vllm_start_line}


@dataclass
class Outcome:
    """How following ended: FINISHED, MISSING or TIMEOUT, after how many rounds, with the last line printed."""

    state: str
    rounds: int
    line: str


def follow(read_round: Callable[[], str], emit: Callable[[str], None], label: str, interval: float,
           limit_s: float, job_status: Callable[[], str] | None = None, sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic, line_for: Callable[[str, str], str] = staging_line) -> Outcome:
    """Round after round: wait ``interval`` s, read the job and progress files, emit ONE line.

    Ends after the round that finds the job ended (its last line shows the final progress, so a copy
    that finished between two rounds is reported once, complete) or its job file gone, or once
    ``limit_s`` s have passed with the job still running. A round whose output is not understood asks
    ``job_status`` (the slower, sure way: ansible's async_status) whether the job has ended, so an odd
    shell can slow the rounds down but not keep them going after the copy."""
    start = clock()
    rounds = 0
    while True:
        sleep(max(interval, 0.0))
        rounds += 1
        parts = split_round(read_round())
        if parts is None:
            state = job_status() if job_status is not None else RUNNING
            line = f"{label}: {'running' if state == RUNNING else 'ended'} (progress not readable this round)"
        else:
            state = job_state(parts[0])
            line = line_for(label, parts[1])
        emit(line)
        if state != RUNNING:
            return Outcome(state, rounds, line)
        if clock() - start >= limit_s:
            return Outcome(TIMEOUT, rounds, line)
