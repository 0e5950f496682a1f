#!/bin/sh
# Runs inside the debootstrapped root (chroot) once, while the lab node image is built.
set -eu
# Lab admin user: SSH key only (the key is copied in when a node is created), passwordless sudo.
useradd --create-home --shell /bin/bash --groups sudo gb10admin
passwd --lock gb10admin
printf 'gb10admin ALL=(ALL) NOPASSWD:ALL\n' > /etc/sudoers.d/90-gb10admin
chmod 0440 /etc/sudoers.d/90-gb10admin
# Host keys are made per node at first boot, not baked into the shared image.
rm -f /etc/ssh/ssh_host_*
cat > /etc/systemd/system/lab-ssh-hostkeys.service <<'UNIT'
[Unit]
Description=Generate SSH host keys for this lab node
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
# Networking as DGX OS 7 has it: netplan with the NetworkManager renderer for everything
# (Ubuntu's 01-network-manager-all.yaml), NetworkManager running, systemd-networkd installed but off.
# The management link's own netplan file is written per node by lab/lab.py when the node is created.
printf 'network:\n  version: 2\n  renderer: NetworkManager\n' > /etc/netplan/01-network-manager-all.yaml
chmod 0600 /etc/netplan/01-network-manager-all.yaml
systemctl enable lab-ssh-hostkeys.service ssh.service NetworkManager.service docker.service
systemctl disable systemd-networkd.service systemd-networkd.socket >/dev/null 2>&1 || true
# What a container cannot do: no udev, no kernel modules, no consoles.
systemctl mask systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
  systemd-modules-load.service getty@tty1.service console-getty.service systemd-firstboot.service \
  systemd-networkd-wait-online.service NetworkManager-wait-online.service \
  apparmor.service >/dev/null 2>&1 || true
# The node's Docker engine as DGX OS ships it would have a bridge; inside a lab node a bridge fails on an
# IPv6 sysctl, so the lab's engine starts without one (containers run with --network host).
mkdir -p /etc/docker
printf '{\n  "bridge": "none"\n}\n' > /etc/docker/daemon.json
echo 'gx10-lab' > /etc/hostname
# nginx is installed for the API proxy on the head (roles/vllm_serve configures and starts it there); on a
# rack node it is installed by that role only, so here it starts off, without Debian's default site on :80.
systemctl disable nginx.service >/dev/null 2>&1 || true
rm -f /etc/nginx/sites-enabled/default
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
