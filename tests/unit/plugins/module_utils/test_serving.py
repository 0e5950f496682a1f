"""Serving plan (plugins/module_utils/gb10_serving.py): images, layouts, vLLM flags, logs, swap hashes."""
from __future__ import annotations

import pytest

from ansible_collections.gb10.cluster.plugins.module_utils.serving import (
    ServingError,
    client_settings,
    image_for,
    kv_compare,
    lost_message,
    nodes_from_hostvars,
    parse_kv_log,
    serving_plan,
    unreachable_hosts,
    vllm_args,
)
from tests.support.catalog import merged_catalog

DIGEST = "sha256:" + "ab" * 32
PINS = {"lab-vllm-cpu": {"repository": "10.77.0.1:5000/gb10/vllm-cpu", "tag": "0.32.0-x", "digest": DIGEST,
                         "image_id": "sha256:" + "cd" * 32}}


@pytest.fixture(scope="module")
def catalog():
    """gb10_catalog on the lab: the built-in entries and the lab's tiny models (gb10_catalog_extra)."""
    return merged_catalog()


def nodes(n=4):
    return [{"host": f"gx10-{i}", "mgmt_ip": f"10.77.0.1{i}", "fabric_ip": f"192.168.100.1{i}"} for i in range(1, n + 1)]


def test_nodes_from_hostvars():
    hv = {"a": {"ansible_host": "10.0.0.1", "gb10_fabric_twins": [{"interface": "enp1s0f1np1"}],
                "gb10_fabric_addresses": {"enp1s0f1np1": "192.168.100.11/24"}},
          "b": {"ansible_host": "10.0.0.2"}}
    assert nodes_from_hostvars(["a", "b"], hv) == [
        {"host": "a", "mgmt_ip": "10.0.0.1", "fabric_ip": "192.168.100.11"},
        {"host": "b", "mgmt_ip": "10.0.0.2", "fabric_ip": "10.0.0.2"},
    ]


def test_lab_tp2_native_multinode(catalog):
    plan = serving_plan("tiny-qwen3", catalog, nodes(), PINS, {"cpu_threads_bind": "by_rank"})
    assert plan["weights_source"] == "controller", "staged from the control machine: no hf_revision needed"
    assert plan["executor"] == "native"
    assert plan["hosts"] == ["gx10-1", "gx10-2"]
    assert plan["image_ref"] == f"10.77.0.1:5000/gb10/vllm-cpu@{DIGEST}"
    head, follower = plan["containers"]
    assert head["role"] == "api" and follower["role"] == "follower"
    assert "--headless" in follower["args"] and "--headless" not in head["args"]
    for c, rank in ((head, "0"), (follower, "1")):
        a = c["args"]
        assert a[a.index("--node-rank") + 1] == rank
        assert a[a.index("--master-addr") + 1] == "192.168.100.11"
        assert a[a.index("--nnodes") + 1] == "2"
        assert c["env"]["VLLM_CPU_OMP_THREADS_BIND"] == rank
        assert c["env"]["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert "--port" in head["args"] and "--port" not in follower["args"]
    # the CPU build sizes KV from the environment, not from --kv-cache-memory-bytes
    assert "--kv-cache-memory-bytes" not in head["args"]
    assert head["argv"][:2] == ["docker", "run"]
    assert "--load-format" in head["args"] and "dummy" in head["args"]


def test_same_request_same_hash_other_model_other_hash(catalog):
    a = serving_plan("tiny-qwen3", catalog, nodes(), PINS)
    b = serving_plan("tiny-qwen3", catalog, nodes(), PINS)
    c = serving_plan("tiny-llama", catalog, nodes(), PINS)
    assert a["hash"] == b["hash"] != c["hash"]
    assert c["executor"] == "single" and c["hosts"] == ["gx10-1"]
    assert a["containers"][0]["labels"]["gb10.serving.hash"] == a["hash"]


def test_refuses_image_without_digest(catalog):
    with pytest.raises(ServingError) as exc:
        serving_plan("tiny-qwen3", catalog, nodes(), {})
    assert "no image repository" in exc.value.errors[0]
    entry = dict(catalog["gpt-oss-120b"])
    with pytest.raises(ServingError) as exc:
        serving_plan("gpt-oss-120b", {"gpt-oss-120b": entry}, nodes(), {})
    assert "not pinned by digest" in " ".join(exc.value.errors)


def test_refuses_empty_revision_for_real_models(catalog):
    entry = dict(catalog["qwen3-next-80b-a3b"])
    entry["image"] = dict(entry["image"], digest=DIGEST)
    with pytest.raises(ServingError) as exc:
        serving_plan("qwen3-next-80b-a3b", {"qwen3-next-80b-a3b": entry}, nodes(), {})
    assert any("hf_revision is empty" in e for e in exc.value.errors)


def test_gpu_multinode_defaults_to_ray_with_flags(catalog):
    entry = dict(catalog["qwen3.5-397b-a17b-fp8"])
    entry["image"] = dict(entry["image"], digest=DIGEST)
    plan = serving_plan("qwen3.5-397b-a17b-fp8", {"qwen3.5-397b-a17b-fp8": entry}, nodes(), {},
                        {"gpus": "all", "ray_tmp": "/var/lib/gb10/ray"})
    assert plan["executor"] == "ray" and plan["nodes"] == 4
    assert len(plan["containers"]) == 1  # Ray places the workers
    args = plan["containers"][0]["args"]
    assert args[args.index("--distributed-executor-backend") + 1] == "ray"
    assert args[args.index("--tensor-parallel-size") + 1] == "4"
    assert args[args.index("--kv-cache-dtype") + 1] == "fp8"
    assert args[args.index("--speculative-config") + 1] == '{"method":"mtp","num_speculative_tokens":2}'
    assert "--enable-auto-tool-choice" in args and "--enable-prefix-caching" in args
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.9"
    assert plan["containers"][0]["env"]["RAY_ADDRESS"] == "192.168.100.11:6379"
    assert "--gpus" in plan["containers"][0]["argv"]


def test_cpu_refuses_ray_and_too_few_nodes(catalog):
    with pytest.raises(ServingError) as exc:
        serving_plan("tiny-qwen3", catalog, nodes(), PINS, {"executor": "ray"})
    assert "refuses the Ray executor" in exc.value.errors[0]
    with pytest.raises(ServingError) as exc:
        serving_plan("tiny-qwen3", catalog, nodes(1), PINS)
    assert "needs 2 node(s)" in exc.value.errors[0]
    with pytest.raises(ServingError) as exc:
        serving_plan("nope", catalog, nodes(), PINS)
    assert "Unknown model 'nope'" in exc.value.errors[0]


def test_inventory_pin_overrides_catalog_image(catalog):
    pins = {"gpt-oss-120b": {"repository": "mirror.local/nvidia/vllm", "tag": "26.10-py3", "digest": DIGEST}}
    img = image_for("gpt-oss-120b", catalog["gpt-oss-120b"], pins)
    assert img["repository"] == "mirror.local/nvidia/vllm" and img["source"] == "gb10_image_pins['gpt-oss-120b']"


def test_vllm_args_booleans():
    assert vllm_args({"enable_prefix_caching": False}, "cuda") == ["--no-enable-prefix-caching"]
    assert vllm_args({"trust_remote_code": True, "speculative_config": {"method": "mtp", "num_speculative_tokens": 0}},
                     "cuda") == ["--trust-remote-code"]


LOG = """
(EngineCore pid=10) INFO 11-27 10:00:00 [kv_cache_utils.py:1100] CPU KV cache size: 2,097,152 tokens
(EngineCore pid=10) INFO 11-27 10:00:00 [kv_cache_utils.py:1104] Maximum concurrency for 512 tokens per request: 4096.00x
"""


def test_parse_kv_log_and_compare():
    got = parse_kv_log(LOG)
    assert got == {"found": True, "kv_cache_tokens": 2097152, "max_concurrency": 4096.0, "request_tokens": 512}
    cmp = kv_compare(2097152, got)
    assert cmp["agree"] and "agree" in cmp["line"]
    cmp = kv_compare(2000000, got)
    assert not cmp["agree"] and "+97,152" in cmp["line"]
    assert not kv_compare(1, parse_kv_log("nothing"))["agree"]


def test_client_settings_has_no_secret():
    text = client_settings("http://10.77.0.11:8000/v1", "tiny-qwen3", 512, "<key>")
    assert "OPENAI_BASE_URL=http://10.77.0.11:8000/v1" in text and "<key>" in text


def test_native_follower_runs_under_the_head_watchdog(catalog):
    plan = serving_plan("tiny-qwen3", catalog, nodes(), PINS)
    head, follower = plan["containers"]
    assert head["command"] == ["vllm", "serve", *head["args"]]
    cmd = follower["command"]
    assert cmd[:2] == ["sh", "-c"] and cmd[5] == "http://192.168.100.11:8000/health"
    assert cmd[6:8] == ["vllm", "serve"] and cmd[8:] == follower["args"]
    assert follower["argv"][-len(cmd):] == cmd
    assert "/health" not in cmd[2] and "SIGTERM" in cmd[4]
    off = serving_plan("tiny-qwen3", catalog, nodes(), PINS, {"follower_watchdog": False})
    assert off["containers"][1]["command"][:2] == ["vllm", "serve"]
    assert off["hash"] != plan["hash"]


def test_follower_watchdog_stops_the_follower_when_the_head_goes(tmp_path):
    """The real watchdog (shell + Python) against a fake head (an HTTP server) and a fake vLLM (sleep)."""
    import http.server
    import subprocess
    import sys
    import threading
    import time

    from ansible_collections.gb10.cluster.plugins.module_utils.serving import follower_command

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/health"
    cmd = follower_command(url, [])[:-2] + [sys.executable, "-c", "import time; time.sleep(120)"]
    (tmp_path / "python3").symlink_to(sys.executable)  # the image's python3; here the test's interpreter
    proc = subprocess.Popen(cmd, env={"PATH": f"{tmp_path}:/usr/bin:/bin"}, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(7)
        assert proc.poll() is None  # the head answers: nothing happens
        server.shutdown()
        server.server_close()  # the head's vLLM ended
        t0 = time.monotonic()
        rc = proc.wait(timeout=60)
        waited = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert rc != 0
    assert "watching it" in err and "stopped answering" in err
    assert waited >= 15  # four missed checks, not the first one


def test_unreachable_hosts_from_registered_results():
    looped = {"unreachable": True, "results": [
        {"item": "gx10-1", "rc": 0},
        {"item": "gx10-2", "unreachable": True, "msg": "timed out"},
        {"item": {"host": "gx10-3", "rank": 1}, "unreachable": True},
        {"item": ["gx10-4", "/srv/cache"], "unreachable": True},
        {"item": ["gx10-4", "/srv/other"], "unreachable": True},
    ]}
    assert unreachable_hosts(looped) == ["gx10-2", "gx10-3", "gx10-4"]
    assert unreachable_hosts({"unreachable": True, "msg": "x"}, "gx10-1") == ["gx10-1"]
    assert unreachable_hosts({"rc": 0, "changed": False}, "gx10-1") == []
    assert unreachable_hosts({"results": [{"item": "gx10-1", "rc": 0}]}) == []
    assert unreachable_hosts(None) == []


def test_lost_message_names_nodes_and_addresses():
    nodes = [{"host": "gx10-1", "mgmt_ip": "10.77.0.11"}, {"host": "gx10-2", "mgmt_ip": "10.77.0.12"}]
    assert lost_message(["gx10-2"], nodes, "starting tiny-llama") == (
        "gx10-2 (10.77.0.12) stopped answering over SSH while starting tiny-llama.")
    assert lost_message(["gx10-1", "gx10-9"], nodes, "x").startswith("gx10-1 (10.77.0.11) and gx10-9 stopped")
