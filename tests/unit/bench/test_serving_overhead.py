"""bench/serving/overhead.py: what it reads from ansible-playbook's output."""
from __future__ import annotations

from bench.serving.overhead import markdown, parse_recap, parse_task_profile, summary

OUTPUT = """\
TASK [Serve | The catalog, resolved once for this run] *************************
ok: [localhost]

PLAY RECAP *********************************************************************
crs804                     : ok=0    changed=0    unreachable=0    failed=0    skipped=2    rescued=0    ignored=0
gx10-1                     : ok=20   changed=1    unreachable=0    failed=0    skipped=5    rescued=0    ignored=0
localhost                  : ok=46   changed=0    unreachable=0    failed=0    skipped=22   rescued=0    ignored=0


TASKS RECAP ********************************************************************
Tuesday 01 December 2026  05:01:56 +0000 (0:00:00.060)       0:00:25.600 ******
===============================================================================
serving_image : Serving image | Docker's registries, the image, the repository's images --- 2.53s
Preflight | Wait for SSH (short) ---------------------------------------- 1.59s
vllm_serve : Vllm serve | A real completion with the API key, and the same request without the key is refused --- 11.21s
"""


def test_the_recap_gives_each_hosts_counts():
    recap = parse_recap(OUTPUT)
    assert recap["gx10-1"] == {"ok": 20, "changed": 1, "unreachable": 0, "failed": 0}
    assert recap["crs804"]["ok"] == 0
    assert sorted(recap) == ["crs804", "gx10-1", "localhost"]


def test_the_task_profile_is_read_after_the_tasks_recap_slowest_first():
    assert parse_task_profile(OUTPUT) == [
        {"task": "vllm_serve : Vllm serve | A real completion with the API key, and the same request without the key is refused",
         "seconds": 11.21},
        {"task": "serving_image : Serving image | Docker's registries, the image, the repository's images", "seconds": 2.53},
        {"task": "Preflight | Wait for SSH (short)", "seconds": 1.59},
    ]


def test_no_recap_no_profile():
    assert parse_recap("") == {}
    assert parse_task_profile("TASK [x] ***\nsomething --- 1.00s\n") == []


def test_the_verdict_is_on_the_median_not_the_best_run():
    lucky = summary([{"seconds": 14.0}, {"seconds": 16.2}, {"seconds": 16.9}])
    assert lucky == {"best_seconds": 14.0, "median_seconds": 16.2, "target_seconds": 15.0, "met": False}
    assert summary([{"seconds": 7.4}, {"seconds": 15.0}, {"seconds": 21.0}])["met"] is True


def test_the_report_names_the_model_the_machine_speed_and_the_verdict():
    runs = [{"seconds": s, "tasks": 95, "controller_cpu_seconds": 6.0, "load_average_before": [1.0, 1.0, 1.0],
             "slowest_tasks": [{"task": "Preflight | Wait for SSH (short)", "seconds": 0.66}]} for s in (7.4, 8.0, 9.6)]
    record = {"when": "2026-12-01T11:14:55+00:00", "machine": {"cpus": 2, "python_loop_cpu_seconds": 0.091},
              "model": "some-model", "runs": runs, **summary(runs)}
    text = "\n".join(markdown(record))
    assert "model `some-model` already serving" in text
    assert "0.091 CPU s" in text
    assert "Median of the runs: 8.0 s against the target of 15.0 s: met" in text
    assert "| Preflight &#124; Wait for SSH (short) | 0.66 |" in text
