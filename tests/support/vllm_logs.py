"""vLLM 0.32.0 start-up log excerpts for the calibration tests (module_utils and filter).

The CUDA excerpts are written in the exact formats of vLLM 0.32.0's source (the f-strings and %-formats
quoted in plugins/module_utils/calibration.py; GiB through format_gib, i.e. round(x, 2) as text); the
figures are made up but consistent with vLLM's own arithmetic. The CPU lines are the lab's real ones
(bench/memfit/results/vllm_observed.json, with vLLM's process prefix).
"""

from __future__ import annotations

# gpt-oss-120b on one GB10 in fraction mode (utilization 0.8): a single-process engine, so every line is
# the EngineCore's. Available KV = requested - consumed - (peak - graph estimate) - graph estimate:
# 97.35 - 61.73 - 1.53 - 0.52 = 33.57 GiB; the suggested pool = 97.35 - (61.73 + 2.05 + 0.48) GiB - 150 MiB.
FRACTION_TP1 = """\
(EngineCore pid=88) INFO 11-27 10:01:02 [gpu_model_runner.py:5149] Model loading took 60.92 GiB memory and 95.123456 seconds
(EngineCore pid=88) INFO 11-27 10:01:40 [gpu_model_runner.py:6369] Profiling CUDA graph memory: PIECEWISE=35 (largest=512), FULL=19 (largest=32)
(EngineCore pid=88) INFO 11-27 10:01:55 [gpu_model_runner.py:6474] Estimated CUDA graph memory: 0.52 GiB total
(EngineCore pid=88) INFO 11-27 10:01:55 [gpu_worker.py:759] Available KV cache memory: 33.57 GiB
(EngineCore pid=88) INFO 11-27 10:01:56 [kv_cache_utils.py:2327] GPU KV cache size: 3,889,968 tokens, Maximum concurrency for 131,072 tokens per request: 29.68x
(EngineCore pid=88) INFO 11-27 10:02:37 [gpu_model_runner.py:6581] Graph capturing finished in 21 secs, took 0.48 GiB
(EngineCore pid=88) INFO 11-27 10:02:37 [gpu_worker.py:971] CUDA graph pool memory: 0.48 GiB (actual), 0.52 GiB (estimated), difference: 0.04 GiB (8.3%).
(EngineCore pid=88) INFO 11-27 10:02:37 [gpu_worker.py:1034] Free memory on device (99.81/121.69 GiB) on startup. Desired GPU memory utilization is (0.8, 97.35 GiB). Actual usage is 61.73 GiB for consumed memory (weights + non-torch), 2.05 GiB for peak activation, and 0.48 GiB for CUDAGraph memory. Replace gpu_memory_utilization config with `--kv-cache-memory=35372830556` (32.94 GiB) to fit into requested memory, or `--kv-cache-memory=38014235443` (35.4 GiB) to fully utilize gpu memory. Current kv cache memory in use is 33.57 GiB.
"""

# Qwen3.5-397B NVFP4 on four GB10s in bytes mode over Ray: remote lines carry Ray's prefix before vLLM's.
BYTES_TP4 = "\n".join(
    line
    for tp, ip, pid, weights, free, graphs in (
        (0, "10.77.0.11", 2211, "54.31", "98.84", "0.37"),
        (1, "10.77.0.12", 1904, "54.29", "99.02", "0.37"),
        (2, "10.77.0.13", 1911, "54.29", "98.97", "0.38"),
        (3, "10.77.0.14", 1899, "54.33", "99.11", "0.37"),
    )
    for line in (
        f"(RayWorkerProc pid={pid}, ip={ip}) (Worker_TP{tp} pid={pid}) INFO 11-27 10:03:12 [gpu_model_runner.py:5149] "
        f"Model loading took {weights} GiB memory and 301.554321 seconds",
        f"(RayWorkerProc pid={pid}, ip={ip}) (Worker_TP{tp} pid={pid}) INFO 11-27 10:03:40 [gpu_worker.py:669] "
        f"Initial free memory {free} GiB, reserved 35.38 GiB memory for KV Cache as specified by "
        "kv_cache_memory_bytes config and skipped memory profiling. This does not respect the "
        "gpu_memory_utilization config. Only use kv_cache_memory_bytes config when you want manual control of KV "
        "cache memory size. If OOM'ed, check the difference of initial free memory between the current run and "
        "the previous run where kv_cache_memory_bytes is suggested and update it correspondingly.",
        f"(RayWorkerProc pid={pid}, ip={ip}) (Worker_TP{tp} pid={pid}) INFO 11-27 10:04:21 [gpu_model_runner.py:6581] "
        f"Graph capturing finished in 41 secs, took {graphs} GiB",
    )
) + (
    "\n(EngineCore pid=1980) INFO 11-27 10:03:41 [kv_cache_utils.py:2327] GPU KV cache size: 4,200,044 tokens, "
    "Maximum concurrency for 262,144 tokens per request: 16.02x\n"
)

REFUSED = (
    "(Worker_TP0 pid=77) ERROR 11-27 09:58:01 [multiproc_executor.py:770] ValueError: Free memory on device cuda:0 "
    "(97.07/121.69 GiB) on startup is less than desired GPU memory utilization (0.8, 97.35 GiB). Decrease GPU memory "
    "utilization or reduce GPU memory used by other processes.\n"
)

# The lab's CPU build (bench/memfit/results/vllm_observed.json, case dense-2k-512), with vLLM's prefix.
CPU_LAB = """\
(EngineCore pid=41) INFO 11-27 09:20:01 [cpu_worker.py:260] Explicitly set (1.0/10.96) GiB for KV cache on node 0.
(EngineCore pid=41) INFO 11-27 09:20:01 [kv_cache_utils.py:2327] CPU KV cache size: 262,144 tokens, Maximum concurrency for 2,048 tokens per request: 128.00x
"""
# vLLM's CPU auto sizing (cpu_worker.py, no VLLM_CPU_KVCACHE_SPACE) and the older two-line capacity format
CPU_AUTO = """\
(Worker_TP1 pid=52) INFO 11-27 10:00:00 [cpu_worker.py:260] Auto set (3.2/10.96) GiB for KV cache on node 0, with 4.5 GiB requested memory for the worker. 1.3 GiB memory was consumed by non-kv usages.
(EngineCore pid=10) INFO 11-27 10:00:00 [kv_cache_utils.py:1100] CPU KV cache size: 2,097,152 tokens
(EngineCore pid=10) INFO 11-27 10:00:00 [kv_cache_utils.py:1104] Maximum concurrency for 512 tokens per request: 4096.00x
"""
