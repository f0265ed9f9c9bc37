#!/usr/bin/env bash
# What test/podman/ needs besides layerfs itself, as root on Debian 12: podman 4.3 with runc
# (crun 1.8, podman's default, refuses this machine's hybrid cgroup layout), conmon, netavark
# (podman's network backend; `--network none` still needs it to be present) and fuse3
# (podman unmounts a mount_program's mount with `fusermount3 -u`). uidmap: newuidmap for
# podman's --uidmap handling. Idempotent and quiet: installs only what is missing, prints
# nothing when everything is there.
set -euo pipefail

pkgs=(podman runc conmon netavark uidmap fuse3 golang-github-containers-common)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then echo "podman-setup: need root to install ${missing[*]}" >&2; exit 1; fi
  echo "podman-setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Other processes may hold the dpkg lock (parallel installs): wait for it rather than fail.
  apt_opts=(-y -qq --no-install-recommends -o DPkg::Lock::Timeout=600)
  # A stale package index is the usual reason for a failed install: update only then.
  apt-get install "${apt_opts[@]}" "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -qq -o DPkg::Lock::Timeout=600
    apt-get install "${apt_opts[@]}" "${missing[@]}" >/dev/null
  }
fi

[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || { echo "podman-setup: /dev/fuse is missing" >&2; exit 1; }
exit 0
