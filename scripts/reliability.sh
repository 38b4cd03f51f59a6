#!/usr/bin/env bash
# The reliability figures of RELIABILITY.md, reproducibly:
#   scripts/reliability.sh faults     every scenario of tests/faults.rs at full length (a 10-minute
#                                     SNS outage, 10 minutes of 50% throttling, 2 hours of backlog
#                                     at 5 events/s, ...) against a release build of trailguard;
#                                     prints one table row per scenario (about 45 minutes;
#                                     FAULT_THREADS=8: all at once, about 17)
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

# Everything here is built in release, in one target directory: the daemon and the test harness
# (which hosts the sandbox) alike. The daemon under test is the trailguard that `cargo test
# --release` builds beside the harness (one build; the dev-dependencies add tokio's test-util
# feature to it), unless TRAILGUARD_BIN names another binary.
export CARGO_TARGET_DIR="$release_dir"
status=0
if [ "$mode" = faults ] || [ "$mode" = all ]; then
  cargo test --quiet --release --locked --test faults --no-run
  export TRAILGUARD_BIN="${TRAILGUARD_BIN:-$release_dir/release/trailguard}"
  # The whole output (logs of a failing scenario included) goes to $RELIABILITY_LOG.
  log="${RELIABILITY_LOG:-$release_dir/reliability-faults.log}"
  # One scenario at a time by default; FAULT_THREADS=8 runs all eight at once, each against its
  # own sandbox: about 17 minutes, the longest scenario's time, instead of 45.
  threads="${FAULT_THREADS:-1}"
  echo "faults: full output in $log"
  echo "| scenario | injected | events | missed | repeated actions | duplicate notifications |"
  echo "|---|---|---|---|---|---|"
  TRAILGUARD_FAULT_SCALE=1 cargo test --release --quiet --locked --test faults -- --nocapture --test-threads "$threads" \
    > "$log" 2>&1 || status=$?
  sed -n 's/^RELIABILITY | \(.*\)$/| \1/p' "$log"
  grep -E '^test .* FAILED|^test result' "$log" || true
fi
if [ "$mode" = hostile ] || [ "$mode" = all ]; then
  start=$(date +%s)
  PROPTEST_CASES=1000000 cargo test --release --locked --test hostile -- --test-threads 2 2>&1 | grep -E '^test |test result' || status=$?
  echo "hostile: 3 properties x 1,000,000 cases in $(( $(date +%s) - start ))s"
fi
exit "$status"
