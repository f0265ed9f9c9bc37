#!/usr/bin/env bash
# The layerfs demo: three small layers, one mount, a look at the merged view, a few writes,
# and what they left in the upper directory. Everything happens in a fresh temp dir.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
layerfs="$root/bin/layerfs"
demo=$(mktemp -d /tmp/layerfs-demo.XXXXXX)
mnt=$demo/merged
cleanup() { mountpoint -q "$mnt" && "$layerfs" umount "$mnt" || true; }
trap cleanup EXIT
cd "$demo"
show() { printf '\n$ %s\n' "$*"; bash -c "$*"; }

# base: a tiny "distribution"; app: adds and changes files; patch: deletes one (OCI whiteout)
mkdir -p base/etc base/bin app/etc app/srv patch upper work merged
echo "debian 12"        > base/etc/os-release
echo "motd from base"   > base/etc/motd
echo "echo hello"       > base/bin/hello
echo "motd from app"    > app/etc/motd
echo "<h1>app</h1>"     > app/srv/index.html
: > patch/.wh.hello; mkdir -p patch/bin && mv patch/.wh.hello patch/bin/   # OCI whiteout: deletes bin/hello
echo "layers: patch (top) : app : base (bottom), upper=$demo/upper"

show "$layerfs mount -o lowerdir=patch:app:base,upperdir=upper,workdir=work merged"
show "grep ' $mnt ' /proc/mounts"
show "cd merged && find . | sort"
show "cat merged/etc/motd          # app's copy shadows base's"
show "ls merged/bin                # empty: patch's .wh.hello hides base's bin/hello"
show "echo 'written through the mount' >> merged/etc/os-release   # copy-up of a lower file"
show "rm merged/etc/motd           # a lower file: leaves a whiteout in the upper"
show "rm -r merged/srv && mkdir merged/srv && echo new > merged/srv/index.html   # opaque dir"
show "cat merged/etc/os-release; ls merged/etc merged/srv"
printf '\n# what landed in the upper directory (kernel overlayfs format):\n'
show "cd upper && find . -printf '%M %p\n' | sort -k2"
show "getfattr -n trusted.overlay.opaque upper/srv"
show "cat base/etc/os-release app/etc/motd   # the lowers are untouched"
show "$layerfs umount merged"
show "grep -c ' $mnt ' /proc/mounts || true"

printf '\n# and now as a container root: busybox base layer + an app layer, run in its own namespaces\n'
bash "$root/scripts/make-rootfs.sh" "$demo/rootfs" >/dev/null
mkdir -p "$demo/run-upper" "$demo/run-work"
show "$layerfs run --lower $demo/rootfs/app:$demo/rootfs/base --upper $demo/run-upper --work $demo/run-work --hostname demo -- /bin/sh -c 'echo PID \$\$ on \$(hostname); tail -n +3 /proc/net/dev; cat /etc/motd; hello; echo changed >> /etc/motd; rm /etc/app.conf; echo new > /root/note'"
show "cd $demo/run-upper && find . -printf '%M %p\n' | sort -k2"
echo
echo "demo files kept in $demo"
