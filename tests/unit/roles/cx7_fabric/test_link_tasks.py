"""roles/cx7_fabric: the link-test tasks take every command from the one plan (tasks/plan.yml).

The render playbook writes that plan; these checks keep the real run from growing a command of its own
that the render would not show: every command, ib_write_bw and mpirun the tasks run is an ``argv``
read from ``cx7_fabric_test_plan`` (or a name bound to it), and every entry point includes plan.yml.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

TASKS = Path(__file__).resolve().parents[4] / "roles" / "cx7_fabric" / "tasks"
PLAN_NAMES = ("cx7_fabric_test_plan", "cx7_fabric_build", "cx7_fabric_ib")


def _tasks(name: str) -> list[dict]:
    found = []

    def walk(items):
        for task in items or []:
            found.append(task)
            for key in ("block", "rescue", "always"):
                walk(task.get(key))

    walk(yaml.safe_load((TASKS / name).read_text()))
    return found


def _from_plan(text: str) -> bool:
    return any(name in text for name in PLAN_NAMES)


def _read_only_probe(args: dict) -> bool:
    """`ls -d <paths>`: whether the NVIDIA paths exist (one remote command instead of a stat per path); it
    runs no link test, so it is not the plan's."""
    argv = args.get("argv") if isinstance(args, dict) else None
    return isinstance(argv, list) and argv[:2] == ["ls", "-d"] and all(str(a).startswith("/") for a in argv[2:])


def test_every_command_of_the_link_tests_is_an_argv_of_the_plan():
    commands = 0
    for name in ("0050-tools.yml", "validate-ib.yml", "validate-nccl.yml"):
        for task in _tasks(name):
            if "ansible.builtin.command" in task:
                args = task["ansible.builtin.command"]
                if _read_only_probe(args):
                    continue
                commands += 1
                assert set(args) == {"argv"} and args["argv"] == "{{ item.argv }}", (name, task["name"])
                assert _from_plan(str(task["loop"])), (name, task["name"])
            if "ansible.builtin.shell" in task or "ansible.builtin.raw" in task:
                raise AssertionError(f"{name}: {task['name']} runs a shell command outside the plan")
            if "gb10.cluster.fabric_perf" in task:
                perf = task["gb10.cluster.fabric_perf"]
                assert _from_plan(str(perf.get("argv", "")) + str(perf.get("runs", ""))), (name, task["name"])
    assert commands == 3  # the probes, the build steps, the ib_write_bw servers


def test_the_apt_packages_and_the_marker_come_from_the_plan():
    tasks = {t["name"]: t for t in _tasks("0050-tools.yml")}
    apt = tasks["Cx7 fabric | Install the packages of the plan"]["ansible.builtin.apt"]
    assert apt["name"] == "{{ cx7_fabric_test_plan.build[inventory_hostname].packages }}"
    marker = tasks["Cx7 fabric | Write the build marker"]["ansible.builtin.copy"]
    assert _from_plan(marker["content"]) and _from_plan(marker["dest"])


def test_the_tools_the_check_and_the_render_include_the_same_plan():
    for name in ("0050-tools.yml", "validate.yml", "render.yml"):
        includes = [t for t in _tasks(name) if t.get("ansible.builtin.include_tasks") == "plan.yml"]
        assert includes, name
    plan = (TASKS / "plan.yml").read_text()
    assert re.search(r"lookup\('gb10.cluster.template', 'fabric_test_plan.json.j2'\) \| from_json "
                     r"\| gb10.cluster.fabric_test_plan", plan)
    render = {t["name"]: t for t in _tasks("render.yml")}
    assert render["Cx7 fabric | Plan the link tests without facts"]["vars"] == {"cx7_fabric_plan_use_facts": False}
