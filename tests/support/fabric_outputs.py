"""Output excerpts of the link-test tools, written in their documented formats, and rows built from them.

Shared by tests/unit/plugins/module_utils/test_fabric.py and tests/unit/plugins/modules/test_fabric_modules.py.
- ib_write_bw (perftest) with ``-F --report_gbits -D 5``: the banner, then the result table under
  ``#bytes #iterations BW peak[Gb/sec] BW average[Gb/sec] MsgRate[Mpps]`` (no peak with -D).
- nccl-tests all_gather_perf (MPI=1, one rank per node, NCCL_DEBUG=INFO, NCCL_DEBUG_SUBSYS=INIT,NET): the
  version line, the ranks, the table ``size count type redop root time algbw busbw #wrong`` (out-of-place
  then in-place) and the footer ``# Out of bounds values`` / ``# Avg bus bandwidth : X``.
"""
from __future__ import annotations

from ansible_collections.gb10.cluster.plugins.module_utils.fabric import judge_ib_write_bw


def ib_output(device: str, gid: int, local: str, remote: str, average: float, iterations: int = 873214) -> str:
    return f""" WARNING: BW peak won't be measured in this run.
---------------------------------------------------------------------------------------
                    RDMA_Write BW Test
 Dual-port       : OFF\t\tDevice         : {device}
 Number of qps   : 1\t\tTransport type : IB
 Connection type : RC\t\tUsing SRQ      : OFF
 PCIe relax order: ON
 ibv_wr* API     : ON
 TX depth        : 128
 CQ Moderation   : 1
 Mtu             : 4096[B]
 Link type       : Ethernet
 GID index       : {gid}
 Max inline data : 0[B]
 rdma_cm QPs\t : OFF
 Data ex. method : Ethernet
---------------------------------------------------------------------------------------
 local address: LID 0000 QPN 0x0127 PSN 0x3c1a2b RKey 0x183e00 VAddr 0x00f0a5e7a00000
 GID: 00:00:00:00:00:00:00:00:00:00:255:255:{local.replace('.', ':')}
 remote address: LID 0000 QPN 0x0127 PSN 0x9f21d0 RKey 0x183e00 VAddr 0x00e8c0a3400000
 GID: 00:00:00:00:00:00:00:00:00:00:255:255:{remote.replace('.', ':')}
---------------------------------------------------------------------------------------
 #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]
 65536      {iterations}           0.00               {average:.2f}              {average / 524.288:.6f}
---------------------------------------------------------------------------------------
"""


IB_TWIN_A = ib_output("rocep1s0f1", 3, "192.168.100.13", "192.168.100.14", 96.31)
# the same node's other twin, degraded (a PCIe link trained at half width gives about half the rate)
IB_TWIN_B_DEGRADED = ib_output("roceP2p1s0f1", 3, "192.168.101.13", "192.168.101.14", 46.12, 439870)
# the server never came up (or a firewall): no result table
IB_FAILED_CONNECT = """ Couldn't connect to 192.168.101.14:18516
Unable to open file descriptor for socket connection Unable to init the socket connection
"""
# a wrong GID index (the RoCE v2 IPv4 GID moved from 3 to 4): the QP cannot be brought up
IB_FAILED_GID = """---------------------------------------------------------------------------------------
                    RDMA_Write BW Test
 Dual-port       : OFF\t\tDevice         : roceP2p1s0f1
 GID index       : 3
---------------------------------------------------------------------------------------
 Failed to modify QP 0x0129 to RTR
 Unable to Connect the HCA's through the link
"""
IB_MB_PER_SEC = """ #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]
 65536      873214           0.00               11480.27              0.183684
"""


HOSTS = {"spark-a1": "gx10-1", "spark-a2": "gx10-2", "spark-a3": "gx10-3", "spark-a4": "gx10-4"}
ADDRESSES = {f"192.168.100.1{i}": f"gx10-{i}" for i in range(1, 5)}
NODES = [f"gx10-{i}" for i in range(1, 5)]
DEVICES = ["rocep1s0f1", "roceP2p1s0f1"]


def nccl_output(busbw_oop: float, busbw_ip: float, network: dict | None = None, devices: dict | None = None,
                wrong: int = 0) -> str:
    lines = [
        "# nccl-tests version 2.19.6 nccl-headers=22809 nccl-library=22809",
        "# Collective test starting: all_gather_perf",
        "# nThread 1 nGpus 1 minBytes 17179869184 maxBytes 17179869184 step: 2(factor) warmup iters: 1 "
        "iters: 20 agg iters: 1 validation: 1 graph: 0 unalign: 0",
        "#",
        "# Using devices",
    ]
    for rank, host in enumerate(HOSTS):
        lines.append(f"#  Rank {rank:2d} Group  0 Pid {41213 + rank:6d} on {host:>10s} device  0 [000f:01:00] NVIDIA GB10")
    for rank, host in enumerate(HOSTS):
        used = (devices or {}).get(host, DEVICES)
        listed = " ".join(f"[{i}]{d}:1/RoCE" for i, d in enumerate(used))
        lines.append(f"{host}:{41213 + rank}:{41213 + rank} [0] NCCL INFO NET/IB : Using {listed} [RO]; "
                     f"OOB enp1s0f1np1:192.168.100.1{rank + 1}<0>")
        lines.append(f"{host}:{41213 + rank}:{41213 + rank} [0] NCCL INFO Using network "
                     f"{(network or {}).get(host, 'IB')}")
    algbw_oop, algbw_ip = busbw_oop * 4 / 3, busbw_ip * 4 / 3
    time_oop, time_ip = 17179869184 / algbw_oop / 1e3, 17179869184 / algbw_ip / 1e3
    lines += [
        "#",
        "#                                                              out-of-place                       in-place          ",
        "#        size         count      type   redop    root     time   algbw   busbw  #wrong     time   algbw   busbw  #wrong ",
        "#         (B)    (elements)                               (us)  (GB/s)  (GB/s)             (us)  (GB/s)  (GB/s)         ",
        f" 17179869184    1073741824     float    none      -1  {time_oop:7.0f}  {algbw_oop:6.2f}  {busbw_oop:6.2f}  "
        f"{wrong:6d}  {time_ip:7.0f}  {algbw_ip:6.2f}  {busbw_ip:6.2f}  {0:6d}",
        f"# Out of bounds values : {wrong} {'FAILED' if wrong else 'OK'}",
        f"# Avg bus bandwidth    : {(busbw_oop + busbw_ip) / 2:g} ",
        "#",
        "# Collective test concluded: all_gather_perf",
    ]
    return "\n".join(lines) + "\n"


NCCL_HEALTHY = nccl_output(21.93, 22.06)
NCCL_LOW = nccl_output(11.02, 11.10)
# a rank fails mid-run (its peer's twin went away): the failure line names the host, mpirun exits non-zero
NCCL_FAILED_RANK = nccl_output(21.93, 22.06).split("#\n#    ")[0] + (
    "spark-a3: Test NCCL failure common.cu:1279 'unhandled system error (run with NCCL_DEBUG=INFO for details) / "
    "NET/IB : Got completion from peer 192.168.101.14<41337> with status=12 opcode=0 len=0 vendor err 129 (Recv)'\n"
    " .. spark-a3 pid 41215: Test failure common.cu:1134\n"
    "--------------------------------------------------------------------------\n"
    "Primary job  terminated normally, but 1 process returned\na non-zero exit code. Per user-direction, the job has been aborted.\n")
NCCL_SSH = ("ssh: connect to host 192.168.100.13 port 22: No route to host\n"
            "--------------------------------------------------------------------------\n"
            "ORTE was unable to reliably start one or more daemons.\n")


def ring(values: dict[tuple[str, str], float | None], nodes=NODES, minimum: float = 90) -> list[dict]:
    """ib_write_bw client rows around a ring: (node, twin) -> Gb/s (None: the run failed)."""
    rows = []
    for i, node in enumerate(nodes):
        peer = nodes[(i + 1) % len(nodes)]
        for twin in ("enp1s0f1np1", "enP2p1s0f1np1"):
            value = values.get((node, twin), 95.0)
            if value is None:
                rows.append(judge_ib_write_bw(node, twin, peer, 1, IB_FAILED_CONNECT, minimum))
            else:
                rows.append(judge_ib_write_bw(node, twin, peer, 0, ib_output("d", 3, "1.1.1.1", "1.1.1.2", value), minimum))
    return rows


PIN_COMMIT = "a0b82b2260cf5152b9f8c061bbf7eaf0ba096432"
BUILD = {"repo": "https://github.com/NVIDIA/nccl-tests.git", "tag": "v2.19.6", "commit": PIN_COMMIT,
         "prefix": "/opt/nccl-tests", "gencode": "-gencode=arch=compute_121,code=sm_121", "jobs": 8,
         "cuda_home": "/usr/local/cuda", "mpi_home": "/usr/lib/aarch64-linux-gnu/openmpi", "nccl_home": "/usr",
         "packages": ["perftest", "openmpi-bin", "libopenmpi-dev", "git", "build-essential"],
         "nccl_packages": ["libnccl2", "libnccl-dev"], "nccl_version_pin": ""}
TWINS = [{"interface": "enp1s0f1np1", "rdma_device": "rocep1s0f1"},
         {"interface": "enP2p1s0f1np1", "rdma_device": "roceP2p1s0f1"}]
