"""Serving plan (plugins/module_utils/serving.py): images, layouts, vLLM flags, logs, swap hashes, and the
rack: Ray containers, GPU/RDMA options, the lab's unchanged argv."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ansible_collections.gb10.cluster.plugins.filter import serving as filters
from ansible_collections.gb10.cluster.plugins.module_utils.rack import roce_class
from ansible_collections.gb10.cluster.plugins.module_utils.serving import (
    ServingError,
    choose_layout,
    client_settings,
    docker_run_argv,
    first_lost,
    image_for,
    is_phase,
    kv_compare,
    lab_cpu_ray,
    layouts_of,
    lost_message,
    nodes_from_hostvars,
    parse_kv_log,
    phase_lost_message,
    pin_errors,
    ray_image_errors,
    render_containers,
    request_errors,
    serving_errors,
    serving_plan,
    unreachable_hosts,
    vllm_args,
    with_memory_args,
)
from lab.lab import REGISTRY_ADDR
from tests.support.catalog import LAB_DIGEST, LAB_PINS, lab_nodes, merged_catalog

ROOT = Path(__file__).resolve().parents[4]
DIGEST, PINS, nodes = LAB_DIGEST, LAB_PINS, lab_nodes


@pytest.fixture(scope="module")
def catalog():
    """gb10_catalog on the lab: the built-in entries and the lab's tiny models (gb10_catalog_extra)."""
    return merged_catalog()


def test_nodes_from_hostvars():
    hv = {"a": {"ansible_host": "10.0.0.1", "gb10_fabric_twins": [{"interface": "enp1s0f1np1"}],
                "gb10_fabric_addresses": {"enp1s0f1np1": "192.168.100.11/24"}},
          "b": {"ansible_host": "10.0.0.2"}}
    got = nodes_from_hostvars(["a", "b"], hv)
    assert [{k: n[k] for k in ("host", "mgmt_ip", "fabric_ip")} for n in got] == [
        {"host": "a", "mgmt_ip": "10.0.0.1", "fabric_ip": "192.168.100.11"},
        {"host": "b", "mgmt_ip": "10.0.0.2", "fabric_ip": "10.0.0.2"},
    ]
    # nccl_env's view of the node (rack.node_fabric): its socket interface and the address on it
    assert got[0]["fabric"]["socket_ifname"] == "enp1s0f1np1" and got[0]["fabric"]["node_ip"] == "192.168.100.11"
    assert got[0]["nccl_env"] == {}


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


def test_gpu_multinode_ray_executor_with_flags(catalog):
    entry = dict(catalog["qwen3.5-397b-a17b-fp8"])
    entry["image"] = dict(entry["image"], digest=DIGEST, ray="2.58.0")
    # The catalog's CUDA entries leave the memory flags to the planner (memory_mode bytes): the serving
    # play puts its vllm_memory_args into the launch; here a utilization stands for them.
    entry["launch"] = dict(entry["launch"], gpu_memory_utilization=0.9)
    # multi-node defaults to native (what the lab proves across nodes); Ray on request
    native = serving_plan("qwen3.5-397b-a17b-fp8", {"qwen3.5-397b-a17b-fp8": entry}, nodes(), {}, {"gpus": "all"})
    assert native["executor"] == "native" and len(native["containers"]) == 4
    assert "--distributed-executor-backend" not in native["containers"][0]["args"]
    plan = serving_plan("qwen3.5-397b-a17b-fp8", {"qwen3.5-397b-a17b-fp8": entry}, nodes(), {},
                        {"gpus": "all", "ray_tmp": "/var/lib/gb10/ray", "executor": "ray"})
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


def test_lab_cpu_ray_pin_allows_the_ray_executor_on_the_cpu_build(catalog):
    """The lab pin says cpu_ray: true (the image carries the lab-only shim): the CPU build may use the Ray
    executor; vLLM runs only on the head, Ray places one worker per serving node (--num-gpus 1 there)."""
    pins = {"lab-vllm-cpu": dict(PINS["lab-vllm-cpu"], ray="2.58.0", cpu_ray=True)}
    plan = serving_plan("tiny-qwen3", catalog, nodes(), pins, {"executor": "ray"})
    assert plan["executor"] == "ray" and plan["hosts"] == ["gx10-1", "gx10-2"]
    assert len(plan["containers"]) == 1
    assert plan["containers"][0]["args"][-6:-4] == ["--distributed-executor-backend", "ray"]
    assert plan["ray"]["gpu_hosts"] == ["gx10-1", "gx10-2"]
    gpus = {c["host"]: c["command"][c["command"].index("--num-gpus") + 1] for c in plan["ray"]["containers"]}
    assert gpus == {"gx10-1": "1", "gx10-2": "1", "gx10-3": "0", "gx10-4": "0"}
    # The driver must see the raylet's process (Ray finds its node by the process list) and its address.
    argv = plan["containers"][0]["argv"]
    assert argv[argv.index("--pid") + 1] == "host"
    assert plan["containers"][0]["env"]["RAY_NODE_IP_ADDRESS"] == plan["head_ip"]
    # Each worker binds its CPU threads in its Ray container (by rank); the driver sets none (vLLM copies it).
    assert "VLLM_CPU_OMP_THREADS_BIND" not in plan["containers"][0]["env"]
    binds = {c["host"]: c["env"].get("VLLM_CPU_OMP_THREADS_BIND") for c in plan["ray"]["containers"]}
    assert binds == {"gx10-1": "auto", "gx10-2": "auto", "gx10-3": None, "gx10-4": None}
    ray_head = plan["ray"]["containers"][0]
    assert "--env" in ray_head["argv"] and "VLLM_CPU_OMP_THREADS_BIND=auto" in ray_head["argv"]
    by_rank = serving_plan("tiny-qwen3", catalog, nodes(), pins, {"executor": "ray", "cpu_threads_bind": "by_rank"})
    assert [c["env"].get("VLLM_CPU_OMP_THREADS_BIND") for c in by_rank["ray"]["containers"]] == ["0", "1", None, None]
    assert by_rank["ray"]["containers"][1]["labels"] != plan["ray"]["containers"][1]["labels"]
    # The workers see the model at the head's path, and the caches.
    assert "/srv/gb10/models:/models:ro" in plan["ray"]["containers"][1]["mounts"]
    # Native stays the entry's default.
    assert serving_plan("tiny-qwen3", catalog, nodes(), pins)["executor"] == "native"


@pytest.mark.parametrize("pins", [
    PINS,                                                                  # no cpu_ray
    {"lab-vllm-cpu": dict(PINS["lab-vllm-cpu"], cpu_ray="true")},          # a string is not true
    {"lab-vllm-cpu": dict(PINS["lab-vllm-cpu"], cpu_ray=False)},
    {},
])
def test_lab_cpu_ray_needs_a_pin_that_says_true(pins):
    entry = {"serving": {"image_pin": "lab-vllm-cpu"}}
    assert lab_cpu_ray("tiny-qwen3", entry, pins) is False
    assert lab_cpu_ray("tiny-qwen3", entry, {"tiny-qwen3": {"cpu_ray": True}}) is True


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
    assert cmd[:2] == ["sh", "-c"] and cmd[5] == "http://192.168.100.11:8001/health"
    assert cmd[6:8] == ["vllm", "serve"] and cmd[8:] == follower["args"]
    assert follower["argv"][-len(cmd):] == cmd
    assert "/health" not in cmd[2] and "SIGTERM" in cmd[4]
    off = serving_plan("tiny-qwen3", catalog, nodes(), PINS, {"follower_watchdog": False})
    assert off["containers"][1]["command"][:2] == ["vllm", "serve"]
    assert off["hash"] != plan["hash"]


def test_vllm_listens_behind_the_proxy(catalog):
    """vLLM never binds 0.0.0.0 or the API port: the proxy owns the API port (#14); vLLM listens on the
    head's fabric address in native mode (the followers' watchdog reads it), else on 127.0.0.1."""
    plan = serving_plan("tiny-qwen3", catalog, nodes(), PINS)
    head = plan["containers"][0]
    assert plan["executor"] == "native"
    assert head["args"][-4:] == ["--host", "192.168.100.11", "--port", "8001"]
    assert (plan["backend_host"], plan["backend_port"], plan["api_port"]) == ("192.168.100.11", 8001, 8000)
    assert plan["endpoint"] == "http://10.77.0.11:8000/v1"
    single = serving_plan("tiny-llama", catalog, nodes(), PINS, {"backend_port": 9100})
    assert single["executor"] == "single"
    assert single["containers"][0]["args"][-4:] == ["--host", "127.0.0.1", "--port", "9100"]
    tls = serving_plan("tiny-qwen3", catalog, nodes(), PINS, {"api_tls": True})
    assert tls["endpoint"] == "https://10.77.0.11:8000/v1" and tls["hash"] == plan["hash"]
    for p in (plan, single, tls):
        assert "0.0.0.0" not in " ".join(" ".join(c["argv"]) for c in p["containers"])


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


# ------------------------------------------------------------------------------- the rack (issue 12)
LAB = json.loads((ROOT / "tests/unit/fixtures/serving/lab-before-rack.json").read_text())
# The lab's entries as the lab's inventory adds them now (gb10_catalog_extra from lab/models/catalog.yml):
# they must plan what the fixture's catalog (recorded when they were built in) planned.
LAB_CATALOG = merged_catalog()
SWITCH_DEFAULTS = yaml.safe_load((ROOT / "roles/switch/defaults/main.yml").read_text())
RAY_LAB = {"enabled": True, "container": "gb10-ray", "port": 6379, "metrics_port": 8080, "restart_policy": "unless-stopped",
           "env_files": ["/etc/gb10/serving.env"], "env": {"RAY_memory_monitor_refresh_ms": "0", "RAY_DEDUP_LOGS": "0"},
           "ulimits": ["memlock=8388608", "nofile=20000:20000"], "ipc": "host", "shm_size": "", "tmp": "/var/lib/gb10/ray",
           "start_args": ["--disable-usage-stats"], "head_args": ["--include-dashboard=false"]}
NCCL = {"debug": "INFO", "debug_subsys": "INIT,NET", "buffsize": 524288, "buffsize_min_nodes": 4, "switch": True}


# The lab entry that names its image by tag only (lab/models/catalog.yml).
TAG_ONLY = "tiny-llama"


def test_the_lab_entries_moved_unchanged():
    """Out of the built-in catalog into the lab's inventory: the same settings; `lab: true` became
    `weights: {source: controller}` and the config moved to lab/models/."""
    for name, before in LAB["catalog"].items():
        now = {k: v for k, v in LAB_CATALOG[name].items() if k not in ("config", "weights", "origin")}
        then = {k: v for k, v in before.items() if k not in ("config", "lab")}
        if name == TAG_ONLY:  # names the lab image by its release tag now (pin.yml pins it on the lab)
            assert now.pop("image") == {"repository": f"{REGISTRY_ADDR}/gb10/vllm-cpu", "tag": "0.32.0", "digest": ""}
            assert then.pop("image") == {"repository": "", "tag": "", "digest": ""}
            assert then.pop("serving") == {"image_pin": "lab-vllm-cpu"} and "serving" not in now
        assert now == then, name
        assert LAB_CATALOG[name]["weights"]["source"] == "controller"
        assert (ROOT / LAB_CATALOG[name]["config"]).read_text() == (ROOT / "lab" / "models" / Path(before["config"]).parent.name
                                                                   / "config.json").read_text()


def lab_nodes():
    return nodes_from_hostvars(list(LAB["hostvars"]), LAB["hostvars"])


def play_options(**over):
    """What roles/vllm_serve/tasks/plan.yml passes now, with the lab's settings."""
    opts = dict(LAB["options"])
    for old in ("ray_tmp", "ray_port"):
        opts.pop(old)
    opts.update({"gpus": "auto", "devices": "auto", "cap_add": "auto", "node_count": "", "ray": RAY_LAB,
                 "roce": roce_class({}, {}, SWITCH_DEFAULTS), "nccl": NCCL, "render": False})
    opts.update(over)
    return opts


@pytest.mark.parametrize("model", sorted(LAB["plans"]))
@pytest.mark.parametrize("with_new_options", [False, True])
def test_the_lab_runs_exactly_the_containers_it_ran_before(model, with_new_options):
    """The lab's CPU path: the same vLLM argv (and hash label) as before the rack settings, with the options
    the play passes now (auto GPU/RDMA, Ray, RoCE class, NCCL settings) as with the old ones."""
    opts = play_options() if with_new_options else LAB["options"]
    # tiny-llama, served by tag, runs what pin.yml pinned: the lab image under a pin of the model's own name.
    pins = dict(LAB["pins"], **{TAG_ONLY: LAB["pins"]["lab-vllm-cpu"]})
    plan = serving_plan(model, LAB_CATALOG, lab_nodes(), pins, opts)
    want = LAB["plans"][model]
    assert plan["hash"] == want["hash"]
    assert [{"host": c["host"], "role": c["role"], "argv": c["argv"]} for c in plan["containers"]] == want["containers"]


def _old_ray_argv(node: dict, head: dict, image: str) -> list[str]:
    """The Ray container argv of roles/ray_cluster before the serving plan built it (the lab's settings)."""
    ip, head_ip = node["fabric_ip"], head["fabric_ip"]
    argv = ["docker", "run", "--detach", "--pull", "never", "--name", "gb10-ray", "--network", "host", "--ipc", "host",
            "--restart", "unless-stopped", "--shm-size", "1g", "--label", "gb10.ray.hash=OLD",
            "--label", f"gb10.ray.role={'head' if node is head else 'worker'}", "--volume", "/var/lib/gb10/ray:/tmp/ray",
            "--ulimit=memlock=8388608", "--ulimit=nofile=20000:20000", "--env-file=/etc/gb10/serving.env",
            "--env=RAY_memory_monitor_refresh_ms=0", "--env=RAY_DEDUP_LOGS=0", f"--env=RAY_NODE_IP_ADDRESS={ip}",
            f"--env=RAY_OVERRIDE_NODE_IP_ADDRESS={ip}", f"--env=VLLM_HOST_IP={ip}", image,
            "ray", "start", "--block", "--node-ip-address", ip]
    argv += (["--head", "--port", "6379", "--include-dashboard=false"] if node is head
             else ["--address", f"{head_ip}:6379"])
    return argv + ["--disable-usage-stats"]


# The one change since: Ray's metrics on a fixed port on every node (ray_cluster_metrics_port, scraped by
# roles/monitoring's ray job).
RAY_METRICS = ["--metrics-export-port", "8080"]


def _docker_options(argv: list[str]) -> tuple[set, str, list[str]]:
    """(options as a set, with '--opt=value' and '--opt value' alike; the image; the command)."""
    takes_value = {"--name", "--network", "--ipc", "--restart", "--shm-size", "--label", "--volume", "--ulimit",
                   "--env", "--env-file", "--pull", "--gpus", "--device", "--cap-add"}
    opts, i = set(), 2
    while i < len(argv) and argv[i].startswith("--"):
        if "=" in argv[i] and argv[i].split("=", 1)[0] in takes_value:
            opts.add(tuple(argv[i].split("=", 1)))
            i += 1
        elif argv[i] in takes_value:
            opts.add((argv[i], argv[i + 1]))
            i += 2
        else:
            opts.add((argv[i],))
            i += 1
    return opts, argv[i], argv[i + 1:]


def test_the_lab_ray_containers_are_the_ones_it_ran_before():
    """Same options, image and command as the role built before the plan; only the hash label's value and --shm-size (which
    Docker ignores with --ipc host) differ, and the order of the options."""
    nodes = lab_nodes()
    plan = serving_plan("tiny-qwen3", LAB_CATALOG, nodes, LAB["pins"], play_options())
    assert [c["host"] for c in plan["ray"]["containers"]] == [n["host"] for n in nodes]
    for node, c in zip(nodes, plan["ray"]["containers"]):
        new_opts, new_image, new_cmd = _docker_options(c["argv"])
        old_opts, old_image, old_cmd = _docker_options(_old_ray_argv(node, nodes[0], plan["image_ref"]) + RAY_METRICS)
        strip = {("--label", "gb10.ray.hash=OLD"), ("--shm-size", "1g")}
        assert new_opts - {("--label", f"gb10.ray.hash={c['labels']['gb10.ray.hash']}")} == old_opts - strip
        assert (new_image, new_cmd) == (old_image, old_cmd)


@pytest.mark.parametrize(("metrics_port", "start_args", "want"), [
    (9300, ["--disable-usage-stats"], ["--metrics-export-port", "9300"]),
    (0, ["--disable-usage-stats"], []),
    (8080, ["--metrics-export-port=9400"], []),  # the operator's own flag wins, never twice
])
def test_ray_metrics_export_port(metrics_port, start_args, want):
    """Every Ray container (head and workers) exports its metrics on ray_cluster_metrics_port; 0 pins none."""
    ray = dict(RAY_LAB, metrics_port=metrics_port, start_args=start_args)
    plan = serving_plan("tiny-qwen3", LAB_CATALOG, lab_nodes(), LAB["pins"], play_options(ray=ray))
    assert len(plan["ray"]["containers"]) == len(lab_nodes())
    for c in plan["ray"]["containers"]:
        cmd = c["command"]
        got = cmd[cmd.index("--metrics-export-port"):cmd.index("--metrics-export-port") + 2] \
            if "--metrics-export-port" in cmd else []
        assert got == want
        assert sum(a.startswith("--metrics-export-port") for a in cmd) == (1 if metrics_port else 0)


@pytest.mark.parametrize(("metrics_port", "words"), [
    (8000, "ray_cluster_metrics_port 8000 is also vllm_serve_api_port;"),
    (8001, "ray_cluster_metrics_port 8001 is also vllm_serve_backend_port;"),
    (6379, "ray_cluster_metrics_port 6379 is also ray_cluster_port;"),
    (70000, "ray_cluster_metrics_port is 70000; use a TCP port"),
    ("eighty", "ray_cluster_metrics_port is 'eighty'; use a TCP port"),
])
def test_ray_metrics_port_must_be_its_own(metrics_port, words):
    """A metrics port that another serving port already uses would stop Ray's agent or vLLM: refused in one sentence."""
    with pytest.raises(ServingError) as err:
        serving_plan("tiny-qwen3", LAB_CATALOG, lab_nodes(), LAB["pins"],
                     play_options(ray=dict(RAY_LAB, metrics_port=metrics_port)))
    assert any(words in e for e in err.value.errors), err.value.errors


def sample_nodes(name="sample"):
    hosts = yaml.safe_load((ROOT / f"inventory/{name}/hosts.yml").read_text())["all"]["children"]["gx10"]["hosts"]
    group = yaml.safe_load((ROOT / f"inventory/{name}/group_vars/all/main.yml").read_text())
    hv = {h: {**group, **v} for h, v in hosts.items()}
    return nodes_from_hostvars(list(hv), hv)


def cuda_entry(catalog, model, **image):
    entry = json.loads(json.dumps(catalog[model]))
    entry["image"].update({"digest": DIGEST, "ray": "2.58.0", **image})
    return entry


def test_layouts_pick_the_largest_known_for_the_inventory(catalog):
    entry = catalog["qwen3.5-397b-a17b-fp8"]
    assert choose_layout("m", entry, 4)[0]["nodes"] == 4
    layout, errors = choose_layout("m", entry, 8)
    assert (layout["nodes"], layout["tp"], layout["pp"], errors) == (8, 4, 2, [])
    assert choose_layout("m", entry, 6)[0]["nodes"] == 4
    assert choose_layout("m", entry, 2)[0]["nodes"] == 4  # too few nodes: the plan says it needs 4
    assert choose_layout("m", entry, 8, "4")[0]["nodes"] == 4
    assert "knows no layout for 6 nodes (-e nodes); use one of 4, 8" in choose_layout("m", entry, 8, 6)[1][0]
    assert "-e nodes=eight is not a whole number" in choose_layout("m", entry, 8, "eight")[1][0]
    # the lab's entries keep serving.nodes
    assert choose_layout("tiny-qwen3", LAB_CATALOG["tiny-qwen3"], 4)[0]["nodes"] == 2


def test_layouts_are_checked():
    entry = {"launch": {"tensor_parallel_size": 4, "pipeline_parallel_size": 1},
             "serving": {"layouts": {4: {"tp": 2, "pp": 2}, 8: {"tp": 4, "pp": 1}, "x": {"tp": 1, "pp": 1}}}}
    errors = serving_errors("m", entry, {"num_attention_heads": 6, "num_hidden_layers": 1})
    assert any("'x' is not a node count" in e for e in errors)
    assert any("[8]: tp 4 x pp 1 = 4 GPUs, but 8 GB10 nodes" in e for e in errors)
    assert any("[4] says tp 2 x pp 2 but gb10_catalog['m'].launch says 4 x 1" in e for e in errors)
    ok = {"launch": {"tensor_parallel_size": 4}, "serving": {"layouts": {8: {"tp": 4, "pp": 2}}}}
    assert serving_errors("m", ok, {"num_attention_heads": 6, "num_hidden_layers": 1}) == [
        "gb10_catalog['m'].serving.layouts[8]: tp 4 does not divide the model's 6 attention heads.",
        "gb10_catalog['m'].serving.layouts[8]: pp 2 exceeds the model's 1 decoder layers."]
    assert "image.ray is 2.5" in serving_errors("m", {"image": {"ray": 2.5}})[0]


def test_every_catalog_entry_passes_the_serving_checks(catalog):
    from ansible_collections.gb10.cluster.plugins.module_utils.catalog import load_model_config, text_config

    for name, entry in catalog.items():
        text = text_config(load_model_config(str(ROOT / entry["config"])))
        assert serving_errors(name, entry, text) == [], name
        if entry["platform"] == "cuda" and entry["min_nodes"] >= 4:  # item 6: known layouts for 4 and 8 nodes
            layouts, _ = layouts_of(name, entry)
            assert {4, 8} <= set(layouts), name
            assert all(lay["source"] for lay in layouts.values()), name


def test_the_ray_executor_is_refused_on_an_image_without_ray(catalog):
    entry = json.loads(json.dumps(catalog["qwen3.5-397b-a17b-fp8"]))
    entry["image"]["digest"] = DIGEST
    with pytest.raises(ServingError) as exc:
        serving_plan("qwen3.5-397b-a17b-fp8", {"qwen3.5-397b-a17b-fp8": entry}, sample_nodes(), {}, {"executor": "ray"})
    msg = " ".join(exc.value.errors)
    assert ("the Ray executor needs Ray in the image, but nvcr.io/nvidia/vllm:26.10-py3 carries none "
            "(gb10_catalog['qwen3.5-397b-a17b-fp8'].image.ray is false)") in msg
    assert "playbooks/ray_image.yml -e model=qwen3.5-397b-a17b-fp8" in msg and "vllm_serve_executor=native" in msg
    # the native executor (the default) needs no Ray: served, and no Ray container is planned
    plan = serving_plan("qwen3.5-397b-a17b-fp8", {"qwen3.5-397b-a17b-fp8": entry}, sample_nodes(), {})
    assert plan["executor"] == "native" and plan["ray"]["containers"] == [] and "carries no Ray" in plan["ray"]["reason"]
    # a pin that does not say
    unknown = ray_image_errors("m", {"repository": "r", "tag": "t", "source": "gb10_image_pins['p']"}, True)
    assert "gb10_image_pins['p'] does not say whether r:t carries it (no ray: field)" in unknown[0]
    # Ray asked off with the Ray executor
    with pytest.raises(ServingError) as exc:
        serving_plan("qwen3.5-397b-a17b-fp8", {"qwen3.5-397b-a17b-fp8": cuda_entry(catalog, "qwen3.5-397b-a17b-fp8")},
                     sample_nodes(), {}, {"executor": "ray", "ray": {"enabled": False}})
    assert "-e serve_ray=false" in exc.value.errors[0]


def _env(argv: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in (argv[i + 1] for i, a in enumerate(argv) if a == "--env"))


@pytest.mark.parametrize("inventory", ["sample", "sample-8"])
def test_rack_ray_plan_one_worker_per_serving_node(catalog, inventory):
    nodes = sample_nodes(inventory)
    model = "qwen3.5-397b-a17b-fp8"
    plan = serving_plan(model, {model: cuda_entry(catalog, model)}, nodes, {},
                        play_options(ray=dict(RAY_LAB, ulimits=["memlock=-1", "nofile=1048576:1048576"]),
                                     ulimits=["memlock=-1", "nofile=1048576:1048576"], ipc="host", shm_size="",
                                     executor="ray"))
    count = len(nodes)
    assert plan["nodes"] == count and plan["tensor_parallel_size"] * plan["pipeline_parallel_size"] == count
    assert plan["ray"]["gpu_hosts"] == [n["host"] for n in nodes]
    head = plan["containers"][0]
    assert len(plan["containers"]) == 1 and head["host"] == "gx10-1"
    assert _env(head["argv"])["RAY_ADDRESS"] == "192.168.100.11:6379"
    for c in plan["ray"]["containers"]:
        cmd = c["command"]
        assert cmd[cmd.index("--num-gpus") + 1] == "1"
        assert "/srv/gb10/models:/models:ro" in c["mounts"] and "/srv/gb10/cache:/root/.cache" in c["mounts"]
        assert ("--head" in cmd) == (c["host"] == "gx10-1")
    # -e nodes=4 on the 8-node rack: Ray on all eight, GPUs for vLLM only on the four that serve
    if count == 8:
        four = serving_plan(model, {model: cuda_entry(catalog, model)}, nodes, {}, play_options(node_count="4", executor="ray"))
        gpus = {c["host"]: c["command"][c["command"].index("--num-gpus") + 1] for c in four["ray"]["containers"]}
        assert gpus == {f"gx10-{i}": "1" if i <= 4 else "0" for i in range(1, 9)}


def test_render_objects_carry_the_env_file_and_memory_note(catalog):
    nodes = sample_nodes()
    model = "qwen3.5-397b-a17b-fp8"
    plan = serving_plan(model, {model: cuda_entry(catalog, model)}, nodes, {}, play_options(executor="ray"))
    objs = render_containers(plan, nodes, {"measured": False, "note": "not measured: GB10 defaults"},
                             roce_class({}, {}, SWITCH_DEFAULTS))
    assert [o["role"] for o in objs] == ["api", "ray-head", "ray-worker", "ray-worker", "ray-worker"]
    for o in objs:
        env = _env(o["argv"])
        for path, content in o["env_files"].items():
            assert path == "/etc/gb10/serving.env" and content.items() <= env.items()
        assert any("not measured" in n for n in o["notes"])
        assert o["host_setup"]["roce_qos"][0] == ["mlnx_qos", "-i", "enp1s0f1np1", "--trust", "dscp"]
    assert objs[0]["memory"]["measured"] is False and "memory" not in objs[1]


def test_docker_run_argv_is_one_function_for_every_container(catalog):
    plan = serving_plan("tiny-qwen3", LAB_CATALOG, lab_nodes(), LAB["pins"], play_options())
    for c in plan["containers"] + plan["ray"]["containers"]:
        assert docker_run_argv(c) == c["argv"]
NODES = [{"host": "gx10-1", "mgmt_ip": "10.77.0.11"}, {"host": "gx10-2", "mgmt_ip": "10.77.0.12"}]
ANSWERED = {"changed": False, "results": [{"item": "gx10-1", "rc": 0}, {"item": "gx10-2", "rc": 0}]}
HEAD_ANSWERED = {"changed": False, "path": "/etc/gb10"}
HEAD_LOST = {"unreachable": True, "changed": False, "msg": "timed out"}
SKIPPED = {"changed": False, "skipped": True, "skip_reason": "Conditional result was False"}


def _looped(*lost):
    return {"changed": False, "unreachable": bool(lost), "results": [
        {"item": h, "unreachable": True} if h in lost else {"item": h, "rc": 0} for h in ("gx10-1", "gx10-2")]}


def test_unreachable_hosts_of_a_phase():
    # plain registered results: one default host for those without a loop
    assert unreachable_hosts([ANSWERED, HEAD_LOST, _looped("gx10-2", "gx10-1")], "gx10-1") == ["gx10-1", "gx10-2"]
    assert unreachable_hosts([ANSWERED, HEAD_ANSWERED, SKIPPED], "gx10-1") == []
    # {step, result, host}: each task its own default host
    phase = [
        {"step": "writing the API key", "result": HEAD_LOST, "host": "gx10-2"},
        {"step": "creating folders", "result": _looped("gx10-1")},
    ]
    assert unreachable_hosts(phase) == ["gx10-2", "gx10-1"]
    assert unreachable_hosts([]) == []


def test_first_lost_names_the_first_step_that_lost_a_node():
    phase = [
        {"step": "dropping caches for m", "result": ANSWERED},
        {"step": "measuring memory for m", "result": _looped("gx10-2")},
        {"step": "later", "result": _looped("gx10-1")},
    ]
    assert first_lost(phase) == ("measuring memory for m", ["gx10-2"])
    assert first_lost(phase[:1]) == ("", [])
    assert first_lost([{"step": "writing the API key", "result": HEAD_LOST}], "gx10-1") == (
        "writing the API key", ["gx10-1"])


def test_phase_lost_message_is_the_message_of_the_step_that_lost_the_node():
    phase = [
        {"step": "writing the API key for m", "result": HEAD_ANSWERED, "host": "gx10-1"},
        {"step": "writing the API key for m", "result": SKIPPED, "host": "gx10-1"},
        {"step": "creating folders for m", "result": _looped("gx10-2")},
    ]
    assert phase_lost_message(phase, NODES) == "gx10-2 (10.77.0.12) stopped answering over SSH while creating folders for m."
    phase[0]["result"] = HEAD_LOST
    assert phase_lost_message(phase, NODES) == "gx10-1 (10.77.0.11) stopped answering over SSH while writing the API key for m."
    assert phase_lost_message(phase[1:2], NODES) == ""


def test_is_phase():
    assert is_phase([{"step": "s", "result": ANSWERED}])
    assert not is_phase(["gx10-1"])
    assert not is_phase([])
    assert not is_phase([ANSWERED])


def test_filters_take_hosts_or_a_phase():
    phase = [{"step": "dropping caches for tiny-llama", "result": _looped("gx10-1")},
             {"step": "measuring memory for tiny-llama", "result": {"changed": False, "results": []}}]
    assert filters.unreachable_hosts(phase) == ["gx10-1"]
    assert filters.lost_message(phase, NODES) == (
        "gx10-1 (10.77.0.11) stopped answering over SSH while dropping caches for tiny-llama.")
    assert filters.lost_message(["gx10-2"], NODES, "stopping vLLM") == (
        "gx10-2 (10.77.0.12) stopped answering over SSH while stopping vLLM.")
    assert filters.unreachable_hosts(HEAD_LOST, "gx10-1") == ["gx10-1"]
    assert set(filters.FilterModule().filters()) >= {"unreachable_hosts", "lost_message"}


# ---------------------------------------------------------------- serve.yml's request checks
def test_request_errors() -> None:
    catalog = {"a": {}, "b": {}}
    assert request_errors("a", catalog, ["n1"], "gx10", 24) == []
    assert request_errors("", catalog, ["n1"], "gx10", 24) == [
        "No model given: run serve.yml -e model=<name> with one of a, b."]
    assert request_errors("c", catalog, ["n1"], "gx10", 24) == [
        "Unknown model 'c' (-e model): use one of a, b."]
    no_hosts = request_errors("a", catalog, [], "rack", 24)
    assert no_hosts == ["The inventory has no hosts in group 'rack' (serve_group): put the GB10 nodes there "
                        "or name their group with -e serve_group=<group>."]
    assert request_errors("a", catalog, ["n1"], "gx10", 0)[0].startswith("vllm_serve_api_key is not set:")
    assert request_errors("a", catalog, ["n1"], "gx10", 15) == [
        "vllm_serve_api_key has 15 characters (inventory, ansible-vault); use a key of at least 16, "
        "e.g. openssl rand -hex 24."]


def test_pin_errors() -> None:
    entry = {"serving": {"image_pin": "lab-vllm-cpu"}}
    assert pin_errors("m", entry, PINS) == []
    assert pin_errors("m", entry, None) == []
    assert pin_errors("m", entry, {"other": "x:y"}) == []  # not this model's pin
    assert pin_errors("m", entry, {"m": "repo:tag"}) == [
        "gb10_image_pins['m'] is 'repo:tag' (inventory), not a mapping; write it as "
        "{repository: <registry/name>, tag: <tag>, digest: 'sha256:<64 hex>'}."]
    assert pin_errors("m", entry, ["x"])[0].startswith("gb10_image_pins is ['x'] (inventory)")


def test_recipe_flags_and_env_reach_the_launch_argv(catalog):
    """An entry's vllm_flags land in vLLM's argv after the launch settings, its env in the container's."""
    entry = dict(catalog["tiny-llama"], vllm_flags={"enforce-eager": True, "attention-backend": "TORCH_SDPA",
                                                    "compilation-config": {"cudagraph_mode": "none"}},
                 env={"VLLM_CPU_KVCACHE_SPACE": "1", "FLA_USE_TMA": "0"})
    plan = serving_plan("tiny-llama", dict(catalog, **{"tiny-llama": entry}), nodes(), PINS)
    (api,) = plan["containers"]
    args = api["args"]
    at = args.index("--enforce-eager")
    assert args[at:at + 5] == ["--enforce-eager", "--attention-backend", "TORCH_SDPA",
                               "--compilation-config", '{"cudagraph_mode":"none"}']
    assert at > args.index("--load-format") and at < args.index("--host")
    assert "--env" in api["argv"] and "FLA_USE_TMA=0" in api["argv"]
    assert plan["hash"] != serving_plan("tiny-llama", catalog, nodes(), PINS)["hash"], "a flag changes the spec"
# ------------------------------------------------------------------------------ the planner's memory flags
def _cuda_plan(catalog, executor="ray", utilization=0.9):
    entry = dict(catalog["qwen3.5-397b-a17b-fp8"])
    entry["image"] = dict(entry["image"], digest=DIGEST, ray="2.58.0")
    entry["launch"] = dict(entry["launch"], gpu_memory_utilization=utilization)
    return serving_plan("qwen3.5-397b-a17b-fp8", {"qwen3.5-397b-a17b-fp8": entry}, nodes(), {},
                        {"gpus": "all", "executor": executor})


def _flag_values(args, flag):
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


@pytest.mark.parametrize("executor", ["ray", "native"])
def test_memory_args_replace_the_catalogs_in_every_vllm_command(catalog, executor):
    plan = _cuda_plan(catalog, executor)
    memory = {"kv_cache_memory_bytes": 12_884_901_888, "gpu_memory_utilization": 0.8}
    out = with_memory_args(plan, memory)
    assert out["hash"] == plan["hash"], "the flags follow the measurement; the hash names the catalog's settings"
    assert len(out["containers"]) == len(plan["containers"]) == (4 if executor == "native" else 1)
    for old, new in zip(plan["containers"], out["containers"]):
        for where in (new["args"], new["command"], new["argv"]):
            assert _flag_values(where, "--kv-cache-memory-bytes") == ["12884901888"]
            assert _flag_values(where, "--gpu-memory-utilization") == ["0.8"]
        # everything else unchanged, in the same order
        strip = {"--kv-cache-memory-bytes", "--gpu-memory-utilization"}
        kept = [a for i, a in enumerate(new["args"]) if a not in strip and (i == 0 or new["args"][i - 1] not in strip)]
        was = [a for i, a in enumerate(old["args"]) if a not in strip and (i == 0 or old["args"][i - 1] not in strip)]
        assert kept == was
        assert new["argv"][: new["argv"].index(new["image"])] == old["argv"][: old["argv"].index(old["image"])]
        assert new["argv"] == docker_run_argv(new)
        assert "--kv-cache-memory-bytes 12884901888" in new["command_line"]
        if new["role"] == "follower":  # still under the head watchdog
            assert new["command"][:2] == ["sh", "-c"] and new["command"][-len(new["args"]):] == new["args"]
    assert out["by_host"][out["head"]]["args"] == out["containers"][0]["args"]
    assert plan["containers"][0]["args"].count("--kv-cache-memory-bytes") == 0, "the plan itself is not changed"


def test_memory_args_fraction_mode_drops_the_kv_bytes(catalog):
    plan = _cuda_plan(catalog)
    plan = with_memory_args(plan, {"kv_cache_memory_bytes": 1 << 30, "gpu_memory_utilization": 0.7})
    out = with_memory_args(plan, {"gpu_memory_utilization": 0.75})
    args = out["containers"][0]["args"]
    assert "--kv-cache-memory-bytes" not in args and _flag_values(args, "--gpu-memory-utilization") == ["0.75"]
    assert "kv_cache_memory_bytes" not in out["launch"]


def test_memory_args_leave_the_cpu_build_alone(catalog):
    plan = serving_plan("tiny-qwen3", catalog, nodes(), PINS)
    out = with_memory_args(plan, {"kv_cache_memory_bytes": 1 << 30, "gpu_memory_utilization": 0.92})
    assert out["containers"] == plan["containers"], "the CPU build sizes its pool from VLLM_CPU_KVCACHE_SPACE"
    assert filters.serving_memory_args(plan, {}) == plan


def test_node_reads_splits_the_one_read_per_node():
    from ansible_collections.gb10.cluster.plugins.module_utils.serving import NODE_READ_MARK, node_reads

    m = f"\n{NODE_READ_MARK}\n"
    result = {"results": [
        {"item": "gx10-1", "rc": 0, "stdout": f"tiny abc api running{m}2{m}running r1{m}{{\"reason\": \"low\"}}{m}{{\"hash\": \"abc\"}}"
                                              f"{m}install ok installed\nenabled=enabled\nactive=active\n"
                                              f"{m}GPU KV cache size: 2,097,152 tokens\n"},
        {"item": "gx10-2", "rc": 0, "stdout": f"tiny abc worker running{m}0{m}running r1{m}{m}"},
        {"item": "gx10-3", "rc": 0, "stdout": f"{m}{m}{m}{m}"},  # nothing there
        {"item": "gx10-4", "unreachable": True, "msg": "ssh: connect timed out"},
    ]}
    got = node_reads(result)
    assert got["ps"]["results"] == [{"item": "gx10-1", "rc": 0, "stdout": "tiny abc api running"},
                                    {"item": "gx10-2", "rc": 0, "stdout": "tiny abc worker running"},
                                    {"item": "gx10-3", "rc": 0, "stdout": ""}]
    assert got["restarts"] == {"gx10-1": 2, "gx10-2": 0}
    assert got["ray"] == {"gx10-1": "running r1", "gx10-2": "running r1", "gx10-3": ""}
    assert [r["stdout"] for r in got["guard"]["results"]] == ['{"reason": "low"}', "", ""]
    assert got["record"] == {"gx10-1": '{"hash": "abc"}'}
    assert got["proxy"]["gx10-1"] == {"installed": True, "default_site": False, "enabled": True, "active": True}
    assert got["proxy"]["gx10-3"] == {"installed": False, "default_site": False, "enabled": False, "active": False}
    assert got["kv"] == {"gx10-1": "GPU KV cache size: 2,097,152 tokens"}
    # The guard's filter reads the split as it read the separate `cat` loop.
    from ansible_collections.gb10.cluster.plugins.filter.calibration import guard_stops
    assert guard_stops(got["guard"]) == [{"reason": "low", "node": "gx10-1"}]
    assert node_reads({}) == {"ps": {"results": []}, "guard": {"results": []}, "restarts": {}, "ray": {}, "record": {},
                              "proxy": {}, "kv": {}}
