#!/usr/bin/env bash
# What `npm run bench` needs besides layerfs itself, as root on Debian 12: fio (IO workloads)
# and the two FUSE union filesystems it is compared with. Idempotent and quiet: installs only
# what is missing, prints nothing when everything is there.
set -euo pipefail

. "$(dirname "$0")/lib/apt.sh"
install_missing bench-setup fio fuse-overlayfs unionfs-fuse fuse3 tar

[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || { echo "bench-setup: /dev/fuse is missing" >&2; exit 1; }
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
exit 0
