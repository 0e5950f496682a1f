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


def test_each_play_lasts_until_the_next_one_and_check_plays_are_marked():
    from bench.converge.run import check_play_names, play_profile

    names = check_play_names()
    # the check plays of site.yml, read from their files; a converging play is not among them
    assert "GB10 fabric | Validate the CX7 fabric" in names and "Switch | diagnose the fabric ports" in names
    assert "Switch | configure the CRS804-4DDQ" not in names
    events = [
        {"event": "playbook_on_play_start", "created": "2026-11-29T21:00:00.000000",
         "event_data": {"play": "Switch | configure the CRS804-4DDQ"}},
        {"event": "playbook_on_task_start", "created": "2026-11-29T21:00:01.000000", "event_data": {"task": "x"}},
        {"event": "playbook_on_play_start", "created": "2026-11-29T21:00:04.000000",
         "event_data": {"play": "Switch | diagnose the fabric ports"}},
        {"event": "playbook_on_stats", "created": "2026-11-29T21:00:05.500000", "event_data": {}},
    ]
    assert play_profile(events, names) == [
        {"play": "Switch | configure the CRS804-4DDQ", "seconds": 4.0, "check": False},
        {"play": "Switch | diagnose the fabric ports", "seconds": 1.5, "check": True},
    ]
