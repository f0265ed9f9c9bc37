#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set-up, type check, every ava test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-system.sh >/dev/null
bash scripts/clean-stale-mounts.sh
echo "== tsc --noEmit"
npx tsc --noEmit
echo "== ava"
# The suite's mounts are served by an engine of its own (started by the first mount), stopped
# at the end whatever happens: a developer's engine is never touched.
LAYERFS_ENGINE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/layerfs-test-engine.XXXXXX")
export LAYERFS_ENGINE_DIR
stop_engine() {
  local pid
  pid=$(cat "$LAYERFS_ENGINE_DIR/engine.lock" 2>/dev/null || true)
  if [ -n "$pid" ] && grep -q 'engine' "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ "${rc:-1}" != 0 ] && [ -f "$LAYERFS_ENGINE_DIR/engine.log" ]; then echo "== the engine's log (last 40 lines)"; tail -40 "$LAYERFS_ENGINE_DIR/engine.log"; fi
  rm -rf "$LAYERFS_ENGINE_DIR"
}
trap stop_engine EXIT
# Started here, with a store of its own: an engine takes its store from the command that starts
# it, and the tests' commands carry stores of their own that their teardowns remove.
LAYERFS_STORE="$LAYERFS_ENGINE_DIR/store" bin/layerfs engine start
out=$(mktemp)
set +e
npx ava "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
set -e
count() { grep -oE "^ *[0-9]+ (tests? )?$1" "$out" | grep -oE '[0-9]+' | tail -1 || true; }
# ava prints "N tests passed" only when nothing failed; count the ✔ lines instead.
passed=$(grep -E '^\s+✔ ' "$out" | grep -vc '\[expected fail\]' || true)
failed=$(count failed)
skipped=$(count skipped)
known=$(count 'known failures?')
rm -f "$out"
bash scripts/clean-stale-mounts.sh --check || rc=1
# ava counts a test.failing (a documented known defect) apart; it is not a pass.
[ -z "$known" ] || echo "known failures (documented defects, see README): $known"
echo "ava: ${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit "$rc"
