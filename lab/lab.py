#!/usr/bin/env python3
"""The hardware-free lab: GB10 stand-in nodes as systemd containers that Ansible reaches over SSH.

    python -m lab.lab build            build (or reuse) the node image, cached by the hash of its inputs
    python -m lab.lab up [--nodes N]   start gx10-1..N, plumb their interfaces, write inventory/lab
    python -m lab.lab status           one line per node
    python -m lab.lab down             remove every container, volume, bridge and file the lab made
    python -m lab.lab plumb            re-create the interfaces of running nodes (after a node restart)
    python -m lab.lab reboot N         power-cycle gx10-N (docker restart, then its links come back)
    python -m lab.lab inventory        write inventory/lab only (molecule links it before it creates the lab)
    python -m lab.lab switch-vault     vault the switch simulator's credentials into inventory/lab
    python -m lab.lab vault-pass       make the lab's vault password file if missing
    python -m lab.lab cable N TWIN up|down
                                       plug or pull a twin's cable: TWIN is the node's interface name
                                       (enp1s0f1np1 or enP2p1s0f1np1); the node sees its link lose carrier

Each node has three interfaces, named like a GB10's: ``enP7s7`` (management, on the bridge
``gb10lab-mgmt`` which also holds the controller's address 10.77.0.1), and the ConnectX-7 twins
``enp1s0f1np1`` / ``enP2p1s0f1np1``, each on its own bridge that carries MTU 9000 frames. The twins
boot at MTU 1500 without addresses: configuring them is the roles' job. Everything is idempotent.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "lab"
STATE = LAB / ".state"
IMAGE_DIR = LAB / "node-image"
INVENTORY = ROOT / "inventory" / "lab"
# The lab's catalog entries (tiny models) and where lab/serving/lab_serving.py writes their folders.
LAB_MODELS_CATALOG = LAB / "models" / "catalog.yml"
LAB_MODELS_DIR = STATE / "serving" / "models"

SUITE = os.environ.get("LAB_SUITE", "trixie")
MIRROR = os.environ.get("LAB_MIRROR", "http://deb.debian.org/debian")
IMAGE_REPO = "gb10-lab-node"
# LAB_ID lets a second lab run beside the first on one machine (e.g. a CI run from a fresh clone while
# the developer's lab is up): other container names, bridges and management subnet. 0 is the default.
LAB_ID = int(os.environ.get("LAB_ID", "0"))
_SUFFIX = "" if LAB_ID == 0 else str(LAB_ID)
CONTAINER_PREFIX = "" if LAB_ID == 0 else f"lab{LAB_ID}-"
LABEL = f"gb10-lab=node{_SUFFIX}"
MGMT_BRIDGE = f"gb10lab{_SUFFIX}-mgmt"
MGMT_PREFIX = f"10.77.{LAB_ID}"
MGMT_GATEWAY = f"{MGMT_PREFIX}.1"
# The lab's registry on the control machine (lab/serving/lab_serving.py registry), where the nodes pull.
REGISTRY_ADDR = os.environ.get("LAB_REGISTRY_ADDR", f"{MGMT_GATEWAY}:5000")
# lab/models/catalog.yml writes an image served by tag as LAB_REGISTRY/<repository>.
LAB_REGISTRY_PLACEHOLDER = "LAB_REGISTRY/"
MGMT_INTERFACE = "enP7s7"
# (node interface, lab bridge, fabric subnet prefix, RoCE device it stands for)
TWINS = (
    ("enp1s0f1np1", f"gb10lab{_SUFFIX}-fa", "192.168.100", "rocep1s0f1"),
    ("enP2p1s0f1np1", f"gb10lab{_SUFFIX}-fb", "192.168.101", "roceP2p1s0f1"),
)
# Every bridge the lab makes on the host: the management one, then one per twin (bridge_mac numbers them so).
BRIDGES = (MGMT_BRIDGE, *(t[1] for t in TWINS))
FABRIC_MTU = 9000
ADMIN_USER = "gb10admin"
MAX_NODES = 16


def container_name(index: int) -> str:
    return f"{CONTAINER_PREFIX}gx10-{index}"


def host_veth(index: int, tag: str) -> str:
    """Host-side name of node ``index``'s veth ``tag`` (m = management, a/b = twins); 15 chars max."""
    return f"gb10l{index}{tag}" if LAB_ID == 0 else f"gb{LAB_ID}l{index}{tag}"


def log(msg: str) -> None:
    print(f"lab: {msg}", flush=True)


def run(*cmd: str, check: bool = True, capture: bool = False, inp: bytes | None = None,
        env: dict[str, str] | None = None) -> str:
    res = subprocess.run(cmd, check=False, input=inp, stdout=subprocess.PIPE if capture else None,
                         stderr=subprocess.PIPE if capture else None, env=env)
    if check and res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip() if capture and res.stderr else ""
        raise SystemExit(f"lab: command failed ({res.returncode}): {' '.join(cmd)}\n{err}")
    return res.stdout.decode(errors="replace") if capture and res.stdout else ""


def ok(*cmd: str) -> bool:
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


# --------------------------------------------------------------------------------------------- image
def image_inputs_hash() -> str:
    digest = hashlib.sha256()
    digest.update(f"{SUITE}\n{MIRROR}\n".encode())
    for name in ("packages.txt", "customize.sh"):
        digest.update((IMAGE_DIR / name).read_bytes())
    return digest.hexdigest()[:12]


def image_tag() -> str:
    return f"{IMAGE_REPO}:{image_inputs_hash()}"


def packages(path: Path = IMAGE_DIR / "packages.txt") -> list[str]:
    """Package names of an image's packages.txt (one a line, # comments)."""
    lines = path.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def build() -> str:
    tag = image_tag()
    if ok("docker", "image", "inspect", tag):
        log(f"node image {tag} is up to date (cached by content)")
        return tag
    if shutil.which("debootstrap") is None:
        raise SystemExit("lab: debootstrap is missing; run `make deps` (apt-get install debootstrap)")
    rootfs = STATE / f"rootfs-{image_inputs_hash()}"
    if rootfs.exists():
        shutil.rmtree(rootfs)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    log(f"debootstrap {SUITE} into {rootfs} (about a minute)")
    t0 = time.monotonic()
    run("debootstrap", "--variant=minbase", f"--include={','.join(packages())}", SUITE, str(rootfs), MIRROR)
    shutil.copy(IMAGE_DIR / "customize.sh", rootfs / "tmp" / "customize.sh")
    run("chroot", str(rootfs), "/bin/sh", "/tmp/customize.sh")
    (rootfs / "tmp" / "customize.sh").unlink()
    log("importing the root file system into Docker")
    if not docker_import(rootfs, tag, ['CMD ["/sbin/init"]']):
        raise SystemExit("lab: docker import of the node image failed")
    shutil.rmtree(rootfs)
    log(f"built {tag} in {time.monotonic() - t0:.0f} s")
    return tag


def docker_import(rootfs: Path, tag: str, changes: list[str]) -> bool:
    """Import a root file system into the host's Docker as image ``tag`` (one layer, ``changes`` as
    Dockerfile instructions); True when tar and ``docker import`` both succeeded."""
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    imp = subprocess.run(["docker", "import", *(arg for change in changes for arg in ("-c", change)), "-", tag],
                         stdin=tar.stdout, stdout=subprocess.DEVNULL)
    assert tar.stdout is not None
    tar.stdout.close()
    tar.wait()
    return imp.returncode == 0 and tar.returncode == 0


# --------------------------------------------------------------------------------------------- network
def bridge_mac(name: str) -> str:
    """A fixed MAC for lab bridge ``name``: locally administered, unicast, one per bridge and LAB_ID.
    A bridge without one takes the lowest MAC of its ports and changes it when a node's veth is plumbed
    again (`reboot`): the control machine's management address then moves to a new MAC and every other
    node keeps sending to the old one until its ARP entry fails (an SSH session to an untouched node hung
    30 s in the serve scenario's power cycle, CI of 2026-12-02). A rack's switch never does that."""
    if name not in BRIDGES:
        raise ValueError(f"lab: {name!r} is not a lab bridge ({', '.join(BRIDGES)})")
    return f"02:67:62:{LAB_ID & 0xFF:02x}:00:{BRIDGES.index(name) + 1:02x}"


def link_mac(name: str) -> str:
    return Path(f"/sys/class/net/{name}/address").read_text().strip()


def ensure_bridge(name: str, mtu: int, address: str | None = None) -> None:
    if not ok("ip", "link", "show", name):
        run("ip", "link", "add", name, "type", "bridge")
    # Set explicitly, the address stays whatever ports come and go (see bridge_mac).
    run("ip", "link", "set", name, "address", bridge_mac(name))
    run("ip", "link", "set", name, "mtu", str(mtu), "up")
    if address and address.split("/")[0] not in run("ip", "-4", "addr", "show", name, capture=True):
        run("ip", "addr", "add", address, "dev", name)
    # Docker's FORWARD policy is DROP and br_netfilter may hand bridged frames to iptables: let lab
    # frames through on the lab bridges (and only there).
    rule = ["FORWARD", "-i", name, "-o", name, "-j", "ACCEPT"]
    if shutil.which("iptables") and not ok("iptables", "-C", *rule):
        run("iptables", "-I", *rule, check=False)


def delete_bridge(name: str) -> None:
    if ok("ip", "link", "show", name):
        run("ip", "link", "del", name)
    rule = ["FORWARD", "-i", name, "-o", name, "-j", "ACCEPT"]
    while shutil.which("iptables") and ok("iptables", "-C", *rule):
        run("iptables", "-D", *rule, check=False)


def container_pid(name: str) -> int:
    return int(run("docker", "inspect", "-f", "{{.State.Pid}}", name, capture=True).strip() or 0)


def nsenter(pid: int, *cmd: str, check: bool = True) -> str:
    return run("nsenter", "-t", str(pid), "-n", *cmd, check=check, capture=True)


def plumb(index: int) -> None:
    """Give node ``index`` its management interface and its two twins (idempotent)."""
    name = container_name(index)
    pid = container_pid(name)
    if pid == 0:
        raise SystemExit(f"lab: {name} is not running")
    links = nsenter(pid, "ip", "-o", "link", "show")
    wanted = [(MGMT_INTERFACE, MGMT_BRIDGE, "m", 1500)] + [(t[0], t[1], "ab"[i], FABRIC_MTU) for i, t in enumerate(TWINS)]
    for ifname, bridge, tag, host_mtu in wanted:
        if f" {ifname}:" in links or f" {ifname}@" in links:
            continue
        host_side = host_veth(index, tag)
        if ok("ip", "link", "show", host_side):
            run("ip", "link", "del", host_side)
        run("ip", "link", "add", host_side, "type", "veth", "peer", "name", ifname, "netns", str(pid))
        run("ip", "link", "set", host_side, "mtu", str(host_mtu), "master", bridge, "up")
        nsenter(pid, "ip", "link", "set", ifname, "up")
    # The management address is NetworkManager's job (the node's netplan file, see create_node): an address
    # put there by hand first would make NetworkManager treat the link as configured outside it.


# --------------------------------------------------------------------------------------------- nodes
def lab_containers() -> list[str]:
    out = run("docker", "ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}", capture=True)
    return sorted(out.split(), key=lambda n: int(n.rsplit("-", 1)[1]))


def ssh_key() -> Path:
    key = STATE / "ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gb10-lab", "-f", str(key))
    return key


MGMT_NETPLAN = Path("/etc/netplan/10-lab-mgmt.yaml")


def mgmt_address(index: int) -> str:
    return f"{MGMT_PREFIX}.{10 + index}/24"


def mgmt_netplan(index: int) -> str:
    """Node ``index``'s netplan file for its management link (NetworkManager renderer, static address)."""
    return ("# Written by lab/lab.py when the node was created: the management link, managed by NetworkManager\n"
            "# as on DGX OS (netplan, NetworkManager renderer). The lab has no DHCP server: a static address.\n"
            "network:\n  version: 2\n  renderer: NetworkManager\n  ethernets:\n"
            f"    {MGMT_INTERFACE}:\n      dhcp4: false\n      dhcp6: false\n"
            f"      addresses: [{mgmt_address(index)}]\n")


def create_node(index: int, tag: str, pubkey: str) -> None:
    name = container_name(index)
    run("docker", "create", "--name", name, "--hostname", f"gx10-{index}", "--label", LABEL,
        "--label", f"gb10-lab-image={tag}", "--network", "none", "--stop-signal", "SIGRTMIN+3",
        "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "--tmpfs", "/run:exec,mode=755", "--tmpfs", "/run/lock", "--tmpfs", "/tmp:exec,mode=1777",
        "-v", f"gb10lab-{name}-docker:/var/lib/docker", "--memory", "6g",
        # A GB10's /dev/shm is half its memory; Docker's default 64 MiB is too small for vLLM's message
        # queues (160-240 MiB), which the vLLM driver and the Ray worker of a node share (--ipc host).
        "--shm-size", "1g",
        tag, capture=True)
    # The lab key goes in before the first boot, as a provisioning tool would put it on a real node.
    staging = STATE / "staging" / name
    (staging / ".ssh").mkdir(parents=True, exist_ok=True)
    (staging / ".ssh" / "authorized_keys").write_text(pubkey)
    run("docker", "cp", str(staging / ".ssh" / "authorized_keys"), f"{name}:/home/{ADMIN_USER}/.ssh_authorized_keys")
    # The management link as DGX OS manages it: netplan with the NetworkManager renderer, rendered into a
    # NetworkManager profile (netplan-enP7s7) at boot. A static address: the lab has no DHCP server.
    mgmt = staging / MGMT_NETPLAN.name
    mgmt.write_text(mgmt_netplan(index))
    mgmt.chmod(0o600)
    run("docker", "cp", str(mgmt), f"{name}:{MGMT_NETPLAN}")
    run("docker", "start", name, capture=True)
    run("docker", "exec", name, "sh", "-c",
        f"install -d -m 0700 -o {ADMIN_USER} -g {ADMIN_USER} /home/{ADMIN_USER}/.ssh && "
        f"install -m 0600 -o {ADMIN_USER} -g {ADMIN_USER} /home/{ADMIN_USER}/.ssh_authorized_keys "
        f"/home/{ADMIN_USER}/.ssh/authorized_keys && rm /home/{ADMIN_USER}/.ssh_authorized_keys && "
        + own_name_in_hosts(index))


def own_name_in_hosts(index: int) -> str:
    """Shell: the node's own name on 127.0.1.1 in /etc/hosts, as on a real node (Docker rewrites the file
    at every start of the container)."""
    return f"grep -q ' gx10-{index}$' /etc/hosts || echo '127.0.1.1 gx10-{index}' >> /etc/hosts"


def wait_ssh(index: int, key: Path, timeout: float = 120.0) -> None:
    host = f"{MGMT_PREFIX}.{10 + index}"
    deadline = time.monotonic() + timeout
    cmd = ["ssh", "-q", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=3", f"{ADMIN_USER}@{host}",
           "sudo -n systemctl is-system-running --wait >/dev/null 2>&1; sudo -n true"]
    while time.monotonic() < deadline:
        if ok(*cmd):
            return
        time.sleep(1)
    raise SystemExit(f"lab: {container_name(index)} did not answer SSH on {host} within {timeout:.0f} s")


def switch_state_dir() -> Path:
    """Where lab/switch-sim.sh keeps the simulator of this lab (the Makefile passes the same path)."""
    return STATE / ("switch" if LAB_ID == 0 else f"switch-{LAB_ID}")


def switch_host() -> dict[str, object]:
    """The simulated CRS804 as the switch role sees it: API over TLS on loopback, lab credentials."""
    state = switch_state_dir()
    return {
        "ansible_host": "127.0.0.1",
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "switch_api_port": 8729 + LAB_ID,
        # The password is vault_switch_password in group_vars/switch/vault.yml, encrypted with the lab's
        # vault password (`lab.py switch-vault`, run by `make lab-up` once the simulator made it).
        "switch_api_username": "{{ vault_switch_username }}",
        "switch_api_ca_path": str(state / "cert.pem"),
        # The controller reaches the simulator from loopback; the real switch sees the management subnet.
        "switch_services_address": "127.0.0.1/32,{{ gb10_mgmt_subnet }}",
        "switch_mgmt_address": f"{MGMT_PREFIX}.2/24",
    }


VAULT_PASS = STATE / "serving" / "vault-pass"
SWITCH_VAULT = INVENTORY / "group_vars" / "switch" / "vault.yml"


def vault_password() -> Path:
    """The lab's vault password file, made once (the Makefile points ANSIBLE_VAULT_PASSWORD_FILE at it)."""
    import secrets  # noqa: PLC0415

    VAULT_PASS.parent.mkdir(parents=True, exist_ok=True)
    if not VAULT_PASS.exists():
        VAULT_PASS.write_text(secrets.token_urlsafe(24) + "\n")
        VAULT_PASS.chmod(0o600)
    return VAULT_PASS


def encrypt_vars(values: dict[str, str]) -> str:
    """``name: !vault |`` entries for the values; each goes to ansible-vault on stdin, never on a command line."""
    vault = ROOT / ".venv" / "bin" / "ansible-vault"
    # Only the lab's password file, even when ANSIBLE_VAULT_PASSWORD_FILE is set, or ansible-vault sees two ids.
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_VAULT_PASSWORD_FILE"}
    parts = []
    for name, value in values.items():
        out = subprocess.run([str(vault) if vault.exists() else "ansible-vault", "encrypt_string", "--vault-password-file",
                              str(vault_password()), "--stdin-name", name], input=value.encode(), env=env,
                             capture_output=True, check=True).stdout.decode()
        parts.append(out if out.endswith("\n") else out + "\n")
    return "".join(parts)


def switch_vault() -> None:
    """Put the simulator's credentials into the lab inventory as vaulted variables (rewritten when they change)."""
    state = switch_state_dir()
    values = {"vault_switch_username": (state / "username").read_text().strip(),
              "vault_switch_password": (state / "password").read_text().strip()}
    stamp = STATE / f"switch-vault-{LAB_ID}.sha256"
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode() + vault_password().read_bytes()).hexdigest()
    if SWITCH_VAULT.exists() and stamp.exists() and stamp.read_text() == digest:
        return
    SWITCH_VAULT.parent.mkdir(parents=True, exist_ok=True)
    SWITCH_VAULT.write_text("---\n# Generated by lab/lab.py switch-vault: the switch simulator's credentials, encrypted\n"
                            f"# with the lab's vault password ({VAULT_PASS.relative_to(ROOT)}).\n" + encrypt_vars(values))
    stamp.write_text(digest)
    log(f"wrote {SWITCH_VAULT.relative_to(ROOT)} (vault password file {VAULT_PASS.relative_to(ROOT)})")


def write_inventory(count: int, key: Path) -> None:
    hosts = {}
    for i in range(1, count + 1):
        hosts[f"gx10-{i}"] = {
            "ansible_host": f"{MGMT_PREFIX}.{10 + i}",
            "gb10_fabric_addresses": {t[0]: f"{t[2]}.{10 + i}/24" for t in TWINS},
            # 4 nodes: one per cage at 400G/200G on sub-port 1; 8 nodes: 2x200G breakout (-1 and -5).
            "gb10_switch_port": (f"qsfp56-dd-{i}-1" if count <= 4 else f"qsfp56-dd-{(i + 1) // 2}-{1 if i % 2 else 5}"),
        }
    inv = {
        "all": {
            "children": {
                "gx10": {"hosts": hosts},
                "switch": {"hosts": {"crs804": switch_host()}},
                "control": {"hosts": {"controller": {"ansible_connection": "local", "ansible_host": "127.0.0.1"}}},
            }
        }
    }
    group_all = {
        "gb10_cluster_name": "gb10lab",
        "gb10_mgmt_subnet": f"{MGMT_PREFIX}.0/24",
        "gb10_mgmt_interface": MGMT_INTERFACE,
        "gb10_fabric_twins": [{"interface": t[0], "rdma_device": t[3]} for t in TWINS],
    }
    if LAB_ID != 0:
        # One Prometheus per control machine (its /etc/prometheus): only the default lab runs it.
        group_all["monitoring_enabled"] = False
    else:
        # The lab's timers, short so that the default scenario's alert check (a paused node must fire
        # GB10NodeDown) waits seconds, not the production defaults (15s scrapes, 1m alerts).
        group_all["monitoring_scrape_interval"] = "5s"
        group_all["monitoring_alert_for"] = "15s"
    group_gx10 = {
        "ansible_user": ADMIN_USER,
        "ansible_become": True,
        "ansible_ssh_private_key_file": str(key),
        "ansible_python_interpreter": "/usr/bin/python3",
        # Lab nodes get new host keys whenever the lab is rebuilt: keep them out of known_hosts.
        "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null",
    }
    (INVENTORY / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    (INVENTORY / "group_vars" / "gx10").mkdir(parents=True, exist_ok=True)
    header = "# Generated by lab/lab.py for the hardware-free lab; `make lab-up` rewrites it.\n"
    (INVENTORY / "hosts.yml").write_text(header + json.dumps(inv, indent=2) + "\n")
    (INVENTORY / "group_vars" / "all" / "lab.yml").write_text(header + json.dumps(group_all, indent=2) + "\n")
    (INVENTORY / "group_vars" / "gx10" / "lab.yml").write_text(header + json.dumps(group_gx10, indent=2) + "\n")
    (INVENTORY / "group_vars" / "all" / "catalog.yml").write_text(
        "# Generated by lab/lab.py from lab/models/catalog.yml: the lab's tiny models, added to the catalog\n"
        "# the way any inventory adds a model (docs/catalog.md); `make lab-up` rewrites it.\n"
        + json.dumps({"gb10_catalog_extra": lab_catalog()}, indent=2) + "\n")


def lab_catalog() -> dict[str, dict]:
    """The lab's catalog entries (lab/models/catalog.yml) with absolute paths: `config` in lab/models,
    and the model's files staged from the folder `lab/serving/lab_serving.py models` writes."""
    import yaml  # noqa: PLC0415 - only the inventory writers need it (they run in the venv)

    entries = yaml.safe_load(LAB_MODELS_CATALOG.read_text())
    for name, entry in entries.items():
        entry["config"] = str(LAB_MODELS_CATALOG.parent / entry["config"])
        repository = str(entry.get("image", {}).get("repository", ""))
        if repository.startswith(LAB_REGISTRY_PLACEHOLDER):
            entry["image"]["repository"] = REGISTRY_ADDR + "/" + repository[len(LAB_REGISTRY_PLACEHOLDER):]
        entry["weights"] = {"source": "controller", "dir": str(LAB_MODELS_DIR / name)}
    return entries


def up(count: int) -> None:
    if not 1 <= count <= MAX_NODES:
        raise SystemExit(f"lab: LAB_NODES must be between 1 and {MAX_NODES}, got {count}")
    tag = build()
    key = ssh_key()
    pubkey = key.with_suffix(".pub").read_text()
    ensure_bridge(MGMT_BRIDGE, 1500, f"{MGMT_GATEWAY}/24")
    for twin in TWINS:
        ensure_bridge(twin[1], FABRIC_MTU)
        # On a rack the controller is not on the fabric. Without this the host would answer ARP for its
        # management address on the fabric bridges (arp_ignore 0), which no rack does.
        Path(f"/proc/sys/net/ipv4/conf/{twin[1]}/arp_ignore").write_text("1\n")
    existing = lab_containers()
    for name in existing:  # nodes beyond the wanted count, or on an outdated image, go
        idx = int(name.rsplit("-", 1)[1])
        image = run("docker", "inspect", "-f", '{{index .Config.Labels "gb10-lab-image"}}', name, capture=True).strip()
        if idx > count or image != tag:
            log(f"removing {name} ({'beyond LAB_NODES' if idx > count else 'image changed'})")
            remove_node(name)
    for i in range(1, count + 1):
        name = container_name(i)
        state = run("docker", "inspect", "-f", "{{.State.Running}}", name, capture=True, check=False).strip()
        if state == "":
            log(f"creating {name}")
            create_node(i, tag, pubkey)
        elif state != "true":
            log(f"starting {name}")
            run("docker", "start", name, capture=True)
        plumb(i)
    for i in range(1, count + 1):
        wait_ssh(i, key)
    write_inventory(count, key)
    (STATE / "nodes").write_text(f"{count}\n")
    log(f"{count} node(s) up; inventory in {INVENTORY.relative_to(ROOT)}")


def remove_node(name: str) -> None:
    run("docker", "rm", "-f", name, capture=True, check=False)
    run("docker", "volume", "rm", f"gb10lab-{name}-docker", capture=True, check=False)
    idx = name.rsplit("-", 1)[1]
    for tag in "mab":
        if ok("ip", "link", "show", host_veth(int(idx), tag)):
            run("ip", "link", "del", host_veth(int(idx), tag), check=False)


def down() -> None:
    for name in lab_containers():
        log(f"removing {name}")
        remove_node(name)
    for bridge in BRIDGES:
        delete_bridge(bridge)
    if INVENTORY.exists():
        shutil.rmtree(INVENTORY)
    for sub in ("staging", "nodes"):
        path = STATE / sub
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    log("lab removed (the cached node image stays; `docker rmi` it to rebuild from scratch)")


def status() -> int:
    names = lab_containers()
    if not names:
        print("lab: no nodes")
        return 1
    bad = 0
    for name in names:
        running = run("docker", "inspect", "-f", "{{.State.Running}}", name, capture=True).strip() == "true"
        line = f"{name:8} {'running' if running else 'stopped'}"
        if running:
            pid = container_pid(name)
            for ifname in (MGMT_INTERFACE, *(t[0] for t in TWINS)):
                out = nsenter(pid, "ip", "-o", "-4", "addr", "show", ifname, check=False).split()
                link = nsenter(pid, "ip", "-o", "link", "show", ifname, check=False).split()
                mtu = link[link.index("mtu") + 1] if "mtu" in link else "-"
                addr = out[3] if len(out) > 3 else "no-address"
                line += f"  {ifname}={addr} mtu {mtu}"
        else:
            bad += 1
        print(line)
    return 1 if bad else 0


def cable(index: int, twin: str, state: str) -> None:
    """Pull (down) or plug (up) a twin's cable: the host side of its veth goes down or up, so the node
    keeps its configuration and sees the carrier go, as with a cable or a switch port."""
    tags = {iface: tag for (iface, *_), tag in zip(TWINS, "ab")}
    if twin not in tags:
        raise SystemExit(f"lab: no twin {twin!r}; the twins are {', '.join(tags)}")
    if state not in ("up", "down"):
        raise SystemExit(f"lab: cable state must be up or down, not {state!r}")
    dev = host_veth(index, tags[twin])
    if not ok("ip", "link", "show", dev):
        raise SystemExit(f"lab: {container_name(index)} has no {twin} plumbed (is the lab up?)")
    run("ip", "link", "set", "dev", dev, state)
    log(f"{container_name(index)} {twin}: cable {'plugged' if state == 'up' else 'pulled'} (host side {dev} {state})")


def reboot(index: int) -> None:
    """Reboot node ``index`` as a power cycle would: its systemd, Docker and containers restart, and its
    links come back (a container restart gets a new network namespace, so they are plumbed again)."""
    name = container_name(index)
    if not ok("docker", "inspect", name):
        raise SystemExit(f"lab: no node {name}")
    log(f"rebooting {name}")
    mac_before = link_mac(MGMT_BRIDGE)
    run("docker", "restart", "--timeout", "10", name)
    # Docker rewrites /etc/hosts at every start; a real node's keeps its own name (127.0.1.1), without
    # which sudo warns "unable to resolve host" on every call.
    run("docker", "exec", name, "sh", "-c", own_name_in_hosts(index))
    plumb(index)
    mac_after = link_mac(MGMT_BRIDGE)
    if mac_after != mac_before:
        raise SystemExit(f"lab: the control machine's MAC on {MGMT_BRIDGE} changed from {mac_before} to {mac_after} "
                         f"when {name} was plumbed again, which no rack's switch does (the other nodes' ARP entries "
                         "for it go stale): run `make lab-up` once, which pins the bridges' MACs, then reboot again")
    log(f"{name} is booting (links up)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["build", "up", "down", "status", "plumb", "inventory", "switch-vault",
                                           "vault-pass", "cable", "reboot"])
    parser.add_argument("args", nargs="*", help="cable: N TWIN up|down; reboot: N")
    parser.add_argument("--nodes", type=int, default=int(os.environ.get("LAB_NODES", "4")))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("lab: run as root (it creates bridges and containers)")
    if args.action == "build":
        build()
    elif args.action == "up":
        up(args.nodes)
    elif args.action == "down":
        down()
    elif args.action == "inventory":  # molecule links it before `create` starts the nodes
        write_inventory(args.nodes, ssh_key())
    elif args.action == "switch-vault":  # after lab/switch-sim.sh start made the credentials
        switch_vault()
    elif args.action == "vault-pass":
        vault_password()
    elif args.action == "cable":
        if len(args.args) != 3 or not args.args[0].isdigit():
            raise SystemExit("lab: usage: python -m lab.lab cable N TWIN up|down")
        cable(int(args.args[0]), args.args[1], args.args[2])
    elif args.action == "reboot":
        if len(args.args) != 1 or not args.args[0].isdigit():
            raise SystemExit("lab: usage: python -m lab.lab reboot N")
        reboot(int(args.args[0]))
    elif args.action == "plumb":
        for name in lab_containers():
            plumb(int(name.rsplit("-", 1)[1]))
    else:
        return status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
