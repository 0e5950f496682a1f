"""gb10_fabric (module_utils): parsers, per-node checks with a fake runner, the summary message."""
from __future__ import annotations

from ansible_collections.gb10.cluster.plugins.module_utils.fabric import (
    build_report,
    parse_ethtool_speed,
    parse_ib_write_bw,
    parse_ip_addr_json,
    parse_nccl_busbw,
    parse_ping,
    ping_command,
    run_node_checks,
    summarize,
    threshold_check,
)

PING_OK = """PING 192.168.100.12 (192.168.100.12) from 192.168.100.11 enp1s0f1np1: 8972(9000) bytes of data.
8980 bytes from 192.168.100.12: icmp_seq=1 ttl=64 time=0.093 ms
8980 bytes from 192.168.100.12: icmp_seq=2 ttl=64 time=0.070 ms

--- 192.168.100.12 ping statistics ---
2 packets transmitted, 2 received, 0% packet loss, time 1001ms
rtt min/avg/max/mdev = 0.070/0.081/0.093/0.011 ms
"""
PING_LOCAL_MTU = """PING 192.168.101.12 (192.168.101.12) from 192.168.101.13 enP2p1s0f1np1: 8972(9000) bytes of data.
ping: local error: message too long, mtu=1500
ping: local error: message too long, mtu=1500

--- 192.168.101.12 ping statistics ---
2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 1023ms
"""
# iputils 20240905 (Debian trixie lab node) with the twin at MTU 1500: the error goes to stderr
PING_SENDMSG_OUT = """PING 192.168.101.11 (192.168.101.11) from 192.168.101.13 enP2p1s0f1np1: 8972(9000) bytes of data.

--- 192.168.101.11 ping statistics ---
2 packets transmitted, 0 received, +2 errors, 100% packet loss, time 1014ms
"""
PING_SENDMSG_ERR = "ping: sendmsg: Message too long\nping: sendmsg: Message too long\n"
PING_LOST = """PING 192.168.101.13 (192.168.101.13) from 192.168.101.11 enP2p1s0f1np1: 8972(9000) bytes of data.

--- 192.168.101.13 ping statistics ---
2 packets transmitted, 0 received, 100% packet loss, time 1010ms
"""
ETHTOOL = """Settings for enp1s0f1np1:
\tSupported ports: [ FIBRE ]
\tSpeed: 200000Mb/s
\tDuplex: Full
\tLink detected: yes
"""
IB_WRITE_BW = """---------------------------------------------------------------------------------------
                    RDMA_Write BW Test
 Dual-port       : OFF\t\tDevice         : rocep1s0f1
 GID index       : 3
---------------------------------------------------------------------------------------
 #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]
 65536      5000             98.12              97.85               0.186633
---------------------------------------------------------------------------------------
"""
NCCL = """#                                                              out-of-place
#       size         count      type   redop    root     time   algbw   busbw #wrong
 17179869184    1073741824     float    none      -1   1536.2   11.18   22.37      0
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 22.3697
"""


def test_ping_command_is_a_df_jumbo_frame_through_the_twin():
    assert ping_command("enp1s0f1np1", "192.168.100.12") == [
        "ping", "-M", "do", "-s", "8972", "-c", "2", "-W", "2", "-I", "enp1s0f1np1",
        "192.168.100.12"]


def test_parse_ping():
    assert parse_ping(0, PING_OK, "") == (True, "2/2 received, rtt avg 0.081 ms")
    ok, detail = parse_ping(1, PING_LOCAL_MTU, "")
    assert not ok and "message too long" in detail and "mtu=1500" in detail
    ok, detail = parse_ping(1, PING_SENDMSG_OUT, PING_SENDMSG_ERR)
    assert not ok and detail.startswith("message too long")
    ok, detail = parse_ping(1, PING_LOST, "")
    assert not ok and detail.startswith("0/2 received")
    ok, detail = parse_ping(2, "", "ping: SO_BINDTODEVICE enpX: No such device")
    assert not ok and "No such device" in detail
    # one probe lost is a failure: every probe must come back
    half = PING_OK.replace("2 received, 0%", "1 received, 50%")
    assert parse_ping(0, half, "")[0] is False


def test_parsers():
    text = ('[{"ifindex":3,"ifname":"enp1s0f1np1","addr_info":[{"family":"inet",'
            '"local":"192.168.100.11","prefixlen":24}]}]')
    assert parse_ip_addr_json(text) == ["192.168.100.11/24"]
    assert parse_ip_addr_json("") == [] and parse_ip_addr_json("garbage") == []
    assert parse_ethtool_speed(ETHTOOL) == 200000
    assert parse_ethtool_speed("\tSpeed: Unknown!\n") is None
    assert parse_ib_write_bw(IB_WRITE_BW) == 97.85
    assert parse_ib_write_bw("Couldn't connect") is None
    assert parse_nccl_busbw(NCCL) == 22.3697
    assert parse_nccl_busbw("") is None


def test_threshold_check():
    assert threshold_check("gx10-1", None, None, "nccl_all_gather", 22.37, 21.875,
                           "GB/s")["status"] == "passed"
    low = threshold_check("gx10-1", None, None, "nccl_all_gather", 10.5, 21.875, "GB/s")
    assert low["status"] == "failed" and "minimum 21.875" in low["detail"]
    skip = threshold_check("gx10-1", "enp1s0f1np1", "gx10-2", "ib_write_bw", None, 90, "Gb/s",
                           skip_reason="no RDMA device rocep1s0f1")
    assert skip["status"] == "skipped" and skip["detail"] == "no RDMA device rocep1s0f1"
    none = threshold_check("gx10-1", None, None, "nccl_all_gather", None, 21.875, "GB/s",
                           output="mpirun: command not found")
    assert none["status"] == "failed" and "mpirun" in none["detail"]


class FakeNode:
    """Twins and peers in memory; records every command."""

    def __init__(self, mtu=None, absent=(), unreachable=()):
        self.mtu = {"enp1s0f1np1": 9000, "enP2p1s0f1np1": 9000}
        self.mtu.update(mtu or {})
        self.absent = set(absent)
        self.unreachable = set(unreachable)
        self.commands = []

    def read_interface(self, name):
        if name in self.absent:
            return {"exists": False}
        net = "100" if name == "enp1s0f1np1" else "101"
        return {"exists": True, "operstate": "up", "mtu": self.mtu[name],
                "addresses": [f"192.168.{net}.13/24"]}

    def run(self, argv):
        self.commands.append(argv)
        if argv[0] == "ethtool":
            return 0, ETHTOOL, ""
        twin, address = argv[-2], argv[-1]
        if self.mtu[twin] < 9000:
            return 1, PING_LOCAL_MTU, ""
        if address in self.unreachable:
            return 1, PING_LOST, ""
        return 0, PING_OK, ""


def _twins(peers=("gx10-1", "gx10-2", "gx10-4")):
    def nodes(net):
        return [{"node": p, "address": f"192.168.{net}.1{p[-1]}/24"} for p in peers]
    return [
        {"interface": "enp1s0f1np1", "address": "192.168.100.13/24", "peers": nodes("100")},
        {"interface": "enP2p1s0f1np1", "address": "192.168.101.13/24", "peers": nodes("101")},
    ]


def test_healthy_node_lab_skips_speed_and_pings_every_peer_on_every_twin():
    node = FakeNode()
    rows = run_node_checks("gx10-3", _twins(), 9000, node.read_interface, node.run,
                           hardware_skip_reason="lab container: no ConnectX-7")
    pings = [r for r in rows if r["check"] == "jumbo_ping"]
    assert len(pings) == 6 and all(r["status"] == "passed" for r in pings)
    speed = [r for r in rows if r["check"] == "link_speed"]
    assert [r["status"] for r in speed] == ["skipped", "skipped"]
    assert speed[0]["detail"] == "lab container: no ConnectX-7"
    assert not any(cmd[0] == "ethtool" for cmd in node.commands)
    assert {r["status"] for r in rows if r["check"] in ("link", "address", "mtu")} == {"passed"}


def test_hardware_checks_speed_with_ethtool():
    node = FakeNode()
    rows = run_node_checks("gx10-3", _twins(), 9000, node.read_interface, node.run)
    speed = [r for r in rows if r["check"] == "link_speed"]
    assert [r["status"] for r in speed] == ["passed", "passed"]
    assert speed[0]["detail"] == "expected 200000 Mb/s, found 200000 Mb/s"


def test_twin_at_mtu_1500_is_named_first_in_the_message():
    bad = FakeNode(mtu={"enP2p1s0f1np1": 1500})
    rows = run_node_checks("gx10-3", _twins(), 9000, bad.read_interface, bad.run,
                           hardware_skip_reason="lab")
    # what the other nodes see: their jumbo pings to gx10-3 on that twin get no answer
    peer = FakeNode(unreachable={"192.168.101.13"})
    peer_rows = run_node_checks("gx10-1", _twins(("gx10-2", "gx10-3", "gx10-4")), 9000,
                                peer.read_interface, peer.run, hardware_skip_reason="lab")
    summary = summarize(peer_rows + rows)
    assert summary["ok"] is False
    first = summary["failed"][0]
    assert (first["node"], first["twin"], first["check"]) == ("gx10-3", "enP2p1s0f1np1", "mtu")
    assert summary["message"].startswith("Fabric check FAILED")
    assert "gx10-3 twin enP2p1s0f1np1: mtu failed (expected 9000, found 1500)" in summary["message"]
    assert "gx10-1 twin enP2p1s0f1np1 -> gx10-3: jumbo_ping failed" in summary["message"]
    assert summary["counts"]["failed"] == 1 + 3 + 1  # mtu, 3 pings from gx10-3, 1 ping to it
    assert all(r["twin"] == "enP2p1s0f1np1" for r in summary["failed"])


def test_absent_twin_fails_link_and_skips_the_rest():
    node = FakeNode(absent={"enP2p1s0f1np1"})
    rows = run_node_checks("gx10-3", _twins(peers=()), 9000, node.read_interface, node.run)
    by = {(r["twin"], r["check"]): r for r in rows}
    assert by[("enP2p1s0f1np1", "link")]["status"] == "failed"
    assert "netdev absent" in by[("enP2p1s0f1np1", "link")]["detail"]
    assert by[("enP2p1s0f1np1", "mtu")]["status"] == "skipped"
    assert by[("enP2p1s0f1np1", "link_speed")]["status"] == "skipped"


def test_passing_summary_counts_skips_separately():
    node = FakeNode()
    rows = run_node_checks("gx10-3", _twins(), 9000, node.read_interface, node.run,
                           hardware_skip_reason="lab")
    summary = summarize(rows)
    assert summary["ok"] is True
    assert summary["counts"] == {"passed": 12, "failed": 0, "skipped": 2}
    assert "2 skipped" in summary["message"]
    report = build_report(rows, {"nodes": 4})
    assert report["summary"]["ok"] is True and len(report["checks"]) == 14
    assert set(report["checks"][0]) == {"node", "twin", "peer", "check", "status", "detail"}


def test_summary_lines_one_per_check_in_order():
    node = FakeNode(mtu={"enP2p1s0f1np1": 1500})
    summary = summarize(run_node_checks("gx10-3", _twins(), 9000, node.read_interface, node.run,
                                        hardware_skip_reason="lab"))
    assert summary["lines"] == [
        "link: 2 passed", "address: 2 passed", "mtu: 1 passed, 1 failed", "link_speed: 2 skipped",
        "jumbo_ping: 3 passed, 3 failed"]
