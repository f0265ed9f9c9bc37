#!/usr/bin/env bash
# Everything layerfs needs on a fresh Debian 12 machine, as root. Idempotent: a second run
# installs nothing and only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# libfuse3-dev, pkg-config, g++, make, python3: `npm ci` builds the addons with node-gyp
#   (binding.gyp: native/layerfs_fuse.cc on libfuse3's low-level API, native/layerfs_sys.cc the
#   syscalls Node's fs lacks, native/layerfs_seccomp.cc the seccomp filters of `layerfs run`).
# libfuse2: fuse-native's prebuilt addon links against libfuse.so.2 (-o backend=fuse-native).
# fuse3: fusermount3 and mount.fuse3 (for `mount -t fuse.layerfs` and podman's unmount).
# attr: setfattr/getfattr, used by tests and handy for looking at opaque markers.
# umoci, skopeo: build and read real OCI images in the image tests (test/image/).
# strace: tests that prove what the daemon asks of the kernel (paths it walks, reads it splices).
# libseccomp-dev: native/layerfs_seccomp.cc compiles `layerfs run`'s seccomp filters with
#   libseccomp (links -lseccomp; the package pulls in the libseccomp2 runtime).
. scripts/lib/apt.sh
install_missing setup libfuse3-dev pkg-config g++ make python3 libfuse2 fuse3 attr util-linux umoci skopeo strace libseccomp-dev

[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || { echo "setup: /dev/fuse is missing" >&2; exit 1; }
# Unprivileged FUSE mounts (rootless `layerfs run`, through fusermount3) need /dev/fuse open to
# everyone, as Debian's udev rules make it; some sandboxes create it 600.
if [ "$(stat -c %a /dev/fuse)" != 666 ]; then
  chmod 666 /dev/fuse 2>/dev/null && echo "setup: /dev/fuse made mode 666 (Debian's default) for rootless mounts" >&2 \
    || echo "setup: /dev/fuse is mode $(stat -c %a /dev/fuse) and cannot be changed: rootless runs will not mount" >&2
fi

# node-gyp builds against Node's own headers when the machine has them (Debian's nodejs does),
# instead of downloading a header tarball. Given to the build commands only (npm warns about
# the setting on every command it is in the environment of).
gyp_env=()
if [ -z "${npm_config_nodedir:-}" ] && [ -f /usr/include/node/node_api.h ] \
  && [ "$(node -p process.execPath)" = /usr/bin/node ]; then
  gyp_env=(npm_config_nodedir=/usr)
fi

# npm ci (which also builds the addon: the package's install script) only when the lock file
# changed since the last install.
stamp=node_modules/.layerfs-lock-stamp
addon=build/Release/layerfs_fuse.node
sysaddon=build/Release/layerfs_sys.node
seccompaddon=build/Release/layerfs_seccomp.node
client=build/Release/layerfs_client
exechelper=build/Release/layerfs_exec
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  if ! env "${gyp_env[@]}" npm ci --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: npm ci failed" >&2
    exit 1
  fi
  cp package-lock.json "$stamp"
fi

# The addons and the client alone: missing (a cleaned build/), or older than any of their sources.
stale=0
for src in binding.gyp native/*.cc native/*.h native/fuse/*.cc native/fuse/*.h native/client/*.c native/exec/*.c; do
  for out in "$addon" "$sysaddon" "$seccompaddon" "$client" "$exechelper"; do
    if [ ! -f "$out" ] || [ "$src" -nt "$out" ]; then stale=1; fi
  done
done
if [ "$stale" = 1 ]; then
  if ! env "${gyp_env[@]}" npm run --silent install >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: building the addons ($addon, $sysaddon, $seccompaddon) and $client failed" >&2
    exit 1
  fi
fi
