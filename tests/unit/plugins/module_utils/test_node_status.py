"""status.yml's logic: containers from docker inspect, twin links, vLLM's KV gauge and the one screen."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gb10.cluster.plugins.module_utils.node_status import (
    container_rows,
    kv_usage,
    status_lines,
    twin_rows,
)
from ansible_collections.gb10.cluster.plugins.modules import node_status as node_status_module

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
GiB = 2**30

API = {
    "Name": "/gb10-vllm", "Image": "sha256:abc", "RestartCount": 2, "Args": [
        "serve", "/models/m", "--tensor-parallel-size", "2", "--max-model-len=4096", "--host", "0.0.0.0",
        "--port", "8000"],
    "State": {"Status": "running", "StartedAt": "2026-11-29T10:00:00Z", "ExitCode": 0},
    "Config": {"Image": "10.77.0.1:5000/gb10/vllm-cpu@sha256:86", "Labels": {
        "gb10.serving.model": "tiny-qwen3", "gb10.serving.role": "api", "gb10.serving.hash": "h"}},
}
FOLLOWER = {**API, "Name": "/gb10-vllm", "RestartCount": 0, "Args": ["serve", "--tensor-parallel-size", "2"],
            "State": {"Status": "exited", "ExitCode": 137},
            "Config": {"Image": "img", "Labels": {"gb10.serving.model": "tiny-qwen3", "gb10.serving.role": "follower"}}}
RAY = {"Name": "/gb10-ray", "Image": "sha256:r", "Args": [], "State": {"Status": "running"},
       "Config": {"Image": "ray-img", "Labels": {"gb10.ray.role": "head"}}}
OTHER = {"Name": "/someone-else", "Config": {"Labels": {}}, "State": {}}


def test_container_rows_keep_gb10_containers_only():
    rows = container_rows([API, RAY, OTHER])
    assert [(r["kind"], r["role"]) for r in rows] == [("ray", "head"), ("vllm", "api")]
    api = rows[1]
    assert api == {**api, "name": "gb10-vllm", "model": "tiny-qwen3", "api_port": 8000, "restarts": 2,
                   "tensor_parallel_size": 2, "pipeline_parallel_size": 1, "max_model_len": 4096, "state": "running"}
    assert rows[0]["api_port"] is None and rows[0]["tensor_parallel_size"] is None


def test_twin_rows_read_sysfs_and_addresses():
    sysfs = {"enp1s0f1np1": {"operstate": "up\n", "speed": "200000\n", "mtu": "9000\n"},
             "enP2p1s0f1np1": {"operstate": "down\n", "speed": "", "mtu": "9000\n"}}
    ip_addr = [{"ifname": "enp1s0f1np1", "addr_info": [{"family": "inet", "local": "192.168.100.11", "prefixlen": 24},
                                                      {"family": "inet6", "local": "fe80::1", "prefixlen": 64}]}]
    rows = twin_rows(["enp1s0f1np1", "enP2p1s0f1np1", "enp9"], sysfs, ip_addr)
    assert rows[0] == {"interface": "enp1s0f1np1", "present": True, "state": "up", "speed_mbps": 200000, "mtu": 9000,
                       "addresses": ["192.168.100.11/24"]}
    assert rows[1]["state"] == "down" and rows[1]["speed_mbps"] is None and rows[1]["addresses"] == []
    assert rows[2] == {"interface": "enp9", "present": False, "state": "missing", "speed_mbps": None, "mtu": None,
                       "addresses": []}


def test_kv_usage_reads_either_gauge_name():
    text = ('# HELP vllm:kv_cache_usage_perc KV-cache usage.\n'
            'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25\n'
            'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75\n'
            'vllm:num_requests_running{model_name="m"} 3.0\n')
    assert kv_usage(text) == 0.5
    assert kv_usage('vllm:gpu_cache_usage_perc{model_name="m"} 0.1\n') == 0.1
    assert kv_usage("nothing here\n") is None


def _node(host, containers, avail=100 * GiB, twins=()):
    return {"host": host, "reachable": True, "status": {"containers": container_rows(containers),
            "mem_total_bytes": 120 * GiB, "mem_available_bytes": avail, "uptime_seconds": 93784.0,
            "twins": list(twins)}}


def test_status_lines_one_screen():
    twin = {"interface": "enp1s0f1np1", "state": "up", "speed_mbps": 200000, "mtu": 9000,
            "addresses": ["192.168.100.11/24"]}
    nodes = [_node("gx10-1", [API], twins=[twin]), _node("gx10-2", [FOLLOWER], avail=5 * GiB),
             {"host": "gx10-3", "reachable": False, "msg": "timed out"}]
    head = {"host": "gx10-1", "url": "http://10.77.0.11:8000/v1", "health": 200, "kv_usage": 0.125}
    ports = [{"node": "gx10-1", "port": "qsfp56-dd-1-1", "status": "OK", "ok": True},
             {"node": "gx10-2", "port": "qsfp56-dd-1-2", "status": "module not initialised", "ok": False,
              "action": "reseat the DAC"}]
    lines = status_lines(nodes, head, ports, floor_bytes=8 * GiB)
    assert lines[0] == ("serving: tiny-qwen3 | image 10.77.0.1:5000/gb10/vllm-cpu@sha256:86, img | TP=2 PP=1 on 2 "
                        "node(s) | max_model_len 4096")
    assert lines[1] == "endpoint: http://10.77.0.11:8000/v1 on gx10-1: healthy | KV cache in use 12.5 %"
    assert lines[2] == "not running: gx10-2 (follower: exited)"
    assert lines[3] == ("gx10-1: up 1d02h | MemAvailable 100.0 of 120.0 GiB | gb10-vllm vllm/api running restarts 2 | "
                        "twins enp1s0f1np1 up 200G mtu 9000 192.168.100.11/24")
    assert "(BELOW THE FLOOR)" in lines[4]
    assert lines[5] == "gx10-3: UNREACHABLE (timed out)"
    assert lines[6:] == ["switch qsfp56-dd-1-1 (gx10-1): OK",
                         "switch qsfp56-dd-1-2 (gx10-2): module not initialised: reseat the DAC"]


def test_status_lines_nothing_serving_and_unhealthy():
    assert status_lines([_node("gx10-1", [])])[0].startswith("serving: nothing")
    head = {"host": "gx10-1", "url": "u", "health": -1, "error": "Connection refused", "kv_usage": None}
    lines = status_lines([_node("gx10-1", [API])], head, [{"error": "sw: the switch did not answer"}])
    assert lines[1] == "endpoint: u on gx10-1: unhealthy (Connection refused) | KV in use ?"
    assert lines[-1] == "switch: not read (sw: the switch did not answer)"


def test_module_reads_a_node(tmp_path, capsys):
    proc = tmp_path / "proc"
    shutil.copytree(FIXTURES / "cgroup" / "v2_nolimit" / "proc", proc)
    shutil.copy(FIXTURES / "memfit" / "meminfo-gb10.txt", proc / "meminfo")
    (proc / "uptime").write_text("3600.5 100.0\n")
    net = tmp_path / "net" / "enp1s0f1np1"
    net.mkdir(parents=True)
    for f, v in {"operstate": "up\n", "speed": "200000\n", "mtu": "9000\n"}.items():
        (net / f).write_text(v)
    args = {"interfaces": ["enp1s0f1np1"], "docker": "", "sys_class_net": str(tmp_path / "net"),
            "proc_root": str(proc), "cgroup_root": str(FIXTURES / "cgroup" / "v2_nolimit" / "cgroup"),
            "_ansible_check_mode": True}
    with patch_module_args(args), pytest.raises(SystemExit):
        node_status_module.main()
    out = json.loads(capsys.readouterr().out)
    assert out["changed"] is False and out["containers"] == []
    assert out["mem_total_bytes"] == 127_601_124 * 1024 and out["mem_available_bytes"] == 119_876_544 * 1024
    assert out["uptime_seconds"] == 3600.5
    assert out["twins"][0]["state"] == "up" and out["twins"][0]["mtu"] == 9000
