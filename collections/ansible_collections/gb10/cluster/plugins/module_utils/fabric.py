"""Fabric validation logic: jumbo-ping matrix, address/MTU/link checks, the link tests, the report.

Plain Python, no Ansible imports. The module ``gb10.cluster.fabric_check`` runs :func:`run_node_checks` on a
node (one task per node: the pings of all twins and peers run in parallel threads), and the module
``gb10.cluster.fabric_report`` merges every node's checks on the controller with :func:`summarize`.

The link tests (ib_write_bw per twin, nccl-tests across the nodes) and the nccl-tests build are planned
by :func:`fabric_test_plan`: the role runs the argv it returns, and playbooks/render_fabric_tests.yml
writes the same plan to a file, so what is rendered is what runs. :func:`judge_ib_write_bw` and
:func:`judge_nccl` turn the tools' output into rows; :func:`derive_link_rows` compares the two twins of
every node and names the slow end of a link.

A check is a dict ``{node, twin, peer, check, status, detail}``; ``status`` is ``passed``,
``failed`` or ``skipped``. Hardware-only checks on a node without the hardware are ``skipped`` with
the reason in ``detail``, never ``passed``.
"""
from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"
STATUSES = (PASSED, FAILED, SKIPPED)

# Checks about one node's own twin come first in a failure message: they are usually the cause of
# the ping failures seen from the other nodes.
LOCAL_CHECKS = ("link", "address", "mtu", "link_speed")
# Then the node-level verdicts drawn from the link tests (the slow twin of a node, its twins compared),
# then the links themselves.
CHECK_ORDER = LOCAL_CHECKS + ("fabric_tools", "slow_twin", "ib_write_bw_twins", "jumbo_ping", "ib_write_bw",
                              "nccl_all_gather")
ROW_KEYS = ("node", "twin", "peer", "check", "status", "detail")

Runner = Callable[[list[str]], "tuple[int, str, str]"]


def check(node: str, twin: str | None, peer: str | None, name: str, status: str,
          detail: str) -> dict[str, Any]:
    """One report row."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    return {"node": node, "twin": twin, "peer": peer, "check": name, "status": status,
            "detail": detail}


def strip_prefix(cidr: str) -> str:
    """``192.168.100.11/24`` -> ``192.168.100.11``."""
    return cidr.split("/", 1)[0].strip()


# --- parsers -------------------------------------------------------------------------------------

_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_PING_RTT = re.compile(r"= [\d.]+/([\d.]+)/[\d.]+")
_PING_MTU = re.compile(r"(message too long|Message too long)(?:, mtu=(\d+))?")


def ping_command(interface: str, address: str, size: int = 8972, count: int = 2,
                 timeout: int = 2) -> list[str]:
    """``ping -M do -s 8972 -c 2 -W 2 -I <twin> <peer>``: a DF jumbo frame through that twin."""
    return ["ping", "-M", "do", "-s", str(size), "-c", str(count), "-W", str(timeout),
            "-I", interface, address]


def parse_ping(rc: int, stdout: str, stderr: str) -> tuple[bool, str]:
    """(passed, detail) from a ping run: every probe answered, else what went wrong."""
    text = f"{stdout}\n{stderr}"
    too_long = _PING_MTU.search(text)
    summary = _PING_SUMMARY.search(text)
    if too_long:
        mtu = f", local mtu={too_long.group(2)}" if too_long.group(2) else ""
        return False, f"message too long: the frame does not fit this twin's MTU{mtu}"
    if summary:
        sent, received = int(summary.group(1)), int(summary.group(2))
        rtt = _PING_RTT.search(text)
        avg = f", rtt avg {rtt.group(1)} ms" if rtt else ""
        if rc == 0 and sent > 0 and received == sent:
            return True, f"{received}/{sent} received{avg}"
        return False, f"{received}/{sent} received (no jumbo frame back: peer down, wrong address or MTU < 9000 on the path)"
    last = (stderr.strip() or stdout.strip() or f"exit code {rc}").splitlines()[-1]
    return False, f"ping failed: {last}"


def parse_ip_addr_json(text: str) -> list[str]:
    """IPv4 ``a.b.c.d/n`` addresses from ``ip -j -4 addr show dev <if>``."""
    try:
        data = json.loads(text or "[]")
    except ValueError:
        return []
    found: list[str] = []
    for link in data if isinstance(data, list) else []:
        for info in link.get("addr_info", []) or []:
            if info.get("family") == "inet" and info.get("local"):
                found.append(f"{info['local']}/{info.get('prefixlen', 32)}")
    return found


def parse_ethtool_speed(text: str) -> int | None:
    """``Speed: 200000Mb/s`` -> 200000; None for ``Unknown!`` or no line."""
    match = re.search(r"^\s*Speed:\s*(\d+)\s*Mb/s", text or "", re.MULTILINE)
    return int(match.group(1)) if match else None


_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_IB_HEADER = re.compile(r"#bytes\s+#iterations\s+BW peak\[(\w+)/sec\]\s+BW average\[(\w+)/sec\]\s+MsgRate")
_IB_ERROR = re.compile(r"(Couldn't|Unable|Failed|failed|[Ee]rror|ERROR|not found|No IB devices|timed out|"
                       r"Connection refused|No route|Conflicting)")
# perftest prints MB/sec (2^20 bytes) without --report_gbits.
_IB_UNIT_TO_GBPS = {"Gb": 1.0, "MB": 1048576 * 8 / 1e9}


def parse_ib_write_bw_result(text: str) -> dict[str, Any]:
    """Everything ib_write_bw printed that the check needs.

    The result table follows the header line
    ``#bytes #iterations BW peak[Gb/sec] BW average[Gb/sec] MsgRate[Mpps]`` (``MB/sec`` without
    ``--report_gbits``); with ``-D`` there is one row, with ``--run_infinitely`` one per interval, and
    the last row counts. Also returns the ``Device`` and ``GID index`` the tool reports in its banner.
    ``average_gbps`` is None when no result row was printed (the run failed).
    """
    result: dict[str, Any] = {"device": None, "gid_index": None, "unit": None, "rows": [],
                              "average_gbps": None, "peak_gbps": None}
    factor = None
    for line in (text or "").splitlines():
        if result["device"] is None:
            match = re.search(r"Device\s*:\s*(\S+)", line)
            if match:
                result["device"] = match.group(1)
        match = re.search(r"GID index\s*:\s*(\d+)", line)
        if match:
            result["gid_index"] = int(match.group(1))
        header = _IB_HEADER.search(line)
        if header:
            result["unit"] = f"{header.group(2)}/sec"
            factor = _IB_UNIT_TO_GBPS.get(header.group(2))
            continue
        fields = line.split()
        if factor is not None and len(fields) >= 5 and all(_NUMBER.fullmatch(f) for f in fields[:5]):
            row = {"bytes": int(fields[0]), "iterations": int(fields[1]),
                   "peak_gbps": round(float(fields[2]) * factor, 4),
                   "average_gbps": round(float(fields[3]) * factor, 4), "msg_rate_mpps": float(fields[4])}
            result["rows"].append(row)
    if result["rows"]:
        result["average_gbps"] = result["rows"][-1]["average_gbps"]
        result["peak_gbps"] = result["rows"][-1]["peak_gbps"]
    return result


def first_error_line(text: str, pattern: re.Pattern[str] = _IB_ERROR) -> str | None:
    """The first line that reads like an error (perftest, mpirun, ssh), stripped; None when none does."""
    for line in (text or "").splitlines():
        if pattern.search(line) and line.strip():
            return line.strip()
    return None


def _nccl_version(code: int) -> str:
    """NCCL_VERSION_CODE (2.9 and later: major*10000 + minor*100 + patch) -> ``2.28.9``."""
    return f"{code // 10000}.{code // 100 % 100}.{code % 100}" if code >= 20900 else str(code)


_NCCL_TESTS_VERSION = re.compile(r"^# nccl-tests version (\S+) nccl-headers=(\d+) nccl-library=(\d+)", re.M)
_NCCL_RANK = re.compile(r"^#\s+Rank\s+(\d+)\s+Group\s+\d+\s+Pid\s+\d+\s+on\s+(\S+)\s+device\s+(\d+)\s+"
                        r"\[([^\]]*)\]\s*(.*?)\s*$", re.M)
_NCCL_OOB = re.compile(r"^#\s*Out of bounds values\s*:\s*(\d+)", re.M)
_NCCL_AVG = re.compile(r"Avg bus bandwidth\s*:\s*(\d+(?:\.\d+)?(?:e[+-]?\d+)?)")
# "<host>: Test NCCL failure common.cu:1005 '...'", "<host>: Test CUDA failure ...",
# " .. <host> pid 1234: Test failure common.cu:1130"
_NCCL_FAILURE = re.compile(r"^\s*(?:\.\.\s*)?([\w.-]+)(?: pid \d+)?: (Test (?:NCCL |CUDA )?failure.*)$", re.M)
# NCCL_DEBUG=INFO lines start with "<host>:<pid>:<tid> [<cuda dev>] NCCL INFO".
_NCCL_NETWORK = re.compile(r"^([\w.-]+):\d+:\d+ \[\d+\] NCCL INFO Using network (\w+)", re.M)
_NCCL_NET_IB = re.compile(r"^([\w.-]+):\d+:\d+ \[\d+\] NCCL INFO NET/IB : Using (.*)$", re.M)
_NCCL_IB_DEVICE = re.compile(r"\[\d+\]([\w.-]+):\d+/(?:RoCE|IB)")
_LAUNCH_ERROR = re.compile(r"(ssh:|Permission denied|Host key verification failed|Connection refused|"
                           r"No route to host|Could not resolve|ORTE was unable|PRTE has lost|"
                           r"was unable to reliably start|not find an executable|No such file|"
                           r"mpirun noticed|mpirun was unable|[Ee]rror|Aborted|timed out)")


def parse_nccl_tests(text: str) -> dict[str, Any]:
    """What an nccl-tests run printed: its version line, the ranks and their hosts, the result table
    (``size count type redop root time algbw busbw #wrong``, out-of-place then in-place), the
    ``# Out of bounds values`` and ``# Avg bus bandwidth`` footer, the failure lines
    (``<host>: Test NCCL failure ...``) and, with NCCL_DEBUG=INFO, the network NCCL chose on each host
    (``Using network IB`` or ``Socket``) and the RoCE devices of ``NET/IB : Using [0]dev:1/RoCE``.
    """
    text = text or ""
    result: dict[str, Any] = {"nccl_tests": None, "nccl_headers": None, "nccl_library": None, "ranks": [],
                              "rows": [], "out_of_bounds": None, "avg_busbw": None, "wrong": 0,
                              "failures": [], "network": {}, "ib_devices": {}}
    match = _NCCL_TESTS_VERSION.search(text)
    if match:
        result["nccl_tests"] = match.group(1)
        result["nccl_headers"] = _nccl_version(int(match.group(2)))
        result["nccl_library"] = _nccl_version(int(match.group(3)))
    for match in _NCCL_RANK.finditer(text):
        result["ranks"].append({"rank": int(match.group(1)), "host": match.group(2),
                                "device": int(match.group(3)), "pci": match.group(4), "name": match.group(5)})
    for line in text.splitlines():
        fields = line.split()
        if line.startswith("#") or len(fields) < 9 or not fields[0].isdigit() or not fields[1].isdigit():
            continue
        row: dict[str, Any] = {"size": int(fields[0]), "count": int(fields[1]), "type": fields[2],
                               "redop": fields[3], "root": fields[4]}
        for label, start in (("out_of_place", 5), ("in_place", 9)):
            part = fields[start:start + 4]
            if len(part) == 4:
                try:
                    row[label] = {"time_us": float(part[0]), "algbw": float(part[1]), "busbw": float(part[2]),
                                  "wrong": None if part[3] == "N/A" else int(float(part[3]))}
                except ValueError:
                    continue
                result["wrong"] += row[label]["wrong"] or 0
        result["rows"].append(row)
    match = _NCCL_OOB.search(text)
    result["out_of_bounds"] = int(match.group(1)) if match else None
    match = _NCCL_AVG.search(text)
    result["avg_busbw"] = float(match.group(1)) if match else None
    result["failures"] = [{"host": m.group(1), "text": m.group(2).strip()} for m in _NCCL_FAILURE.finditer(text)]
    for match in _NCCL_NETWORK.finditer(text):
        result["network"].setdefault(match.group(1), match.group(2))
    for match in _NCCL_NET_IB.finditer(text):
        result["ib_devices"].setdefault(match.group(1), _NCCL_IB_DEVICE.findall(match.group(2)))
    return result


# --- per-node checks -----------------------------------------------------------------------------

def interface_checks(node: str, twin: str, expected_cidr: str, expected_mtu: int,
                     observed: dict[str, Any]) -> list[dict[str, Any]]:
    """link (exists and up), address (the inventory CIDR is on the twin), mtu."""
    rows = []
    if not observed.get("exists"):
        reason = "netdev absent (CX7 not cabled yet? the netdevs appear once a cable is linked)"
        rows.append(check(node, twin, None, "link", FAILED, reason))
        rows.append(check(node, twin, None, "address", SKIPPED, "netdev absent"))
        rows.append(check(node, twin, None, "mtu", SKIPPED, "netdev absent"))
        return rows
    operstate = observed.get("operstate")
    rows.append(check(node, twin, None, "link",
                      PASSED if operstate == "up" else FAILED, f"operstate {operstate}"))
    addresses = list(observed.get("addresses") or [])
    found = ", ".join(addresses) or "none"
    rows.append(check(node, twin, None, "address",
                      PASSED if expected_cidr in addresses else FAILED,
                      f"expected {expected_cidr}, found {found}"))
    mtu = observed.get("mtu")
    rows.append(check(node, twin, None, "mtu", PASSED if mtu == expected_mtu else FAILED,
                      f"expected {expected_mtu}, found {mtu}"))
    return rows


def speed_check(node: str, twin: str, expected: int, ethtool_text: str | None,
                skip_reason: str | None) -> dict[str, Any]:
    """link_speed from ``ethtool <twin>``; skipped (with the reason) without the hardware."""
    if skip_reason:
        return check(node, twin, None, "link_speed", SKIPPED, skip_reason)
    speed = parse_ethtool_speed(ethtool_text or "")
    if speed is None:
        return check(node, twin, None, "link_speed", FAILED,
                     f"expected {expected} Mb/s, ethtool shows no speed (link down?)")
    return check(node, twin, None, "link_speed", PASSED if speed >= expected else FAILED,
                 f"expected {expected} Mb/s, found {speed} Mb/s")


def run_node_checks(node: str, twins: list[dict[str, Any]], mtu: int,
                    read_interface: Callable[[str], dict[str, Any]], run: Runner,
                    ping_size: int = 8972, ping_count: int = 2, ping_timeout: int = 2,
                    parallel: int = 16, link_speed: int = 200000,
                    hardware_skip_reason: str | None = None) -> list[dict[str, Any]]:
    """Every check of one node: per twin link/address/mtu/link_speed, then the jumbo pings to every
    peer on that twin, run ``parallel`` at a time (so 7 peers x 2 twins take about one ping's time).

    ``twins``: ``[{interface, address (CIDR), peers: [{node, address}]}]``.
    ``read_interface(name)`` returns ``{exists, operstate, mtu, addresses}``.
    ``run(argv)`` returns ``(rc, stdout, stderr)``.
    """
    rows: list[dict[str, Any]] = []
    pings: list[tuple[str, str, str]] = []
    for twin in twins:
        name = twin["interface"]
        observed = read_interface(name)
        rows.extend(interface_checks(node, name, twin["address"], mtu, observed))
        if link_speed:
            ethtool = None
            if not hardware_skip_reason and observed.get("exists"):
                ethtool = run(["ethtool", name])[1]
            rows.append(speed_check(node, name, link_speed, ethtool,
                                    hardware_skip_reason or (None if observed.get("exists")
                                                             else "netdev absent")))
        for peer in twin.get("peers", []):
            pings.append((name, peer["node"], strip_prefix(peer["address"])))

    def _ping(item: tuple[str, str, str]) -> dict[str, Any]:
        name, peer, address = item
        rc, out, err = run(ping_command(name, address, ping_size, ping_count, ping_timeout))
        ok, detail = parse_ping(rc, out, err)
        return check(node, name, peer, "jumbo_ping", PASSED if ok else FAILED,
                     f"{address} size {ping_size} DF: {detail}")

    if pings:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(pings)))) as pool:
            rows.extend(pool.map(_ping, pings))
    return rows


# --- the link tests: the plan (what runs, what is rendered) --------------------------------------

GID_PLACEHOLDER = "<GID:{device}>"
GID_NOTE = ("ib_write_bw -x takes the RoCE v2 IPv4 GID index of each RDMA device, read from sysfs "
            "(gb10.cluster.cx7_facts) on the node at run time: it moves (3 -> 4) after link or netplan events, so "
            "it is never pinned; a rendered plan shows <GID:device> where the run puts that number. "
            "NCCL_IB_GID_INDEX is never set: NCCL finds the same GID itself.")


class PlanError(ValueError):
    """The link-test plan cannot be made from these settings (one sentence)."""


def _ip(cidr: str | None) -> str | None:
    return strip_prefix(cidr) if cidr else None


def nccl_tests_dirs(prefix: str, tag: str) -> dict[str, str]:
    """The versioned folder of one nccl-tests pin: ``<prefix>/<tag>/{src,build}`` and its marker."""
    base = f"{prefix.rstrip('/')}/{tag}"
    return {"dir": base, "src": f"{base}/src", "build_dir": f"{base}/build",
            "binary": f"{base}/build/all_gather_perf", "marker_path": f"{base}/gb10-build.json"}


def library_path(cuda_home: str, nccl_home: str = "/usr") -> str:
    """LD_LIBRARY_PATH of the build check and the ranks: CUDA's libraries, and NCCL's when it is not the
    system one (a system libnccl2 is found by the loader's cache already)."""
    paths = [f"{nccl_home.rstrip('/')}/lib"] if nccl_home.rstrip("/") not in ("", "/usr") else []
    return ":".join(paths + [f"{cuda_home.rstrip('/')}/lib64"])


def nccl_tests_build_plan(build: dict[str, Any], nccl_version: str | None = None,
                          cuda_version: str | None = None) -> dict[str, Any]:
    """How one node gets perftest, OpenMPI and nccl-tests (MPI=1, built for the GB10's sm_121).

    ``build``: ``repo, tag, commit, prefix, gencode, cuda_home, mpi_home, nccl_home, jobs, packages,
    nccl_packages, nccl_version_pin``. Returns the apt packages, the read-only ``probes`` (which
    libnccl2 and which nvcc the node has), the ``steps`` (argv, run in order, each may carry ``env``
    and what its output must show), and the ``marker`` written after a good build: a node whose marker
    equals this one is not rebuilt.
    """
    for key in ("repo", "tag", "commit", "prefix", "gencode", "cuda_home", "mpi_home", "nccl_home"):
        if not str(build.get(key) or "").strip():
            raise PlanError(f"nccl-tests build: {key} is empty (cx7_fabric_nccl_tests_{key}).")
    commit = str(build["commit"]).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise PlanError(f"nccl-tests build: commit {build['commit']!r} is not a full 40-hex git commit "
                        "(cx7_fabric_nccl_tests_commit); pin the tag AND its commit.")
    tag = str(build["tag"]).strip()
    dirs = nccl_tests_dirs(str(build["prefix"]), tag)
    cuda_home = str(build["cuda_home"]).rstrip("/")
    nccl_home = str(build["nccl_home"]).rstrip("/") or "/usr"
    pin = str(build.get("nccl_version_pin") or "").strip()
    nccl_packages = [f"{name}={pin}" if pin else str(name) for name in build.get("nccl_packages") or []]
    jobs = int(build.get("jobs") or 8)
    make_vars = {"MPI": "1", "MPI_HOME": str(build["mpi_home"]).rstrip("/"), "CUDA_HOME": cuda_home,
                 "NCCL_HOME": nccl_home, "NVCC_GENCODE": str(build["gencode"]).strip()}
    lib_env = {"LD_LIBRARY_PATH": library_path(cuda_home, nccl_home)}
    steps = [
        {"name": "make the source folder a git repository", "argv": ["git", "init", "--quiet", dirs["src"]]},
        {"name": f"fetch tag {tag}",
         "argv": ["git", "-C", dirs["src"], "fetch", "--quiet", "--force", "--depth", "1", str(build["repo"]),
                  f"refs/tags/{tag}:refs/tags/{tag}"]},
        {"name": f"the tag {tag} is the pinned commit",
         "argv": ["git", "-C", dirs["src"], "rev-parse", f"refs/tags/{tag}^{{commit}}"],
         "expect_stdout": commit},
        {"name": "check out the pinned commit",
         "argv": ["git", "-C", dirs["src"], "-c", "advice.detachedHead=false", "checkout", "--quiet", "--force",
                  commit]},
        {"name": "start from an empty build folder (a new NCCL or CUDA recompiles everything)",
         "argv": ["rm", "-rf", dirs["build_dir"]]},
        {"name": "build with MPI=1 for sm_121",
         "argv": ["make", "-C", dirs["src"], f"-j{jobs}"] + [f"{k}={v}" for k, v in make_vars.items()]
         + [f"BUILDDIR={dirs['build_dir']}", "src.build"]},
        {"name": "all_gather_perf links the system NCCL",
         "argv": ["ldd", dirs["binary"]], "env": lib_env,
         "expect_contains": f"libnccl.so.2 => {nccl_home}/lib", "expect_absent": "not found"},
    ]
    probes = [
        {"name": "libnccl2", "argv": ["dpkg-query", "-W", "-f=${Version}", "libnccl2"]},
        {"name": "libnccl-dev", "argv": ["dpkg-query", "-W", "-f=${Version}", "libnccl-dev"]},
        {"name": "nvcc", "argv": [f"{cuda_home}/bin/nvcc", "--version"]},
    ]
    marker = {
        "nccl_tests": {"repo": str(build["repo"]), "tag": tag, "commit": commit},
        "make": make_vars,
        "nccl": {"package": "libnccl2", "version": nccl_version or "<dpkg-query -W libnccl2 on the node>"},
        "cuda": {"nvcc": cuda_version or f"<{cuda_home}/bin/nvcc --version on the node>"},
        "binary": dirs["binary"],
    }
    return {"packages": [str(p) for p in build.get("packages") or []] + nccl_packages, "probes": probes,
            "steps": steps, "marker": marker, **dirs}


def parse_nvcc_version(text: str) -> str | None:
    """``Cuda compilation tools, release 13.0, V13.0.88`` -> ``13.0.88``."""
    match = re.search(r"release [\d.]+, V([\d.]+)", text or "")
    return match.group(1) if match else None


def _gid(node: dict[str, Any], device: str) -> tuple[str | None, str | None]:
    """(the -x value, an error) for one RDMA device of a node. No facts: the placeholder the run fills."""
    gids = node.get("gid_index")
    if gids is None:
        return GID_PLACEHOLDER.format(device=device), None
    value = gids.get(device)
    if value is None:
        return None, (f"no RoCE v2 IPv4 GID on {device} of {node['name']} (no IPv4 address on the twin, or the "
                      "RDMA device is absent): ib_write_bw cannot run on it")
    return str(int(value)), None


def ib_write_bw_plan(nodes: list[dict[str, Any]], twins: list[dict[str, Any]],
                     settings: dict[str, Any]) -> dict[str, Any]:
    """ib_write_bw around a ring, on every twin: node i is the client of node i+1 and the server of
    node i-1, so every twin of every node carries one test out and one test in, and all of them run at
    the same time (both twins of a node together, as NVIDIA's DGX Spark guide measures a 200G cable).

    Twin k's server listens on ``port + k``. ``settings``: ``binary, port, args, server_timeout``.
    """
    names = [n["name"] for n in nodes]
    binary = str(settings.get("binary") or "ib_write_bw")
    port = int(settings.get("port") or 18515)
    args = str(settings.get("args") or "").split()
    timeout = int(settings.get("server_timeout") or 90)
    plan: dict[str, Any] = {}
    for i, node in enumerate(nodes):
        if len(nodes) < 2:
            alone = [{"twin": t["interface"], "rdma_device": t["rdma_device"], "peer": None, "peer_address": None,
                      "port": port + k, "argv": None, "error": None,
                      "run": {"twin": t["interface"], "peer": None, "argv": None, "error": None}}
                     for k, t in enumerate(twins)]
            plan[node["name"]] = {"peer": None, "server_for": None, "servers": [], "clients": alone,
                                  "skip": "a single node has no peer"}
            continue
        peer = nodes[(i + 1) % len(nodes)]
        prev = nodes[(i - 1) % len(nodes)]
        servers, clients = [], []
        for k, twin in enumerate(twins):
            device, iface = twin["rdma_device"], twin["interface"]
            gid, error = _gid(node, device)
            gid_args = ["-x", gid] if gid is not None else []
            servers.append({
                "twin": iface, "rdma_device": device, "port": port + k, "for": prev["name"],
                "argv": None if error else ["timeout", str(timeout), binary, "-d", device] + gid_args
                + ["-p", str(port + k)] + args,
                "error": error})
            peer_ip = _ip((peer.get("addresses") or {}).get(iface))
            if error is None and peer_ip is None:
                error = f"{peer['name']} has no address on {iface} (gb10_fabric_addresses)"
            argv = None if error else [binary, "-d", device] + gid_args + ["-p", str(port + k)] + args + [peer_ip]
            clients.append({
                "twin": iface, "rdma_device": device, "peer": peer["name"], "peer_address": peer_ip,
                "port": port + k, "argv": argv, "error": error,
                # what gb10.cluster.fabric_perf takes (runs[]): both twins' clients start together
                "run": {"twin": iface, "peer": peer["name"], "argv": argv, "error": error}})
        plan[node["name"]] = {"peer": peer["name"], "server_for": prev["name"], "servers": servers,
                              "clients": clients}
    if len(set(names)) != len(names):
        raise PlanError("ib_write_bw plan: a node is listed twice.")
    return plan


def nccl_plan(nodes: list[dict[str, Any]], twins: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """``mpirun`` of nccl-tests' all_gather_perf across every node, one rank per node, from the first node.

    NCCL's bootstrap and Open MPI's TCP use ``socket_ifname`` (the hosts are the nodes' addresses on it,
    or their ``ansible_host`` when it is not a twin); NCCL_IB_HCA lists the RoCE devices of every twin;
    NCCL_IB_GID_INDEX is never set. ``settings``: ``mpirun, binary, args, socket_ifname, cuda_home,
    nccl_home, as_root, env``.
    """
    if len(nodes) < 2:
        return {"launcher": nodes[0]["name"] if nodes else None, "np": len(nodes), "hosts": [], "argv": None,
                "skip": "a single node"}
    ifname = str(settings.get("socket_ifname") or twins[0]["interface"])
    hosts = []
    for node in nodes:
        address = _ip((node.get("addresses") or {}).get(ifname)) or node.get("ansible_host")
        if not address:
            raise PlanError(f"nccl plan: {node['name']} has no address on {ifname} and no ansible_host.")
        hosts.append(str(address))
    extra = dict(settings.get("env") or {})
    if "NCCL_IB_GID_INDEX" in extra:
        raise PlanError("nccl plan: NCCL_IB_GID_INDEX is refused (the RoCE v2 GID index moves; NCCL finds it).")
    env = {
        "LD_LIBRARY_PATH": library_path(str(settings.get("cuda_home") or "/usr/local/cuda"),
                                        str(settings.get("nccl_home") or "/usr")),
        "NCCL_SOCKET_IFNAME": ifname,
        "NCCL_IB_HCA": ",".join(t["rdma_device"] for t in twins),
        "NCCL_IB_SUBNET_AWARE_ROUTING": "1",
        "NCCL_IGNORE_CPU_AFFINITY": "1",
        "NCCL_DEBUG": "INFO",
        "NCCL_DEBUG_SUBSYS": "INIT,NET",
    }
    env.update({str(k): str(v) for k, v in extra.items()})
    argv = [str(settings.get("mpirun") or "/usr/bin/mpirun")]
    if settings.get("as_root"):
        argv.append("--allow-run-as-root")
    argv += ["-np", str(len(nodes)), "-H", ",".join(f"{h}:1" for h in hosts),
             "--mca", "plm_rsh_args", "-o BatchMode=yes",
             "--mca", "btl_tcp_if_include", ifname, "--mca", "oob_tcp_if_include", ifname]
    for key, value in env.items():
        argv += ["-x", f"{key}={value}"]
    argv += [str(settings["binary"])] + str(settings.get("args") or "").split()
    return {"launcher": nodes[0]["name"], "np": len(nodes), "hosts": hosts, "socket_ifname": ifname,
            "ib_hca": env["NCCL_IB_HCA"], "argv": argv,
            # to name the node at fault from the output: the addresses mpirun used and the host names
            # nccl-tests and NCCL print (known when the facts were read)
            "addresses": dict(zip(hosts, [n["name"] for n in nodes])),
            "hostnames": {str(n["hostname"]): n["name"] for n in nodes if n.get("hostname")}}


def fabric_test_plan(spec: dict[str, Any]) -> dict[str, Any]:
    """The whole plan for the nodes of one run: the build per node, ib_write_bw per node and twin,
    and the one mpirun. ``spec``: ``nodes`` (``name, ansible_host, addresses, hostname, gid_index,
    nccl_version, cuda_version``; ``gid_index`` None when the facts are not read, as in a render),
    ``twins``, ``build``, ``ib_write_bw``, ``nccl`` (see the functions above).
    """
    nodes = list(spec.get("nodes") or [])
    twins = list(spec.get("twins") or [])
    if not twins:
        raise PlanError("fabric test plan: gb10_fabric_twins is empty.")
    build = {n["name"]: nccl_tests_build_plan(spec.get("build") or {}, n.get("nccl_version"), n.get("cuda_version"))
             for n in nodes}
    nccl_settings = dict(spec.get("nccl") or {})
    nccl_settings.setdefault("cuda_home", (spec.get("build") or {}).get("cuda_home"))
    nccl_settings.setdefault("nccl_home", (spec.get("build") or {}).get("nccl_home"))
    plan = {
        "nodes": [n["name"] for n in nodes],
        "twins": twins,
        "gid_index": GID_NOTE,
        "build": build,
        "ib_write_bw": ib_write_bw_plan(nodes, twins, dict(spec.get("ib_write_bw") or {})),
        "nccl": nccl_plan(nodes, twins, nccl_settings),
    }
    _add_sh(plan)
    return plan


def _add_sh(item: Any) -> None:
    """Next to every ``argv``, the same command as one shell line (``sh``), for people reading a render.
    Not inside ``run`` (passed as is to gb10.cluster.fabric_perf, whose options it must match)."""
    if isinstance(item, dict):
        if isinstance(item.get("argv"), list):
            item["sh"] = shlex.join(item["argv"])
        for key, value in list(item.items()):
            if key not in ("sh", "run"):
                _add_sh(value)
    elif isinstance(item, list):
        for value in item:
            _add_sh(value)


# --- the link tests: judging their output ---------------------------------------------------------

def _row(node: str, twin: str | None, peer: str | None, name: str, status: str, detail: str,
         value: float | None = None) -> dict[str, Any]:
    row = check(node, twin, peer, name, status, detail)
    if value is not None:
        row["value"] = value
    return row


def judge_ib_write_bw(node: str, twin: str, peer: str, rc: int, output: str, minimum: float) -> dict[str, Any]:
    """One ib_write_bw client run -> its row: average Gb/s against the minimum, or why there is none."""
    parsed = parse_ib_write_bw_result(output)
    value = parsed["average_gbps"]
    if value is None or rc != 0:
        reason = first_error_line(output) or ((output or "").strip().splitlines() or ["no output"])[-1].strip()
        return _row(node, twin, peer, "ib_write_bw", FAILED, f"no result (exit code {rc}): {reason}")
    gid = f", GID index {parsed['gid_index']}" if parsed["gid_index"] is not None else ""
    return _row(node, twin, peer, "ib_write_bw", PASSED if value >= minimum else FAILED,
                f"{value:g} Gb/s (minimum {minimum:g} Gb/s){gid}", value)


def judge_nccl(launcher: str, rc: int, output: str, minimum: float, nodes: list[str],
               hostnames: dict[str, str] | None = None, addresses: dict[str, str] | None = None,
               ib_devices: list[str] | None = None) -> dict[str, Any]:
    """One nccl-tests run across the nodes -> its row, naming the node at fault when the output does.

    ``hostnames`` maps the hosts' own names (what nccl-tests and NCCL print) to inventory names,
    ``addresses`` the IPs mpirun used; ``ib_devices`` are the RoCE devices NCCL must use on every node.
    Checked in order: a rank's failure line, a launch error (ssh, mpirun), no result, NCCL on sockets
    instead of RoCE or missing a twin's device, ranks missing, data errors, and the bus bandwidth.
    """
    hostnames = dict(hostnames or {})
    addresses = dict(addresses or {})

    def name(host: str) -> str:
        return hostnames.get(host) or hostnames.get(host.split(".")[0]) or host

    def fail(node: str, detail: str) -> dict[str, Any]:
        return _row(node, None, "all", "nccl_all_gather", FAILED, detail, parsed["avg_busbw"])

    parsed = parse_nccl_tests(output)
    if parsed["failures"]:
        first = parsed["failures"][0]
        return fail(name(first["host"]), f"{first['host']}: {first['text']}")
    if rc != 0 or parsed["avg_busbw"] is None:
        line = first_error_line(output, _LAUNCH_ERROR) or ((output or "").strip().splitlines() or ["no output"])[-1]
        node = next((n for ip, n in addresses.items() if re.search(rf"(?<![\d.]){re.escape(ip)}(?![\d.])", line)),
                    launcher)
        what = "no Avg bus bandwidth in the output" if rc == 0 else f"mpirun exited {rc}"
        return fail(node, f"{what}: {line.strip()}")
    for host, network in sorted(parsed["network"].items()):
        if network != "IB":
            return fail(name(host), f"NCCL on {host} used network {network}, not IB (RoCE): the RDMA devices are "
                                    "not usable there (ibv_devinfo, /dev/infiniband, memlock)")
    if ib_devices:
        for host, used in sorted(parsed["ib_devices"].items()):
            missing = [d for d in ib_devices if d not in used]
            if missing:
                return fail(name(host), f"NCCL on {host} did not use {', '.join(missing)} (it used "
                                        f"{', '.join(used) or 'none'}; NCCL_IB_HCA lists {', '.join(ib_devices)}): "
                                        "that twin is down or has no RoCE GID there")
    if parsed["ranks"]:
        ranked = {name(r["host"]) for r in parsed["ranks"]}
        absent = [n for n in nodes if n not in ranked]
        if len(parsed["ranks"]) != len(nodes) or absent:
            return fail(launcher, f"{len(parsed['ranks'])} ranks on {', '.join(sorted(ranked))}, expected one on "
                                  f"each of {', '.join(nodes)}")
    bad = (parsed["out_of_bounds"] or 0) + parsed["wrong"]
    if bad:
        return fail(launcher, f"data errors: #wrong {parsed['wrong']}, out of bounds {parsed['out_of_bounds']}")
    value = parsed["avg_busbw"]
    facts = [f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}"]
    if parsed["network"]:
        facts.append("NET/IB on every node" if ib_devices is None
                     else f"NET/IB on {', '.join(ib_devices)} on every node")
    if parsed["nccl_library"]:
        facts.append(f"NCCL {parsed['nccl_library']}, nccl-tests {parsed['nccl_tests']}")
    return _row(launcher, None, "all", "nccl_all_gather", PASSED if value >= minimum else FAILED,
                f"{value:g} GB/s (minimum {minimum:g} GB/s); {'; '.join(facts)}", value)


def _value_text(row: dict[str, Any]) -> str:
    return f"{row['value']:g} Gb/s" if row.get("value") is not None else "no result"


def derive_link_rows(checks: list[dict[str, Any]], twin_ratio_min: float = 0.9) -> list[dict[str, Any]]:
    """The verdicts drawn from the ib_write_bw rows (client ``node`` -> server ``peer``, per twin).

    - ``ib_write_bw_twins`` per node: its two twins compared. A twin's figure is the faster of its two
      ring links (the one out and the one in: a link runs at the pace of its slower end, so the faster
      of the two is what this twin can do); the slower twin must reach ``twin_ratio_min`` of the other.
    - ``slow_twin`` per node and twin, only when it is the slow end: both of its ring links on that
      twin failed while the neighbours' other links on that twin passed (needs 3 nodes or more).
    """
    ib = [r for r in checks if r["check"] == "ib_write_bw"]
    if not ib:
        return []
    nodes: list[str] = []
    twins: list[str] = []
    for row in ib:
        for name in (row["node"], row.get("peer")):
            if name and name not in nodes:
                nodes.append(name)
        if row.get("twin") and row["twin"] not in twins:
            twins.append(row["twin"])
    out = {(r["node"], r["twin"]): r for r in ib}
    inc = {(r["peer"], r["twin"]): r for r in ib if r.get("peer")}
    rows: list[dict[str, Any]] = []
    if len(nodes) >= 3:
        for node in nodes:
            for twin in twins:
                o, i = out.get((node, twin)), inc.get((node, twin))
                if not (o and i and o["status"] == FAILED and i["status"] == FAILED):
                    continue
                after = out.get((o["peer"], twin))  # the next node's own link out
                before = inc.get((i["node"], twin))  # the previous node's link in
                if after and before and after["status"] == PASSED and before["status"] == PASSED:
                    rows.append(check(node, twin, None, "slow_twin", FAILED,
                                      f"both ring links of this twin are slow ({node} -> {o['peer']} {_value_text(o)}, "
                                      f"{i['node']} -> {node} {_value_text(i)}) while {o['peer']} and {i['node']} pass "
                                      f"their other link: this node's twin is the slow end (its cable, switch port "
                                      f"or PCIe link)"))
    if len(twins) < 2:
        return rows
    for node in nodes:
        best: dict[str, float] = {}
        reason = None
        for twin in twins:
            links = [r for r in (out.get((node, twin)), inc.get((node, twin))) if r]
            values = [r["value"] for r in links if r.get("value") is not None]
            if values:
                best[twin] = max(values)
            elif reason is None:
                skipped = [r for r in links if r["status"] == SKIPPED]
                reason = skipped[0]["detail"] if skipped else f"no ib_write_bw result on {twin} (see its ib_write_bw rows)"
        if reason is not None or len(best) < 2:
            rows.append(check(node, None, None, "ib_write_bw_twins", SKIPPED, reason or "fewer than two twins measured"))
            continue
        slow = min(best, key=lambda t: best[t])
        fast = max(best, key=lambda t: best[t])
        ratio = best[slow] / best[fast] if best[fast] > 0 else 0.0
        detail = (f"{slow} {best[slow]:g} Gb/s is {ratio:.0%} of {fast} {best[fast]:g} Gb/s (minimum "
                  f"{twin_ratio_min:.0%}); together {sum(best.values()):g} Gb/s")
        rows.append(_row(node, slow if ratio < twin_ratio_min else None, None, "ib_write_bw_twins",
                         PASSED if ratio >= twin_ratio_min else FAILED, detail, round(ratio, 4)))
    return rows


def _majority(values: dict[str, str]) -> str:
    """The most common value (ties: the first in sort order)."""
    counts: dict[str, int] = {}
    for value in values.values():
        counts[value] = counts.get(value, 0) + 1
    return max(sorted(counts), key=lambda v: counts[v])


def tools_rows(nodes: list[str], markers: dict[str, Any], expected: dict[str, Any],
               skip: dict[str, str]) -> list[dict[str, Any]]:
    """``fabric_tools`` per node: nccl-tests built from the pinned tag and commit with the pinned make
    settings (the marker the build wrote), and the same NCCL build on every node (mixed builds of NCCL
    across nodes are what hung multi-node runs)."""
    rows: dict[str, dict[str, Any]] = {}
    versions: dict[str, str] = {}
    want_src = expected.get("nccl_tests") or {}
    for node in nodes:
        if skip.get(node):
            rows[node] = check(node, None, None, "fabric_tools", SKIPPED, skip[node])
            continue
        marker = markers.get(node)
        if not isinstance(marker, dict) or not marker:
            rows[node] = check(node, None, None, "fabric_tools", FAILED,
                               f"nccl-tests {want_src.get('tag')} is not built on this node ({expected.get('binary')} "
                               "has no build marker): run playbooks/nodes.yml")
            continue
        got_src = marker.get("nccl_tests") or {}
        if got_src != want_src or marker.get("make") != expected.get("make"):
            rows[node] = check(node, None, None, "fabric_tools", FAILED,
                               f"nccl-tests here is {got_src.get('tag')} {str(got_src.get('commit'))[:12]} built with "
                               f"{marker.get('make')}, the pin is {want_src.get('tag')} {str(want_src.get('commit'))[:12]} "
                               f"with {expected.get('make')}: run playbooks/nodes.yml")
            continue
        version = str((marker.get("nccl") or {}).get("version"))
        versions[node] = version
        rows[node] = check(node, None, None, "fabric_tools", PASSED,
                           f"nccl-tests {want_src.get('tag')} ({str(want_src.get('commit'))[:7]}) MPI=1 "
                           f"{(marker.get('make') or {}).get('NVCC_GENCODE')} against libnccl2 {version}, "
                           f"CUDA {(marker.get('cuda') or {}).get('nvcc')}")
    if len(set(versions.values())) > 1:
        common = _majority(versions)
        others = [n for n, v in versions.items() if v == common]
        for node, version in versions.items():
            if version != common:
                rows[node] = check(node, None, None, "fabric_tools", FAILED,
                                   f"libnccl2 {version} here, {common} on {', '.join(others)}: install the same NCCL "
                                   "build on every node (mixed NCCL builds hang multi-node runs; pin "
                                   "cx7_fabric_nccl_tests_nccl_version) and re-run playbooks/nodes.yml")
    return [rows[n] for n in nodes]


def version_mismatch(versions: dict[str, Any]) -> str:
    """One sentence naming the nodes whose version differs from the most common one; '' when all agree."""
    known = {str(n): str(v) for n, v in versions.items() if v}
    if len(set(known.values())) <= 1:
        return ""
    common = _majority(known)
    odd = [f"{n} has {v}" for n, v in sorted(known.items()) if v != common]
    same = sorted(n for n, v in known.items() if v == common)
    return f"{'; '.join(odd)}, while {', '.join(same)} have {common}"


# --- the report ----------------------------------------------------------------------------------

def _order(row: dict[str, Any]) -> tuple[Any, ...]:
    rank = CHECK_ORDER.index(row["check"]) if row["check"] in CHECK_ORDER else len(CHECK_ORDER)
    return (0 if row.get("peer") is None else 1, rank, row.get("node") or "",
            row.get("twin") or "", row.get("peer") or "")


def describe(row: dict[str, Any]) -> str:
    """``gx10-3 twin enP2p1s0f1np1: mtu failed (expected 9000, found 1500)``."""
    where = row["node"]
    if row.get("twin"):
        where += f" twin {row['twin']}"
    if row.get("peer"):
        where += f" -> {row['peer']}"
    return f"{where}: {row['check']} {row['status']} ({row['detail']})"


def summarize(checks: list[dict[str, Any]], max_listed: int = 12) -> dict[str, Any]:
    """Counts per status and per check, the failed rows (cause first) and one message naming the
    node, the twin and the failed check."""
    counts = {status: 0 for status in STATUSES}
    per_check: dict[str, dict[str, int]] = {}
    for row in checks:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        per_check.setdefault(row["check"], {s: 0 for s in STATUSES})[row["status"]] += 1
    failed = sorted((row for row in checks if row["status"] == FAILED), key=_order)
    skipped = sorted((row for row in checks if row["status"] == SKIPPED), key=_order)
    if failed:
        listed = "; ".join(describe(row) for row in failed[:max_listed])
        more = f"; and {len(failed) - max_listed} more" if len(failed) > max_listed else ""
        message = (f"Fabric check FAILED: {len(failed)} of {len(checks)} checks failed: "
                   f"{listed}{more}. Fix the first one (usually the cause of the others) and re-run "
                   f"playbooks/validate_fabric.yml.")
    else:
        message = (f"Fabric check passed: {counts[PASSED]} passed, {counts[SKIPPED]} skipped "
                   f"(hardware-only checks on a node without the hardware are SKIPPED, not passed).")
    lines = [f"{name}: " + ", ".join(f"{n} {status}" for status, n in by.items() if n)
             for name, by in sorted(per_check.items(),
                                    key=lambda kv: CHECK_ORDER.index(kv[0])
                                    if kv[0] in CHECK_ORDER else len(CHECK_ORDER))]
    return {
        "ok": not failed,
        "total": len(checks),
        "lines": lines,
        "counts": counts,
        "per_check": per_check,
        "failed": failed,
        "skipped_reasons": sorted({f"{row['check']}: {row['detail']}" for row in skipped}),
        "findings": [f"{describe(row)}." for row in failed],
        "message": message,
    }


def build_report(checks: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """The JSON document written under artifacts/fabric/."""
    summary = summarize(checks)
    return {
        "meta": meta,
        "summary": {key: summary[key] for key in ("ok", "total", "counts", "per_check", "findings", "message")},
        "checks": sorted(checks, key=lambda r: (r["node"] or "", r["twin"] or "",
                                                CHECK_ORDER.index(r["check"])
                                                if r["check"] in CHECK_ORDER else 99,
                                                r["peer"] or "")),
    }
