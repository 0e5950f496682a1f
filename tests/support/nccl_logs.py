"""NCCL INFO log excerpts shared by the transport parser's tests and the transport task's."""

# NCCL INFO excerpts, as NCCL 2.2x prints them (host:pid:tid [cudaDev] NCCL INFO ...), once bare (native
# multi-node: each node's vLLM log) and once behind Ray's prefix (the Ray executor: workers' lines in the
# head's vLLM log).
IB_NATIVE = """\
INFO 11-29 10:00:01 [parallel_state.py:1208] world_size=4 rank=0 local_rank=0 distributed_init_method=tcp://192.168.100.11:29501
gx10-1:412:412 [0] NCCL INFO Bootstrap : Using enp1s0f1np1:192.168.100.11<0>
gx10-1:412:412 [0] NCCL INFO cudaDriverVersion 13000
gx10-1:412:412 [0] NCCL INFO NCCL version 2.27.7+cuda13.0
gx10-1:412:530 [0] NCCL INFO NET/Plugin: Could not find: libnccl-net.so. Using internal network plugin.
gx10-1:412:530 [0] NCCL INFO NET/IB : Using [0]rocep1s0f1:1/RoCE [1]roceP2p1s0f1:1/RoCE [RO]; OOB enp1s0f1np1:192.168.100.11<0>
gx10-1:412:530 [0] NCCL INFO Using network IB
gx10-1:412:530 [0] NCCL INFO ncclCommInitRank comm 0xaaab1c2d3e40 rank 0 nranks 4 cudaDev 0 nvmlDev 0 busId f01000 commId 0x5a1c - Init START
gx10-1:412:530 [0] NCCL INFO Channel 00/0 : 3[0] -> 0[0] [receive] via NET/IB/0
gx10-1:412:530 [0] NCCL INFO Channel 01/0 : 3[0] -> 0[0] [receive] via NET/IB/1
gx10-1:412:530 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[0] [send] via NET/IB/0
gx10-1:412:530 [0] NCCL INFO Channel 01/0 : 0[0] -> 1[0] [send] via NET/IB/1
gx10-1:412:530 [0] NCCL INFO Connected all rings, use ring PXN 0 GDR 0
"""
SOCKET_VIA_RAY = """\
(RayWorkerProc pid=2210, ip=192.168.100.12) gx10-2:2210:2290 [0] NCCL INFO Bootstrap : Using enp1s0f1np1:192.168.100.12<0>
(RayWorkerProc pid=2210, ip=192.168.100.12) gx10-2:2210:2290 [0] NCCL INFO NET/Plugin: Could not find: libnccl-net.so. Using internal network plugin.
(RayWorkerProc pid=2210, ip=192.168.100.12) gx10-2:2210:2290 [0] NCCL INFO NET/IB : No device found.
(RayWorkerProc pid=2210, ip=192.168.100.12) gx10-2:2210:2290 [0] NCCL INFO NET/Socket : Using [0]enp1s0f1np1:192.168.100.12<0>
(RayWorkerProc pid=2210, ip=192.168.100.12) gx10-2:2210:2290 [0] NCCL INFO Using network Socket
(RayWorkerProc pid=2210, ip=192.168.100.12) gx10-2:2210:2290 [0] NCCL INFO Channel 00/0 : 1[0] -> 2[0] [send] via NET/Socket/0
(RayWorkerProc pid=2210, ip=192.168.100.12) gx10-2:2210:2290 [0] NCCL INFO Channel 01/0 : 1[0] -> 2[0] [send] via NET/Socket/0
"""
