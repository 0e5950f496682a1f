"""LAB ONLY: let vLLM's CPU build use the Ray executor across nodes (never part of a rack image).

Two small changes, made as the vLLM modules are imported, when ``GB10_LAB_CPU_RAY=1`` (the lab image
sets it); this module is imported at every interpreter start by ``gb10_lab_cpu_ray.pth`` in the image's
site-packages, so they hold in every Python process of the container: the API server, the engine core
and Ray's worker processes.

1. ``vllm.platforms.cpu``: vLLM's CPU platform refuses the Ray executor ("current platform cpu does not
   support ray") only because ``CpuPlatform.ray_device_key`` is empty: the key names the Ray resource
   each worker asks for. It is set to "GPU". The lab's Ray containers start with ``--num-gpus 1`` on each
   node that hosts a worker (the serving plan does that for the Ray executor), so vLLM's placement group
   (one bundle of one "GPU" per worker) puts exactly one worker on each serving node, as on the rack.
2. ``vllm.distributed.device_communicators.cpu_communicator``: the CPU build's shared-memory all-reduce
   (``_CPUSHMDistributed``) is used when every rank of a TP/PP group computes the same SHM group name,
   and it only works when those ranks share one host's /dev/shm. The name comes from VLLM_DIST_IDENT,
   which the CPU worker derives from the distributed init method: node-local with the native multi-node
   executor (so the names differ across nodes and vLLM falls back to torch.distributed), but one for all
   ranks with the Ray executor, so the ranks on the second node failed ("open shm in SHMManager failed.
   errno: 2"). The name gets the rank's host name appended: ranks on one host still share the SHM
   communicator, ranks on several hosts fall back to torch.distributed (Gloo), as in native mode.

Nothing else is changed; see docs/rack-contract.md ("The lab's Ray executor").
"""
from __future__ import annotations

import importlib.abc
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

DEVICE_KEY = "GPU"


def _cpu_platform(module: Any) -> None:
    module.CpuPlatform.ray_device_key = DEVICE_KEY


def _cpu_communicator(module: Any) -> None:
    shm = module._CPUSHMDistributed
    original = shm.make_group_name
    if getattr(original, "gb10_lab_host", False):
        return

    def make_group_name(communicator: Any) -> str:
        return f"{original(communicator)}-{socket.gethostname()}"

    make_group_name.gb10_lab_host = True  # type: ignore[attr-defined]
    shm.make_group_name = staticmethod(make_group_name)


# Module name -> what to change once the module has run.
PATCHES: dict[str, Callable[[Any], None]] = {
    "vllm.platforms.cpu": _cpu_platform,
    "vllm.distributed.device_communicators.cpu_communicator": _cpu_communicator,
}


class _CpuRayFinder(importlib.abc.MetaPathFinder):
    """Finds the modules of PATCHES with the other finders, then changes them once they have run."""

    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        patch = PATCHES.get(name)
        if patch is None:
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
            patch(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if os.environ.get("GB10_LAB_CPU_RAY") == "1" and not any(isinstance(f, _CpuRayFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _CpuRayFinder())
