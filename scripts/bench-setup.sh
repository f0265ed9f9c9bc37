#!/usr/bin/env bash
# What `npm run bench` needs besides layerfs itself, as root on Debian 12: fio (IO workloads)
# and the two FUSE union filesystems it is compared with. Idempotent and quiet: installs only
# what is missing, prints nothing when everything is there.
set -euo pipefail

pkgs=(fio fuse-overlayfs unionfs-fuse fuse3 tar)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then echo "bench-setup: need root to install ${missing[*]}" >&2; exit 1; fi
  echo "bench-setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A stale package index is the usual reason for a failed install: update only then.
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  }
fi

[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || { echo "bench-setup: /dev/fuse is missing" >&2; exit 1; }
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
exit 0
