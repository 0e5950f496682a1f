"""Serving plan: from a catalog entry to the exact containers every node runs (plain Python, no Ansible).

``serving_plan()`` turns one catalog entry, the inventory's image pins and the node list into:
- the image reference, pinned by digest (refused without one),
- the layout: how many nodes, which is the head, the executor (``single``, ``native`` multi-node or
  ``ray``),
- per node, the container (name, argv of ``docker run``, labels with a hash of the whole spec).
It also parses what vLLM logs about its KV cache and writes client settings for coding agents.
Every problem is one sentence: what is wrong, where, what to do.
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
HEX40_RE = re.compile(r"^[0-9a-f]{40}$")
EXECUTORS = ("auto", "single", "native", "ray")
SERVING_KEYS = ("executor", "nodes", "image_pin")
CONTAINER_PREFIX = "gb10-vllm"
MIN_API_KEY_LENGTH = 16
LABEL_MODEL = "gb10.serving.model"
LABEL_HASH = "gb10.serving.hash"
LABEL_ROLE = "gb10.serving.role"

# Catalog launch key -> vLLM flag. Booleans become --flag / --no-flag.
FLAG_KEYS = (
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "max_model_len",
    "max_num_seqs",
    "max_num_batched_tokens",
    "kv_cache_dtype",
    "block_size",
    "gpu_memory_utilization",
    "kv_cache_memory_bytes",
    "dtype",
    "tool_call_parser",
    "reasoning_parser",
    "load_format",
    "quantization",
)
BOOL_FLAG_KEYS = ("enable_prefix_caching", "enable_auto_tool_choice", "trust_remote_code")


class ServingError(ValueError):
    """The serving request cannot be planned; ``errors`` holds one sentence per problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__(" ".join(errors))
        self.errors = list(errors)


def image_for(name: str, entry: Mapping[str, Any], pins: Mapping[str, Any] | None) -> dict[str, str]:
    """The image a catalog entry runs: an inventory pin for the model, its ``image_pin``, or the catalog's."""
    pins = pins or {}
    serving = entry.get("serving") or {}
    for key in (name, serving.get("image_pin") or entry.get("image_pin")):
        if key and isinstance(pins.get(key), Mapping):
            pin = pins[key]
            return {k: str(pin.get(k) or "") for k in ("repository", "tag", "digest", "image_id")} | {
                "source": f"gb10_image_pins['{key}']"
            }
    image = entry.get("image") or {}
    return {k: str(image.get(k) or "") for k in ("repository", "tag", "digest")} | {
        "image_id": "",
        "source": f"gb10_catalog['{name}'].image",
    }


def pin_errors(name: str, entry: Mapping[str, Any], pins: Any) -> list[str]:
    """Refuse an inventory pin of ``name`` that is not a mapping (a string like ``repo:tag`` would
    otherwise be skipped silently and the catalog's image served instead)."""
    if pins is None:
        return []
    if not isinstance(pins, Mapping):
        return [f"gb10_image_pins is {pins!r} (inventory); make it a mapping of model or pin name to "
                "{repository, tag, digest}."]
    serving = entry.get("serving") or {}
    keys = [name, serving.get("image_pin") if isinstance(serving, Mapping) else None, entry.get("image_pin")]
    errors = []
    for key in dict.fromkeys(k for k in keys if k):
        if key in pins and not isinstance(pins[key], Mapping):
            errors.append(
                f"gb10_image_pins['{key}'] is {pins[key]!r} (inventory), not a mapping; write it as "
                "{repository: <registry/name>, tag: <tag>, digest: 'sha256:<64 hex>'}."
            )
    return errors


def request_errors(model: str, catalog: Mapping[str, Any], hosts: Sequence[str], group: str,
                   api_key_length: int) -> list[str]:
    """What is wrong with a ``serve.yml`` request before anything is planned, one sentence each.

    ``api_key_length`` is the length of ``vllm_serve_api_key`` (0 when it is not set); the key itself
    never reaches this function.
    """
    errors: list[str] = []
    names = ", ".join(sorted(str(n) for n in catalog))
    if not model:
        errors.append(f"No model given: run serve.yml -e model=<name> with one of {names}.")
    elif model not in catalog:
        errors.append(f"Unknown model '{model}' (-e model): use one of {names}.")
    if not hosts:
        errors.append(
            f"The inventory has no hosts in group '{group}' (serve_group): put the GB10 nodes there "
            "or name their group with -e serve_group=<group>."
        )
    if api_key_length <= 0:
        errors.append(
            "vllm_serve_api_key is not set: put an API key of 16 or more characters in an ansible-vault "
            "encrypted variable (ansible-vault encrypt_string --stdin-name vllm_serve_api_key, into "
            "group_vars/all of your inventory) and run with --ask-vault-pass or --vault-password-file."
        )
    elif api_key_length < MIN_API_KEY_LENGTH:
        errors.append(
            f"vllm_serve_api_key has {api_key_length} characters (inventory, ansible-vault); "
            f"use a key of at least {MIN_API_KEY_LENGTH}, e.g. openssl rand -hex 24."
        )
    return errors


def image_errors(name: str, image: Mapping[str, str]) -> list[str]:
    where = image.get("source", f"gb10_catalog['{name}'].image")
    if not image.get("repository"):
        return [f"{name}: no image repository in {where}; set it (or, in the lab, run lab/serving/lab_serving.py push)."]
    if not DIGEST_RE.match(image.get("digest", "")):
        return [
            f"{name}: the image {image['repository']}:{image.get('tag') or '?'} is not pinned by digest "
            f"({where}.digest is '{image.get('digest', '')}'); pin it with its sha256 digest "
            "(docker buildx imagetools inspect <image>) before serving."
        ]
    return []


def image_ref(image: Mapping[str, str]) -> str:
    """``repository@sha256:...`` (the tag is informational once a digest pins the image)."""
    return f"{image['repository']}@{image['digest']}"


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def vllm_args(launch: Mapping[str, Any], platform: str) -> list[str]:
    """vLLM CLI flags for a catalog ``launch`` mapping (CPU: the KV pool comes from the environment)."""
    args: list[str] = []
    for key in FLAG_KEYS:
        if key not in launch or launch[key] is None:
            continue
        if platform == "cpu" and key in ("kv_cache_memory_bytes", "gpu_memory_utilization"):
            continue  # the CPU build sizes its KV pool from VLLM_CPU_KVCACHE_SPACE
        args += [_flag(key), str(launch[key])]
    for key in BOOL_FLAG_KEYS:
        if key in launch and launch[key] is not None:
            on = bool(launch[key])
            if key == "enable_prefix_caching":
                args.append(_flag(key) if on else "--no-enable-prefix-caching")
            elif on:
                args.append(_flag(key))
    spec = launch.get("speculative_config")
    if isinstance(spec, Mapping) and int(spec.get("num_speculative_tokens", 0) or 0) > 0:
        args += ["--speculative-config", json.dumps(dict(spec), sort_keys=True, separators=(",", ":"))]
    return args


def _layout(name: str, entry: Mapping[str, Any], node_count: int, executor: str) -> tuple[int, str, list[str]]:
    launch = entry.get("launch") or {}
    serving = entry.get("serving") or {}
    tp = int(launch.get("tensor_parallel_size", 1) or 1)
    pp = int(launch.get("pipeline_parallel_size", 1) or 1)
    errors: list[str] = []
    nodes = int(serving.get("nodes") or tp * pp)
    if entry.get("platform") != "cpu" and nodes != tp * pp:
        errors.append(
            f"{name}: serving.nodes {nodes} must equal tensor_parallel_size x pipeline_parallel_size "
            f"({tp} x {pp}) on GB10 (one GPU per node)."
        )
    if nodes > node_count:
        errors.append(
            f"{name} needs {nodes} node(s) but the inventory group has {node_count}; add nodes or pick a smaller model."
        )
    mode = executor if executor != "auto" else str(serving.get("executor") or "auto")
    if mode not in EXECUTORS:
        errors.append(f"{name}: serving.executor '{mode}' must be one of {', '.join(EXECUTORS[1:])}.")
    if mode == "auto":
        mode = "single" if nodes == 1 else "ray"
    if nodes == 1:
        mode = "single"
    elif mode == "single":
        errors.append(f"{name}: executor 'single' cannot span {nodes} nodes; use native or ray.")
    if mode == "ray" and entry.get("platform") == "cpu":
        errors.append(
            f"{name}: vLLM's CPU build refuses the Ray executor ('current platform cpu does not support ray'); "
            "set serving.executor: native."
        )
    return nodes, mode, errors


# A follower of vLLM's native multi-node mode does not notice when the head's vLLM dies: it waits
# forever, and a head that Docker restarted waits for it in turn. The follower therefore runs under a
# small watchdog: once the head's API has answered /health, the watchdog polls it; when it fails
# several times in a row (the head's vLLM ended, or its node is gone), it stops vLLM here, the
# container exits, Docker restarts it, and the new follower joins the restarting head (which cannot
# become healthy without it, so there is no race). The torch rendezvous port cannot serve as the
# signal: vLLM closes it once the group has formed. Arguments: the watchdog's Python, the head's
# /health URL, then the command.
FOLLOWER_WATCH_PY = """
import os, signal, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
interval, misses_allowed = 5, 4


def healthy():
    try:
        with urllib.request.build_opener().open(url, timeout=5) as answer:
            return answer.status == 200
    except Exception:
        return False


while not healthy():
    time.sleep(interval)
print(f"gb10-follower: the head answers {url}; watching it", file=sys.stderr, flush=True)
misses = 0
while misses < misses_allowed:
    time.sleep(interval)
    misses = 0 if healthy() else misses + 1
print(f"gb10-follower: the head stopped answering {url} ({misses_allowed} checks in a row): stopping this "
      "follower so that Docker restarts it and it joins the head again", file=sys.stderr, flush=True)
os.kill(pid, signal.SIGTERM)
time.sleep(20)
try:
    os.kill(pid, signal.SIGKILL)
except ProcessLookupError:
    pass
"""
FOLLOWER_WATCH_SH = (
    'watch_py=$1; url=$2; shift 2; "$@" & pid=$!; '
    'trap \'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 143\' TERM INT; '
    'python3 -c "$watch_py" "$url" "$pid" & watch=$!; '
    'wait "$pid"; rc=$?; kill "$watch" 2>/dev/null; exit "$rc"'
)


def follower_command(head_health_url: str, args: Sequence[str]) -> list[str]:
    """The follower's container command: ``vllm serve <args>`` under the head watchdog."""
    return ["sh", "-c", FOLLOWER_WATCH_SH, "gb10-follower", FOLLOWER_WATCH_PY, head_health_url, "vllm", "serve", *args]


def nodes_from_hostvars(hosts: Sequence[str], hostvars: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``{host, mgmt_ip, fabric_ip}`` per host: the management address is ansible_host, the fabric
    address the one of the first twin in gb10_fabric_twins (falls back to the management address)."""
    nodes = []
    for host in hosts:
        hv = hostvars[host]
        mgmt = str(hv.get("ansible_host") or host)
        twins = hv.get("gb10_fabric_twins") or []
        iface = twins[0].get("interface") if twins and isinstance(twins[0], Mapping) else None
        addrs = hv.get("gb10_fabric_addresses") or {}
        fabric = str(addrs.get(iface) or mgmt).split("/")[0] if iface else mgmt
        nodes.append({"host": str(host), "mgmt_ip": mgmt, "fabric_ip": fabric})
    return nodes


def serving_plan(
    model: str,
    catalog: Mapping[str, Any],
    nodes: Sequence[Mapping[str, Any]],
    pins: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The containers that serve ``model``.

    ``nodes``: ordered, each ``{host, fabric_ip, mgmt_ip, cpus}`` (the first is the head).
    ``options``: ``api_port``, ``master_port``, ``executor`` (auto|single|native|ray), ``models_dir``
    (host path holding one folder per model), ``cache_dir``, ``env_files`` (list of host paths),
    ``api_key_env_file``, ``cpu_threads_bind`` (auto|by_rank|<cpu list>), ``extra_args``, ``hf_cache``,
    ``allow_unpinned_revision``.
    Raises ServingError with every problem found.
    """
    opts = dict(options or {})
    if model not in catalog:
        known = ", ".join(sorted(catalog))
        raise ServingError([f"Unknown model '{model}' (-e model): use one of {known}."])
    entry = catalog[model]
    errors: list[str] = []
    serving = entry.get("serving") or {}
    if not isinstance(serving, Mapping) or any(k not in SERVING_KEYS for k in serving):
        errors.append(f"gb10_catalog['{model}'].serving may only hold {', '.join(SERVING_KEYS)}.")
        serving = {}
    # Files staged from the control machine (weights.source: controller) are the same on every node
    # by construction; a Hugging Face download needs a pinned commit for that.
    weights = entry.get("weights")
    from_controller = isinstance(weights, Mapping) and weights.get("source") == "controller"
    if (not from_controller and not HEX40_RE.match(str(entry.get("hf_revision") or ""))
            and not opts.get("allow_unpinned_revision")):
        errors.append(
            f"{model}: gb10_catalog['{model}'].hf_revision is empty; pin the Hugging Face commit "
            "(40 hex) so every node serves the same weights."
        )
    bad_pins = pin_errors(model, entry, pins)
    errors += bad_pins
    if not bad_pins:
        image = image_for(model, entry, pins)
        errors += image_errors(model, image)
    platform = str(entry.get("platform", "cuda"))
    count, mode, layout_errors = _layout(model, entry, len(nodes), str(opts.get("executor") or "auto"))
    errors += layout_errors
    if errors:
        raise ServingError(errors)

    launch = dict(entry.get("launch") or {})
    used = list(nodes[:count])
    head = used[0]
    api_port = int(opts.get("api_port", 8000))
    master_port = int(opts.get("master_port", 29501))
    models_dir = str(opts.get("models_dir", "/srv/gb10/models"))
    cache_dir = str(opts.get("cache_dir", "/srv/gb10/cache"))
    model_dir_in = f"/models/{model}"
    common_args = [model_dir_in, "--served-model-name", model] + vllm_args(launch, platform)
    common_args += [str(a) for a in opts.get("extra_args") or []]
    env = {str(k): str(v) for k, v in (entry.get("env") or {}).items()}
    if platform == "cpu" and "kv_cache_memory_bytes" in launch and "VLLM_CPU_KVCACHE_SPACE" not in env:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, int(launch["kv_cache_memory_bytes"]) // 2**30))
    env.setdefault("HF_HUB_OFFLINE", "1")
    ref = image_ref(image)
    containers = []
    for rank, node in enumerate(used):
        node_env = dict(env)
        node_env["VLLM_HOST_IP"] = str(node.get("fabric_ip") or node.get("mgmt_ip") or "")
        if platform == "cpu":
            node_env.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_bind(opts.get("cpu_threads_bind", "auto"), rank, node))
        args = list(common_args)
        role = "api"
        if mode == "native":
            args += ["--nnodes", str(count), "--node-rank", str(rank), "--master-addr",
                     str(head.get("fabric_ip") or head.get("mgmt_ip")), "--master-port", str(master_port)]
            if rank > 0:
                args.append("--headless")
                role = "follower"

        elif mode == "ray":
            if rank > 0:
                continue  # Ray places the workers; only the head runs vLLM
            args += ["--distributed-executor-backend", "ray"]
            node_env["RAY_ADDRESS"] = f"{head.get('fabric_ip') or head.get('mgmt_ip')}:{int(opts.get('ray_port', 6379))}"
        if role == "api":
            args += ["--host", str(opts.get("api_host", "0.0.0.0")), "--port", str(api_port)]
        head_ip = str(head.get("fabric_ip") or head.get("mgmt_ip"))
        watched = role == "follower" and bool(opts.get("follower_watchdog", True))
        containers.append(
            {
                "command": (follower_command(f"http://{head_ip}:{api_port}/health", args) if watched
                            else ["vllm", "serve", *args]),
                "host": node["host"],
                "rank": rank,
                "role": role,
                "name": CONTAINER_PREFIX,
                "image": ref,
                "env": dict(sorted(node_env.items())),
                "args": args,
                "mounts": [f"{models_dir}/{model}:{model_dir_in}:ro", f"{cache_dir}:/root/.cache"]
                + ([f"{opts['ray_tmp']}:/tmp/ray"] if mode == "ray" and opts.get("ray_tmp") else []),
            }
        )
    spec_hash = hashlib.sha256(
        json.dumps({"model": model, "containers": containers, "opts": _hash_opts(opts)}, sort_keys=True).encode()
    ).hexdigest()[:16]
    for c in containers:
        c["labels"] = {LABEL_MODEL: model, LABEL_HASH: spec_hash, LABEL_ROLE: c["role"]}
        c["argv"] = docker_run_argv(c, opts)
        c["command_line"] = ("(under the head watchdog) " if c["command"][0] != "vllm" else "") + \
            "vllm serve " + " ".join(shlex.quote(a) for a in c["args"])
    return {
        "model": model,
        "platform": platform,
        "weights_source": "controller" if from_controller else "hf",
        "image": image,
        "image_ref": ref,
        "executor": mode,
        "nodes": count,
        "hosts": [n["host"] for n in used],
        "head": head["host"],
        "head_fabric_ip": head.get("fabric_ip"),
        "api_host": head.get("mgmt_ip"),
        "api_port": api_port,
        "endpoint": f"http://{head.get('mgmt_ip')}:{api_port}/v1",
        "tensor_parallel_size": int(launch.get("tensor_parallel_size", 1) or 1),
        "pipeline_parallel_size": int(launch.get("pipeline_parallel_size", 1) or 1),
        "max_model_len": launch.get("max_model_len"),
        "hash": spec_hash,
        "containers": containers,
        "by_host": {c["host"]: c for c in containers},
        "env": env,
    }


def _hash_opts(opts: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("env_files", "api_key_env_file", "restart_policy", "shm_size", "gpus", "ulimits", "ipc", "follower_watchdog")
    return {k: opts.get(k) for k in keys}


def _cpu_bind(setting: Any, rank: int, node: Mapping[str, Any]) -> str:
    value = str(setting or "auto")
    if value == "by_rank":
        cpus = int(node.get("cpus") or 0)
        return str(rank % cpus if cpus > 0 else rank)
    return value


def docker_run_argv(container: Mapping[str, Any], opts: Mapping[str, Any]) -> list[str]:
    """``docker run`` for one serving container (host network and IPC, restart policy, labels)."""
    argv = ["docker", "run", "--detach", "--pull", "never", "--name", str(container["name"]), "--network", "host",
            "--ipc", str(opts.get("ipc", "host")), "--restart", str(opts.get("restart_policy", "unless-stopped"))]
    for limit in opts.get("ulimits", ["memlock=-1", "nofile=1048576:1048576"]):
        argv += ["--ulimit", str(limit)]
    if opts.get("shm_size"):
        argv += ["--shm-size", str(opts["shm_size"])]
    if opts.get("gpus"):
        argv += ["--gpus", str(opts["gpus"])]
    for label, value in sorted(container["labels"].items()):
        argv += ["--label", f"{label}={value}"]
    # Optional env files (the nodes work's) are single "--env-file=<path>" words, so the launcher can
    # drop one that is missing on the node at run time.
    for path in opts.get("env_files") or []:
        argv.append(f"--env-file={path}")
    if opts.get("api_key_env_file") and container["role"] == "api":
        argv += ["--env-file", str(opts["api_key_env_file"])]
    for key, value in container["env"].items():
        argv += ["--env", f"{key}={value}"]
    for mount in container["mounts"]:
        argv += ["--volume", mount]
    argv += [str(container["image"])] + [str(a) for a in container.get("command") or ["vllm", "serve", *container["args"]]]
    return argv


# ------------------------------------------------------------------------------------------- vLLM logs
_KV_RE = re.compile(r"KV cache size:\s*([\d,]+)\s*tokens")
_CONC_RE = re.compile(r"Maximum concurrency for\s*([\d,]+)\s*tokens per request:\s*([\d.]+)x")


def parse_kv_log(text: str) -> dict[str, Any]:
    """What vLLM logged about its KV cache (the last occurrence), or ``found: False``."""
    kv = _KV_RE.findall(text or "")
    conc = _CONC_RE.findall(text or "")
    out: dict[str, Any] = {"found": bool(kv), "kv_cache_tokens": None, "max_concurrency": None, "request_tokens": None}
    if kv:
        out["kv_cache_tokens"] = int(kv[-1].replace(",", ""))
    if conc:
        out["request_tokens"] = int(conc[-1][0].replace(",", ""))
        out["max_concurrency"] = float(conc[-1][1])
    return out


def kv_compare(planned_tokens: int, logged: Mapping[str, Any], tolerance: float = 0.0) -> dict[str, Any]:
    """Planner vs vLLM: equal (or within ``tolerance`` as a fraction) means the planner agrees."""
    got = logged.get("kv_cache_tokens")
    if got is None:
        return {"planned": planned_tokens, "logged": None, "agree": False,
                "line": f"KV cache: planned {planned_tokens:,} tokens, vLLM logged nothing (see the container log)"}
    diff = got - planned_tokens
    rel = abs(diff) / planned_tokens if planned_tokens else float("inf")
    agree = rel <= tolerance
    return {"planned": planned_tokens, "logged": got, "difference": diff, "agree": agree,
            "line": f"KV cache: planned {planned_tokens:,} tokens, vLLM logged {got:,} tokens "
                    f"({'agree' if agree else f'differ by {diff:+,}'})"}


def client_settings(endpoint: str, model: str, max_model_len: Any, key_hint: str) -> str:
    """Ready-to-paste settings for OpenAI-compatible clients and coding agents (no secret in it)."""
    return "\n".join([
        f"OPENAI_BASE_URL={endpoint}",
        f"OPENAI_API_KEY={key_hint}",
        f"OPENAI_MODEL={model}",
        f"# curl {endpoint}/completions -H 'Authorization: Bearer $OPENAI_API_KEY' "
        f"-H 'Content-Type: application/json' -d '{{\"model\": \"{model}\", \"prompt\": \"Hello\", \"max_tokens\": 16}}'",
        f"# aider: aider --openai-api-base {endpoint} --model openai/{model}",
        "# Continue / Cline / Roo / opencode: provider 'OpenAI compatible', base URL "
        f"{endpoint}, model {model}, context {max_model_len}",
    ])


def _result_host(result: Mapping[str, Any], default_host: str) -> str:
    item = result.get("item", default_host)
    if isinstance(item, Mapping):
        return str(item.get("host", default_host))
    if isinstance(item, (list, tuple)) and item:
        return str(item[0])
    return str(item)


def unreachable_hosts(result: Any, default_host: str = "") -> list[str]:
    """The hosts a delegated task (run with ``ignore_unreachable``) could not reach, in order.

    ``result`` is what the task registered: with a loop, the host of each unreachable item is the item
    itself, its ``host`` key, or its first element; without a loop it is ``default_host``."""
    if not isinstance(result, Mapping):
        return []
    if isinstance(result.get("results"), list):
        hosts: list[str] = []
        for r in result["results"]:
            if isinstance(r, Mapping) and r.get("unreachable"):
                host = _result_host(r, default_host)
                if host not in hosts:
                    hosts.append(host)
        return hosts
    return [str(default_host)] if result.get("unreachable") else []


def lost_message(hosts: Sequence[str], nodes: Sequence[Mapping[str, Any]], step: str) -> str:
    """One sentence naming the nodes that stopped answering, with their management addresses."""
    addr = {str(n.get("host")): str(n.get("mgmt_ip", "")) for n in nodes}
    named = [f"{h} ({addr[h]})" if addr.get(h) else h for h in hosts]
    return f"{' and '.join(named)} stopped answering over SSH while {step}."
