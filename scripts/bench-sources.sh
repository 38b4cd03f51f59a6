#!/usr/bin/env bash
# The queue sources' benchmarks on the local sandbox (release builds; each mode runs RUNS times,
# default 3, and prints every run with the load average, then the median):
#   scripts/bench-sources.sh latency [N]        eventbridge_sqs: the event's SentTimestamp in SQS to
#                                               the key verified Disabled, N rescues a run (100)
#   scripts/bench-sources.sh lookup [N]         the same through LookupEvents at the default poll
#                                               interval (15 s), from the failed call (8 a run)
#   scripts/bench-sources.sh s3 [FILES] [RECORDS]
#                                               s3_sqs: one replica reading org-trail log files that
#                                               are already notified into its queue (1000, 200000)
#   scripts/bench-sources.sh eventbridge [N] [RECEIVERS]
#                                               eventbridge_sqs against a plain SQS receive/delete loop
#                                               (examples/sqs_drain.rs) on the same N messages (10000, 2)
# The harness is scripts/bench/sources.py (boto3 from the project venv, tests/setup.sh).
# MATCH_EVERY=N: 1 generated record in N matches a rule (default 1000).
# TRAILGUARD_BIN, SANDBOX_BIN and SQS_DRAIN_BIN run binaries built elsewhere; with all three,
# nothing is built. (Building the example unifies the dev-dependencies' features into the
# release build, so the shipped binary is best built on its own and passed as TRAILGUARD_BIN.)
set -euo pipefail
mode="${1:?usage: $0 latency|lookup|s3|eventbridge [ARGS]}"; shift
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -n "${SQS_DRAIN_BIN:-}" ] || cargo build --quiet --release -p trailguard --example sqs_drain
source scripts/bench-sandbox.sh
export TRAILGUARD_BENCH_WORK="$work"
"$root/.venv/bin/python" scripts/bench/sources.py "$endpoint" "$tg_bin" "${SQS_DRAIN_BIN:-$bin/examples/sqs_drain}" "$work" "$mode" "$@"
