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
