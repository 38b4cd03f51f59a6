#!/usr/bin/env bash
# The reliability figures of RELIABILITY.md, reproducibly:
#   scripts/reliability.sh faults     every scenario of tests/faults.rs at full length (a 10-minute
#                                     SNS outage, 10 minutes of 50% throttling, 2 hours of backlog
#                                     at 5 events/s, ...) against a release build of trailguard;
#                                     prints one table row per scenario (about 45 minutes)
#   scripts/reliability.sh hostile    the property tests of tests/hostile.rs, 1,000,000 cases each
#   scripts/reliability.sh all        both
# The same scenarios run scaled down in `cargo test` (tests/test.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tests/setup.sh >/dev/null
mode="${1:-all}"
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
release_dir="${TRAILGUARD_RELEASE_TARGET_DIR:-$target}"

if [ "$mode" = faults ] || [ "$mode" = all ]; then
  CARGO_TARGET_DIR="$release_dir" cargo build --quiet --release --locked -p trailguard --bin trailguard
  export TRAILGUARD_BIN="$release_dir/release/trailguard"
  echo "| scenario | injected | events | missed | repeated actions | duplicate notifications |"
  echo "|---|---|---|---|---|---|"
  TRAILGUARD_FAULT_SCALE=1 cargo test --quiet --locked --test faults -- --nocapture --test-threads 1 2>/dev/null \
    | sed -n 's/^RELIABILITY | \(.*\)$/| \1/p'
fi
if [ "$mode" = hostile ] || [ "$mode" = all ]; then
  start=$(date +%s)
  PROPTEST_CASES=1000000 cargo test --release --locked --test hostile -- --test-threads 2 2>&1 | grep -E '^test |test result'
  echo "hostile: 3 properties x 1,000,000 cases in $(( $(date +%s) - start ))s"
fi
