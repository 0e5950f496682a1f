"""bench/converge/run.py: the per-task profile of a run, from ansible-runner's events."""
from __future__ import annotations

from bench.converge.run import task_profile


def test_each_task_lasts_until_the_next_one_starts_slowest_first():
    events = [
        {"event": "playbook_on_start", "created": "2026-11-29T21:00:00.000000", "event_data": {}},
        {"event": "playbook_on_task_start", "created": "2026-11-29T21:00:00.000000",
         "event_data": {"task": "Base | Node identity file", "role": "base"}},
        {"event": "runner_on_ok", "created": "2026-11-29T21:00:01.000000", "event_data": {}},
        {"event": "playbook_on_task_start", "created": "2026-11-29T21:00:03.500000",
         "event_data": {"task": "Summary | One line per node", "role": ""}},
        {"event": "playbook_on_handler_task_start", "created": "2026-11-29T21:00:03.750000",
         "event_data": {"task": "Dgx node | Restart Docker", "role": "dgx_node"}},
        {"event": "playbook_on_stats", "created": "2026-11-29T21:00:04.750000", "event_data": {}},
    ]
    assert task_profile(events) == [
        {"task": "base : Base | Node identity file", "seconds": 3.5},
        {"task": "dgx_node : Dgx node | Restart Docker", "seconds": 1.0},
        {"task": "Summary | One line per node", "seconds": 0.25},
    ]
