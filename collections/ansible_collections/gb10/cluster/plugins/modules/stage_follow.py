#!/usr/bin/python
"""Documentation of the action plugin gb10.cluster.stage_follow (plugins/action/stage_follow.py)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: stage_follow
short_description: Follow a long job started with async, one progress line per round
description:
  - Follows an async job started with C(async) and C(poll=0) (the weights role's C(gb10_stage.py send)
    and Hugging Face download, the serving image's C(docker pull), the wait for vLLM's C(/health)) until it ends, printing ONE line per
    round, every O(interval) seconds, read from the job's progress file (see O(format)).
  - Returns the job's result as M(ansible.builtin.async_status) does (C(finished), C(rc), C(stdout),
    C(stderr), ...), without failing when the job failed, so the caller explains why.
  - The rounds are a loop in the action plugin, bounded by O(timeout) plus 120 s; a round is one shell
    command on the node (the task is delegated to the node that runs the job).
  - Fails only when the job still reads as running after O(timeout) plus 120 s (its node rebooted or
    the job was killed).
  - Read-only; supports check mode.
options:
  jid:
    description: The job's C(ansible_job_id) (the result registered by the task started with C(async)).
    type: str
    required: true
  progress:
    description: The progress file on the node (C(gb10_stage.py ... --progress FILE)).
    type: str
    required: true
  label:
    description: What each line starts with (the weights role gives the model and the number of nodes it copies to).
    type: str
    required: true
  interval:
    description: Seconds between two rounds (the first round waits too).
    type: float
    default: 5.0
  timeout:
    description: The job's own limit (its C(async) value) in seconds.
    type: float
    default: 86400.0
  format:
    description:
      - What the progress file holds. V(staging) is the JSON that C(gb10_stage.py) and C(gb10_hf_fetch.py)
        write (state, percent, GiB done and total, MB/s, elapsed). V(docker_pull) is the output of
        C(docker pull) (layers in place and downloaded, then its C(Status) line or its error).
        V(vllm_start) is the end of vLLM's log, read for the phase of its start (loading shards k/n, compiling,
        profiling memory, KV cache size, capturing graphs, API up).
    type: str
    default: staging
    choices: [docker_pull, staging, vllm_start]
attributes:
  action:
    support: full
  check_mode:
    support: full
  delegation:
    support: full
    details: Delegate to the node that runs the job.
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Follow the copy
  gb10.cluster.stage_follow:
    jid: "{{ weights_send_job.ansible_job_id }}"
    progress: /srv/gb10/models/m/.gb10-stage/progress.json
    label: m -> 3 node(s)
    interval: 5
    timeout: 86400
  register: weights_send_state
"""

RETURN = r"""
finished:
  description: True once the job has ended (it always has, unless the task failed).
  type: bool
  returned: always
rounds:
  description: How many rounds (progress lines) it took.
  type: int
  returned: always
progress_line:
  description: The last line printed.
  type: str
  returned: always
rc:
  description: The job's exit code (from its result).
  type: int
  returned: when the job ran its command
stdout:
  description: The job's standard output (gb10_stage.py send prints its JSON result there).
  type: str
  returned: when the job ran its command
stderr:
  description: The job's standard error.
  type: str
  returned: when the job ran its command
"""
