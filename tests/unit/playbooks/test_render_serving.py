"""The rack contract (issue 12): playbooks/render_serving.yml renders, without contacting a host, every
container every node would run, and every container carries the contract (docs/rack-contract.md).

- the two reference racks (inventory/sample, inventory/sample-8) and EVERY built-in catalog entry
  (``-e model=all``; the lab's CPU entries are not built in: the lab's inventory adds them, with its
  image pin and CPU nodes, and the lab's own path is the last test here);
- serve.yml refuses the Ray executor on an image without Ray before any host, in one sentence naming the
  image and the fix, and lays a model over eight nodes with -e nodes=8;
- the lab's CPU path renders exactly the containers it ran before (tests/unit/fixtures/serving).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ansible_collections.gb10.cluster.plugins.module_utils import catalog as catalog_mod
from ansible_collections.gb10.cluster.plugins.module_utils import memfit
from ansible_collections.gb10.cluster.plugins.module_utils.pins import pin_record, pin_text
from tests.support.catalog import builtin_catalog, lab_extra, write_extra
from tests.support.playbooks import ROOT, offline_rack, run_playbook

DIGEST = "sha256:" + "ab" * 32
API_KEY = "k" * 24
SWITCH = yaml.safe_load((ROOT / "roles/switch/defaults/main.yml").read_text())
CATALOG = builtin_catalog()
RACK_MODELS = sorted(CATALOG)
LAB = json.loads((ROOT / "tests/unit/fixtures/serving/lab-before-rack.json").read_text())
PINNED = {"nvidia-vllm-26.10": {"repository": "registry.gb10.lan:5000/gb10/vllm-ray", "tag": "26.10-py3-ray2.58.0",
                                "digest": DIGEST, "ray": "2.58.0", "base": "nvcr.io/nvidia/vllm:26.10-py3"}}


def _touched(result) -> set[str]:
    return {e["event_data"].get("host") for e in result.events
            if e.get("event", "") in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable")
            and e["event_data"].get("host")}


def _failure(result) -> str:
    failed = [e for e in result.events if e.get("event") == "runner_on_failed" and not e["event_data"].get("ignore_errors")]
    assert failed, f"the run did not fail (status {result.status})"
    return str(failed[-1]["event_data"]["res"].get("msg"))


def _env(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--env")


def _values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def _inventory_hosts(name: str) -> dict[str, dict]:
    return yaml.safe_load((ROOT / "inventory" / name / "hosts.yml").read_text())["all"]["children"]["gx10"]["hosts"]


def check_contract(objs: list[dict], model: str, inventory: str, pinned: bool, multi: str = "native") -> None:
    """Every container of a rack render carries the contract of docs/rack-contract.md; ``multi`` is the
    executor expected for a multi-node layout (native by default, ray with -e vllm_serve_executor=ray)."""
    hosts = _inventory_hosts(inventory)
    group = yaml.safe_load((ROOT / "inventory" / inventory / "group_vars/all/main.yml").read_text())
    twins = group["gb10_fabric_twins"]
    entry = CATALOG[model]
    vllm = [o for o in objs if o["name"] == "gb10-vllm"]
    ray = [o for o in objs if o["name"] == "gb10-ray"]
    layout = vllm[0]["layout"]
    executor = vllm[0]["executor"]
    assert layout["tp"] * layout["pp"] == layout["nodes"], model
    known = {int(k) for k in entry["serving"]["layouts"]}
    assert layout["nodes"] == max(n for n in known if n <= len(hosts)), (model, layout)  # all eight when known
    assert [o["host"] for o in ray] == list(hosts), "one Ray container per node, the head first"
    assert [o["role"] for o in ray] == ["ray-head"] + ["ray-worker"] * (len(hosts) - 1)
    assert len(vllm) == (layout["nodes"] if executor == "native" else 1)
    assert executor == ("single" if layout["nodes"] == 1 else multi)
    head_ip = hosts[vllm[0]["host"]]["gb10_fabric_addresses"][twins[0]["interface"]].split("/")[0]
    for o in objs:
        argv, where = o["argv"], f"{model} {o['host']} {o['name']}"
        env = _env(argv)
        ip = hosts[o["host"]]["gb10_fabric_addresses"][twins[0]["interface"]].split("/")[0]
        assert argv[:6] == ["docker", "run", "--detach", "--pull", "never", "--name"], where
        # GPU, RDMA, memlock, IPC
        assert _values(argv, "--network") == ["host"] and _values(argv, "--ipc") == ["host"], where
        assert _values(argv, "--gpus") == ["all"], where
        assert _values(argv, "--device") == ["/dev/infiniband"], where
        assert _values(argv, "--cap-add") == ["IPC_LOCK"], where
        assert "memlock=-1" in _values(argv, "--ulimit") and "nofile=1048576:1048576" in _values(argv, "--ulimit"), where
        # NCCL / Gloo / UCX / Ray
        for key in ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "TP_SOCKET_IFNAME", "UCX_NET_DEVICES",
                    "OMPI_MCA_btl_tcp_if_include"):
            assert env[key] == twins[0]["interface"], (where, key)
        assert env["NCCL_IB_HCA"] == ",".join(t["rdma_device"] for t in twins), where
        assert env["NCCL_IB_SUBNET_AWARE_ROUTING"] == "1", where
        assert env["NCCL_IB_TC"] == str(SWITCH["switch_qos_roce_dscp"] * 4 + 2) == "106", where
        assert env.get("NCCL_BUFFSIZE") == ("524288" if layout["nodes"] >= 4 else None), where
        assert env["NCCL_DEBUG"] == "INFO" and env["NCCL_DEBUG_SUBSYS"] == "INIT,NET", where
        assert env["VLLM_HOST_IP"] == env["RAY_NODE_IP_ADDRESS"] == ip, where
        assert env["RAY_memory_monitor_refresh_ms"] == "0", where
        assert "NCCL_IB_GID_INDEX" not in env, where
        # Ray's token authentication: every container that runs Ray or talks to it (the Ray containers, and
        # vLLM's with the Ray executor) reads the token from the root-only file, never from argv or env
        talks_to_ray = o["name"] == "gb10-ray" or executor == "ray"
        assert (env.get("RAY_AUTH_MODE"), env.get("RAY_AUTH_TOKEN_PATH")) == (
            ("token", "/etc/gb10/ray-auth/token") if talks_to_ray else (None, None)), where
        assert ("/etc/gb10/ray-auth:/etc/gb10/ray-auth:ro" in _values(argv, "--volume")) is talks_to_ray, where
        assert "RAY_AUTH_TOKEN" not in env, where
        # the env file the argv passes says nothing else (same function as nccl_env)
        assert list(o["env_files"]) == ["/etc/gb10/serving.env"], where
        assert o["env_files"]["/etc/gb10/serving.env"].items() <= env.items(), where
        # the image: pinned by digest, or (not pinned yet) the tag and a note that serve.yml refuses it
        image = argv[argv.index(o["image"])]
        if pinned:
            assert image == f"registry.gb10.lan:5000/gb10/vllm-ray@{DIGEST}", where
            assert not any("not pinned" in n for n in o["notes"]), where
        else:
            assert image == "registry.gb10.lan:5000/gb10/vllm-ray:26.10-py3-ray2.58.0", where
            assert any("is not pinned by digest" in n for n in o["notes"]), where
        assert any("Node memory: not measured" in n for n in o["notes"]), where
        assert o["host_setup"]["roce_qos"][0] == ["mlnx_qos", "-i", twins[0]["interface"], "--trust", "dscp"], where
        if o["name"] == "gb10-vllm":
            mounts = _values(argv, "--volume")
            assert f"/srv/gb10/models/{model}:/models/{model}:ro" in mounts and "/srv/gb10/cache:/root/.cache" in mounts
            # Planning defaults (101 GiB available): the FP8 reference needs 94.9 GiB of weights per node
            # on 4 nodes and does not fit with the 8 GiB host floor (docs/plan.md); every other entry fits.
            expect_fit = not (model == "qwen3.5-397b-a17b-fp8" and layout["nodes"] == 4)
            assert o["memory"]["measured"] is False and o["memory"]["fits"] is expect_fit, where
            check_memory_flags(o, entry, layout, expect_fit, where)
            if executor == "ray":
                assert env["RAY_ADDRESS"] == f"{head_ip}:6379" and "/var/lib/gb10/ray:/tmp/ray" in mounts, where
                assert argv[argv.index("--distributed-executor-backend") + 1] == "ray"
        else:
            cmd = argv[argv.index(o["image"]) + 1:]
            assert cmd[:5] == ["ray", "start", "--block", "--node-ip-address", ip], where
            assert ("--head" in cmd) == (o["role"] == "ray-head"), where
            if o["role"] == "ray-worker":
                assert cmd[cmd.index("--address") + 1] == f"{head_ip}:6379", where
            serving_node = executor == "ray" and o["host"] in [h for h in hosts][: layout["nodes"]]
            assert cmd[cmd.index("--num-gpus") + 1] == ("1" if serving_node else "0"), where
            # the node memory guard stops a Ray container only when it hosts one of the model's workers
            labels = dict(v.split("=", 1) for v in _values(argv, "--label"))
            assert labels.get("gb10.ray.model") == (model if serving_node else None), where
            if executor == "ray":
                mounts = _values(argv, "--volume")
                assert "/srv/gb10/models:/models:ro" in mounts and "/srv/gb10/cache:/root/.cache" in mounts, where
                for key, value in (entry.get("env") or {}).items():
                    assert env[key] == value, (where, key)  # the workers' own environment has the model's


def check_memory_flags(o: dict, entry: dict, layout: dict, fits: bool, where: str) -> None:
    """A CUDA entry that fits starts with the planner's KV pool per rank in bytes and its admission-safe
    utilization (the one conversion, planner on the GB10 planning defaults), each flag once."""
    argv = o["argv"]
    params = catalog_mod.planner_args(entry, {"nodes": layout["nodes"], "tensor_parallel_size": layout["tp"],
                                              "pipeline_parallel_size": layout["pp"]}, str(ROOT))
    plan = memfit.plan_memory(params)
    if not fits:  # serve.yml refuses it: the catalog's flags are left as they are
        assert o["memory"]["vllm_memory_args"] == {}, where
        return
    assert plan["memory_mode"] == "bytes" and plan["kv_cache_memory_bytes_per_rank"] > 0, where
    assert _values(argv, "--kv-cache-memory-bytes") == [str(plan["kv_cache_memory_bytes_per_rank"])], where
    assert _values(argv, "--gpu-memory-utilization") == [f"{plan['gpu_memory_utilization']:g}"], where
    assert o["memory"]["kv_cache_memory_bytes_per_rank"] == plan["kv_cache_memory_bytes_per_rank"], where
    admission = [c for c in plan["checks"] if c["name"].startswith("admission")]
    assert admission and all(c["ok"] for c in admission), (where, admission)


# The 4-node rack renders the default executor (native for multi-node), the pinned 8-node rack the Ray
# executor (-e vllm_serve_executor=ray): both rack paths, two renders.
@pytest.mark.parametrize(("inventory", "pinned", "multi"), [("sample", False, "native"), ("sample-8", True, "ray")])
def test_render_every_catalog_model_on_the_sample_racks(tmp_path: Path, inventory: str, pinned: bool, multi: str) -> None:
    out = tmp_path / "render"
    extra = {"model": "all", "render_artifacts_dir": str(out)}
    if multi != "native":
        extra["vllm_serve_executor"] = multi
    if pinned:
        extra["gb10_image_pins"] = PINNED
    result = run_playbook(tmp_path, "playbooks/render_serving.yml", ROOT / "inventory" / inventory, extra)
    assert result.status == "successful", result.stdout.read()[-3000:]
    assert _touched(result) == {"localhost"}, "a render contacts no host"
    assert sorted(p.stem for p in out.glob("*.json")) == RACK_MODELS
    for model in RACK_MODELS:
        objs = json.loads((out / f"{model}.json").read_text())
        check_contract(objs, model, inventory, pinned, multi)
    if inventory == "sample-8":  # the 8-node rack: the 4-node models lay over all eight
        objs = json.loads((out / "qwen3.5-397b-a17b-fp8.json").read_text())
        assert {o["host"] for o in objs} == {f"gx10-{i}" for i in range(1, 9)}
        assert objs[0]["layout"] == {"nodes": 8, "tp": 4, "pp": 2, "rule": objs[0]["layout"]["rule"]}
        assert "--pipeline-parallel-size" in objs[0]["argv"]
        assert objs[0]["argv"][objs[0]["argv"].index("--pipeline-parallel-size") + 1] == "2"


def _rack_inventory(tmp_path: Path, name: str, group_all: dict) -> Path:
    return offline_rack(tmp_path, name, group_all)


@pytest.mark.parametrize(("ray", "needle"), [
    (False, "carries none (gb10_image_pins['nvidia-vllm-26.10'].ray is false)"),
    (None, "gb10_image_pins['nvidia-vllm-26.10'] does not say whether registry.gb10.lan:5000/gb10/vllm-ray:"),
])
def test_serve_refuses_the_ray_executor_on_an_image_without_ray(tmp_path, monkeypatch, ray, needle) -> None:
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    pin = dict(PINNED["nvidia-vllm-26.10"])
    pin.pop("ray")
    if ray is not None:
        pin["ray"] = ray
    inv = _rack_inventory(tmp_path, "sample", {"vllm_serve_api_key": API_KEY, "gb10_image_pins": {"nvidia-vllm-26.10": pin}})
    result = run_playbook(tmp_path, "serve.yml", inv, {"model": "qwen3.5-397b-a17b-fp8", "vllm_serve_executor": "ray"})
    msg = _failure(result)
    assert "qwen3.5-397b-a17b-fp8: the Ray executor needs Ray in the image" in msg and needle in msg
    assert "playbooks/ray_image.yml -e model=qwen3.5-397b-a17b-fp8" in msg
    assert "-e vllm_serve_executor=native" in msg
    assert _touched(result) == {"localhost"}, "refused before any host"


def _what_will_run(result) -> str:
    for e in result.events:
        if e.get("event") == "runner_on_ok" and e["event_data"].get("task") == "Serve | What will run":
            return str(e["event_data"]["res"].get("msg"))
    raise AssertionError("no 'What will run' line")


def test_serve_lays_a_model_over_eight_nodes(tmp_path, monkeypatch) -> None:
    """-e nodes=8 -e vllm_serve_executor=ray on the 8-node rack: TP 4 x PP 2, Ray on all eight with a GPU for
    vLLM on each; the run then stops in the preflight (nothing answers on those loopback ports). A layout the
    catalog does not know is refused before any host; without -e vllm_serve_executor it is native."""
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    inv = _rack_inventory(tmp_path, "sample-8", {"vllm_serve_api_key": API_KEY, "gb10_image_pins": PINNED})
    result = run_playbook(tmp_path, "serve.yml", inv, {"model": "qwen3.5-397b-a17b-fp8", "nodes": "8",
                                                        "vllm_serve_executor": "ray", "gb10_preflight_timeout": 2})
    line = _what_will_run(result)
    assert "ray on gx10-1, gx10-2, gx10-3, gx10-4, gx10-5, gx10-6, gx10-7, gx10-8" in line
    assert "TP 4 x PP 2" in line and "one vLLM worker on each of gx10-1" in line and "gx10-8." in line
    assert "does not answer over SSH" in _failure(result)
    refused = run_playbook(tmp_path, "serve.yml", inv, {"model": "qwen3.5-397b-a17b-fp8", "nodes": "6"})
    assert ("qwen3.5-397b-a17b-fp8: the catalog knows no layout for 6 nodes (-e nodes); use one of 4, 8"
            in _failure(refused))
    assert _touched(refused) == {"localhost"}
    # auto (the role's default) given explicitly: this run shares the runner folder in tmp_path with the first
    # one (-e vllm_serve_executor=ray), which left it ray without it
    native = run_playbook(tmp_path, "serve.yml", inv, {"model": "qwen3.5-397b-a17b-fp8", "nodes": "4",
                                                        "vllm_serve_executor": "auto", "gb10_preflight_timeout": 2})
    line = _what_will_run(native)
    assert "native on gx10-1, gx10-2, gx10-3, gx10-4 (head gx10-1), TP 4 x PP 1" in line


def _lab_inventory(tmp_path: Path) -> Path:
    """The lab's inventory as lab/lab.py and lab/serving/lab_serving.py write it (4 nodes, their settings)."""
    inv = tmp_path / "lab-inventory"
    (inv / "group_vars/all").mkdir(parents=True)
    (inv / "group_vars/gx10").mkdir(parents=True)
    hosts = {}
    for host, hv in LAB["hostvars"].items():
        i = int(host.rsplit("-", 1)[1])
        hosts[host] = {"ansible_host": hv["ansible_host"], "gb10_fabric_addresses": hv["gb10_fabric_addresses"],
                       "gb10_switch_port": f"qsfp56-dd-{i}-1"}
    (inv / "hosts.yml").write_text(json.dumps({"all": {"children": {
        "gx10": {"hosts": hosts},
        "switch": {"hosts": {"crs804": {"ansible_host": "10.77.0.2", "ansible_connection": "local"}}},
        "control": {"hosts": {"controller": {"ansible_connection": "local", "ansible_host": "127.0.0.1"}}}}}}))
    any_host = next(iter(LAB["hostvars"].values()))
    (inv / "group_vars/all/lab.yml").write_text(json.dumps({
        "gb10_cluster_name": "gb10lab", "gb10_mgmt_subnet": "10.77.0.0/24", "gb10_mgmt_interface": "enP7s7",
        "gb10_fabric_twins": any_host["gb10_fabric_twins"]}))
    opts = LAB["options"]
    (inv / "group_vars/all/serving.yml").write_text(yaml.safe_dump({
        "vllm_serve_cpu_threads_bind": "by_rank", "vllm_serve_host_floor_bytes": 1073741824,
        "vllm_serve_ulimits": opts["ulimits"], "ray_cluster_ulimits": opts["ulimits"],
        "vllm_serve_ipc": "private", "vllm_serve_shm_size": "1g", "vllm_serve_extra_args": opts["extra_args"],
        "vllm_serve_health_timeout": 900}))
    (inv / "group_vars/all/serving_images.yml").write_text(yaml.safe_dump({"gb10_image_pins": LAB["pins"]}))
    write_extra(inv, lab_extra())  # the lab's models, as lab/lab.py writes them (gb10_catalog_extra)
    # tiny-llama is served by tag in the lab catalog: the pin pin.yml writes for it (the lab image's digest).
    lab_image = LAB["pins"]["lab-vllm-cpu"]
    (inv / "group_vars/all/pins").mkdir()
    (inv / "group_vars/all/pins/tiny-llama.yml").write_text(pin_text(pin_record(
        "tiny-llama", dict(lab_image, tag="0.32.0"), {"vllm": "0.32.0", "ray": "2.58.0"}, None, "gx10-1")))
    return inv


@pytest.mark.parametrize("model", sorted(LAB["plans"]))
def test_the_lab_renders_exactly_what_it_ran_before(tmp_path: Path, model: str) -> None:
    """The lab's CPU path through the real tasks: the vLLM containers' argv (hash label included) are the
    ones the code before the rack work planned; no GPU, /dev/infiniband, IPC_LOCK or rack NCCL setting."""
    out = tmp_path / "render"
    result = run_playbook(tmp_path, "playbooks/render_serving.yml", _lab_inventory(tmp_path),
                          {"model": model, "render_artifacts_dir": str(out)})
    assert result.status == "successful", result.stdout.read()[-3000:]
    objs = json.loads((out / f"{model}.json").read_text())
    vllm = [o for o in objs if o["name"] == "gb10-vllm"]
    assert [{"host": o["host"], "role": o["role"], "argv": o["argv"]} for o in vllm] == LAB["plans"][model]["containers"]
    for o in objs:
        for flag in ("--gpus", "--device", "--cap-add"):
            assert flag not in o["argv"], (o["host"], o["name"], flag)
        assert not [k for k in _env(o["argv"]) if k.startswith(("NCCL_", "GLOO_", "UCX_"))]
        assert any("CPU build" in n for n in o["notes"])
    assert [o["role"] for o in objs if o["name"] == "gb10-ray"] == ["ray-head"] + ["ray-worker"] * 3
