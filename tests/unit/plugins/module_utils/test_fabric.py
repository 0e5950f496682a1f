"""gb10_fabric (module_utils): parsers, per-node checks with a fake runner, the summary message, the link
tests (plan, ib_write_bw and nccl-tests output judged, twins compared, the slow end named)."""
from __future__ import annotations

from ansible_collections.gb10.cluster.plugins.module_utils.fabric import (
    PlanError,
    build_report,
    check,
    derive_link_rows,
    describe,
    fabric_test_plan,
    ib_write_bw_plan,
    judge_ib_write_bw,
    judge_nccl,
    nccl_plan,
    nccl_tests_build_plan,
    parse_ethtool_speed,
    parse_ib_write_bw_result,
    parse_ip_addr_json,
    parse_nccl_tests,
    parse_ping,
    ping_command,
    run_node_checks,
    summarize,
    tools_rows,
    version_mismatch,
)
from tests.support.fabric_outputs import (
    ADDRESSES,
    BUILD,
    DEVICES,
    HOSTS,
    IB_FAILED_CONNECT,
    IB_FAILED_GID,
    IB_MB_PER_SEC,
    IB_TWIN_A,
    IB_TWIN_B_DEGRADED,
    NCCL_FAILED_RANK,
    NCCL_HEALTHY,
    NCCL_LOW,
    NCCL_SSH,
    NODES,
    PIN_COMMIT,
    TWINS,
    nccl_output,
    ring,
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
    assert parse_ib_write_bw_result(IB_WRITE_BW)["average_gbps"] == 97.85
    assert parse_ib_write_bw_result("Couldn't connect")["average_gbps"] is None
    assert parse_nccl_tests(NCCL)["avg_busbw"] == 22.3697
    assert parse_nccl_tests("")["avg_busbw"] is None


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


# --- the link tests: output excerpts in the tools' documented formats -------------------------------
# ib_write_bw (perftest) with -F --report_gbits -D 5: the banner, then one result row under
# "#bytes #iterations BW peak[Gb/sec] BW average[Gb/sec] MsgRate[Mpps]" (peak is not measured with -D).

def test_parse_ib_write_bw_result_reads_the_table_and_the_banner():
    parsed = parse_ib_write_bw_result(IB_TWIN_A)
    assert parsed["device"] == "rocep1s0f1" and parsed["gid_index"] == 3
    assert parsed["unit"] == "Gb/sec" and len(parsed["rows"]) == 1
    assert parsed["average_gbps"] == 96.31 and parsed["rows"][0]["bytes"] == 65536
    assert parse_ib_write_bw_result(IB_TWIN_B_DEGRADED)["average_gbps"] == 46.12
    # MB/sec (2^20 bytes) without --report_gbits, converted to Gb/s
    assert abs(parse_ib_write_bw_result(IB_MB_PER_SEC)["average_gbps"] - 96.30) < 0.01
    # --run_infinitely prints a row per interval: the last one counts
    two = IB_TWIN_A + " 65536      873000           0.00               95.00              0.181198\n"
    assert parse_ib_write_bw_result(two)["average_gbps"] == 95.0
    for failed in (IB_FAILED_CONNECT, IB_FAILED_GID, ""):
        assert parse_ib_write_bw_result(failed)["average_gbps"] is None
    assert parse_ib_write_bw_result(IB_FAILED_GID)["gid_index"] == 3


def test_judge_ib_write_bw_healthy_degraded_and_failed():
    ok = judge_ib_write_bw("gx10-3", "enp1s0f1np1", "gx10-4", 0, IB_TWIN_A, 90)
    assert ok["status"] == "passed" and ok["value"] == 96.31
    assert ok["detail"] == "96.31 Gb/s (minimum 90 Gb/s), GID index 3"
    low = judge_ib_write_bw("gx10-3", "enP2p1s0f1np1", "gx10-4", 0, IB_TWIN_B_DEGRADED, 90)
    assert low["status"] == "failed" and low["value"] == 46.12
    assert describe(low) == ("gx10-3 twin enP2p1s0f1np1 -> gx10-4: ib_write_bw failed "
                             "(46.12 Gb/s (minimum 90 Gb/s), GID index 3)")
    down = judge_ib_write_bw("gx10-3", "enP2p1s0f1np1", "gx10-4", 1, IB_FAILED_CONNECT, 90)
    assert down["status"] == "failed" and "value" not in down
    assert down["detail"] == "no result (exit code 1): Couldn't connect to 192.168.101.14:18516"
    gid = judge_ib_write_bw("gx10-3", "enP2p1s0f1np1", "gx10-4", 1, IB_FAILED_GID, 90)
    assert gid["detail"] == "no result (exit code 1): Failed to modify QP 0x0129 to RTR"
    # exit code 0 but no table is still a failure, never a pass
    assert judge_ib_write_bw("a", "t", "b", 0, "", 90)["status"] == "failed"


# nccl-tests all_gather_perf -b 16G -e 16G -f 2, MPI=1, one rank per node, NCCL_DEBUG=INFO
# NCCL_DEBUG_SUBSYS=INIT,NET. The nodes' own host names (spark-aN) differ from the inventory names.
def test_parse_nccl_tests_reads_version_ranks_table_and_footer():
    parsed = parse_nccl_tests(NCCL_HEALTHY)
    assert parsed["nccl_tests"] == "2.19.6" and parsed["nccl_library"] == "2.28.9" == parsed["nccl_headers"]
    assert [r["host"] for r in parsed["ranks"]] == list(HOSTS)
    assert parsed["ranks"][0]["name"] == "NVIDIA GB10"
    row = parsed["rows"][0]
    assert row["size"] == 17179869184 and row["type"] == "float"
    assert row["out_of_place"]["busbw"] == 21.93 and row["in_place"]["busbw"] == 22.06
    assert parsed["out_of_bounds"] == 0 and parsed["wrong"] == 0
    assert parsed["avg_busbw"] == 21.995 == parse_nccl_tests(NCCL_HEALTHY)["avg_busbw"]
    assert parsed["network"] == {h: "IB" for h in HOSTS}
    assert parsed["ib_devices"]["spark-a2"] == DEVICES
    failed = parse_nccl_tests(NCCL_FAILED_RANK)
    assert failed["avg_busbw"] is None
    assert failed["failures"][0]["host"] == "spark-a3"
    assert failed["failures"][0]["text"].startswith("Test NCCL failure common.cu:1279 'unhandled system error")


def _nccl(rc, text, minimum=21.875):
    return judge_nccl("gx10-1", rc, text, minimum, NODES, HOSTS, ADDRESSES, DEVICES)


def test_judge_nccl_pass_mark_and_what_a_pass_says():
    row = _nccl(0, NCCL_HEALTHY)
    assert row["status"] == "passed" and row["value"] == 21.995
    assert row["detail"] == ("21.995 GB/s (minimum 21.875 GB/s); 4 nodes; NET/IB on rocep1s0f1, roceP2p1s0f1 on "
                             "every node; NCCL 2.28.9, nccl-tests 2.19.6")
    low = _nccl(0, NCCL_LOW)
    assert low["status"] == "failed" and low["node"] == "gx10-1" and low["peer"] == "all"
    assert low["detail"].startswith("11.06 GB/s (minimum 21.875 GB/s)")


def test_judge_nccl_names_the_node_at_fault():
    rank = _nccl(3, NCCL_FAILED_RANK)
    assert (rank["status"], rank["node"]) == ("failed", "gx10-3")
    assert "unhandled system error" in rank["detail"]
    ssh = _nccl(1, NCCL_SSH)
    assert (ssh["node"], ssh["detail"]) == (
        "gx10-3", "mpirun exited 1: ssh: connect to host 192.168.100.13 port 22: No route to host")
    sockets = _nccl(0, nccl_output(2.9, 3.0, network={"spark-a2": "Socket"}))
    assert sockets["node"] == "gx10-2" and "used network Socket, not IB" in sockets["detail"]
    one_twin = _nccl(0, nccl_output(11.4, 11.5, devices={"spark-a4": ["rocep1s0f1"]}))
    assert one_twin["node"] == "gx10-4" and "did not use roceP2p1s0f1" in one_twin["detail"]
    wrong = _nccl(0, nccl_output(21.93, 22.06, wrong=12))
    assert wrong["status"] == "failed" and "data errors" in wrong["detail"]
    three = _nccl(0, NCCL_HEALTHY.replace("#  Rank  3 Group  0 Pid  41216 on   spark-a4 device  0 [000f:01:00] NVIDIA GB10\n", ""))
    assert three["status"] == "failed" and "expected one on each of" in three["detail"]
    garbage = _nccl(0, "mpirun: nothing useful\n")
    assert garbage["status"] == "failed" and garbage["detail"].startswith("no Avg bus bandwidth in the output")


# --- the judges across rows: twins compared, the slow end named ------------------------------------------

def test_a_degraded_twin_is_named_as_the_slow_end_and_by_the_twin_comparison():
    # gx10-3's twin B is degraded: its link out (-> gx10-4) and its link in (gx10-2 ->) are both slow
    rows = ring({("gx10-3", "enP2p1s0f1np1"): 46.12, ("gx10-2", "enP2p1s0f1np1"): 47.05})
    derived = derive_link_rows(rows, 0.9)
    slow = [r for r in derived if r["check"] == "slow_twin"]
    assert [(r["node"], r["twin"], r["status"]) for r in slow] == [("gx10-3", "enP2p1s0f1np1", "failed")]
    assert slow[0]["detail"].startswith("both ring links of this twin are slow (gx10-3 -> gx10-4 46.12 Gb/s, "
                                        "gx10-2 -> gx10-3 47.05 Gb/s) while gx10-4 and gx10-2 pass")
    twins = {r["node"]: r for r in derived if r["check"] == "ib_write_bw_twins"}
    assert twins["gx10-3"]["status"] == "failed" and twins["gx10-3"]["twin"] == "enP2p1s0f1np1"
    assert twins["gx10-3"]["detail"] == ("enP2p1s0f1np1 47.05 Gb/s is 50% of enp1s0f1np1 95 Gb/s (minimum 90%); "
                                         "together 142.05 Gb/s")
    # gx10-2 sent to the slow twin, but its own twin B received at full rate: not blamed
    assert twins["gx10-2"]["status"] == "passed" and twins["gx10-4"]["status"] == "passed"
    summary = summarize(rows + derived)
    assert summary["failed"][0]["check"] == "slow_twin"
    assert summary["message"].startswith("Fabric check FAILED: 4 of 13 checks failed: gx10-3 twin enP2p1s0f1np1: "
                                         "slow_twin failed")
    assert summary["findings"] == [
        "gx10-3 twin enP2p1s0f1np1: slow_twin failed (" + slow[0]["detail"] + ").",
        "gx10-3 twin enP2p1s0f1np1: ib_write_bw_twins failed (" + twins["gx10-3"]["detail"] + ").",
        "gx10-2 twin enP2p1s0f1np1 -> gx10-3: ib_write_bw failed (47.05 Gb/s (minimum 90 Gb/s), GID index 3).",
        "gx10-3 twin enP2p1s0f1np1 -> gx10-4: ib_write_bw failed (46.12 Gb/s (minimum 90 Gb/s), GID index 3).",
    ]


def test_a_healthy_rack_passes_both_comparisons_with_nvidias_spread():
    # NVIDIA's two twins of one 200G cable: 92.57 and 97.28 Gb/s (95%)
    values = {(n, "enp1s0f1np1"): 92.57 for n in NODES} | {(n, "enP2p1s0f1np1"): 97.28 for n in NODES}
    derived = derive_link_rows(ring(values), 0.9)
    assert {r["check"] for r in derived} == {"ib_write_bw_twins"}
    assert all(r["status"] == "passed" for r in derived)
    assert derived[0]["detail"] == ("enp1s0f1np1 92.57 Gb/s is 95% of enP2p1s0f1np1 97.28 Gb/s (minimum 90%); "
                                    "together 189.85 Gb/s")


def test_two_nodes_cannot_tell_which_end_is_slow():
    rows = ring({("gx10-1", "enP2p1s0f1np1"): 50.0, ("gx10-2", "enP2p1s0f1np1"): 49.0}, nodes=["gx10-1", "gx10-2"])
    derived = derive_link_rows(rows, 0.9)
    assert not [r for r in derived if r["check"] == "slow_twin"]
    assert [(r["node"], r["status"]) for r in derived] == [("gx10-1", "failed"), ("gx10-2", "failed")]


def test_a_failed_run_leaves_the_twin_comparison_skipped_with_why():
    rows = ring({("gx10-3", "enP2p1s0f1np1"): None, ("gx10-2", "enP2p1s0f1np1"): None})
    derived = {(r["node"], r["check"]): r for r in derive_link_rows(rows, 0.9)}
    assert derived[("gx10-3", "slow_twin")]["detail"].startswith(
        "both ring links of this twin are slow (gx10-3 -> gx10-4 no result, gx10-2 -> gx10-3 no result)")
    assert derived[("gx10-3", "ib_write_bw_twins")]["status"] == "skipped"
    assert "no ib_write_bw result on enP2p1s0f1np1" in derived[("gx10-3", "ib_write_bw_twins")]["detail"]


def test_lab_rows_stay_skipped_never_passed():
    rows = [check(n, t, p, "ib_write_bw", "skipped", "hardware-only: container (docker) without ConnectX-7")
            for n, p in zip(NODES, NODES[1:] + NODES[:1]) for t in ("enp1s0f1np1", "enP2p1s0f1np1")]
    derived = derive_link_rows(rows, 0.9)
    assert [r["status"] for r in derived] == ["skipped"] * 4
    assert derived[0]["detail"] == "hardware-only: container (docker) without ConnectX-7"
    assert derive_link_rows([], 0.9) == []


def _marker(nccl="2.28.9-1+cuda13.0", commit=PIN_COMMIT) -> dict:
    plan = nccl_tests_build_plan(dict(BUILD, commit=commit), nccl, "13.0.88")
    return plan["marker"]


def test_tools_rows_pins_and_one_nccl_everywhere():
    expected = nccl_tests_build_plan(BUILD)["marker"]
    rows = tools_rows(NODES, {"gx10-1": _marker(), "gx10-2": _marker(), "gx10-3": _marker("2.27.7-1+cuda13.0"),
                              "gx10-4": None}, expected, {})
    by = {r["node"]: r for r in rows}
    assert by["gx10-1"]["status"] == "passed"
    assert by["gx10-1"]["detail"] == ("nccl-tests v2.19.6 (a0b82b2) MPI=1 -gencode=arch=compute_121,code=sm_121 "
                                      "against libnccl2 2.28.9-1+cuda13.0, CUDA 13.0.88")
    assert by["gx10-3"]["status"] == "failed" and by["gx10-3"]["detail"].startswith(
        "libnccl2 2.27.7-1+cuda13.0 here, 2.28.9-1+cuda13.0 on gx10-1, gx10-2")
    assert by["gx10-4"]["status"] == "failed" and "run playbooks/nodes.yml" in by["gx10-4"]["detail"]
    old = tools_rows(["gx10-1"], {"gx10-1": _marker(commit="b" * 40)}, expected, {})[0]
    assert old["status"] == "failed" and "the pin is v2.19.6 a0b82b2260cf" in old["detail"]
    lab = tools_rows(["gx10-1"], {}, expected, {"gx10-1": "hardware-only: container (docker)"})[0]
    assert (lab["status"], lab["detail"]) == ("skipped", "hardware-only: container (docker)")
    assert version_mismatch({"a": "1", "b": "1", "c": "2"}) == "c has 2, while a, b have 1"
    assert version_mismatch({"a": "1", "b": "1", "c": ""}) == ""


# --- the plan: what runs on the rack (and what the render playbook writes) -------------------------

def _nodes(n=4, gids=None):
    return [{"name": f"gx10-{i}", "ansible_host": f"192.168.1.10{i}",
             "addresses": {"enp1s0f1np1": f"192.168.100.1{i}/24", "enP2p1s0f1np1": f"192.168.101.1{i}/24"},
             "hostname": f"spark-a{i}", "gid_index": (gids or {}).get(f"gx10-{i}")} for i in range(1, n + 1)]


def test_build_plan_is_pinned_and_built_for_sm_121_with_mpi():
    plan = nccl_tests_build_plan(dict(BUILD, nccl_version_pin="2.28.9-1+cuda13.0"), "2.28.9-1+cuda13.0", "13.0.88")
    assert plan["packages"] == ["perftest", "openmpi-bin", "libopenmpi-dev", "git", "build-essential",
                                "libnccl2=2.28.9-1+cuda13.0", "libnccl-dev=2.28.9-1+cuda13.0"]
    assert plan["dir"] == "/opt/nccl-tests/v2.19.6" and plan["binary"] == "/opt/nccl-tests/v2.19.6/build/all_gather_perf"
    steps = {s["name"]: s for s in plan["steps"]}
    verify = steps["the tag v2.19.6 is the pinned commit"]
    assert verify["argv"][-1] == "refs/tags/v2.19.6^{commit}" and verify["expect_stdout"] == PIN_COMMIT
    assert steps["check out the pinned commit"]["argv"][-1] == PIN_COMMIT
    make = steps["build with MPI=1 for sm_121"]["argv"]
    assert make == ["make", "-C", "/opt/nccl-tests/v2.19.6/src", "-j8", "MPI=1",
                    "MPI_HOME=/usr/lib/aarch64-linux-gnu/openmpi", "CUDA_HOME=/usr/local/cuda", "NCCL_HOME=/usr",
                    "NVCC_GENCODE=-gencode=arch=compute_121,code=sm_121", "BUILDDIR=/opt/nccl-tests/v2.19.6/build",
                    "src.build"]
    # the fetch, the pin check and the checkout come before the build, the NCCL check after it
    names = [s["name"] for s in plan["steps"]]
    assert names.index("the tag v2.19.6 is the pinned commit") < names.index("build with MPI=1 for sm_121")
    assert steps["all_gather_perf links the system NCCL"]["expect_contains"] == "libnccl.so.2 => /usr/lib"
    assert plan["marker"]["nccl"]["version"] == "2.28.9-1+cuda13.0" and plan["marker"]["cuda"]["nvcc"] == "13.0.88"
    assert plan["marker"]["nccl_tests"] == {"repo": BUILD["repo"], "tag": "v2.19.6", "commit": PIN_COMMIT}
    for bad, needle in ((dict(BUILD, commit="a0b82b2"), "not a full 40-hex"), (dict(BUILD, tag=""), "tag is empty")):
        try:
            nccl_tests_build_plan(bad)
        except PlanError as exc:
            assert needle in str(exc)
        else:
            raise AssertionError(f"{bad} accepted")


def test_ib_plan_covers_every_twin_of_every_node_with_the_gid_from_the_facts():
    gids = {n: {"rocep1s0f1": 3, "roceP2p1s0f1": 3} for n in NODES}
    gids["gx10-2"]["roceP2p1s0f1"] = 4  # moved after a link event on that node only
    plan = ib_write_bw_plan(_nodes(gids=gids), TWINS, {"port": 18515, "args": "-F --report_gbits -D 5",
                                                        "server_timeout": 90})
    assert [plan[n]["peer"] for n in NODES] == ["gx10-2", "gx10-3", "gx10-4", "gx10-1"]
    covered = {(n, c["twin"]) for n in NODES for c in plan[n]["clients"]}
    assert covered == {(n, t["interface"]) for n in NODES for t in TWINS}
    b2 = plan["gx10-2"]["clients"][1]
    assert b2["argv"] == ["ib_write_bw", "-d", "roceP2p1s0f1", "-x", "4", "-p", "18516", "-F", "--report_gbits",
                          "-D", "5", "192.168.101.13"]
    assert b2["run"] == {"twin": "enP2p1s0f1np1", "peer": "gx10-3", "argv": b2["argv"], "error": None}
    assert plan["gx10-3"]["servers"][1]["argv"] == ["timeout", "90", "ib_write_bw", "-d", "roceP2p1s0f1", "-x", "3",
                                                    "-p", "18516", "-F", "--report_gbits", "-D", "5"]
    assert plan["gx10-3"]["servers"][1]["for"] == "gx10-2"
    # facts read but no RoCE v2 IPv4 GID on a device: that twin's run is an error, never a run without -x
    gids["gx10-1"]["rocep1s0f1"] = None
    broken = ib_write_bw_plan(_nodes(gids=gids), TWINS, {})
    assert broken["gx10-1"]["clients"][0]["argv"] is None
    assert broken["gx10-1"]["clients"][0]["error"].startswith("no RoCE v2 IPv4 GID on rocep1s0f1 of gx10-1")
    # no facts (a render): the placeholder the run fills
    rendered = ib_write_bw_plan(_nodes(), TWINS, {})
    assert rendered["gx10-1"]["clients"][0]["argv"][3:5] == ["-x", "<GID:rocep1s0f1>"]
    alone = ib_write_bw_plan(_nodes(1), TWINS, {})
    assert alone["gx10-1"]["skip"] == "a single node has no peer" and len(alone["gx10-1"]["clients"]) == 2


def test_nccl_plan_one_rank_per_node_both_twins_no_gid_pin():
    plan = nccl_plan(_nodes(8), TWINS, {"mpirun": "/usr/bin/mpirun", "binary": "/opt/b/all_gather_perf",
                                         "args": "-b 16G -e 16G -f 2", "socket_ifname": "enp1s0f1np1",
                                         "cuda_home": "/usr/local/cuda"})
    argv = plan["argv"]
    assert argv[:5] == ["/usr/bin/mpirun", "-np", "8", "-H", ",".join(f"192.168.100.1{i}:1" for i in range(1, 9))]
    env = {argv[i + 1].split("=", 1)[0]: argv[i + 1].split("=", 1)[1] for i, a in enumerate(argv) if a == "-x"}
    assert env["NCCL_IB_HCA"] == "rocep1s0f1,roceP2p1s0f1" and env["NCCL_SOCKET_IFNAME"] == "enp1s0f1np1"
    assert env["NCCL_IB_SUBNET_AWARE_ROUTING"] == "1" and env["NCCL_DEBUG"] == "INFO"
    assert "NCCL_IB_GID_INDEX" not in env and not any("GID" in a for a in argv)
    assert argv[-7:] == ["/opt/b/all_gather_perf", "-b", "16G", "-e", "16G", "-f", "2"]
    assert plan["addresses"]["192.168.100.13"] == "gx10-3" and plan["hostnames"]["spark-a3"] == "gx10-3"
    # the management NIC for the socket paths: the hosts are the management addresses
    mgmt = nccl_plan(_nodes(2), TWINS, {"binary": "/b", "socket_ifname": "enP7s7", "as_root": True})
    assert mgmt["argv"][:6] == ["/usr/bin/mpirun", "--allow-run-as-root", "-np", "2", "-H",
                                "192.168.1.101:1,192.168.1.102:1"]
    try:
        nccl_plan(_nodes(2), TWINS, {"binary": "/b", "env": {"NCCL_IB_GID_INDEX": "3"}})
    except PlanError as exc:
        assert "refused" in str(exc)
    else:
        raise AssertionError("NCCL_IB_GID_INDEX accepted")
    assert nccl_plan(_nodes(1), TWINS, {"binary": "/b"})["skip"] == "a single node"


def test_fabric_test_plan_adds_a_shell_line_to_every_command():
    spec = {"nodes": _nodes(4), "twins": TWINS, "build": BUILD,
            "ib_write_bw": {"port": 18515, "args": "-F --report_gbits -D 5"},
            "nccl": {"binary": "/opt/nccl-tests/v2.19.6/build/all_gather_perf", "args": "-b 16G -e 16G -f 2"}}
    plan = fabric_test_plan(spec)
    assert plan["nodes"] == NODES and set(plan["build"]) == set(NODES)
    client = plan["ib_write_bw"]["gx10-1"]["clients"][0]
    assert client["sh"] == ("ib_write_bw -d rocep1s0f1 -x '<GID:rocep1s0f1>' -p 18515 -F --report_gbits -D 5 "
                            "192.168.100.12")
    assert "sh" not in client["run"]  # gb10.cluster.fabric_perf takes run as is
    assert plan["nccl"]["sh"].startswith("/usr/bin/mpirun -np 4 -H ")
    assert plan["build"]["gx10-1"]["steps"][0]["sh"] == "git init --quiet /opt/nccl-tests/v2.19.6/src"
