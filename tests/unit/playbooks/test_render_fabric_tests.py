"""playbooks/render_fabric_tests.yml: the link tests' commands for the sample inventories, without hardware.

Runs the real playbook through ansible-runner on copies of inventory/sample (4 nodes) and
inventory/sample-8 (8 nodes) whose nodes sit on loopback addresses where nothing listens: the render
passes only if no node was contacted. Then checks what it wrote: the nccl-tests build of every node
(pinned tag and commit, MPI=1, sm_121), ib_write_bw on every twin of every node around a ring (a
server per twin for the previous node, a client per twin to the next node, the GID index a
placeholder the run fills from sysfs), and one mpirun with one rank per node and both twins' RoCE
devices in NCCL_IB_HCA. The argv are compared with the plan the role runs (module_utils/fabric.py).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ansible_collections.gb10.cluster.plugins.module_utils.fabric import GID_PLACEHOLDER, fabric_test_plan
from tests.support.playbooks import ROOT, run_playbook

DEFAULTS = yaml.safe_load((ROOT / "roles" / "cx7_fabric" / "defaults" / "main.yml").read_text())
PIN_TAG, PIN_COMMIT = DEFAULTS["cx7_fabric_nccl_tests_tag"], DEFAULTS["cx7_fabric_nccl_tests_commit"]


def _unreachable_copy(tmp_path: Path, name: str) -> tuple[Path, dict]:
    """The sample inventory with every node on a loopback address and port where nothing answers."""
    inv = tmp_path / name
    shutil.copytree(ROOT / "inventory" / name, inv)
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    nodes = hosts["all"]["children"]["gx10"]["hosts"]
    for i, node in enumerate(nodes.values(), start=1):
        node["ansible_host"] = f"127.0.0.{100 + i}"
        node["ansible_port"] = 1
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inv, nodes


@pytest.fixture(scope="module", params=["sample", "sample-8"])
def rendered(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp(request.param)
    inv, nodes = _unreachable_copy(tmp_path, request.param)
    dest = tmp_path / "render" / "fabric-tests.json"
    result = run_playbook(tmp_path, "playbooks/render_fabric_tests.yml", inv,
                          extravars={"cx7_fabric_render_dest": str(dest)})
    failed = [e["event_data"].get("res", {}).get("msg") for e in result.events
              if e.get("event") in ("runner_on_failed", "runner_on_unreachable")]
    assert result.status == "successful" and not failed, failed
    twins = yaml.safe_load((inv / "group_vars" / "all" / "main.yml").read_text())["gb10_fabric_twins"]
    return {"doc": json.loads(dest.read_text()), "nodes": nodes, "twins": twins, "result": result, "dest": dest,
            "tmp": tmp_path, "inv": inv}


def test_no_node_is_contacted(rendered):
    # The nodes answer nowhere (loopback, port 1): a task that tried to reach one would be unreachable.
    # Every task is an action on the controller (set_fact, assert) or delegated to it (stat, copy).
    ok = [e["event_data"] for e in rendered["result"].events if e.get("event") == "runner_on_ok"]
    files = [d for d in ok if d.get("task_action") in ("ansible.builtin.copy", "ansible.builtin.stat",
                                                        "ansible.builtin.file")]
    assert len(files) >= 2
    assert all(d["res"]["_ansible_delegated_vars"]["ansible_host"] in ("localhost", "127.0.0.1") for d in files)
    assert {d["task_action"] for d in ok} <= {"ansible.builtin.set_fact", "ansible.builtin.assert",
                                              "ansible.builtin.validate_argument_spec",
                                              "ansible.builtin.include_tasks", "ansible.builtin.copy",
                                              "ansible.builtin.stat", "ansible.builtin.file"}


def test_every_node_builds_the_pinned_nccl_tests_for_sm_121(rendered):
    doc = rendered["doc"]
    assert doc["nodes"] == list(rendered["nodes"])
    assert doc["pins"]["nccl_tests"] == {"repo": "https://github.com/NVIDIA/nccl-tests.git", "tag": PIN_TAG,
                                         "commit": PIN_COMMIT}
    assert len(PIN_COMMIT) == 40
    for node in rendered["nodes"]:
        build = doc["build"][node]
        assert {"perftest", "openmpi-bin", "libopenmpi-dev", "libnccl2", "libnccl-dev"} <= set(build["packages"])
        argv = {step["name"]: step["argv"] for step in build["steps"]}
        assert argv[f"fetch tag {PIN_TAG}"][-1] == f"refs/tags/{PIN_TAG}:refs/tags/{PIN_TAG}"
        assert build["steps"][2]["expect_stdout"] == PIN_COMMIT
        assert argv["check out the pinned commit"][-1] == PIN_COMMIT
        make = argv["build with MPI=1 for sm_121"]
        assert "MPI=1" in make and "NVCC_GENCODE=-gencode=arch=compute_121,code=sm_121" in make
        assert f"BUILDDIR=/opt/nccl-tests/{PIN_TAG}/build" in make and "NCCL_HOME=/usr" in make
        assert build["binary"] == f"/opt/nccl-tests/{PIN_TAG}/build/all_gather_perf"
        assert build["marker"]["nccl_tests"]["commit"] == PIN_COMMIT
        # nothing was read from a node: the versions are named, not guessed
        assert build["marker"]["nccl"]["version"].startswith("<dpkg-query")
        assert all(step["sh"] for step in build["steps"])


def test_ib_write_bw_covers_every_twin_of_every_node_around_a_ring(rendered):
    doc, nodes, twins = rendered["doc"], list(rendered["nodes"]), rendered["twins"]
    n = len(nodes)
    clients, servers = set(), set()
    for i, node in enumerate(nodes):
        plan = doc["ib_write_bw"][node]
        nxt, prev = nodes[(i + 1) % n], nodes[(i - 1) % n]
        assert (plan["peer"], plan["server_for"]) == (nxt, prev)
        for k, twin in enumerate(twins):
            client, server = plan["clients"][k], plan["servers"][k]
            peer_ip = rendered["nodes"][nxt]["gb10_fabric_addresses"][twin["interface"]].split("/")[0]
            port = str(18515 + k)
            gid = GID_PLACEHOLDER.format(device=twin["rdma_device"])
            assert client["argv"] == ["ib_write_bw", "-d", twin["rdma_device"], "-x", gid, "-p", port,
                                      "-F", "--report_gbits", "-D", "5", peer_ip]
            assert server["argv"] == ["timeout", "90", "ib_write_bw", "-d", twin["rdma_device"], "-x", gid,
                                      "-p", port, "-F", "--report_gbits", "-D", "5"]
            assert client["run"]["argv"] == client["argv"] and client["error"] is None
            clients.add((node, twin["interface"], nxt))
            servers.add((node, twin["interface"], prev))
    every = {(node, t["interface"]) for node in nodes for t in twins}
    assert {(a, b) for a, b, _ in clients} == every == {(a, b) for a, b, _ in servers}
    # every client has its server: the next node serves that twin for this node
    assert {(peer, t, node) for node, t, peer in clients} == servers
    assert "NCCL_IB_GID_INDEX is never set" in doc["gid_index"]


def test_one_mpirun_one_rank_per_node_both_twins(rendered):
    doc, nodes, twins = rendered["doc"], list(rendered["nodes"]), rendered["twins"]
    argv = doc["nccl"]["argv"]
    assert doc["nccl"]["launcher"] == nodes[0] and doc["nccl"]["np"] == len(nodes)
    assert argv[:3] == ["/usr/bin/mpirun", "-np", str(len(nodes))]
    ips = [rendered["nodes"][n]["gb10_fabric_addresses"]["enp1s0f1np1"].split("/")[0] for n in nodes]
    assert argv[argv.index("-H") + 1] == ",".join(f"{ip}:1" for ip in ips)
    env = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-x")
    assert env["NCCL_IB_HCA"] == ",".join(t["rdma_device"] for t in twins) == "rocep1s0f1,roceP2p1s0f1"
    assert env["NCCL_SOCKET_IFNAME"] == "enp1s0f1np1" and env["NCCL_IB_SUBNET_AWARE_ROUTING"] == "1"
    assert "NCCL_IB_GID_INDEX" not in env
    assert argv[-7:] == [f"/opt/nccl-tests/{PIN_TAG}/build/all_gather_perf", "-b", "16G", "-e", "16G", "-f", "2"]
    assert doc["thresholds"]["nccl_all_gather_busbw_min_gbs"] == 21.875
    assert doc["thresholds"]["ib_write_bw_min_gbps"] == 90.0


def test_what_is_rendered_is_what_runs(rendered):
    """The render is the role's plan: the same function, given GID indices from facts, gives the same
    argv with the numbers in place of the placeholders."""
    doc, twins = rendered["doc"], rendered["twins"]
    names = list(rendered["nodes"])
    nodes = [{"name": n, "ansible_host": rendered["nodes"][n]["ansible_host"],
              "addresses": rendered["nodes"][n]["gb10_fabric_addresses"], "hostname": None,
              "gid_index": {t["rdma_device"]: 3 + (i % 2) for t in twins}} for i, n in enumerate(names)]
    spec = {"nodes": nodes, "twins": twins,
            "build": {"repo": doc["pins"]["nccl_tests"]["repo"], "tag": PIN_TAG, "commit": PIN_COMMIT,
                      "prefix": "/opt/nccl-tests", "gencode": "-gencode=arch=compute_121,code=sm_121", "jobs": 8,
                      "cuda_home": "/usr/local/cuda", "mpi_home": "/usr/lib/aarch64-linux-gnu/openmpi",
                      "nccl_home": "/usr", "packages": doc["pins"]["distribution_packages"],
                      "nccl_packages": ["libnccl2", "libnccl-dev"], "nccl_version_pin": ""},
            "ib_write_bw": {"port": 18515, "args": "-F --report_gbits -D 5", "server_timeout": 90},
            "nccl": {"mpirun": "/usr/bin/mpirun", "binary": f"/opt/nccl-tests/{PIN_TAG}/build/all_gather_perf",
                     "args": "-b 16G -e 16G -f 2", "socket_ifname": "enp1s0f1np1", "as_root": False, "env": {}}}
    run = fabric_test_plan(spec)
    for i, node in enumerate(names):
        for k, twin in enumerate(twins):
            placeholder = GID_PLACEHOLDER.format(device=twin["rdma_device"])
            rendered_argv = doc["ib_write_bw"][node]["clients"][k]["argv"]
            assert [str(3 + i % 2) if a == placeholder else a for a in rendered_argv] == \
                run["ib_write_bw"][node]["clients"][k]["argv"]
        assert doc["build"][node]["steps"] == run["build"][node]["steps"]
    assert doc["nccl"]["argv"] == run["nccl"]["argv"]


def test_a_second_render_changes_nothing(rendered):
    before = rendered["dest"].read_text()
    result = run_playbook(rendered["tmp"], "playbooks/render_fabric_tests.yml", rendered["inv"],
                          extravars={"cx7_fabric_render_dest": str(rendered["dest"])})
    assert result.status == "successful"
    assert result.stats["changed"] == {}
    assert rendered["dest"].read_text() == before
