#!/usr/bin/env bash
# Unmount what an interrupted test run may have left behind — only mounts below the tests'
# own temp dirs (layerfs-test-*), never anything else. With --check, report them and fail.
set -u
tmp=${TMPDIR:-/tmp}
mapfile -t stale < <(awk -v t="$tmp/layerfs-test-" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo | sort -r)
if [ "${1:-}" = --check ]; then
  if ((${#stale[@]})); then echo "stale mounts left by the tests: ${stale[*]}" >&2; exit 1; fi
  exit 0
fi
for m in "${stale[@]}"; do
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
done
exit 0
