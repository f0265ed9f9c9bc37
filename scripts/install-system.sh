#!/usr/bin/env bash
# Make `layerfs` a system command, so `mount -t fuse.layerfs` (mount.fuse3 runs `layerfs` from
# /usr/local/bin with a cleared PATH) and podman's mount_program can find it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
ln -sfn "$root/bin/layerfs" /usr/local/bin/layerfs
echo "installed /usr/local/bin/layerfs -> $root/bin/layerfs"
