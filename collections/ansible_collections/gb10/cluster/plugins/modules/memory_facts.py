#!/usr/bin/python
"""Ansible module: a node's memory as vLLM will see it (MemAvailable, cgroup limit, page cache, GB10 GPU)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: memory_facts
short_description: A node's memory as vLLM sees it (MemAvailable, cgroup limit, page cache, integrated GPU)
description:
  - Reads C(/proc/meminfo) (C(MemTotal), C(MemAvailable), C(Cached), C(Buffers), C(SwapTotal), ...).
    On a GB10 node vLLM takes C(MemAvailable) as the GPU's free memory and refuses to start when
    C(total * gpu_memory_utilization) exceeds it; page cache counts against it until dropped.
  - Finds the tightest cgroup memory limit on the way from the module's own cgroup (C(/proc/self/cgroup))
    up to the root (cgroup v2 C(memory.max), C(memory.current) and C(inactive_file) of C(memory.stat);
    cgroup v1 C(memory.limit_in_bytes), C(memory.usage_in_bytes) and C(total_inactive_file)). A lab
    node is a container with a limit; a GB10 has none. The effective total is the smaller of
    C(MemTotal) and the limit; the effective available memory the smaller of C(MemAvailable) and the
    limit minus the usage plus the inactive file cache (the kernel reclaims that cache before it
    OOM-kills, as C(MemAvailable) counts the page cache).
  - Optionally runs C(nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader).
    On GB10 the memory fields read C([N/A]) or C(Not Supported); the GPU is then reported as
    integrated with C(gpu_memory_total_bytes) null. A missing or failing nvidia-smi is not an error.
  - Read-only; supports check mode.
options:
  meminfo_path:
    description: The meminfo file to read. Tests point it at a fixture.
    type: path
    default: /proc/meminfo
  cgroup_root:
    description: Where the cgroup tree is mounted (the cgroup v1 memory controller is its C(memory) folder). Tests point it at a fixture.
    type: path
    default: /sys/fs/cgroup
  proc_root:
    description: The proc file system; the module's own cgroup is read from C(self/cgroup) in it. Tests point it at a fixture.
    type: path
    default: /proc
  nvidia_smi:
    description:
      - The nvidia-smi executable, a name looked up in PATH or an absolute path. An empty string
        skips the GPU query.
    type: str
    default: nvidia-smi
author:
  - gb10-cluster
"""

EXAMPLES = r"""
- name: Read memory facts
  gb10.cluster.memory_facts:

- name: Plan with the smallest MemAvailable of the serving nodes (capped by a container's memory limit)
  gb10.cluster.memory_fit:
    model_config: "{{ gb10_model_config_path }}"
    tensor_parallel_size: "{{ groups['gb10_nodes'] | length }}"
    node_mem_available_bytes: >-
      {{ groups['gb10_nodes'] | map('extract', hostvars, ['gb10_memory', 'effective_mem_available_bytes']) | min }}
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    gb10_memory:
      description: The node's memory.
      type: dict
      contains:
        mem_total_bytes:
          description: MemTotal in bytes.
          type: int
        mem_available_bytes:
          description: MemAvailable in bytes (what vLLM counts as free on an integrated GPU).
          type: int
        mem_free_bytes:
          description: MemFree in bytes.
          type: int
        page_cache_bytes:
          description: Cached + Buffers in bytes (dropped by C(echo 3 > /proc/sys/vm/drop_caches)).
          type: int
        cached_bytes:
          description: Cached in bytes.
          type: int
        buffers_bytes:
          description: Buffers in bytes.
          type: int
        shmem_bytes:
          description: Shmem in bytes.
          type: int
        swap_total_bytes:
          description: SwapTotal in bytes.
          type: int
        swap_free_bytes:
          description: SwapFree in bytes.
          type: int
        gpu_present:
          description: True when nvidia-smi listed a GPU.
          type: bool
        gpu_count:
          description: Number of GPUs nvidia-smi listed.
          type: int
        gpu_name:
          description: The first GPU's name, null without a GPU.
          type: str
          sample: NVIDIA GB10
        gpu_integrated:
          description: True when the GPU has no dedicated memory (nvidia-smi says N/A) or is a GB10-class SoC.
          type: bool
        gpu_memory_total_bytes:
          description: Dedicated GPU memory in bytes; null when not supported (GB10) or no GPU.
          type: int
        gpu_memory_used_bytes:
          description: Used GPU memory in bytes; null when not supported or no GPU.
          type: int
        cgroup_version:
          description: The cgroup version, 2 when C(cgroup.controllers) is at the root of O(cgroup_root), else 1.
          type: int
        cgroup_path:
          description: The cgroup that holds the tightest memory limit; null without a limit.
          type: str
          sample: /system.slice/docker-4f1c2a.scope
        cgroup_memory_limit_bytes:
          description: The tightest memory limit from the module's cgroup up to the root; null without a limit (a GB10).
          type: int
        cgroup_memory_usage_bytes:
          description: The memory that cgroup uses (C(memory.current) or C(memory.usage_in_bytes)); null without a limit.
          type: int
        cgroup_inactive_file_bytes:
          description: Its inactive file cache (C(memory.stat)); null without a limit.
          type: int
        effective_mem_total_bytes:
          description: The smaller of C(mem_total_bytes) and the cgroup limit.
          type: int
        effective_mem_available_bytes:
          description: >-
            The smaller of C(mem_available_bytes) and the cgroup limit minus its usage plus its inactive
            file cache: the memory a process started here can still get.
          type: int
nvidia_smi_error:
  description: Why the GPU query gave nothing (not found, exit code and stderr); empty when it worked or was skipped.
  returned: always
  type: str
"""

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gb10.cluster.plugins.module_utils.meminfo import NVIDIA_SMI_QUERY, cgroup_memory, memory_facts

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "meminfo_path": {"type": "path", "default": "/proc/meminfo"},
    "cgroup_root": {"type": "path", "default": "/sys/fs/cgroup"},
    "proc_root": {"type": "path", "default": "/proc"},
    "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    path = module.params["meminfo_path"]
    try:
        with open(path, encoding="utf-8") as handle:
            meminfo = handle.read()
    except OSError as exc:
        module.fail_json(msg=f"Cannot read {path}: {exc.strerror}.")
        return

    smi_text: str | None = None
    smi_error = ""
    smi = module.params["nvidia_smi"]
    if smi:
        binary = smi if os.path.isabs(smi) and os.access(smi, os.X_OK) else module.get_bin_path(smi)
        if not binary:
            smi_error = f"{smi} not found"
        else:
            rc, out, err = module.run_command([binary, *NVIDIA_SMI_QUERY])
            if rc == 0:
                smi_text = out
            else:
                smi_error = f"{binary} exited {rc}: {(err or out).strip()}"
    try:
        facts = memory_facts(meminfo, smi_text, cgroup_memory(module.params["cgroup_root"], module.params["proc_root"]))
    except ValueError as exc:
        module.fail_json(msg=f"{path} is not a meminfo file: {exc}.")
        return
    module.exit_json(changed=False, ansible_facts={"gb10_memory": facts}, nvidia_smi_error=smi_error)


if __name__ == "__main__":
    main()
