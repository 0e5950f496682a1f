"""roles/monitoring's Prometheus configuration and alert rules, rendered by Ansible from the role's defaults
against the sample rack, checked by promtool (as the role's own `validate:` does), and the rules' logic run
through `promtool test rules`: Ray's metrics are scraped on every node, and GB10RayNodeDown fires for a node
whose Ray stopped while vLLM serves, never when nothing serves on purpose or the model runs without Ray.
Also the firewall's default metrics ports (the node exporter's and Ray's)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.playbooks import ROOT, make_inventory, run_playbook

PROMTOOL = shutil.which("promtool")
# promtool comes with Debian's prometheus package, which roles/monitoring installs on the control machine
# (CI and the lab's control machine have it); without it these checks cannot run here.
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed")


def _render(tmp_path: Path, **extra: object) -> tuple[dict, str, list]:
    """(prometheus.yml, the rules file's path, the firewall's monitoring ports) as Ansible renders them."""
    inv = make_inventory(tmp_path, lambda nodes: None)
    out = tmp_path / "out"
    out.mkdir()
    tasks = [
        {"name": "Prometheus configuration", "ansible.builtin.template": {
            "src": str(ROOT / "roles/monitoring/templates/prometheus.yml.j2"), "dest": str(out / "prometheus.yml"),
            "mode": "0644"}},
        {"name": "Rules", "ansible.builtin.template": {
            "src": str(ROOT / "roles/monitoring/templates/gb10-rules.yml.j2"), "dest": str(out / "gb10.yml"),
            "mode": "0644"}},
        {"name": "Firewall ports", "ansible.builtin.copy": {
            "content": "{{ firewall_monitoring_ports | to_json }}", "dest": str(out / "ports.json"), "mode": "0644"}},
    ]
    play = [{"name": "Render", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars_files": [str(ROOT / "roles/monitoring/defaults/main.yml"), str(ROOT / "roles/firewall/defaults/main.yml")],
             "tasks": tasks}]
    book = tmp_path / "render.yml"
    book.write_text(yaml.safe_dump(play, sort_keys=False))
    result = run_playbook(tmp_path, str(book), inv, extravars=dict(extra))
    assert result.status == "successful", result.stdout.read()
    config = yaml.safe_load((out / "prometheus.yml").read_text())
    return config, str(out / "gb10.yml"), yaml.safe_load((out / "ports.json").read_text())


def _targets(config: dict, job: str) -> list[tuple[str, str]]:
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    return [(t, sc["labels"]["node"]) for sc in jobs[job]["static_configs"] for t in sc["targets"]] if job in jobs else []


def _sample_nodes() -> list[str]:
    return list(yaml.safe_load((ROOT / "inventory/sample/hosts.yml").read_text())["all"]["children"]["gx10"]["hosts"])


# The rules' behaviour, one node's Ray stopping (gx10-2) in three situations; 15 s scrapes, alerts after 1m.
RULE_TESTS = """
rule_files: [RULES]
evaluation_interval: 15s
tests:
  - name: vLLM serves, gx10-2's Ray stops -> GB10RayNodeDown for gx10-2 only
    interval: 15s
    input_series:
      - {series: 'up{job="vllm", node="gx10-1"}', values: '1x20'}
      - {series: 'up{job="vllm", node="gx10-2"}', values: '0x20'}
      - {series: 'up{job="ray", node="gx10-1"}', values: '1x20'}
      - {series: 'up{job="ray", node="gx10-2"}', values: '1 1 0x18'}
    alert_rule_test:
      - {eval_time: 30s, alertname: GB10RayNodeDown, exp_alerts: []}
      - eval_time: 3m
        alertname: GB10RayNodeDown
        exp_alerts:
          - exp_labels: {severity: critical, job: ray, node: gx10-2}
            exp_annotations:
              summary: "gx10-2: Ray does not answer on its metrics port while vLLM serves (docker logs gb10-ray there; run status.yml)"
  - name: nothing serves on purpose (stop.yml) -> no Ray alert
    interval: 15s
    input_series:
      - {series: 'up{job="vllm", node="gx10-1"}', values: '0x20'}
      - {series: 'up{job="ray", node="gx10-1"}', values: '0x20'}
      - {series: 'up{job="ray", node="gx10-2"}', values: '0x20'}
    alert_rule_test:
      - {eval_time: 3m, alertname: GB10RayNodeDown, exp_alerts: []}
  - name: vLLM serves without Ray (Ray down on every node) -> no Ray alert
    interval: 15s
    input_series:
      - {series: 'up{job="vllm", node="gx10-1"}', values: '1x20'}
      - {series: 'up{job="ray", node="gx10-1"}', values: '0x20'}
      - {series: 'up{job="ray", node="gx10-2"}', values: '0x20'}
    alert_rule_test:
      - {eval_time: 3m, alertname: GB10RayNodeDown, exp_alerts: []}
  - name: Ray up but vLLM stopped while gx10-2's Ray is down -> no Ray alert (GB10VllmDown says it)
    interval: 15s
    input_series:
      - {series: 'up{job="vllm", node="gx10-1"}', values: '0x20'}
      - {series: 'up{job="ray", node="gx10-1"}', values: '1x20'}
      - {series: 'up{job="ray", node="gx10-2"}', values: '0x20'}
    alert_rule_test:
      - {eval_time: 3m, alertname: GB10RayNodeDown, exp_alerts: []}
"""


@needs_promtool
def test_ray_is_scraped_on_every_node_and_the_rules_behave(tmp_path: Path) -> None:
    config, rules, ports = _render(tmp_path)
    nodes = _sample_nodes()
    # every node's ansible_host (the inventory copy puts them on 127.0.0.101...) on Ray's metrics port
    assert _targets(config, "ray") == [(f"127.0.0.{100 + i}:8080", n) for i, n in enumerate(nodes, start=1)]
    assert [n for _, n in _targets(config, "node")] == nodes
    ray_job = next(j for j in config["scrape_configs"] if j["job_name"] == "ray")
    assert "authorization" not in ray_job and ray_job.get("scheme", "http") == "http"
    assert ports == [9100, 8080]
    check = subprocess.run([PROMTOOL, "check", "rules", rules], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    check = subprocess.run([PROMTOOL, "check", "config", "--syntax-only", str(tmp_path / "prometheus.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    names = [r["alert"] for g in yaml.safe_load(Path(rules).read_text())["groups"] for r in g["rules"]]
    assert names == ["GB10NodeDown", "GB10TwinDown", "GB10MemAvailableUnderFloor", "GB10VllmDown", "GB10RayNodeDown"]
    spec = tmp_path / "rules-test.yml"
    spec.write_text(RULE_TESTS.replace("RULES", rules))
    run = subprocess.run([PROMTOOL, "test", "rules", str(spec)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_custom_ray_port_and_none(tmp_path: Path) -> None:
    """ray_cluster_metrics_port moves the scrape targets and the firewall's port with it; 0 drops both and the rule."""
    config, _, ports = _render(tmp_path / "a", ray_cluster_metrics_port=9300)
    assert {t.rsplit(":", 1)[1] for t, _ in _targets(config, "ray")} == {"9300"} and ports == [9100, 9300]
    config, rules, ports = _render(tmp_path / "b", ray_cluster_metrics_port=0)
    assert _targets(config, "ray") == [] and ports == [9100]
    assert "GB10RayNodeDown" not in Path(rules).read_text()
