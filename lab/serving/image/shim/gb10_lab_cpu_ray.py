"""LAB ONLY: let vLLM's CPU build use the Ray executor (never part of a rack image).

vLLM's CPU platform refuses the Ray executor ("current platform cpu does not support ray") only
because ``CpuPlatform.ray_device_key`` is empty: the key names the Ray resource each worker asks for.
When ``GB10_LAB_CPU_RAY=1`` (the lab image sets it), this module, imported at every interpreter start
by ``gb10_lab_cpu_ray.pth`` in the image's site-packages, sets the key to "GPU" as soon as
``vllm.platforms.cpu`` is imported, in every Python process of the container: the API server, the
engine core and Ray's worker processes. The lab's Ray containers start with ``--num-gpus 1`` on each
node that hosts a worker (the serving plan does that for the Ray executor), so vLLM's placement group
(one bundle of one "GPU" per worker) puts exactly one worker on each serving node, as on the rack.
Nothing else is changed; see docs/rack-contract.md ("The lab's Ray executor").
"""
from __future__ import annotations

import importlib.abc
import os
import sys

TARGET = "vllm.platforms.cpu"
DEVICE_KEY = "GPU"


class _CpuRayFinder(importlib.abc.MetaPathFinder):
    """Finds vllm.platforms.cpu with the other finders, then sets the key once the module has run."""

    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                break
        else:
            return None
        run = spec.loader.exec_module

        def exec_module(module):  # type: ignore[no-untyped-def]
            run(module)
            module.CpuPlatform.ray_device_key = DEVICE_KEY

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if os.environ.get("GB10_LAB_CPU_RAY") == "1" and not any(isinstance(f, _CpuRayFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _CpuRayFinder())
