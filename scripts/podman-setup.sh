#!/usr/bin/env bash
# What test/podman/ needs besides layerfs itself, as root on Debian 12: podman 4.3 with runc
# (crun 1.8, podman's default, refuses this machine's hybrid cgroup layout), conmon, netavark
# (podman's network backend; `--network none` still needs it to be present) and fuse3
# (podman unmounts a mount_program's mount with `fusermount3 -u`). uidmap: newuidmap for
# podman's --uidmap handling. Idempotent and quiet: installs only what is missing, prints
# nothing when everything is there.
set -euo pipefail

. "$(dirname "$0")/lib/apt.sh"
APT_EXTRA=(--no-install-recommends)
install_missing podman-setup podman runc conmon netavark uidmap fuse3 golang-github-containers-common

[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || { echo "podman-setup: /dev/fuse is missing" >&2; exit 1; }
exit 0
