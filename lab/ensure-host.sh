#!/usr/bin/env bash
# Make sure this machine can run the lab: Docker engine answering, debootstrap, iproute2, ssh client.
# Installs with apt (Debian/Ubuntu) what is missing and starts dockerd when nothing answers.
set -euo pipefail
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v tc >/dev/null 2>&1 || need+=(iproute2)
# nft -c checks the firewall role's rendered rules in the unit tests.
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
# promtool checks the monitoring role's rendered configuration and alert rules in the unit tests (Debian's
# prometheus package: the monitoring role installs the same one on the control machine, this host, later).
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# The control-side registry the lab's nodes pull the vLLM image from (lab/serving).
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
if [ "${#need[@]}" -gt 0 ]; then
  echo "host: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian's keyring must know the release the lab image is built from (trixie).
if [ ! -e /usr/share/keyrings/debian-archive-trixie-stable.gpg ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-archive-keyring >/dev/null || true
fi
if ! docker info >/dev/null 2>&1; then
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start docker
  else
    echo "host: starting dockerd (log: /var/log/gb10-dockerd.log)"
    nohup dockerd >/var/log/gb10-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "host: dockerd did not start; see /var/log/gb10-dockerd.log" >&2; exit 1; }
fi
# Every lab node runs systemd (and NetworkManager), each holding inotify instances: the kernel's default of
# 128 per user runs out with a few labs, and a node then exits (255) before its systemd is up.
if [ "$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 1024)" -lt 1024 ]; then
  echo "host: fs.inotify.max_user_instances 1024 (lab nodes run systemd)"
  sysctl -qw fs.inotify.max_user_instances=1024 || echo "host: could not raise fs.inotify.max_user_instances" >&2
fi
echo "host: docker $(docker version --format '{{.Server.Version}}') ready"
