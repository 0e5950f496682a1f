"""Serving plan: from a catalog entry to the exact containers every node runs (plain Python, no Ansible).

``serving_plan()`` turns one catalog entry, the inventory's image pins and the node list into:
- the image reference, pinned by digest (refused without one), and whether it carries Ray,
- the layout: how many nodes, TP x PP (the catalog's ``serving.layouts`` for 4, 8 ... nodes), which
  node is the head, the executor (``single``, ``native`` multi-node or ``ray``),
- per node, the vLLM container (name, argv of ``docker run``, labels with a hash of the whole spec),
- per node, the Ray container (head or worker) with the same devices, mounts and environment,
so that ONE function (:func:`docker_run_argv`) builds every argv the serving play runs and
``playbooks/render_serving.yml`` writes. On the rack (platform cuda) every container carries the GPU,
``/dev/infiniband``, IPC_LOCK, unlimited memlock, host IPC and the NCCL environment of
:func:`ansible_collections.gb10.cluster.plugins.module_utils.rack.rack_env`; the CPU build (the lab)
gets none of it. It also parses what vLLM logs about its KV cache and writes client settings.
Every problem is one sentence: what is wrong, where, what to do.
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils import catalog as _catalog
from ansible_collections.gb10.cluster.plugins.module_utils import rack as _rack
from ansible_collections.gb10.cluster.plugins.module_utils import raw_output as _raw
from ansible_collections.gb10.cluster.plugins.module_utils import registry_mirror as _mirror

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
HEX40_RE = re.compile(r"^[0-9a-f]{40}$")
RAY_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)?([a-z0-9.+-]*)$")
EXECUTORS = ("auto", "single", "native", "ray")
SERVING_KEYS = ("executor", "nodes", "image_pin", "layouts")
LAYOUT_KEYS = ("tp", "pp", "source")
CONTAINER_PREFIX = "gb10-vllm"
MIN_API_KEY_LENGTH = 16
LABEL_MODEL = "gb10.serving.model"
LABEL_HASH = "gb10.serving.hash"
LABEL_ROLE = "gb10.serving.role"
LABEL_RAY_HASH = "gb10.ray.hash"
LABEL_RAY_ROLE = "gb10.ray.role"
# On a Ray container that hosts one of the model's vLLM workers (the Ray executor): the model. The node
# memory guard (roles/memory_guard) stops such a container on a node where no vLLM container runs.
LABEL_RAY_MODEL = "gb10.ray.model"
RAY_IMAGE_DOC = "docs/rack-contract.md, 'A Ray-carrying image'"
# The rack's device options when the plan says auto (platform cuda; nothing on the CPU build).
CUDA_GPUS = "all"
CUDA_DEVICES = ("/dev/infiniband",)
CUDA_CAP_ADD = ("IPC_LOCK",)
# The Ray containers' settings when the play gives none (roles/ray_cluster/defaults/main.yml).
RAY_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "container": "gb10-ray",
    "port": 6379,
    # Ray's Prometheus metrics on every node (ray start --metrics-export-port); 0: none pinned.
    "metrics_port": 8080,
    "restart_policy": "unless-stopped",
    "env_files": ["/etc/gb10/serving.env"],
    "env": {"RAY_memory_monitor_refresh_ms": "0", "RAY_DEDUP_LOGS": "0"},
    "ulimits": ["memlock=-1", "nofile=1048576:1048576"],
    "tmp": "/var/lib/gb10/ray",
    "ipc": "host",
    "shm_size": "",
    "start_args": ["--disable-usage-stats"],
    "head_args": ["--include-dashboard=false"],
    # Ray's token authentication: the node folder that holds the token file (roles/ray_cluster writes it
    # from the vault); empty: none (the plan's older option sets).
    "auth_dir": "",
}

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


def positive_int(value: Any) -> int | None:
    """The catalog's one parser for counts typed as ``-e nodes=8`` or ``-e '{"nodes": 8}'`` (called late:
    catalog imports this module)."""
    return _catalog.as_positive_int(value)


# ----------------------------------------------------------------------------------------------- images
def image_for(name: str, entry: Mapping[str, Any], pins: Mapping[str, Any] | None) -> dict[str, Any]:
    """The image a catalog entry runs: an inventory pin for the model, its ``image_pin``, or the catalog's.

    ``ray`` is what the pin or the catalog says about Ray in the image (a version, false, or None when it
    says nothing); ``base`` is the upstream image a derived image was built from (informational).
    """
    pins = pins or {}
    serving = entry.get("serving") or {}
    for key in (name, serving.get("image_pin") or entry.get("image_pin")):
        if key and isinstance(pins.get(key), Mapping):
            pin = pins[key]
            return {k: str(pin.get(k) or "") for k in ("repository", "tag", "digest", "image_id")} | {
                "source": f"gb10_image_pins['{key}']", "ray": pin.get("ray"), "base": str(pin.get("base") or "")
            }
    image = entry.get("image") or {}
    return {k: str(image.get(k) or "") for k in ("repository", "tag", "digest")} | {
        "image_id": str(image.get("image_id") or ""),  # a pin (pin.yml) records it
        "source": f"gb10_catalog['{name}'].image",
        "ray": image.get("ray"),
        "base": "",
    }


def ray_in_image(image: Mapping[str, Any]) -> tuple[str, str]:
    """``('yes', '<version>')``, ``('no', '')``, ``('unknown', '')`` or ``('bad', repr)`` for an image's ``ray``."""
    value = image.get("ray")
    if value is None:
        return "unknown", ""
    if value is False or (isinstance(value, str) and value.strip().lower() in ("", "none", "false", "no")):
        return "no", ""
    if isinstance(value, str) and RAY_VERSION_RE.match(value.strip()):
        return "yes", value.strip()
    return "bad", repr(value)


def _image_name(image: Mapping[str, Any]) -> str:
    return f"{image.get('repository') or '?'}:{image.get('tag') or '?'}"


def ray_image_errors(name: str, image: Mapping[str, Any], needs_ray: bool) -> list[str]:
    """The Ray check, on the control machine before any host changes: one sentence naming the image."""
    state, raw = ray_in_image(image)
    where = str(image.get("source", f"gb10_catalog['{name}'].image"))
    how = (f"build the Ray-carrying image with `ansible-playbook playbooks/ray_image.yml -e model={name}` and pin it "
           f"with its digest and ray: '<version>' ({RAY_IMAGE_DOC}), or serve with -e vllm_serve_executor=native")
    if state == "bad":
        return [f"{name}: {where}.ray is {raw}; write the Ray version the image carries as a string ('2.58.0') or "
                "false when it carries none."]
    if not needs_ray or state == "yes":
        return []
    if state == "no":
        return [f"{name}: the Ray executor needs Ray in the image, but {_image_name(image)} carries none "
                f"({where}.ray is false); {how}."]
    return [f"{name}: the Ray executor needs Ray in the image, but {where} does not say whether "
            f"{_image_name(image)} carries it (no ray: field); if it does, add ray: '<version>' "
            f"(docker run --rm --entrypoint ray <image> --version), otherwise {how}."]


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


def image_errors(name: str, image: Mapping[str, Any]) -> list[str]:
    where = image.get("source", f"gb10_catalog['{name}'].image")
    if not image.get("repository"):
        return [f"{name}: no image repository in {where}; set it (or, in the lab, run python -m lab.serving.lab_serving push)."]
    if not DIGEST_RE.match(str(image.get("digest", ""))):
        how = ("build it with playbooks/ray_image.yml and pin the digest it prints"
               if image.get("base") else f"pin it with `ansible-playbook pin.yml -e model={name}` (docs/pinning.md)")
        return [
            f"{name}: the image {image['repository']}:{image.get('tag') or '?'} is not pinned by digest "
            f"({where}.digest is '{image.get('digest', '')}'); {how} before serving."
        ]
    return []


def image_ref(image: Mapping[str, Any]) -> str:
    """``repository@sha256:...`` (the tag is informational once a digest pins the image)."""
    if DIGEST_RE.match(str(image.get("digest", ""))):
        return f"{image['repository']}@{image['digest']}"
    return f"{image.get('repository') or '?'}:{image.get('tag') or '?'}"  # a render of an unpinned entry


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


# ---------------------------------------------------------------------------------------------- layouts
def layouts_of(name: str, entry: Mapping[str, Any]) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """The catalog's known layouts ``{nodes: {nodes, tp, pp, source}}`` and what is wrong with them.

    ``serving.layouts`` maps a node count to ``{tp, pp[, source]}``: TP x PP must equal the node count
    (one GPU per GB10), and the entry's own launch layout, when listed, must say the same.
    """
    serving = entry.get("serving") or {}
    raw = serving.get("layouts") if isinstance(serving, Mapping) else None
    if raw is None:
        return {}, []
    where = f"gb10_catalog['{name}'].serving.layouts"
    if not isinstance(raw, Mapping) or not raw:
        return {}, [f"{where} must map a node count to {{tp, pp}}, e.g. {{4: {{tp: 4, pp: 1}}, 8: {{tp: 4, pp: 2}}}}."]
    out: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    for key, layout in raw.items():
        nodes = positive_int(key)
        if nodes is None:
            errors.append(f"{where}: '{key}' is not a node count; use a whole number such as 8.")
            continue
        if not isinstance(layout, Mapping) or any(k not in LAYOUT_KEYS for k in layout):
            errors.append(f"{where}[{nodes}] must be {{tp: <n>, pp: <n>[, source: <text>]}}.")
            continue
        tp, pp = positive_int(layout.get("tp")), positive_int(layout.get("pp"))
        if tp is None or pp is None:
            errors.append(f"{where}[{nodes}]: tp and pp must be positive whole numbers.")
        elif tp * pp != nodes:
            errors.append(f"{where}[{nodes}]: tp {tp} x pp {pp} = {tp * pp} GPUs, but {nodes} GB10 nodes have "
                          f"{nodes} (one GPU each); make tp x pp = {nodes}.")
        else:
            out[nodes] = {"nodes": nodes, "tp": tp, "pp": pp, "source": str(layout.get("source") or "")}
    launch = entry.get("launch") or {}
    base_tp = positive_int(launch.get("tensor_parallel_size")) or 1
    base_pp = positive_int(launch.get("pipeline_parallel_size")) or 1
    listed = out.get(base_tp * base_pp)
    if listed and (listed["tp"], listed["pp"]) != (base_tp, base_pp):
        errors.append(f"{where}[{base_tp * base_pp}] says tp {listed['tp']} x pp {listed['pp']} but "
                      f"gb10_catalog['{name}'].launch says {base_tp} x {base_pp}; make them agree.")
    return out, errors


def choose_layout(name: str, entry: Mapping[str, Any], available: int,
                  requested: Any = None) -> tuple[dict[str, Any], list[str]]:
    """How many nodes and which TP x PP serve ``name``.

    - ``requested`` (``-e nodes=N``): the catalog's layout for N nodes, or the entry's own launch layout
      when that is N nodes; anything else is refused, naming the known node counts.
    - otherwise ``serving.nodes`` when the entry sets it (the lab's CPU entries),
    - otherwise the largest known layout (``serving.layouts`` and the launch layout) that the inventory's
      ``available`` nodes can hold, else the launch layout (then the plan says how many nodes it needs).
    """
    launch = entry.get("launch") or {}
    serving = entry.get("serving") or {}
    serving = serving if isinstance(serving, Mapping) else {}
    tp = positive_int(launch.get("tensor_parallel_size")) or 1
    pp = positive_int(launch.get("pipeline_parallel_size")) or 1
    base_nodes = positive_int(serving.get("nodes")) or tp * pp
    base = {"nodes": base_nodes, "tp": tp, "pp": pp, "source": "catalog launch settings",
            "rule": "the catalog's launch layout"}
    layouts, errors = layouts_of(name, entry)
    if errors:
        return base, errors
    known = {n: dict(lay, rule=f"the catalog's layout for {n} node{'s' if n != 1 else ''}") for n, lay in layouts.items()}
    known.setdefault(base_nodes, base)
    if requested not in (None, ""):
        count = positive_int(requested)
        if count is None:
            return base, [f"-e nodes={requested} is not a whole number of nodes; give e.g. -e nodes=8."]
        if count in known:
            return dict(known[count], rule=f"-e nodes={count}: {known[count]['rule']}"), []
        counts = ", ".join(str(n) for n in sorted(known))
        return base, [f"{name}: the catalog knows no layout for {count} nodes (-e nodes); use one of {counts}, or add "
                      f"serving.layouts[{count}] with tp x pp = {count} to gb10_catalog['{name}']."]
    if positive_int(serving.get("nodes")):
        return dict(base, rule="serving.nodes of the catalog entry"), []
    fitting = [n for n in known if n <= available]
    if fitting:
        best = max(fitting)
        chosen = dict(known[best])
        if len(known) > 1:
            chosen["rule"] = f"{chosen['rule']}, the largest known one the inventory's {available} node(s) hold"
        return chosen, []
    return base, []


def serving_errors(name: str, entry: Mapping[str, Any], text_config: Mapping[str, Any] | None = None) -> list[str]:
    """What is wrong with an entry's ``serving`` mapping (and ``image.ray``), one sentence each.

    With the model's (text) config: every layout's TP must divide the attention heads, and PP must not
    exceed the decoder layers.
    """
    where = f"gb10_catalog['{name}']"
    serving = entry.get("serving")
    errors: list[str] = []
    if serving is not None and (not isinstance(serving, Mapping) or any(k not in SERVING_KEYS for k in serving)):
        return [f"{where}.serving may only hold {', '.join(SERVING_KEYS)}."]
    serving = serving or {}
    executor = serving.get("executor")
    if executor is not None and executor not in EXECUTORS[1:]:
        errors.append(f"{where}.serving.executor '{executor}' must be one of {', '.join(EXECUTORS[1:])}.")
    if serving.get("nodes") is not None and positive_int(serving.get("nodes")) is None:
        errors.append(f"{where}.serving.nodes must be a positive whole number.")
    image = entry.get("image") or {}
    if isinstance(image, Mapping) and ray_in_image(image)[0] == "bad":
        errors.append(f"{where}.image.ray is {image.get('ray')!r}; write the Ray version the image carries as a "
                      "string ('2.58.0') or false when it carries none.")
    layouts, layout_errors = layouts_of(name, entry)
    errors += layout_errors
    if text_config:
        heads = positive_int(text_config.get("num_attention_heads"))
        layers = positive_int(text_config.get("num_hidden_layers"))
        for nodes, layout in sorted(layouts.items()):
            if heads and heads % layout["tp"]:
                errors.append(f"{where}.serving.layouts[{nodes}]: tp {layout['tp']} does not divide the model's "
                              f"{heads} attention heads.")
            if layers and layout["pp"] > layers:
                errors.append(f"{where}.serving.layouts[{nodes}]: pp {layout['pp']} exceeds the model's {layers} "
                              "decoder layers.")
    return errors


def lab_cpu_ray(name: str, entry: Mapping[str, Any], pins: Any) -> bool:
    """Whether the inventory pin the entry's image comes from says ``cpu_ray: true``: the lab's vLLM CPU
    image carries a lab-only shim that lets the CPU build use the Ray executor (lab/serving/image/shim,
    docs/rack-contract.md). A catalog image or a rack pin never says so."""
    if not isinstance(pins, Mapping):
        return False
    serving = entry.get("serving") or {}
    for key in (name, serving.get("image_pin") if isinstance(serving, Mapping) else None, entry.get("image_pin")):
        if key and isinstance(pins.get(key), Mapping):
            return pins[key].get("cpu_ray") is True
    return False


def _layout(name: str, entry: Mapping[str, Any], node_count: int, executor: str,
            requested: Any = None, cpu_ray: bool = False) -> tuple[dict[str, Any], str, list[str]]:
    layout, errors = choose_layout(name, entry, node_count, requested)
    serving = entry.get("serving") or {}
    nodes = layout["nodes"]
    tp, pp = layout["tp"], layout["pp"]
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
        # Native multi-node is what the lab proves across nodes; the Ray executor is a choice (-e
        # vllm_serve_executor=ray or serving.executor: ray) that the lab does not exercise
        # (docs/rack-contract.md, "The lab's Ray executor").
        mode = "single" if nodes == 1 else "native"
    if nodes == 1:
        mode = "single"
    elif mode == "single":
        errors.append(f"{name}: executor 'single' cannot span {nodes} nodes; use native or ray.")
    if mode == "ray" and entry.get("platform") == "cpu" and not cpu_ray:
        errors.append(
            f"{name}: vLLM's CPU build refuses the Ray executor ('current platform cpu does not support ray'); "
            "set serving.executor: native, or (lab only) serve the lab image whose pin says cpu_ray: true "
            "(python -m lab.serving.lab_serving push writes it)."
        )
    return layout, mode, errors


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
    """``{host, mgmt_ip, fabric_ip, fabric, nccl_env}`` per host: the management address is ansible_host,
    the fabric address the one of the first twin in gb10_fabric_twins (falls back to the management
    address); ``fabric`` is nccl_env's view of the node (rack.node_fabric: socket interface, the node's
    address on it, RoCE devices) and ``nccl_env`` the nccl_env_* settings the inventory gives it."""
    nodes = []
    for host in hosts:
        hv = hostvars[host]
        mgmt = str(hv.get("ansible_host") or host)
        twins = hv.get("gb10_fabric_twins") or []
        iface = twins[0].get("interface") if twins and isinstance(twins[0], Mapping) else None
        addrs = hv.get("gb10_fabric_addresses") or {}
        fabric = str(addrs.get(iface) or mgmt).split("/")[0] if iface else mgmt
        view = {key: hv.get(key) for key in ("ansible_host", "gb10_fabric_twins", "gb10_fabric_addresses",
                                             "gb10_mgmt_interface", *_rack.NCCL_ENV_DEFAULTS)}
        nodes.append({"host": str(host), "mgmt_ip": mgmt, "fabric_ip": fabric,
                      "fabric": _rack.node_fabric(str(host), view),
                      "nccl_env": {k: hv.get(k) for k in _rack.NCCL_ENV_DEFAULTS if hv.get(k) not in (None, "")}})
    return nodes


def _node_ip(node: Mapping[str, Any]) -> str:
    """The address the node's containers use (VLLM_HOST_IP, Ray, rendezvous): nccl_env's node IP."""
    fabric = node.get("fabric") or {}
    return str(fabric.get("node_ip") or node.get("fabric_ip") or node.get("mgmt_ip") or "")


def _ray_auth(ray_opts: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Ray's token authentication (Ray >= 2.52, RAY_AUTH_MODE=token) for a container that runs Ray or talks
    to it: the environment naming the token file, and the read-only mount of its folder. Never the token."""
    folder = str(ray_opts.get("auth_dir") or "").rstrip("/")
    if not folder:
        return {}, []
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": f"{folder}/token"}, [f"{folder}:{folder}:ro"]


def ray_metrics_port_errors(ray_opts: Mapping[str, Any], taken: Mapping[str, int]) -> list[str]:
    """ray_cluster_metrics_port: 0 (Ray's random port) or a TCP port that no other serving port uses."""
    raw = ray_opts.get("metrics_port") or 0
    try:
        port = int(raw)
    except (TypeError, ValueError):
        port = -1
    if not 0 <= port <= 65535:
        return [f"ray_cluster_metrics_port is {raw!r}; use a TCP port (1-65535, default 8080) or 0 for none."]
    clash = [name for name, used in taken.items() if port and used == port]
    if clash:
        return [f"ray_cluster_metrics_port {port} is also {', '.join(clash)}; give Ray's metrics a port of their own "
                "(default 8080)."]
    return []


def _ray_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    ray = dict(RAY_DEFAULTS)
    given = opts.get("ray")
    if isinstance(given, Mapping):
        ray.update({k: v for k, v in given.items() if v is not None})
    else:  # the play's older options
        if opts.get("ray_tmp"):
            ray["tmp"] = opts["ray_tmp"]
        if opts.get("ray_port"):
            ray["port"] = opts["ray_port"]
    ray["port"] = int(ray["port"])
    ray["enabled"] = bool(ray["enabled"]) and str(ray["enabled"]).lower() not in ("false", "no", "0")
    return ray


def _devices(platform: str, opts: Mapping[str, Any]) -> dict[str, Any]:
    """GPU and RDMA options of docker run: ``auto`` means the rack's on cuda and none on the CPU build."""
    gpus = opts.get("gpus", "auto")
    devices = opts.get("devices", "auto")
    cap_add = opts.get("cap_add", "auto")
    cuda = platform == "cuda"
    return {
        "gpus": (CUDA_GPUS if cuda else "") if gpus in (None, "auto") else str(gpus),
        "devices": (list(CUDA_DEVICES) if cuda else []) if devices in (None, "auto") else [str(d) for d in devices],
        "cap_add": (list(CUDA_CAP_ADD) if cuda else []) if cap_add in (None, "auto") else [str(c) for c in cap_add],
    }


def serving_plan(
    model: str,
    catalog: Mapping[str, Any],
    nodes: Sequence[Mapping[str, Any]],
    pins: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The containers that serve ``model`` (vLLM) and the Ray cluster under them.

    ``nodes``: ordered, each ``{host, fabric_ip, mgmt_ip, cpus, fabric, nccl_env}`` (the first is the head;
    ``nodes_from_hostvars`` builds them from the inventory).
    ``options``: ``api_port`` (the API proxy's), ``backend_port`` / ``backend_host`` (vLLM's, behind the
    proxy; default api_port + 1 on the head's fabric address in native mode, else 127.0.0.1), ``api_tls``
    (the proxy serves HTTPS: the endpoint's scheme), ``master_port``, ``executor`` (auto|single|native|ray), ``node_count``
    (``-e nodes``), ``models_dir`` (host path holding one folder per model), ``cache_dir``, ``env_files``
    (list of host paths), ``api_key_env_file``, ``cpu_threads_bind`` (auto|by_rank|<cpu list>),
    ``extra_args``, ``gpus`` / ``devices`` / ``cap_add`` (``auto``: the rack's on cuda, none on cpu),
    ``ulimits``, ``ipc``, ``shm_size``, ``restart_policy``, ``follower_watchdog``, ``ray`` (the Ray
    containers' settings, RAY_DEFAULTS; ``enabled`` false plans no Ray), ``roce`` (rack.roce_class),
    ``nccl`` (``debug``, ``debug_subsys``, ``buffsize``, ``buffsize_min_nodes``, ``switch``),
    ``allow_unpinned_revision``, ``render`` (plan an entry whose image or revision is not pinned yet,
    noting what the serving play would refuse).
    Raises ServingError with every problem found.
    """
    opts = dict(options or {})
    if model not in catalog:
        known = ", ".join(sorted(catalog))
        raise ServingError([f"Unknown model '{model}' (-e model): use one of {known}."])
    entry = catalog[model]
    render = bool(opts.get("render"))
    errors: list[str] = []
    refused: list[str] = []  # what the serving play refuses and a render only notes
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
        (refused if render else errors).append(
            f"{model}: gb10_catalog['{model}'].hf_revision is empty; pin the Hugging Face commit "
            "(40 hex) so every node serves the same weights."
        )
    bad_pins = pin_errors(model, entry, pins)
    errors += bad_pins
    image: dict[str, Any] = {}
    if not bad_pins:
        image = image_for(model, entry, pins)
        problems = image_errors(model, image)
        if render and problems and image.get("repository"):
            refused += problems
        else:
            errors += problems
    platform = str(entry.get("platform", "cuda"))
    layout, mode, layout_errors = _layout(model, entry, len(nodes), str(opts.get("executor") or "auto"),
                                          opts.get("node_count"), cpu_ray=lab_cpu_ray(model, entry, pins))
    errors += layout_errors
    ray_opts = _ray_options(opts)
    ray_state, ray_version = ray_in_image(image) if image else ("unknown", "")
    if image:
        errors += ray_image_errors(model, image, needs_ray=mode == "ray")
    if mode == "ray" and not ray_opts["enabled"]:
        errors.append(f"{model}: the Ray executor needs the Ray cluster, but the play was told not to start it "
                      "(-e serve_ray=false); drop that, or serve with -e vllm_serve_executor=native.")
    count = layout["nodes"]
    used = list(nodes[:count])
    if platform == "cuda":
        for node in nodes:
            errors += list((node.get("fabric") or {}).get("errors") or [])
    if errors:
        raise ServingError(list(dict.fromkeys(errors)))

    launch = dict(entry.get("launch") or {})
    for key, value in (("tensor_parallel_size", layout["tp"]), ("pipeline_parallel_size", layout["pp"])):
        if key in launch or value != 1:
            launch[key] = value
    head = used[0]
    head_ip = _node_ip(head)
    api_port = int(opts.get("api_port", 8000))
    # vLLM itself listens on the backend port behind the API proxy (tasks/proxy.yml), only where the proxy
    # and the cluster reach it: the head's fabric address in native multi-node (the followers' watchdog
    # reads its /health), else 127.0.0.1. The proxy owns api_port; backend_port 0 = api_port + 1.
    backend_port = int(opts.get("backend_port") or api_port + 1)
    api_scheme = "https" if opts.get("api_tls") else "http"
    master_port = int(opts.get("master_port", 29501))
    port_errors = ray_metrics_port_errors(ray_opts, {"vllm_serve_api_port": api_port, "vllm_serve_backend_port": backend_port,
                                                     "vllm_serve_master_port": master_port,
                                                     "ray_cluster_port": int(ray_opts["port"])}) if ray_opts["enabled"] else []
    if port_errors:
        raise ServingError(port_errors)
    models_dir = str(opts.get("models_dir", "/srv/gb10/models"))
    cache_dir = str(opts.get("cache_dir", "/srv/gb10/cache"))
    devices = _devices(platform, opts)
    model_dir_in = f"/models/{model}"
    common_args = [model_dir_in, "--served-model-name", model] + vllm_args(launch, platform)
    # The recipe's extra flags (the entry's vllm_flags, checked by catalog.vllm_flags_errors).
    common_args += _catalog.vllm_flag_args(entry.get("vllm_flags"))
    common_args += [str(a) for a in opts.get("extra_args") or []]
    env = {str(k): str(v) for k, v in (entry.get("env") or {}).items()}
    if platform == "cpu" and "kv_cache_memory_bytes" in launch and "VLLM_CPU_KVCACHE_SPACE" not in env:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, int(launch["kv_cache_memory_bytes"]) // 2**30))
    env.setdefault("HF_HUB_OFFLINE", "1")
    # The rack's registry mirror (gb10_registry_mirror): the nodes pull and run the image from there, by the
    # same digest (module_utils/registry_mirror.py); upstream_ref is what the mirror copies from.
    upstream_ref = image_ref(image)
    mirror = str(opts.get("registry_mirror") or "")
    ref = _mirror.mirror_ref(upstream_ref, mirror) if mirror and DIGEST_RE.match(str(image.get("digest", ""))) else upstream_ref
    roce = opts.get("roce") if isinstance(opts.get("roce"), Mapping) else None
    nccl = dict(opts.get("nccl") or {})

    def fabric_env(node: Mapping[str, Any]) -> dict[str, str]:
        """The rack's NCCL/Gloo/UCX/Ray environment on this node (cuda only; the lab's CPU build: none)."""
        if platform != "cuda" or not node.get("fabric"):
            return {}
        return _rack.rack_env(node["fabric"], node.get("nccl_env") or {}, nodes=count, roce=roce, nccl=nccl)

    vllm_docker = {
        "ipc": str(opts.get("ipc", "host")),
        "restart": str(opts.get("restart_policy", "unless-stopped")),
        "ulimits": [str(u) for u in opts.get("ulimits", ["memlock=-1", "nofile=1048576:1048576"])],
        "shm_size": str(opts.get("shm_size") or ""),
        **devices,
        "env_files": [str(p) for p in opts.get("env_files") or []],
        "api_key_env_file": str(opts.get("api_key_env_file") or ""),
    }
    if mode == "ray":
        # The Ray driver (vLLM on the head) finds its node's raylet by looking for the raylet process
        # (ray._private.services.find_node_ids greps the process list for --node_id): it must see the
        # Ray container's processes, or Ray fails "No node info found matching attributes" (seen on the lab).
        vllm_docker["pid"] = "host"
    backend_host = str(opts.get("backend_host") or (head_ip if mode == "native" else "127.0.0.1"))
    containers = []
    for rank, node in enumerate(used):
        node_env = dict(env)
        node_env["VLLM_HOST_IP"] = _node_ip(node)
        if platform == "cpu" and mode != "ray":  # with Ray the workers bind in the Ray containers (_ray_plan)
            node_env.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_bind(opts.get("cpu_threads_bind", "auto"), rank, node))
        node_env.update(fabric_env(node))
        args = list(common_args)
        role = "api"
        if mode == "native":
            args += ["--nnodes", str(count), "--node-rank", str(rank), "--master-addr", head_ip,
                     "--master-port", str(master_port)]
            if rank > 0:
                args.append("--headless")
                role = "follower"

        elif mode == "ray":
            if rank > 0:
                continue  # Ray places the workers; only the head runs vLLM
            args += ["--distributed-executor-backend", "ray"]
            node_env["RAY_ADDRESS"] = f"{head_ip}:{ray_opts['port']}"
            # The driver finds its node's raylet by IP: without it (no default route, as in the lab) Ray
            # fails "No node info found matching attributes: ''". The rack's environment sets the same.
            for key in ("RAY_NODE_IP_ADDRESS", "RAY_OVERRIDE_NODE_IP_ADDRESS"):
                node_env.setdefault(key, head_ip)
            node_env.update(_ray_auth(ray_opts)[0])  # the driver connects to the Ray cluster with its token
        if role == "api":
            args += ["--host", backend_host, "--port", str(backend_port)]
        watched = role == "follower" and bool(opts.get("follower_watchdog", True))
        containers.append(
            {
                "command": (follower_command(f"http://{head_ip}:{backend_port}/health", args) if watched
                            else ["vllm", "serve", *args]),
                "host": node["host"],
                "rank": rank,
                "role": role,
                "name": CONTAINER_PREFIX,
                "image": ref,
                "env": dict(sorted(node_env.items())),
                "args": args,
                "mounts": [f"{models_dir}/{model}:{model_dir_in}:ro", f"{cache_dir}:/root/.cache"]
                + ([f"{ray_opts['tmp']}:/tmp/ray"] if mode == "ray" and ray_opts.get("tmp") else [])
                + (_ray_auth(ray_opts)[1] if mode == "ray" else []),
            }
        )
    spec_hash = hashlib.sha256(
        json.dumps({"model": model, "containers": containers, "opts": _hash_opts(opts, vllm_docker)},
                   sort_keys=True).encode()
    ).hexdigest()[:16]
    for c in containers:
        c["kind"] = "vllm"
        c["docker"] = dict(vllm_docker)
        c["labels"] = {LABEL_MODEL: model, LABEL_HASH: spec_hash, LABEL_ROLE: c["role"]}
        c["argv"] = docker_run_argv(c)
        c["command_line"] = ("(under the head watchdog) " if c["command"][0] != "vllm" else "") + \
            "vllm serve " + " ".join(shlex.quote(a) for a in c["args"])

    ray = _ray_plan(model, mode, platform, nodes, [n["host"] for n in used], ray_opts, ray_state, ray_version,
                    ref, devices, env, fabric_env, models_dir, cache_dir)
    if platform == "cpu" and mode == "ray":
        _cpu_ray_bind(ray, used, opts.get("cpu_threads_bind", "auto"))
    notes = []
    if platform == "cuda":
        notes.append("GPU, /dev/infiniband, IPC_LOCK and the NCCL environment: platform cuda (docs/rack-contract.md).")
    else:
        notes.append("CPU build: no GPU, no /dev/infiniband, no IPC_LOCK, no rack NCCL settings (the lab).")
    if ray["reason"]:
        notes.append(ray["reason"])
    return {
        "model": model,
        "platform": platform,
        "weights_source": "controller" if from_controller else "hf",
        "image": image,
        "image_ref": ref,
        "image_upstream_ref": upstream_ref,
        "image_ray": ray_version if ray_state == "yes" else (False if ray_state == "no" else None),
        "executor": mode,
        "nodes": count,
        "layout": layout,
        "hosts": [n["host"] for n in used],
        "head": head["host"],
        "head_fabric_ip": head.get("fabric_ip"),
        "head_ip": head_ip,
        "api_host": head.get("mgmt_ip"),
        "api_port": api_port,
        "api_scheme": api_scheme,
        "backend_host": backend_host,
        "backend_port": backend_port,
        "endpoint": f"{api_scheme}://{head.get('mgmt_ip')}:{api_port}/v1",
        "tensor_parallel_size": int(launch.get("tensor_parallel_size", 1) or 1),
        "pipeline_parallel_size": int(launch.get("pipeline_parallel_size", 1) or 1),
        "max_model_len": launch.get("max_model_len"),
        "launch": launch,
        "hash": spec_hash,
        "containers": containers,
        "by_host": {c["host"]: c for c in containers},
        "ray": ray,
        "env": env,
        "refused": refused,
        "notes": notes,
    }


def _ray_plan(model: str, mode: str, platform: str, nodes: Sequence[Mapping[str, Any]], serving_hosts: Sequence[str],
              ray_opts: Mapping[str, Any], ray_state: str, ray_version: str, ref: str, devices: Mapping[str, Any],
              model_env: Mapping[str, str], fabric_env: Any, models_dir: str, cache_dir: str) -> dict[str, Any]:
    """One Ray container per node (head on the first), or none with the reason.

    With the Ray executor, vLLM's workers run inside these containers: each gets the models folder (so
    /models/<model> is the same path as in the head's vLLM container), the caches, the devices and the
    model's environment. On cuda, ``ray start --num-gpus 1`` on the nodes that serve and 0 on the
    others: vLLM 0.32 asks its placement group for one bundle of one GPU per worker (strategy PACK), so
    with one GPU per serving node and none elsewhere every serving node gets exactly one worker.
    """
    head = nodes[0]
    head_ip = _node_ip(head)
    out: dict[str, Any] = {"enabled": False, "reason": "", "head": head["host"],
                           "address": f"{head_ip}:{ray_opts['port']}", "gpu_hosts": [], "tmp": str(ray_opts["tmp"]),
                           "container": str(ray_opts["container"]), "containers": [], "by_host": {},
                           "auth_token_file": _ray_auth(ray_opts)[0].get("RAY_AUTH_TOKEN_PATH", "")}
    if not ray_opts["enabled"]:
        out["reason"] = "Ray is not started (serve_ray is false)."
        return out
    if ray_state == "no":
        out["reason"] = (f"Ray is not started: the image carries no Ray (image.ray is false); the {mode} executor "
                         "does not need it.")
        return out
    out["enabled"] = True
    gpu_hosts = list(serving_hosts) if mode == "ray" else []
    out["gpu_hosts"] = gpu_hosts
    start_args = [str(a) for a in ray_opts.get("start_args") or []]
    docker = {
        "ipc": str(ray_opts["ipc"]),
        "restart": str(ray_opts["restart_policy"]),
        "ulimits": [str(u) for u in ray_opts["ulimits"]],
        "shm_size": str(ray_opts.get("shm_size") or "") if str(ray_opts["ipc"]) != "host" else "",
        **devices,
        "env_files": [str(p) for p in ray_opts.get("env_files") or []],
        "api_key_env_file": "",
    }
    for rank, node in enumerate(nodes):
        ip = _node_ip(node)
        is_head = rank == 0
        command = ["ray", "start", "--block", "--node-ip-address", ip]
        command += (["--head", "--port", str(ray_opts["port"])] + [str(a) for a in ray_opts.get("head_args") or []]
                    if is_head else ["--address", f"{head_ip}:{ray_opts['port']}"])
        command += start_args
        metrics_port = int(ray_opts.get("metrics_port") or 0)
        if metrics_port > 0 and not any(a.startswith("--metrics-export-port") for a in start_args):
            command += ["--metrics-export-port", str(metrics_port)]
        # The rack always says how many GPUs vLLM may use here; the CPU build only with the Ray executor
        # (a lab shim that lets vLLM's CPU build use Ray counts workers as GPUs), so the lab's native
        # Ray containers stay as they were.
        if (platform == "cuda" or mode == "ray") and not any(a.startswith("--num-gpus") for a in start_args):
            command += ["--num-gpus", "1" if node["host"] in gpu_hosts else "0"]
        env = {str(k): str(v) for k, v in (ray_opts.get("env") or {}).items()}
        if mode == "ray":
            env.update(model_env)  # the workers' node-local environment (vLLM copies only some of the driver's)
        env.update({"RAY_NODE_IP_ADDRESS": ip, "RAY_OVERRIDE_NODE_IP_ADDRESS": ip, "VLLM_HOST_IP": ip})
        env.update(fabric_env(node))
        auth_env, auth_mounts = _ray_auth(ray_opts)
        env.update(auth_env)
        mounts = [f"{ray_opts['tmp']}:/tmp/ray", *auth_mounts]
        if mode == "ray":
            mounts += [f"{models_dir}:/models:ro", f"{cache_dir}:/root/.cache"]
        container = {
            "kind": "ray",
            "host": node["host"],
            "rank": rank,
            "role": "ray-head" if is_head else "ray-worker",
            "name": str(ray_opts["container"]),
            "image": ref,
            "env": dict(sorted(env.items())),
            "mounts": mounts,
            "command": command,
            "docker": dict(docker),
            "gpus_for_vllm": 1 if node["host"] in gpu_hosts else 0,
        }
        spec = json.dumps({k: container[k] for k in ("host", "image", "env", "mounts", "command", "docker", "name")},
                          sort_keys=True)
        container["labels"] = {LABEL_RAY_HASH: hashlib.sha256(spec.encode()).hexdigest()[:16],
                               LABEL_RAY_ROLE: "head" if is_head else "worker"}
        if node["host"] in gpu_hosts:  # the Ray executor places one of the model's workers here
            container["labels"][LABEL_RAY_MODEL] = model
        container["argv"] = docker_run_argv(container)
        container["command_line"] = " ".join(shlex.quote(a) for a in command)
        out["containers"].append(container)
        out["by_host"][node["host"]] = container
    return out


def _cpu_ray_bind(ray: dict[str, Any], used: Sequence[Mapping[str, Any]], setting: Any) -> None:
    """The lab's CPU build with the Ray executor: vLLM's worker on a node runs in its Ray container, so
    VLLM_CPU_OMP_THREADS_BIND goes there, by the node's rank among the serving nodes (the head's vLLM
    container has no worker and sets none: vLLM would copy the driver's value to every worker). The CPU
    build's shared-memory all-reduce across nodes is the lab shim's business (lab/serving/image/shim)."""
    for rank, node in enumerate(used):
        container = ray["by_host"].get(node["host"])
        if not container:
            continue
        env = dict(container["env"])
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", _cpu_bind(setting, rank, node))
        container["env"] = dict(sorted(env.items()))
        spec = json.dumps({k: container[k] for k in ("host", "image", "env", "mounts", "command", "docker", "name")},
                          sort_keys=True)
        container["labels"] = dict(container["labels"], **{LABEL_RAY_HASH: hashlib.sha256(spec.encode()).hexdigest()[:16]})
        container["argv"] = docker_run_argv(container)


def _hash_opts(opts: Mapping[str, Any], docker: Mapping[str, Any]) -> dict[str, Any]:
    """The settings outside the containers' specs that a relaunch must notice (the same keys as before the
    rack settings; GPU/RDMA options only when set, so the lab's hashes did not change)."""
    out = {k: opts.get(k) for k in ("env_files", "api_key_env_file", "restart_policy", "shm_size", "ulimits", "ipc",
                                    "follower_watchdog")}
    out["gpus"] = docker.get("gpus") or ("" if opts.get("gpus") == "auto" else opts.get("gpus"))
    for key in ("devices", "cap_add"):
        if docker.get(key):
            out[key] = list(docker[key])
    return out


def _cpu_bind(setting: Any, rank: int, node: Mapping[str, Any]) -> str:
    value = str(setting or "auto")
    if value == "by_rank":
        cpus = int(node.get("cpus") or 0)
        return str(rank % cpus if cpus > 0 else rank)
    return value


def docker_run_argv(container: Mapping[str, Any], opts: Mapping[str, Any] | None = None) -> list[str]:
    """``docker run`` for one container of the plan (vLLM or Ray): host network, its IPC, restart policy,
    limits, GPU and RDMA devices, labels, env files, environment, mounts, image, command.

    The container's ``docker`` settings decide; ``opts`` (the plan's options) stands in for a container
    planned without them.
    """
    d = dict(container.get("docker") or {})
    if not d:
        o = dict(opts or {})
        d = {"ipc": o.get("ipc", "host"), "restart": o.get("restart_policy", "unless-stopped"),
             "ulimits": o.get("ulimits", ["memlock=-1", "nofile=1048576:1048576"]), "shm_size": o.get("shm_size"),
             "gpus": o.get("gpus"), "devices": o.get("devices") or [], "cap_add": o.get("cap_add") or [],
             "env_files": o.get("env_files") or [], "api_key_env_file": o.get("api_key_env_file")}
    argv = ["docker", "run", "--detach", "--pull", "never", "--name", str(container["name"]), "--network", "host",
            "--ipc", str(d.get("ipc") or "host"), "--restart", str(d.get("restart") or "unless-stopped")]
    for limit in d.get("ulimits") or []:
        argv += ["--ulimit", str(limit)]
    if d.get("pid"):
        argv += ["--pid", str(d["pid"])]
    if d.get("shm_size"):
        argv += ["--shm-size", str(d["shm_size"])]
    if d.get("gpus"):
        argv += ["--gpus", str(d["gpus"])]
    for device in d.get("devices") or []:
        argv += ["--device", str(device)]
    for cap in d.get("cap_add") or []:
        argv += ["--cap-add", str(cap)]
    for label, value in sorted(container["labels"].items()):
        argv += ["--label", f"{label}={value}"]
    # Optional env files (the nodes work's) are single "--env-file=<path>" words, so the launcher can
    # drop one that is missing on the node at run time.
    for path in d.get("env_files") or []:
        argv.append(f"--env-file={path}")
    if d.get("api_key_env_file") and container["role"] == "api":
        argv += ["--env-file", str(d["api_key_env_file"])]
    for key, value in container["env"].items():
        argv += ["--env", f"{key}={value}"]
    for mount in container["mounts"]:
        argv += ["--volume", mount]
    argv += [str(container["image"])] + [str(a) for a in container.get("command") or ["vllm", "serve", *container["args"]]]
    return argv


# ---------------------------------------------------------------------------------- memory flags
# The planner's vllm_memory_args (memfit: by vLLM's names) that become flags of `vllm serve`.
MEMORY_FLAG_KEYS = ("kv_cache_memory_bytes", "gpu_memory_utilization")


def with_memory_args(plan: Mapping[str, Any], memory_args: Mapping[str, Any] | None) -> dict[str, Any]:
    """``plan`` with the memory planner's flags in every vLLM container's command.

    On CUDA ``memory_args`` (``plan_memory``'s ``vllm_memory_args``) replace the catalog's
    ``--kv-cache-memory-bytes`` / ``--gpu-memory-utilization``: bytes mode gives both (the KV pool per
    rank, and a utilization that passes vLLM's start-up admission), fraction mode the utilization alone.
    The CPU build sizes its KV pool from ``VLLM_CPU_KVCACHE_SPACE`` (already in the plan's environment)
    and takes neither flag: its plan is returned unchanged. The plan's hash is kept: it names the
    catalog's settings, while these flags follow the node figures measured just before each start.
    """
    out = dict(plan)
    args_given = {k: v for k, v in dict(memory_args or {}).items() if k in MEMORY_FLAG_KEYS and v is not None}
    if str(plan.get("platform")) != "cuda" or not args_given:
        return out
    flags = [_flag(k) for k in MEMORY_FLAG_KEYS]
    new_flags: list[str] = []
    for key in MEMORY_FLAG_KEYS:
        if key in args_given:
            value = args_given[key]
            new_flags += [_flag(key), str(int(value)) if key == "kv_cache_memory_bytes" else f"{float(value):g}"]
    containers = []
    for old in plan["containers"]:
        c = dict(old)
        args = [str(a) for a in c["args"]]
        kept: list[str] = []
        at = None
        i = 0
        while i < len(args):
            if args[i] in flags:
                at = len(kept) if at is None else at
                i += 2
                continue
            kept.append(args[i])
            i += 1
        at = 3 if at is None else at  # after "<model dir> --served-model-name <name>"
        new_args = kept[:at] + new_flags + kept[at:]
        command = list(c["command"])
        c["command"] = command[: len(command) - len(args)] + new_args
        c["args"] = new_args
        c["argv"] = docker_run_argv(c)
        c["command_line"] = ("(under the head watchdog) " if c["command"][0] != "vllm" else "") + \
            "vllm serve " + " ".join(shlex.quote(a) for a in new_args)
        containers.append(c)
    out["containers"] = containers
    out["by_host"] = {c["host"]: c for c in containers}
    out["launch"] = {**dict(plan.get("launch") or {}), **args_given}
    if "kv_cache_memory_bytes" not in args_given:
        out["launch"].pop("kv_cache_memory_bytes", None)
    return out


# ------------------------------------------------------------------------------------------------ render
def env_file_contents(plan: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """host -> the KEY=value content nccl_env writes to /etc/gb10/serving.env there (same function)."""
    out = {}
    for node in nodes:
        if node.get("fabric"):
            out[str(node["host"])] = dict(_rack.serving_env_lines(node["fabric"], node.get("nccl_env") or {}))
    return out


def host_setup(nodes: Sequence[Mapping[str, Any]], roce: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """host -> what roles/roce_qos does to its twins (the commands), for the render."""
    if not roce or not roce.get("enabled") or roce.get("dscp") is None or roce.get("priority") is None:
        return {}
    out = {}
    for node in nodes:
        interfaces = list((node.get("fabric") or {}).get("interfaces") or [])
        if interfaces:
            out[str(node["host"])] = {
                "roce_qos": [item["argv"] for item in _rack.qos_items(interfaces, roce)],
                "note": ("roles/roce_qos (site.yml) on a GB10 with ConnectX-7 only (SKIPPED in the lab); changes only "
                         f"what differs; DSCP {roce['dscp']} -> priority {roce['priority']}, NCCL_IB_TC {roce.get('tc')}."),
            }
    return out


def render_containers(plan: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]],
                      memory: Mapping[str, Any] | None = None, roce: Mapping[str, Any] | None = None,
                      env_file: str = "/etc/gb10/serving.env") -> list[dict[str, Any]]:
    """The render: one object per container every node would run (vLLM, then Ray), with the argv the
    serving play runs, the content of the env file it passes (``env_files``), the memory plan (vLLM
    containers), the twins' marking of its node (``host_setup``) and notes."""
    files = env_file_contents(plan, nodes)
    setup = host_setup(nodes, roce)
    memory = dict(memory or {})
    out = []
    for c in list(plan["containers"]) + list(plan["ray"]["containers"]):
        obj: dict[str, Any] = {
            "host": c["host"],
            "name": c["name"],
            "role": c["role"],
            "argv": list(c["argv"]),
            "model": plan["model"],
            "image": c["image"],
            "executor": plan["executor"],
            "layout": {k: plan["layout"][k] for k in ("nodes", "tp", "pp", "rule")},
        }
        used_files = [a.split("=", 1)[1] for a in c["argv"] if a.startswith("--env-file=")]
        obj["env_files"] = {path: files.get(c["host"], {}) if path == env_file else None for path in used_files}
        notes = list(plan.get("notes") or []) + list(plan.get("refused") or [])
        if memory:
            notes.append(f"Node memory: {memory.get('note', 'not measured')}.")
        if c["kind"] == "ray" and plan["executor"] == "ray":
            notes.append(f"vLLM workers here: {c['gpus_for_vllm']} (ray start --num-gpus; vLLM asks one GPU per worker).")
        if c["kind"] == "vllm" and memory:
            obj["memory"] = memory
        if c["host"] in setup:
            obj["host_setup"] = setup[c["host"]]
        obj["notes"] = notes
        out.append(obj)
    return out


def memory_params(plan: Mapping[str, Any], entry: Mapping[str, Any], root: str) -> dict[str, Any]:
    """The memory planner's arguments for a plan (its nodes and TP x PP), through the catalog's one
    conversion (catalog.planner_args); the node figures are left to the planner's GB10 planning defaults
    (a render measures nothing)."""
    return _catalog.planner_args(entry, {"nodes": plan["nodes"], "tensor_parallel_size": plan["tensor_parallel_size"],
                                         "pipeline_parallel_size": plan["pipeline_parallel_size"]}, root)


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


def _phase_entry(value: Any) -> bool:
    """One task of a phase: ``{step, result[, host]}`` (see ``unreachable_hosts``)."""
    return isinstance(value, Mapping) and "step" in value and "result" in value


def unreachable_hosts(result: Any, default_host: str = "") -> list[str]:
    """The hosts a delegated task (run with ``ignore_unreachable``) could not reach, in order.

    ``result`` is what the task registered: with a loop, the host of each unreachable item is the item
    itself, its ``host`` key, or its first element; without a loop it is ``default_host``.

    ``result`` may also be a list, the tasks of a phase in order: each element is what a task
    registered or ``{step, result, host}`` (``host`` replaces ``default_host`` for that task). The
    hosts of all of them are returned, each once."""
    if isinstance(result, (list, tuple)):
        hosts: list[str] = []
        for element in result:
            if _phase_entry(element):
                found = unreachable_hosts(element["result"], str(element.get("host") or default_host))
            else:
                found = unreachable_hosts(element, default_host)
            hosts += [h for h in found if h not in hosts]
        return hosts
    if not isinstance(result, Mapping):
        return []
    if isinstance(result.get("results"), list):
        hosts = []
        for r in result["results"]:
            if isinstance(r, Mapping) and r.get("unreachable"):
                host = _result_host(r, default_host)
                if host not in hosts:
                    hosts.append(host)
        return hosts
    return [str(default_host)] if result.get("unreachable") else []


def first_lost(phase: Sequence[Mapping[str, Any]], default_host: str = "") -> tuple[str, list[str]]:
    """The step of the first task of a phase (``[{step, result, host}, ...]``) that could not reach a
    node, and the nodes it could not reach; ``('', [])`` when every node answered."""
    for entry in phase:
        hosts = unreachable_hosts(entry.get("result"), str(entry.get("host") or default_host))
        if hosts:
            return str(entry.get("step", "")), hosts
    return "", []


def is_phase(value: Any) -> bool:
    """True for a phase: a non-empty list of ``{step, result[, host]}``."""
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(_phase_entry(e) for e in value)


def lost_message(hosts: Sequence[str], nodes: Sequence[Mapping[str, Any]], step: str) -> str:
    """One sentence naming the nodes that stopped answering, with their management addresses."""
    addr = {str(n.get("host")): str(n.get("mgmt_ip", "")) for n in nodes}
    named = [f"{h} ({addr[h]})" if addr.get(h) else h for h in hosts]
    return f"{' and '.join(named)} stopped answering over SSH while {step}."


def phase_lost_message(phase: Sequence[Mapping[str, Any]], nodes: Sequence[Mapping[str, Any]]) -> str:
    """``lost_message`` for the first task of a phase that lost a node, with that task's step; '' when
    every node answered. A node lost at one step is usually skipped by the steps after it, so the
    message is the one a guard right after that step would have given."""
    step, hosts = first_lost(phase)
    return lost_message(hosts, nodes, step) if hosts else ""


NODE_READ_MARK = "#gb10-read#"
# The read's first line: what comes before it (sudo's notices, through raw's terminal) is not the read.
NODE_READ_BEGIN = "#gb10-read-begin#"
NODE_READ_SECTIONS = ("ps", "restarts", "ray", "guard", "record", "proxy", "kv")


def node_read_results(hosts: list[str], reads: dict[str, Any]) -> dict[str, Any]:
    """The per-node reads that serve.yml's node play registered (``reads``: {host: registered result})
    in the shape of the delegated loop's registered result that node_reads splits: {'results':
    [{'item': host, ...}, ...]} in the order of ``hosts``. A node with no read raises ValueError naming
    it (the node play reads every node of the run, or stops the run)."""
    missing = [h for h in hosts if h not in reads]
    if missing:
        raise ValueError(f"no read of what serves from {', '.join(missing)}: serve.yml's node play reads every "
                         "node (roles/vllm_serve/tasks/node_read.yml) before vllm_serve decides")
    return {"results": [{**dict(reads[h]), "item": h} for h in hosts]}


def node_reads(result: Any) -> dict[str, Any]:
    """Split the one read per node of roles/vllm_serve/tasks/current.yml (a registered loop over the
    nodes, each item's stdout seven sections separated by NODE_READ_MARK lines: the vLLM container
    (``docker ps``), its restart count, the Ray container (``docker inspect``), the memory guard's
    stopped.json, the record of what serves (deployment.json, on the head only), the API proxy's
    nginx and vLLM's KV cache log lines (on the plan's head only)) into what the separate reads registered before:

    ``ps`` and ``guard``: {'results': [{'item': host, 'rc': 0, 'stdout': text}, ...]} (the nodes that
    answered, in order); ``restarts``: {host: count} (nodes with a vLLM container); ``ray``: {host:
    'status hash'} ('' when the node has no Ray container); ``record``: {host: text} (nodes that have one);
    ``proxy``: {host: {'installed', 'default_site', 'enabled', 'active'}} (booleans: the nginx package is
    installed, Debian's default site is enabled, the service is enabled, it is active); ``kv``: {host: text}
    (nodes whose vLLM logged KV cache lines: the plan's head)."""
    out: dict[str, Any] = {"ps": {"results": []}, "guard": {"results": []}, "restarts": {}, "ray": {}, "record": {},
                           "proxy": {}, "kv": {}}
    for item in (dict(result or {}).get("results") or []):
        if item.get("unreachable") or item.get("failed") or "stdout" not in item:
            continue
        host = str(item.get("item"))
        stdout = _raw.after_mark(str(item.get("stdout") or ""), NODE_READ_BEGIN)
        parts = stdout.split(NODE_READ_MARK)
        parts += [""] * (len(NODE_READ_SECTIONS) - len(parts))
        text = dict(zip(NODE_READ_SECTIONS, (p.strip("\n") for p in parts)))
        out["ps"]["results"].append({"item": host, "rc": 0, "stdout": text["ps"].strip()})
        out["guard"]["results"].append({"item": host, "rc": 0, "stdout": text["guard"].strip()})
        if text["restarts"].strip().isdigit():
            out["restarts"][host] = int(text["restarts"].strip())
        out["ray"][host] = text["ray"].strip()
        if text["record"].strip():
            out["record"][host] = text["record"].strip()
        if text["kv"].strip():
            out["kv"][host] = text["kv"].strip()
        proxy = [line.strip() for line in text["proxy"].splitlines()]
        out["proxy"][host] = {"installed": "install ok installed" in proxy, "default_site": "default-site" in proxy,
                              "enabled": "enabled=enabled" in proxy, "active": "active=active" in proxy}
    return out
