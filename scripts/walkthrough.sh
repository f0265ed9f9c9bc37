#!/usr/bin/env bash
# The walk-through of docs/walkthrough.md ("How a union filesystem works"), as a reader types
# it: two layers, one mount, then merge, shadowing, copy-up, whiteout, opaque directory and
# commit, each explained by `layerfs explain` and `layerfs trace`. Run as root. It works in a
# fresh temp dir that it shows as /tmp/walk (so the output is the same on every run), and
# removes it at the end.
#
# Run as the reader would: the commands below are typed exactly as the text shows them, one by
# one, in one shell (an `export` in the text holds for the commands after it), with no `set -e`,
# `-u` or `pipefail` around them, and in an environment that holds nothing the text does not set
# itself except what it asks the reader to have: HOME, and `layerfs` on the PATH (the checkout's
# bin/ first, as `export PATH=$PWD/bin:$PATH` in the checkout would do); and LAYERFS_ENGINE_DIR
# when the caller has one (where the engine lives).
#
# Each `==> NAME` line starts one of the page's console blocks; test/walkthrough.test.ts checks
# that the page shows exactly what this prints (up to durations and digests).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" != --clean-env ]; then
  # Where the engine lives is the machine's, not the text's: a caller's LAYERFS_ENGINE_DIR (the
  # test suite's engine) is kept, so that the walk-through does not leave another engine running.
  exec env -i HOME="${HOME:-/root}" PATH="$repo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    ${LAYERFS_ENGINE_DIR:+LAYERFS_ENGINE_DIR="$LAYERFS_ENGINE_DIR"} \
    bash "$repo/scripts/walkthrough.sh" --clean-env
fi
W=$(mktemp -d /tmp/layerfs-walk.XXXXXX)
out=$(mktemp /tmp/layerfs-walk-out.XXXXXX)
cleanup() {
  cd /
  if mountpoint -q "$W/mnt"; then "$repo/bin/layerfs" umount "$W/mnt" || umount -l "$W/mnt" || true; fi
  rm -rf "$W" "$out"
}
trap cleanup EXIT
cd "$W"

# Print a command as typed at a root prompt, then run it in this shell, as typed; the temp dir
# is shown as /tmp/walk.
run() {
  printf '# %s\n' "$1"
  set +euo pipefail
  eval "$1" >"$out" 2>&1
  set -euo pipefail
  sed "s|$W|/tmp/walk|g" "$out"
}
block() { printf '==> %s\n' "$1"; }

block setup
run 'export LAYERFS_STORE=$PWD/store'
run 'export LC_ALL=C'

block layers
run "mkdir base app upper work mnt"
run "mkdir -p base/etc base/var/log app/etc app/srv"
run "echo 'motd from base' > base/etc/motd; echo '127.0.0.1 localhost' > base/etc/hosts"
run "echo 'old entries' > base/var/log/old.log"
run "echo 'motd from app' > app/etc/motd; echo 'port=80' > app/etc/app.conf; echo '<h1>hi</h1>' > app/srv/index.html"
run "layerfs mount --trace trace.jsonl -o lowerdir=app:base,upperdir=upper,workdir=work mnt"

block merge
run "ls mnt mnt/etc"
run "layerfs explain mnt /etc"

block shadow
run "cat mnt/etc/motd"
run "layerfs explain mnt /etc/motd"

block copyup
run "echo '10.0.0.1 db' >> mnt/etc/hosts"
run "ls upper upper/etc"
run "layerfs explain mnt /etc/hosts"

block whiteout
run "rm mnt/etc/app.conf"
run "stat -c '%n: %F %t,%T' upper/etc/app.conf"
run "layerfs explain mnt /etc/app.conf; echo \"exit status \$?\""

block opaque
run "rm -r mnt/var/log && mkdir mnt/var/log && echo 'new entries' > mnt/var/log/new.log"
run "getfattr -n trusted.overlay.opaque upper/var/log"
run "layerfs explain mnt /var/log/old.log; echo \"exit status \$?\""

block trace
run "layerfs trace trace.jsonl | grep -v '^lookup'"
run "layerfs trace trace.jsonl | grep '^lookup' | sort -t: -k1,1 | head -n 6"

block commit
run "layerfs umount mnt"
run "layerfs diff upper --lower app:base"
run "layerfs commit upper --name walk:1"
run "(cd store/layers/*/root && ls -A etc var/log)"
