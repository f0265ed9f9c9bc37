#!/usr/bin/env bash
# Build a two-layer root filesystem for `layerfs run` into DIR:
#
#   DIR/base   Debian's busybox-static plus a link for every applet, /etc/passwd and group,
#              the usual empty mount points (proc, sys, dev, tmp, ...).
#   DIR/app    a second layer on top that ADDS files (/etc/app.conf, /usr/local/bin/hello),
#              CHANGES one (/etc/motd) and DELETES some: /bin/vi with a kernel-format whiteout
#              (character device 0/0), /etc/issue with an OCI whiteout (.wh.issue), and replaces
#              /srv wholesale with an OCI opaque marker (.wh..wh..opq).
#
# Use them as `--lower DIR/app:DIR/base` (the top-most layer first).
#
# Idempotent and safe to run concurrently (a lock file serialises builders): the layers are
# built in a temp dir inside DIR and renamed into place; an existing build made by the same
# version of this script is kept.
# Installs busybox-static with apt-get when it is missing (needs root for that).
set -euo pipefail

dir=${1:-}
if [ -z "$dir" ]; then echo "usage: $0 DIR" >&2; exit 2; fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# The stamp names this script's content: a changed script rebuilds the layers.
stamp=$(sha256sum "$0" | cut -c1-16)
exec 9>"$dir/.lock"
flock 9
if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ] && [ -d "$dir/base" ] && [ -d "$dir/app" ]; then
  exit 0
fi

. "$(dirname "$0")/lib/apt.sh"
install_missing make-rootfs busybox-static
bb=/bin/busybox
file_type=$(head -c 4 "$bb" | od -An -c | tr -d ' ')
[ "$file_type" = '177ELF' ] || { echo "make-rootfs: $bb is not an ELF binary" >&2; exit 1; }

tmp=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
base=$tmp/base
app=$tmp/app

# --- base: busybox and its applets -------------------------------------------------------
mkdir -p "$base"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,proc,sys,dev,tmp,root,home/user,var/tmp,run,mnt,srv}
chmod 1777 "$base/tmp" "$base/var/tmp"
chmod 700 "$base/root"
install -m 0755 "$bb" "$base/bin/busybox"
"$bb" --list-full | while read -r applet; do
  case "$applet" in bin/busybox | linuxrc) continue ;; esac
  target=$base/$applet
  [ -e "$target" ] || [ -L "$target" ] && continue
  mkdir -p "$(dirname "$target")"
  ln -s /bin/busybox "$target"
done
cat >"$base/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$base/etc/group" <<'EOF'
root:x:0:
user:x:1000:
nogroup:x:65534:
EOF
chown 1000:1000 "$base/home/user"
echo "busybox base layer" >"$base/etc/motd"
echo "layerfs test root \\n \\l" >"$base/etc/issue"
printf 'NAME="layerfs busybox"\nID=busybox\n' >"$base/etc/os-release"
echo "from the base layer" >"$base/srv/base-only.txt"
: >"$base/etc/hosts"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$base/etc/hosts"

# --- app: adds, changes, deletes ------------------------------------------------------------
mkdir -p "$app"/{bin,etc,usr/local/bin,srv}
echo "app layer motd" >"$app/etc/motd"                         # changes a base file
printf 'greeting="hello from the app layer"\n' >"$app/etc/app.conf" # adds a file
cat >"$app/usr/local/bin/hello" <<'EOF'
#!/bin/sh
. /etc/app.conf
echo "$greeting"
EOF
chmod 0755 "$app/usr/local/bin/hello"
mknod "$app/bin/vi" c 0 0                                      # kernel whiteout: deletes /bin/vi
: >"$app/etc/.wh.issue"                                         # OCI whiteout: deletes /etc/issue
: >"$app/srv/.wh..wh..opq"                                      # OCI opaque: hides base's /srv
echo "<h1>app</h1>" >"$app/srv/index.html"

echo "$stamp" >"$tmp/.stamp"
rm -f "$dir/.stamp"
old=$(mktemp -d "$dir/.old.XXXXXX")
for l in base app; do
  [ -e "$dir/$l" ] && mv "$dir/$l" "$old/$l"
  mv "$tmp/$l" "$dir/$l"
done
mv "$tmp/.stamp" "$dir/.stamp"
rm -rf "$old"
