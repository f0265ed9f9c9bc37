#!/usr/bin/env bash
# Everything layerfs needs on a fresh Debian 12 machine, as root. Idempotent: a second run
# installs nothing and only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# libfuse2: fuse-native's prebuilt addon links against libfuse.so.2.
# fuse3: fusermount3 and mount.fuse3 (for `mount -t fuse.layerfs` and podman's unmount).
# attr: setfattr/getfattr, used by tests and handy for looking at opaque markers.
# umoci, skopeo: build and read real OCI images in the image tests (test/image/).
pkgs=(libfuse2 fuse3 attr util-linux umoci skopeo)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  if [ "$(id -u)" != 0 ]; then echo "setup: need root to install ${missing[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || { echo "setup: /dev/fuse is missing" >&2; exit 1; }

# npm ci only when the lock file changed since the last install.
stamp=node_modules/.layerfs-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi
